"""The client's typed dicts name exactly the fields of the protocol's models.

The wire's shapes are defined once, as pydantic models in realtimechat_client.protocol
(the server's OpenAPI models inherit them). The client hands answers on as the dicts
they arrived as, typed by TypedDicts (no copy per message); this keeps the two in step.
"""

from __future__ import annotations

from typing import get_type_hints

import pytest
from pydantic import BaseModel

from realtimechat.edge import models_out
from realtimechat_client import models, protocol

PAIRS: list[tuple[type, type[BaseModel]]] = [
    (models.Message, protocol.Message),
    (models.Attachment, protocol.Attachment),
    (models.Event, protocol.Event),
]


@pytest.mark.parametrize(("typed", "model"), PAIRS, ids=lambda t: t.__name__)
def test_a_typed_dict_lists_its_models_fields(typed: type, model: type[BaseModel]) -> None:
    assert list(get_type_hints(typed)) == list(model.model_fields)
    assert typed.__required_keys__ == frozenset(model.model_fields)  # type: ignore[attr-defined]


@pytest.mark.parametrize("model", [protocol.Message, protocol.Attachment, protocol.Event])
def test_the_rest_answers_models_are_the_protocols_and_forbid_other_fields(
    model: type[BaseModel],
) -> None:
    documented = getattr(models_out, model.__name__)
    assert issubclass(documented, model)
    assert list(documented.model_fields) == list(model.model_fields)
    assert documented.model_json_schema()["additionalProperties"] is False

"""JSON responses serialised with orjson."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response


def json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response; `data` may already be serialised bytes."""
    body = data if isinstance(data, bytes) else orjson.dumps(data)
    return Response(body, status_code=status, media_type="application/json", headers=headers)

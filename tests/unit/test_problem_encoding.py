"""A validation error's problem+json is written whatever the failing input held."""

from __future__ import annotations

import httpx
import orjson
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError

from realtimechat.edge import errors


async def test_a_validation_error_naming_unencodable_values_is_still_a_422() -> None:
    app = FastAPI()
    errors.install(app)

    @app.get("/boom")
    async def boom() -> None:
        # What a validator may report about input orjson cannot write: a lone
        # surrogate and an integer past 64 bits, in the location and the message.
        raise RequestValidationError(
            [{"loc": ("body", "\ud800", 2**70), "msg": "bad \udfff", "type": "value_error"}]
        )

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        resp = await http.get("/boom")
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    body = orjson.loads(resp.content)
    assert body["code"] == "validation_error"
    assert body["errors"] == [
        {"loc": ["body", "\\ud800", str(2**70)], "msg": "bad \\udfff", "type": "value_error"}
    ]

"""The error handlers: database conflicts and unexpected errors never leak internals."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.exc import IntegrityError
from starlette.requests import Request

from gpusupply.api.errors import integrity_error, unexpected_error


def _request() -> Request:
    return Request({"type": "http", "method": "POST", "path": "/procure_offer", "headers": [], "query_string": b""})


async def test_integrity_error_is_a_409() -> None:
    response = await integrity_error(_request(), IntegrityError("INSERT ...", {}, Exception("duplicate key")))
    assert response.status_code == 409
    assert "duplicate" not in response.body.decode() and "retry" in json.loads(response.body)["detail"]


async def test_unexpected_error_is_a_bare_500(caplog: Any) -> None:
    response = await unexpected_error(_request(), ValueError("secret internals"))
    assert response.status_code == 500 and json.loads(response.body) == {"detail": "internal error"}
    assert "unhandled error" in caplog.text

"""Errors as JSON bodies with a message a person can act on."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response


class BadParameter(HTTPException):
    """400 naming the offending query parameter (PS3.18 §8.6.3)."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(400, f"invalid query parameter '{name}': {problem}")


class NotFound(HTTPException):
    def __init__(self, what: str) -> None:
        super().__init__(404, f"{what} not found")


async def http_exception_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code in (204, 304):
        return Response(status_code=exc.status_code, headers=headers)
    return JSONResponse({"status": exc.status_code, "error": exc.detail},
                        status_code=exc.status_code, headers=headers)

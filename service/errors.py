"""Errors as JSON with a stable code: ``{"error": {"code": "...", "message": "..."}}``.

Codes are part of the API contract and are never renamed. Decode failures keep the detector's
codes (``mimicry.detector.decode.ERROR_CODES``) and map to HTTP statuses here.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger("mimicry.service")

# HTTP status of each decode error code (detector.decode.ERROR_CODES).
DECODE_STATUS = {
    "too_large": 413,
    "too_many_pixels": 413,
    "unsupported_format": 415,
    "corrupt": 422,
    "empty": 422,
    "not_found": 422,
    "too_small": 422,
}

# Every code the API answers with, and its status.
CODES = {
    **DECODE_STATUS,
    "bad_request": 400,
    "artist_not_found": 404,
    "artist_exists": 409,
    "registry_error": 409,
    "attribution_off": 503,
    "registry_unavailable": 503,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found_route": 404,
    "method_not_allowed": 405,
    "too_many_items": 413,
    "validation_error": 422,
    "overloaded": 503,
    "not_ready": 503,
    "timeout": 504,
    "request_timeout": 408,  # headers not complete in time (service/server.py)
    "internal": 500,
}
_STATUS_CODE = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found_route",
                405: "method_not_allowed", 413: "too_large", 415: "unsupported_format", 422: "validation_error",
                503: "not_ready", 504: "timeout"}


class APIError(Exception):
    """An error answer: ``code`` from :data:`CODES`, a human message, optional headers."""

    def __init__(self, code: str, message: str, *, status: int | None = None, headers: dict | None = None):
        if code not in CODES:
            raise ValueError(f"unknown API error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or CODES[code]
        self.headers = headers


def error_body(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


def error_response(code: str, message: str, status: int | None = None, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=status or CODES[code], headers=headers)


def install(app: FastAPI) -> None:
    """Route every error, including FastAPI's own 404/405/422, through the one JSON shape."""

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return error_response(exc.code, exc.message, exc.status, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODE.get(exc.status_code, "bad_request" if exc.status_code < 500 else "internal")
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return error_response(code, message, exc.status_code, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The registry's database gone or locked past its timeout is an outage to retry, not a bug.
        if any(c.__name__ == "OperationalError" and c.__module__.split(".")[0] in ("sqlite3", "psycopg")
               for c in type(exc).__mro__):
            return error_response("registry_unavailable", f"the registry database is unavailable: {exc}",
                                  headers={"Retry-After": "5"})
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response("internal", "internal error; it has been logged")

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for e in exc.errors():
            where = ".".join(str(p) for p in e.get("loc", ()))
            parts.append(f"{where}: {e.get('msg')}" if where else str(e.get("msg")))
        return error_response("validation_error", "; ".join(parts) or "invalid request")

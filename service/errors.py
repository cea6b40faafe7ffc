"""API errors: one class per error code, rendered as JSON by one middleware."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Final

import msgspec
from aiohttp import web

logger = logging.getLogger(__name__)

_encoder: Final = msgspec.json.Encoder()


class ApiError(Exception):
    """An error the API returns as `{"error": code, "message": text}`."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, **self.extra}


class InvalidJson(ApiError):
    status, code = 400, "invalid_json"


class NotFound(ApiError):
    status, code = 404, "not_found"


class MethodNotAllowed(ApiError):
    status, code = 405, "method_not_allowed"


class Conflict(ApiError):
    status, code = 409, "conflict"


class PreconditionFailed(ApiError):
    status, code = 412, "precondition_failed"


class PayloadTooLarge(ApiError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(ApiError):
    status, code = 415, "unsupported_media_type"


class ValidationFailed(ApiError):
    status, code = 422, "validation_error"


class TooManyJobs(ApiError):
    status, code = 429, "too_many_jobs"


class Unavailable(ApiError):
    status, code = 503, "unavailable"


def error_response(error: ApiError, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=error.status,
        body=_encoder.encode(error.body()),
        content_type="application/json",
        headers=headers,
    )


def _from_http_exception(exc: web.HTTPException) -> ApiError:
    """Translate aiohttp's own errors (unknown route, body too large) to ApiError."""
    if isinstance(exc, web.HTTPNotFound):
        return NotFound("no such route; see GET /openapi.json for the routes")
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        return MethodNotAllowed(f"method {exc.method} not allowed here; use {allowed}")
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return PayloadTooLarge(f"{exc.text}; send a body of at most that many bytes")
    error = ApiError(exc.reason)
    error.status = exc.status
    error.code = exc.reason.lower().replace(" ", "_")
    return error


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render every error as the API's JSON error shape."""
    try:
        return await handler(request)
    except ApiError as exc:
        if exc.status >= 500:
            logger.warning("%s %s failed: %s", request.method, request.path, exc.message)
        return error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        allow = exc.headers.get("Allow")
        return error_response(
            _from_http_exception(exc), headers={"Allow": allow} if allow else None
        )
    except Exception:
        logger.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(
            ApiError("internal error; the server log has the traceback")
        )

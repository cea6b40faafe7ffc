"""Parsing and validating request bodies, paths and query strings."""

from __future__ import annotations

from typing import Any, Final, TypeVar

import msgspec
from aiohttp import web

from consumers.settings import is_valid_namespace
from schemas.filters import MAX_DEPTH, Filter, FilterError, compile_filter
from service.errors import InvalidJson, UnsupportedMediaType, ValidationFailed

T = TypeVar("T")

MAX_BODY_BYTES: Final = 1024 * 1024
MAX_OFFSET: Final = 1_000_000_000


async def read_body(request: web.Request, kind: type[T]) -> T:
    """Decode a JSON request body into `kind`, raising the API's errors."""
    if request.content_type != "application/json":
        raise UnsupportedMediaType(
            f"Content-Type {request.content_type!r} is not supported; send "
            "application/json"
        )
    body = await request.read()
    if not body.strip():
        raise InvalidJson('request body is empty; send a JSON object such as {"mode": "count"}')
    try:
        raw = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise InvalidJson(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ValidationFailed(
            "request body nests too deeply to decode; filters may nest at most "
            f"{MAX_DEPTH} levels"
        ) from None
    if not isinstance(raw, dict):
        raise ValidationFailed(
            f"request body must be a JSON object, got {type(raw).__name__}"
        )
    try:
        return msgspec.convert(raw, kind)
    except msgspec.ValidationError as exc:
        raise ValidationFailed(_explain(str(exc), kind)) from None


def _explain(message: str, kind: type[Any]) -> str:
    """Add the list of valid fields to msgspec's unknown-field message."""
    if "unknown field" in message:
        fields = ", ".join(getattr(kind, "__struct_fields__", ()))
        return f"{message}; valid fields are: {fields}"
    return message


def namespace_of(request: web.Request) -> str:
    """Return the path's namespace, or raise 422 when it is not a valid name."""
    namespace = request.match_info["ns"]
    if not is_valid_namespace(namespace):
        raise ValidationFailed(
            f"namespace {namespace!r} is invalid; use 1 to 128 characters from "
            "A-Z, a-z, 0-9, '.', '_' and '-'",
            field="namespace",
        )
    return namespace


def parse_filter(raw: Any) -> Filter:
    """Compile a request's filters, raising 422 naming the bad leaf."""
    try:
        return compile_filter(raw)
    except FilterError as exc:
        raise ValidationFailed(str(exc), path=exc.path) from None


def query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    """Read an integer query parameter within [low, high]."""
    text = request.query.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ValidationFailed(
            f"query parameter {name}={text!r} is not an integer; use {low} to {high}",
            field=name,
        ) from None
    if not low <= value <= high:
        raise ValidationFailed(
            f"query parameter {name}={value} is out of range; use {low} to {high}",
            field=name,
        )
    return value

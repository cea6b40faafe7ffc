"""Typed keys of the aiohttp application's state."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from aiohttp import web

if TYPE_CHECKING:
    from service.runtime import Runtime

RUNTIME: Final = web.AppKey["Runtime"]("runtime")

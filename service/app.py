"""The aiohttp application: routes, error middleware and the runtime's lifecycle."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from consumers.settings import Settings
from schemas.api import Health
from service.errors import error_middleware
from service.keys import RUNTIME
from service.openapi import openapi_document
from service.requests import MAX_BODY_BYTES
from service.routes import json_response, routes
from service.runtime import Runtime
from service.snapshot_routes import snapshot_routes

logger = logging.getLogger(__name__)

extra_routes = web.RouteTableDef()


@extra_routes.get("/health")
async def health(request: web.Request) -> web.Response:
    """Report whether the applier and the watcher run and the broker is reachable."""
    runtime = request.app[RUNTIME]
    reachable = runtime.watcher.last_observation_ok
    running = runtime.applier_running and runtime.watcher_running
    body = Health(
        status="ok" if running and reachable is not False else "degraded",
        applier="running" if runtime.applier_running else "stopped",
        watcher="running" if runtime.watcher_running else "stopped",
        broker_reachable=reachable,
    )
    return json_response(body)


@extra_routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    response = web.Response(body=generate_latest())
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


@extra_routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return json_response(openapi_document())


def create_app(settings: Settings, runtime: Runtime | None = None) -> web.Application:
    """Build the application; it starts and stops its runtime with itself."""
    app = web.Application(middlewares=[error_middleware], client_max_size=MAX_BODY_BYTES)
    app.add_routes(routes)
    app.add_routes(extra_routes)
    app.add_routes(snapshot_routes)

    owned = runtime or Runtime(settings)
    app[RUNTIME] = owned

    async def runtime_context(app: web.Application) -> AsyncIterator[None]:
        await owned.start()
        try:
            yield
        finally:
            await owned.close()

    app.cleanup_ctx.append(runtime_context)
    return app

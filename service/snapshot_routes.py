"""HTTP handlers of the snapshot routes: build, read and configure snapshots."""

from __future__ import annotations

import asyncio

from aiohttp import web

from consumers.snapshot_content import BuildCancelled
from consumers.snapshots import NoCut, check_config
from schemas.api import SnapshotConfig, SnapshotConfigView, SnapshotList
from service.errors import Conflict, NotFound, Unavailable, ValidationFailed
from service.keys import RUNTIME
from service.requests import namespace_of, read_body
from service.routes import json_response

snapshot_routes = web.RouteTableDef()

SNAPSHOTS = "/v2/namespaces/{ns}/snapshots"


@snapshot_routes.post(SNAPSHOTS)
async def create_snapshot(request: web.Request) -> web.Response:
    """Build a snapshot at the current CWT now and return it (201)."""
    runtime = request.app[RUNTIME]
    namespace = namespace_of(request)
    try:
        snapshot = await runtime.snapshot_scheduler.build_now(namespace)
    except NoCut as exc:
        raise Conflict(str(exc)) from None
    except BuildCancelled:
        raise Unavailable(
            "the server is stopping, so the snapshot build stopped; retry once it "
            "runs again"
        ) from None
    return json_response(snapshot, status=201)


@snapshot_routes.get(SNAPSHOTS)
async def list_snapshots(request: web.Request) -> web.Response:
    """Return summaries of the kept snapshots, newest first."""
    runtime = request.app[RUNTIME]
    namespace = namespace_of(request)
    summaries = await asyncio.to_thread(runtime.snapshots.summaries, namespace)
    return json_response(SnapshotList(snapshots=summaries))


@snapshot_routes.get(SNAPSHOTS + "/latest")
async def get_latest_snapshot(request: web.Request) -> web.Response:
    """Return the latest snapshot with its histograms; 404 when none is kept."""
    runtime = request.app[RUNTIME]
    namespace = namespace_of(request)
    loaded = await asyncio.to_thread(runtime.snapshots.latest, namespace)
    if loaded is None:
        raise NotFound(
            f"namespace {namespace!r} has no snapshot yet; build one with POST "
            f"/v2/namespaces/{namespace}/snapshots once its cache is warmed"
        )
    return json_response(loaded.snapshot)


@snapshot_routes.get(SNAPSHOTS + "/config")
async def get_snapshot_config(request: web.Request) -> web.Response:
    """Return the namespace's snapshot configuration."""
    runtime = request.app[RUNTIME]
    namespace = namespace_of(request)
    config = runtime.snapshots.config(namespace)
    return json_response(_config_view(config, runtime.snapshots.max_values(config)))


@snapshot_routes.put(SNAPSHOTS + "/config")
async def put_snapshot_config(request: web.Request) -> web.Response:
    """Store the namespace's snapshot configuration; a change triggers a rebuild."""
    runtime = request.app[RUNTIME]
    namespace = namespace_of(request)
    config = await read_body(request, SnapshotConfig)
    try:
        check_config(config)
    except ValueError as exc:
        raise ValidationFailed(str(exc)) from None
    changed = await asyncio.to_thread(runtime.snapshots.set_config, namespace, config)
    if changed:
        runtime.snapshot_scheduler.request(namespace, force=True)
    return json_response(_config_view(config, runtime.snapshots.max_values(config)))


def _config_view(
    config: SnapshotConfig, effective_max_values: int
) -> SnapshotConfigView:
    return SnapshotConfigView(
        include=config.include,
        exclude=config.exclude,
        max_values=config.max_values,
        effective_max_values=effective_max_values,
    )

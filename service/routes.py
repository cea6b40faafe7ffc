"""HTTP handlers of the scans API and the namespace status route."""

from __future__ import annotations

from typing import Any, Final

import msgspec
from aiohttp import web

from consumers.cuts import Observation
from consumers.cuts import lag as applier_lag
from schemas.api import (
    MAX_RESULTS_LIMIT,
    NamespaceStatus,
    ObservationView,
    ScanJobList,
    ScanRequest,
    ScanResults,
)
from service.engine import IdsOutcome
from service.errors import Conflict, ValidationFailed
from service.jobs import ScanJob
from service.keys import RUNTIME
from service.requests import MAX_OFFSET, namespace_of, parse_filter, query_int, read_body

STABLE_AS_OF_HEADER: Final = "X-Hevlayer-Stable-As-Of"
_encoder: Final = msgspec.json.Encoder()

routes = web.RouteTableDef()


def json_response(
    body: Any, status: int = 200, stable_as_of: Any = msgspec.UNSET
) -> web.Response:
    """Encode a body; responses served from the cache also carry their cut in a header."""
    response = web.Response(
        status=status, body=_encoder.encode(body), content_type="application/json"
    )
    if stable_as_of is not msgspec.UNSET:
        response.headers[STABLE_AS_OF_HEADER] = (
            "null" if stable_as_of is None else str(stable_as_of)
        )
    return response


@routes.post("/v2/namespaces/{ns}/scans")
async def create_scan(request: web.Request) -> web.Response:
    """Return a count, or start an ID scan job (202)."""
    runtime = request.app[RUNTIME]
    namespace = namespace_of(request)
    scan = await read_body(request, ScanRequest)
    predicate = parse_filter(scan.filters)

    if scan.mode == "count":
        counted = await runtime.engine.count(namespace, scan, predicate)
        return json_response(counted, stable_as_of=counted.stable_as_of)

    if scan.source == "snapshot":
        raise ValidationFailed(
            "source 'snapshot' serves counts only; use mode 'count', or source "
            "auto, cache or origin for an ID scan",
            field="source",
        )
    timeout_s = scan.timeout_seconds or 30.0
    plan = await runtime.engine.plan(namespace, scan, predicate, timeout_s)

    async def run(job: ScanJob) -> IdsOutcome:
        return await runtime.engine.ids(namespace, plan, scan, predicate, job.progress)

    job = runtime.jobs.create(namespace, scan.source, plan.source, scan.filters, run)
    return json_response(job.view(), status=202)


@routes.get("/v2/namespaces/{ns}/scans")
async def list_scans(request: web.Request) -> web.Response:
    namespace = namespace_of(request)
    jobs = request.app[RUNTIME].jobs.list(namespace)
    return json_response(ScanJobList(scans=[job.view() for job in jobs]))


@routes.get("/v2/namespaces/{ns}/scans/{id}")
async def get_scan(request: web.Request) -> web.Response:
    namespace = namespace_of(request)
    job = request.app[RUNTIME].jobs.get(namespace, request.match_info["id"])
    return json_response(job.view())


@routes.get("/v2/namespaces/{ns}/scans/{id}/results")
async def get_scan_results(request: web.Request) -> web.Response:
    """Return one page of a completed job's ids; 409 while it has not completed."""
    namespace = namespace_of(request)
    limit = query_int(request, "limit", 1000, 1, MAX_RESULTS_LIMIT)
    offset = query_int(request, "offset", 0, 0, MAX_OFFSET)
    job = request.app[RUNTIME].jobs.get(namespace, request.match_info["id"])
    if job.status != "completed" or job.outcome is None:
        detail = f": {job.error.message}" if job.error else ""
        raise Conflict(
            f"scan job {job.id} is {job.status}{detail}; results are readable once "
            "its status is completed",
            status=job.status,
        )
    ids = job.outcome.ids
    page = ScanResults(ids=ids[offset : offset + limit], total=len(ids))
    if job.effective_source == "cache":
        page.stable_as_of = job.outcome.stable_as_of
        return json_response(page, stable_as_of=page.stable_as_of)
    return json_response(page)


@routes.delete("/v2/namespaces/{ns}/scans/{id}")
async def delete_scan(request: web.Request) -> web.Response:
    """Drop a job (cancelling it if it runs); return its last state."""
    namespace = namespace_of(request)
    job = await request.app[RUNTIME].jobs.delete(namespace, request.match_info["id"])
    return json_response(job.view())


@routes.get("/v2/namespaces/{ns}")
async def get_namespace(request: web.Request) -> web.Response:
    """Return the cache state, watermark, CWT, applier lag and latest snapshot."""
    runtime = request.app[RUNTIME]
    namespace = namespace_of(request)
    state = runtime.consistency.state(namespace)
    view = runtime.store.view(namespace)
    lag = None
    if state.watermark is not None:
        lag = applier_lag(view.next_offsets, state.watermark.end_offsets)
    status = NamespaceStatus(
        namespace=namespace,
        topic=runtime.settings.topic_for(namespace),
        cache_state="populated" if view.populated else "empty",
        watermark=_observation_view(state.watermark),
        cache_warmed_through=_observation_view(view.warmed),
        applied_offsets={str(p): o for p, o in sorted(view.next_offsets.items())},
        applier_lag=lag,
        warm_in_flight=state.warm_in_flight is not None,
        latest_snapshot=runtime.snapshots.latest_summary(namespace),
        topic_error=state.topic_error,
    )
    return json_response(status)


def _observation_view(observation: Observation | None) -> ObservationView | None:
    if observation is None:
        return None
    return ObservationView(
        watermark_ms=observation.watermark_ms,
        end_offsets={str(p): o for p, o in sorted(observation.end_offsets.items())},
        observed_at_ms=observation.observed_at_ms,
    )

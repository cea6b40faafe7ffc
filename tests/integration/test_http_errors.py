"""Bad HTTP input against the real app: every error is one JSON shape with a clear code.

Each error body must be `{"error": CODE, "message": TEXT}` (extra keys allowed),
served as application/json, never plain text, a traceback or a 500.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from aiohttp import ClientResponse, FormData
from yarl import URL

from schemas.api import (
    MAX_PAGE_SIZE,
    MAX_RESULTS_LIMIT,
    MAX_THREADS,
    MAX_TIMEOUT_SECONDS,
)
from schemas.filters import MAX_DEPTH
from service.requests import MAX_BODY_BYTES
from tests.integration.conftest import AppFactory
from tests.integration.harness import Harness

NAMESPACE = "errors"
SCANS = f"/v2/namespaces/{NAMESPACE}/scans"
JSON = "application/json"
# Records in the topic of a long-running job. An origin ID scan with threads=1 and
# page_size=1 read 20,000 records in 2.4 to 6 s on the development machine, so
# this job runs for several seconds.
LONG_JOB_RECORDS = 40_000


async def expect_error(
    response: ClientResponse, status: int, code: str, *fragments: str
) -> dict[str, Any]:
    """Check one error response and return its decoded body."""
    text = await response.text()
    assert response.status == status, text
    assert response.content_type == JSON, text
    body = json.loads(text)
    assert isinstance(body, dict), text
    assert body.get("error") == code, text
    message = body.get("message")
    assert isinstance(message, str), text
    assert message, text
    assert "Traceback" not in message, text
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} missing from {message!r}"
    return body


async def post_raw(
    app: Harness, data: bytes, content_type: str | None = JSON, path: str = SCANS
) -> ClientResponse:
    """POST raw bytes with a given Content-Type, or with no Content-Type at all."""
    if content_type is None:
        return await app.client.post(
            path, data=data, skip_auto_headers=["Content-Type"]
        )
    return await app.client.post(
        path, data=data, headers={"Content-Type": content_type}
    )


async def post_json(app: Harness, body: Any, path: str = SCANS) -> ClientResponse:
    return await post_raw(app, json.dumps(body).encode(), path=path)


async def completed_job(app: Harness) -> str:
    """Run a cache ID scan of an empty namespace (done at once) and return its id."""
    response = await post_json(app, {"mode": "ids", "source": "cache"})
    job = await response.json()
    assert response.status == 202, job
    final = await app.wait_job(NAMESPACE, job["id"])
    assert final["status"] == "completed", final
    return str(job["id"])


async def fill_long_topic(app: Harness, namespace: str) -> None:
    await app.create_topic(namespace)
    await app.produce(
        namespace, [(f"doc-{i:06d}", {"n": i}) for i in range(LONG_JOB_RECORDS)]
    )


async def start_long_job(app: Harness, namespace: str) -> dict[str, Any]:
    """Start an origin ID scan that runs for seconds and return its create response."""
    body = {"mode": "ids", "source": "origin", "threads": 1, "page_size": 1}
    response = await post_json(app, body, path=f"/v2/namespaces/{namespace}/scans")
    job = await response.json()
    assert response.status == 202, job
    assert job["status"] == "running", job
    return dict(job)


# -- malformed bodies -------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"{", id="truncated"),
        pytest.param(b'{"mode": "count",}', id="trailing-comma"),
        pytest.param(b"{'mode': 'count'}", id="single-quotes"),
        pytest.param(b'{"mode": "count"} x', id="trailing-garbage"),
        pytest.param(b'{"timeout_seconds": NaN}', id="nan"),
        pytest.param(b'{"mode": "\xff"}', id="invalid-utf8"),
        pytest.param(b"nul", id="bare-word"),
    ],
)
async def test_malformed_json_is_400(app: Harness, data: bytes) -> None:
    response = await post_raw(app, data)
    await expect_error(response, 400, "invalid_json", "not valid JSON")


@pytest.mark.parametrize("data", [b"", b"  \n\t "], ids=["empty", "whitespace"])
async def test_empty_body_is_400(app: Harness, data: bytes) -> None:
    response = await post_raw(app, data)
    await expect_error(response, 400, "invalid_json", "empty")


async def test_deeply_nested_body_is_422(app: Harness) -> None:
    # Valid JSON, 1 MiB at most, nested far deeper than the filter grammar allows.
    depth = 100_000
    data = b'{"mode": "count", "filters": ' + b"[" * depth + b"]" * depth + b"}"
    assert len(data) < MAX_BODY_BYTES
    response = await post_raw(app, data)
    await expect_error(response, 422, "validation_error", "deep")


@pytest.mark.parametrize(
    ("content_type", "shown"),
    [
        ("text/plain", "text/plain"),
        ("application/x-www-form-urlencoded", "application/x-www-form-urlencoded"),
        ("application/xml", "application/xml"),
        (None, "application/octet-stream"),
    ],
    ids=["text", "form", "xml", "none"],
)
async def test_wrong_content_type_is_415(
    app: Harness, content_type: str | None, shown: str
) -> None:
    response = await post_raw(app, b'{"mode": "count"}', content_type)
    await expect_error(response, 415, "unsupported_media_type", shown, JSON)


async def test_form_body_is_415(app: Harness) -> None:
    response = await app.client.post(SCANS, data={"mode": "count"})
    await expect_error(
        response, 415, "unsupported_media_type", "application/x-www-form-urlencoded"
    )


async def test_multipart_body_is_415(app: Harness) -> None:
    form = FormData()
    form.add_field("body", '{"mode": "count"}', content_type=JSON)
    response = await app.client.post(SCANS, data=form)
    await expect_error(response, 415, "unsupported_media_type", "multipart/form-data")


async def test_json_with_charset_is_accepted(app: Harness) -> None:
    response = await post_raw(
        app, b'{"mode": "count", "source": "cache"}', "application/json; charset=utf-8"
    )
    assert response.status == 200, await response.text()


async def test_oversized_body_is_413(app: Harness) -> None:
    padding = "x" * MAX_BODY_BYTES
    response = await post_json(app, {"mode": "count", "filters": ["a", "Eq", padding]})
    await expect_error(response, 413, "payload_too_large", str(MAX_BODY_BYTES))


async def test_body_at_size_limit_is_accepted(app: Harness) -> None:
    body = b'{"mode": "count", "source": "cache"}'
    data = body + b" " * (MAX_BODY_BYTES - len(body))
    assert len(data) == MAX_BODY_BYTES
    response = await post_raw(app, data)
    assert response.status == 200, await response.text()


async def test_body_one_byte_over_is_413(app: Harness) -> None:
    body = b'{"mode": "count", "source": "cache"}'
    data = body + b" " * (MAX_BODY_BYTES + 1 - len(body))
    response = await post_raw(app, data)
    await expect_error(response, 413, "payload_too_large", str(MAX_BODY_BYTES))


# -- shape and types of the request body -------------------------------------


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"[]", "list"),
        (b'[{"mode": "count"}]', "list"),
        (b'"count"', "str"),
        (b"42", "int"),
        (b"4.2", "float"),
        (b"null", "NoneType"),
        (b"true", "bool"),
    ],
    ids=["empty-list", "list", "string", "int", "float", "null", "bool"],
)
async def test_body_not_object_is_422(app: Harness, data: bytes, kind: str) -> None:
    response = await post_raw(app, data)
    await expect_error(response, 422, "validation_error", "JSON object", kind)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"mode": "count", "filter": ["a", "Eq", 1]}, "filter"),
        ({"filter": ["a", "Eq", 1]}, "filter"),
        ({"mode": "count", "Filters": ["a", "Eq", 1]}, "Filters"),
        ({"mode": "count", "limit": 10}, "limit"),
        ({"mode": "count", "consistency": {"levels": "strong"}}, "levels"),
    ],
    ids=["filter-count", "filter-ids", "capitalized", "limit", "nested"],
)
async def test_unknown_field_is_422(
    app: Harness, body: dict[str, Any], field: str
) -> None:
    response = await post_json(app, body)
    await expect_error(response, 422, "validation_error", "unknown field", f"`{field}`")


async def test_unknown_field_lists_valid_fields(app: Harness) -> None:
    response = await post_json(app, {"mode": "count", "filter": ["a", "Eq", 1]})
    body = await expect_error(response, 422, "validation_error", "valid fields")
    assert "filters" in body["message"]


WRONG_TYPES = [
    ("mode", 1),
    ("mode", "list"),
    ("mode", None),
    ("mode", ["count"]),
    ("source", "replica"),
    ("source", ["cache"]),
    ("source", True),
    ("page_size", "10"),
    ("page_size", 1.5),
    ("page_size", 10.0),
    ("page_size", True),
    ("page_size", None),
    ("page_size", [10]),
    ("timeout_seconds", "30"),
    ("timeout_seconds", True),
    ("timeout_seconds", [30]),
    ("timeout_seconds", {"s": 30}),
    ("threads", "4"),
    ("threads", 2.5),
    ("threads", True),
    ("threads", {"n": 4}),
    ("consistency", "strong"),
    ("consistency", ["strong"]),
    ("consistency", True),
    ("consistency", 1),
]


@pytest.mark.parametrize(
    ("field", "value"),
    WRONG_TYPES,
    ids=[f"{field}-{json.dumps(value)}" for field, value in WRONG_TYPES],
)
async def test_wrong_type_is_422(app: Harness, field: str, value: Any) -> None:
    response = await post_json(app, {"mode": "count", "source": "cache", field: value})
    await expect_error(response, 422, "validation_error", f"$.{field}")


@pytest.mark.parametrize("level", ["linearizable", 1, None, True, ["strong"]])
async def test_wrong_consistency_level_is_422(app: Harness, level: Any) -> None:
    body = {"mode": "count", "source": "cache", "consistency": {"level": level}}
    response = await post_json(app, body)
    await expect_error(response, 422, "validation_error", "$.consistency.level")


@pytest.mark.parametrize("field", ["page_size", "threads"])
async def test_bool_rejected_for_int(app: Harness, field: str) -> None:
    response = await post_json(app, {"mode": "count", "source": "cache", field: True})
    await expect_error(response, 422, "validation_error", f"$.{field}", "bool")


# -- filters ------------------------------------------------------------------


def nested_not(depth: int) -> Any:
    """Return a valid leaf wrapped in `depth` - 1 levels of Not."""
    node: Any = ["a", "Eq", 1]
    for _ in range(depth - 1):
        node = ["Not", node]
    return node


BAD_FILTERS = [
    pytest.param(["a", "Like", "x"], "filters", '"Like"', id="unknown-op"),
    pytest.param(["a", "eq", 1], "filters", '"eq"', id="op-lowercase"),
    pytest.param(["a", "Eq"], "filters", "2 items", id="arity-2"),
    pytest.param(["a", "Eq", 1, 2], "filters", "4 items", id="arity-4"),
    pytest.param(["a"], "filters", "1 items", id="arity-1"),
    pytest.param([], "filters", "0 items", id="empty-array"),
    pytest.param(["a", "In", 1], "filters", "In", id="in-scalar"),
    pytest.param(["a", "In", [[1]]], "filters", "index 0", id="in-nested"),
    pytest.param(["a", "Eq", [1]], "filters", "Eq", id="eq-array"),
    pytest.param(["a", "Eq", {"x": 1}], "filters", "Eq", id="eq-object"),
    pytest.param(["a", "Lt", True], "filters", "Lt", id="lt-bool"),
    pytest.param(["a", "Lt", None], "filters", "Lt", id="lt-null"),
    pytest.param(["a", "Contains", None], "filters", "Contains", id="contains-null"),
    pytest.param(["a", "Glob", 1], "filters", "Glob", id="glob-number"),
    pytest.param(
        ["a", "Regex", "(?=x)"], "filters", "regular expression", id="regex-lookahead"
    ),
    pytest.param(
        ["a", "Regex", "("], "filters", "regular expression", id="regex-unclosed"
    ),
    pytest.param([1, "Eq", 1], "filters", "attribute", id="attr-number"),
    pytest.param(["", "Eq", 1], "filters", "attribute", id="attr-empty"),
    pytest.param(["a", 1, 1], "filters", "operator", id="op-number"),
    pytest.param(
        ["a", "ContainsAllTokens", "x"], "filters", "full-text", id="full-text-tokens"
    ),
    pytest.param(["a", "BM25", "x"], "filters", "full-text", id="full-text-bm25"),
    pytest.param(["And", []], "filters", "And", id="and-empty"),
    pytest.param(
        ["Or", ["a", "Eq", 1]], "filters[1][0]", "invalid filter", id="or-leaf-arg"
    ),
    pytest.param(["Not", "x"], "filters[1]", "invalid filter", id="not-string"),
    pytest.param(["And", ["a", "Eq", 1], 3], "filters", "And with 3 items", id="and-3"),
    pytest.param(
        ["And", [["a", "Eq", 1], ["b", "Bogus", 2]]],
        "filters[1][1]",
        '"Bogus"',
        id="nested-leaf",
    ),
    pytest.param(
        ["Or", [["a", "Eq", 1], ["Not", ["b", "In", "x"]]]],
        "filters[1][1][1]",
        "In",
        id="deep-leaf",
    ),
    pytest.param("x", "filters", "array", id="string"),
    pytest.param(7, "filters", "array", id="number"),
    pytest.param({"a": 1}, "filters", "array", id="object"),
]


@pytest.mark.parametrize(("filters", "path", "fragment"), BAD_FILTERS)
async def test_bad_filter_is_422(
    app: Harness, filters: Any, path: str, fragment: str
) -> None:
    response = await post_json(
        app, {"mode": "count", "source": "cache", "filters": filters}
    )
    body = await expect_error(response, 422, "validation_error", fragment)
    assert body.get("path") == path, body
    assert body["message"].startswith(f"{path}:"), body


async def test_filter_too_deep_is_422(app: Harness) -> None:
    body = {"mode": "count", "source": "cache", "filters": nested_not(MAX_DEPTH + 1)}
    response = await post_json(app, body)
    error = await expect_error(
        response, 422, "validation_error", f"deeper than {MAX_DEPTH}"
    )
    assert error.get("path") == "filters" + "[1]" * MAX_DEPTH, error


async def test_filter_at_max_depth_is_accepted(app: Harness) -> None:
    body = {"mode": "count", "source": "cache", "filters": nested_not(MAX_DEPTH)}
    response = await post_json(app, body)
    assert response.status == 200, await response.text()


async def test_bad_filter_rejected_in_ids_mode(app: Harness) -> None:
    body = {"mode": "ids", "source": "cache", "filters": ["a", "Like", "x"]}
    response = await post_json(app, body)
    error = await expect_error(response, 422, "validation_error", '"Like"')
    assert error.get("path") == "filters", error


# -- namespace names ------------------------------------------------------------


BAD_NAMESPACES = [
    pytest.param("a" * 129, "a" * 129, id="too-long"),
    pytest.param("a%20b", "'a b'", id="space"),
    pytest.param("%00", "'\\x00'", id="nul"),
    pytest.param("a%2Fb", "'a/b'", id="slash"),
    pytest.param("a*", "'a*'", id="star"),
    pytest.param("a:b", "'a:b'", id="colon"),
    pytest.param("%C3%BC", "'\u00fc'", id="non-ascii"),
    pytest.param("%FF", "%FF", id="invalid-utf8"),
]


@pytest.mark.parametrize(("segment", "shown"), BAD_NAMESPACES)
async def test_bad_namespace_is_422(app: Harness, segment: str, shown: str) -> None:
    url = URL(f"/v2/namespaces/{segment}/scans", encoded=True)
    for response in [
        await app.client.post(url, json={"mode": "count", "source": "cache"}),
        await app.client.get(url),
        await app.client.get(URL(f"/v2/namespaces/{segment}", encoded=True)),
    ]:
        body = await expect_error(response, 422, "validation_error", shown, "128")
        assert body.get("field") == "namespace", body


@pytest.mark.parametrize(
    "namespace",
    ["a" * 128, "a..b", "A-z_0.9", "-", "%2E%2E"],
    ids=["max-length", "dots", "all-classes", "dash", "dot-dot"],
)
async def test_valid_namespace_is_accepted(app: Harness, namespace: str) -> None:
    url = URL(f"/v2/namespaces/{namespace}/scans", encoded=True)
    response = await app.client.post(url, json={"mode": "count", "source": "cache"})
    body = await response.json()
    assert response.status == 200, body
    assert body["count"] == 0, body


async def test_empty_namespace_is_404(app: Harness) -> None:
    response = await app.client.post(
        URL("/v2/namespaces//scans", encoded=True), json={"mode": "count"}
    )
    await expect_error(response, 404, "not_found", "route")


# -- ranges ---------------------------------------------------------------------


OUT_OF_RANGE = [
    ("page_size", 0),
    ("page_size", -1),
    ("page_size", MAX_PAGE_SIZE + 1),
    ("page_size", 10**30),
    ("threads", 0),
    ("threads", -3),
    ("threads", MAX_THREADS + 1),
    ("timeout_seconds", 0),
    ("timeout_seconds", 0.0),
    ("timeout_seconds", -1),
    ("timeout_seconds", MAX_TIMEOUT_SECONDS + 1),
    ("timeout_seconds", 1e300),
]


@pytest.mark.parametrize(
    ("field", "value"), OUT_OF_RANGE, ids=[f"{f}={v}" for f, v in OUT_OF_RANGE]
)
async def test_out_of_range_is_422(app: Harness, field: str, value: Any) -> None:
    response = await post_json(app, {"mode": "count", "source": "cache", field: value})
    await expect_error(response, 422, "validation_error", f"$.{field}")


async def test_range_limits_are_accepted(app: Harness) -> None:
    body = {
        "mode": "count",
        "source": "cache",
        "page_size": MAX_PAGE_SIZE,
        "threads": MAX_THREADS,
        "timeout_seconds": MAX_TIMEOUT_SECONDS,
    }
    response = await post_json(app, body)
    assert response.status == 200, await response.text()
    lowest = {"mode": "count", "source": "cache", "page_size": 1, "threads": 1}
    response = await post_json(app, {**lowest, "timeout_seconds": 0.001})
    assert response.status == 200, await response.text()


RESULTS_QUERIES = [
    ("limit", "0"),
    ("limit", str(MAX_RESULTS_LIMIT + 1)),
    ("limit", "-1"),
    ("limit", "x"),
    ("limit", ""),
    ("limit", "1.5"),
    ("limit", "1e3"),
    ("limit", "true"),
    ("offset", "-1"),
    ("offset", "x"),
    ("offset", ""),
    ("offset", "99999999999999999999"),
]


@pytest.mark.parametrize(
    ("name", "value"), RESULTS_QUERIES, ids=[f"{n}={v!r}" for n, v in RESULTS_QUERIES]
)
async def test_results_query_is_422(app: Harness, name: str, value: str) -> None:
    job_id = await completed_job(app)
    response = await app.client.get(f"{SCANS}/{job_id}/results", params={name: value})
    body = await expect_error(response, 422, "validation_error", f"{name}=")
    assert body.get("field") == name, body


async def test_results_query_limits_accepted(app: Harness) -> None:
    job_id = await completed_job(app)
    params = {"limit": str(MAX_RESULTS_LIMIT), "offset": "0"}
    response = await app.client.get(f"{SCANS}/{job_id}/results", params=params)
    body = await response.json()
    assert response.status == 200, body
    assert body == {"ids": [], "total": 0, "stable_as_of": None}


@pytest.mark.parametrize(
    "body", [{"source": "snapshot"}, {"mode": "ids", "source": "snapshot"}]
)
async def test_snapshot_ids_scan_is_422(app: Harness, body: dict[str, Any]) -> None:
    response = await post_json(app, body)
    error = await expect_error(response, 422, "validation_error", "snapshot", "count")
    assert error.get("field") == "source", error


# -- jobs -------------------------------------------------------------------------


async def test_unknown_job_is_404(app: Harness) -> None:
    job_id = "00000000-0000-0000-0000-000000000000"
    for response in [
        await app.client.get(f"{SCANS}/{job_id}"),
        await app.client.get(f"{SCANS}/{job_id}/results"),
        await app.client.delete(f"{SCANS}/{job_id}"),
    ]:
        await expect_error(response, 404, "not_found", job_id, NAMESPACE)


async def test_job_of_other_namespace_is_404(app: Harness) -> None:
    job_id = await completed_job(app)
    response = await app.client.get(f"/v2/namespaces/other/scans/{job_id}")
    await expect_error(response, 404, "not_found", job_id, "'other'")


async def test_deleted_job_is_404(app: Harness) -> None:
    job_id = await completed_job(app)
    response = await app.client.delete(f"{SCANS}/{job_id}")
    assert response.status == 200, await response.text()
    response = await app.client.get(f"{SCANS}/{job_id}")
    await expect_error(response, 404, "not_found", job_id)


async def test_running_job_results_is_409(app: Harness) -> None:
    await fill_long_topic(app, "long")
    job = await start_long_job(app, "long")
    response = await app.client.get(f"/v2/namespaces/long/scans/{job['id']}/results")
    body = await expect_error(response, 409, "conflict", job["id"], "running")
    assert body.get("status") == "running", body


async def test_delete_cancels_running_job(app: Harness) -> None:
    await fill_long_topic(app, "long")
    job = await start_long_job(app, "long")
    registered = app.runtime.jobs.get("long", job["id"])

    response = await app.client.delete(f"/v2/namespaces/long/scans/{job['id']}")
    body = await response.json()
    assert response.status == 200, body
    assert body["status"] == "cancelled", body
    assert registered.task is not None
    assert registered.task.done()
    assert registered.progress.cancel.is_set()

    response = await app.client.get(f"/v2/namespaces/long/scans/{job['id']}")
    await expect_error(response, 404, "not_found", job["id"])
    listing = await (await app.client.get("/v2/namespaces/long/scans")).json()
    assert listing == {"scans": []}


async def test_too_many_running_jobs_is_429(apps: AppFactory) -> None:
    custom = msgspec.structs.replace(apps.settings, max_jobs_per_namespace=2)
    app = await apps.start(custom)
    await fill_long_topic(app, "long")
    first = await start_long_job(app, "long")
    second = await start_long_job(app, "long")
    for job in (first, second):
        status = app.runtime.jobs.get("long", job["id"]).status
        assert (
            status == "running"
        ), f"job {job['id']} ended early; raise LONG_JOB_RECORDS"

    # A cache scan plans without reading Kafka, so both jobs still run when it starts.
    body = {"mode": "ids", "source": "cache"}
    response = await post_json(app, body, path="/v2/namespaces/long/scans")
    await expect_error(response, 429, "too_many_jobs", "'long'", "2")

    # Dropping a running job makes room again.
    response = await app.client.delete(f"/v2/namespaces/long/scans/{first['id']}")
    assert response.status == 200, await response.text()
    await start_long_job(app, "long")


async def test_finished_job_makes_room(apps: AppFactory) -> None:
    custom = msgspec.structs.replace(apps.settings, max_jobs_per_namespace=2)
    app = await apps.start(custom)
    oldest = await completed_job(app)
    newer = await completed_job(app)

    newest = await completed_job(app)

    listing = await (await app.client.get(SCANS)).json()
    assert [job["id"] for job in listing["scans"]] == [newer, newest]
    response = await app.client.get(f"{SCANS}/{oldest}")
    await expect_error(response, 404, "not_found", oldest)


# -- routes and methods ------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/"),
        ("GET", "/v2"),
        ("GET", "/v2/namespaces"),
        ("GET", "/v2/namespaces/x/scans/y/z"),
        ("POST", "/v3/namespaces/x/scans"),
        ("GET", "/v2/namespaces/x/scan"),
        ("DELETE", "/nowhere"),
    ],
)
async def test_unknown_route_is_404(app: Harness, method: str, path: str) -> None:
    response = await app.client.request(method, path)
    await expect_error(response, 404, "not_found", "route")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/v2/namespaces/x/scans", "GET, HEAD, POST"),
        ("PATCH", "/v2/namespaces/x/scans/y", "DELETE, GET, HEAD"),
        ("POST", "/v2/namespaces/x/scans/y/results", "GET, HEAD"),
        ("DELETE", "/v2/namespaces/x", "GET, HEAD"),
        ("POST", "/health", "GET, HEAD"),
        ("OPTIONS", "/v2/namespaces/x/scans", "GET, HEAD, POST"),
    ],
)
async def test_wrong_method_is_405(
    app: Harness, method: str, path: str, allowed: str
) -> None:
    response = await app.client.request(method, path)
    await expect_error(response, 405, "method_not_allowed", method, allowed)


async def test_405_sends_allow_header(app: Harness) -> None:
    # RFC 9110, section 15.5.6: the origin server must send an Allow header with a 405.
    response = await app.client.put(SCANS)
    await expect_error(response, 405, "method_not_allowed")
    allowed = {
        method.strip() for method in response.headers.get("Allow", "").split(",")
    }
    assert allowed == {"GET", "HEAD", "POST"}, dict(response.headers)


# -- preconditions and missing topics -----------------------------------------------


@pytest.mark.parametrize(
    ("filters", "fragment", "reason"),
    [
        (["a", "Eq", "x"], f"'{NAMESPACE}'", "no_snapshot"),
        (["a", "In", ["x", "y"]], f"'{NAMESPACE}'", "no_snapshot"),
        (["a", "Gt", 1], "'Gt'", "operator"),
        (["And", [["a", "Eq", 1], ["b", "Eq", 2]]], "And", "not_single_leaf"),
        (None, "single Eq or In", "not_single_leaf"),
    ],
    ids=["eq", "in", "range", "and", "none"],
)
async def test_snapshot_not_applicable_is_412(
    app: Harness, filters: Any, fragment: str, reason: str
) -> None:
    body = {"mode": "count", "source": "snapshot", "filters": filters}
    response = await post_json(app, body)
    error = await expect_error(
        response, 412, "precondition_failed", fragment, "snapshot"
    )
    assert error.get("reason") == reason, error


@pytest.mark.parametrize(
    ("mode", "source"),
    [("count", "origin"), ("count", "auto"), ("ids", "origin"), ("ids", "auto")],
)
async def test_missing_topic_is_404(app: Harness, mode: str, source: str) -> None:
    response = await post_json(app, {"mode": mode, "source": source})
    topic = app.settings.topic_for(NAMESPACE)
    await expect_error(response, 404, "not_found", f"'{NAMESPACE}'", f"'{topic}'")


async def test_missing_topic_under_cache_counts_zero(app: Harness) -> None:
    response = await post_json(app, {"mode": "count", "source": "cache"})
    body = await response.json()
    assert response.status == 200, body
    assert body["count"] == 0, body
    assert body["served_by"] == "cache", body

"""Snapshots against a real broker: building, counting, eligibility, persistence."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import Any

import msgspec
import pytest
from click.testing import CliRunner

from consumers.settings import Settings
from service.cli import main as cli_main
from service.loader import load_file
from tests.integration.conftest import AppFactory
from tests.integration.harness import WAIT_TIMEOUT_S, Harness

ROOT = Path(__file__).resolve().parents[2]
FETCH_SCRIPT = ROOT / "scripts" / "fetch_dataset.py"
# At most this many origin counts run at once, because each starts a Kafka
# consumer per partition.
ORIGIN_CONCURRENCY = 4

# Documents hitting every value rule and skip reason, with max_values 10,000.
HANDMADE: list[tuple[str, dict[str, Any]]] = [
    (
        "a",
        {
            "n": 1,
            "flag": True,
            "tag": "x",
            "maybe": None,
            "arr": [1, 2],
            "obj": {"k": 1},
            "mixed": 1,
        },
    ),
    ("b", {"n": 1.0, "flag": False, "tag": "y", "arr": [], "obj": {}, "mixed": [1]}),
    ("c", {"n": 2.5, "flag": 1, "tag": "1", "maybe": "v", "mixed": {"a": 1}}),
    ("d", {"n": True, "tag": 1, "maybe": None}),
    ("e", {}),
    ("f", {"n": None, "tag": "x", "wide": 1}),
    ("g", {"wide": 2}),
    ("h", {"wide": 3}),
    ("i", {"wide": 4.0}),
]
HANDMADE_FIELDS = [
    {
        "name": "flag",
        "values": [
            {"value": False, "count": 1},
            {"value": True, "count": 1},
            {"value": 1, "count": 1},
        ],
    },
    {
        "name": "maybe",
        "values": [
            {"value": None, "count": 2},
            {"value": "v", "count": 1},
        ],
    },
    {
        "name": "n",
        "values": [
            {"value": None, "count": 1},
            {"value": True, "count": 1},
            {"value": 1, "count": 2},
            {"value": 2.5, "count": 1},
        ],
    },
    {
        "name": "tag",
        "values": [
            {"value": 1, "count": 1},
            {"value": "1", "count": 1},
            {"value": "x", "count": 2},
            {"value": "y", "count": 1},
        ],
    },
    {
        "name": "wide",
        "values": [
            {"value": 1, "count": 1},
            {"value": 2, "count": 1},
            {"value": 3, "count": 1},
            {"value": 4, "count": 1},
        ],
    },
]
HANDMADE_SKIPPED = [
    {"name": "arr", "reason": "array_values"},
    {"name": "mixed", "reason": "object_values"},
    {"name": "obj", "reason": "object_values"},
]
# (filters, expected count) over HANDMADE, checked against the cache as well.
HANDMADE_COUNTS: list[tuple[list[Any], int]] = [
    (["n", "Eq", 1], 2),
    (["n", "Eq", 1.0], 2),
    (["n", "Eq", True], 1),
    (["n", "Eq", 2.5], 1),
    (["n", "Eq", "1"], 0),
    (["n", "Eq", None], 5),
    (["flag", "Eq", 1], 1),
    (["flag", "Eq", True], 1),
    (["flag", "Eq", False], 1),
    (["flag", "Eq", None], 6),
    (["maybe", "Eq", None], 8),
    (["tag", "Eq", "1"], 1),
    (["tag", "Eq", 1], 1),
    (["tag", "Eq", "x"], 2),
    (["wide", "Eq", 4], 1),
    (["n", "In", [1, 1.0, 1]], 2),
    (["n", "In", [1, True, 7, "absent"]], 3),
    (["n", "In", [None, 2.5]], 6),
    (["tag", "In", ["x", "x", "y", "absent"]], 3),
    (["tag", "In", [1, "1", 1.0]], 2),
    (["tag", "In", []], 0),
    (["maybe", "In", ["absent"]], 0),
]


@pytest.fixture(scope="session")
def penguins_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The penguins data set, fetched once per session (it downloads a wheel)."""
    folder = tmp_path_factory.mktemp("penguins-snapshots")
    out = folder / "penguins.csv"
    done = subprocess.run(
        [
            sys.executable,
            str(FETCH_SCRIPT),
            "--dataset",
            "penguins",
            "--cache",
            str(folder / "cache"),
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    return out


async def post_snapshot(app: Harness, namespace: str) -> tuple[int, dict[str, Any]]:
    response = await app.client.post(f"/v2/namespaces/{namespace}/snapshots")
    return response.status, await response.json()


async def build_snapshot(app: Harness, namespace: str) -> dict[str, Any]:
    status, body = await post_snapshot(app, namespace)
    assert status == 201, body
    return body


async def get_json(app: Harness, path: str) -> tuple[int, Any]:
    response = await app.client.get(path)
    return response.status, await response.json()


async def put_config(
    app: Harness, namespace: str, body: Any
) -> tuple[int, dict[str, Any]]:
    response = await app.client.put(
        f"/v2/namespaces/{namespace}/snapshots/config", json=body
    )
    return response.status, await response.json()


async def wait_latest(
    app: Harness,
    namespace: str,
    condition: Callable[[dict[str, Any]], bool],
    timeout_s: float = WAIT_TIMEOUT_S,
) -> dict[str, Any]:
    """Poll the latest snapshot until `condition(body)` holds; return it."""
    deadline = time.monotonic() + timeout_s
    while True:
        status, body = await get_json(
            app, f"/v2/namespaces/{namespace}/snapshots/latest"
        )
        if status == 200 and condition(body):
            snapshot: dict[str, Any] = body
            return snapshot
        assert time.monotonic() < deadline, f"snapshot of {namespace} stuck: {body}"
        await asyncio.sleep(0.05)


async def snapshot_count(app: Harness, namespace: str, filters: Any) -> dict[str, Any]:
    return await app.count(namespace, {"source": "snapshot", "filters": filters})


async def count_value(app: Harness, namespace: str, source: str, filters: Any) -> int:
    body = await app.count(namespace, {"source": source, "filters": filters})
    assert body["served_by"] == source, body
    return int(body["count"])


async def origin_counts(app: Harness, namespace: str, leaves: list[Any]) -> list[int]:
    """Run origin counts of several filters, ORIGIN_CONCURRENCY at a time."""
    limit = asyncio.Semaphore(ORIGIN_CONCURRENCY)

    async def one(filters: Any) -> int:
        async with limit:
            return await count_value(app, namespace, "origin", filters)

    return list(await asyncio.gather(*(one(filters) for filters in leaves)))


async def load_handmade(app: Harness, namespace: str) -> None:
    await app.create_topic(namespace)
    await app.produce(namespace, list(HANDMADE))
    await app.wait_warmed(namespace)


async def test_penguins_counts_match_cache_and_origin(
    app: Harness, penguins_csv: Path
) -> None:
    await load_file(app.settings, "penguins", penguins_csv, progress=False)
    await app.wait_warmed("penguins")
    snapshot = await build_snapshot(app, "penguins")

    assert snapshot["document_count"] == 344
    assert snapshot["skipped"] == []
    assert [item["name"] for item in snapshot["fields"]] == [
        "bill_depth_mm",
        "bill_length_mm",
        "body_mass_g",
        "flipper_length_mm",
        "island",
        "sex",
        "species",
        "year",
    ]
    fields = {item["name"]: item["values"] for item in snapshot["fields"]}
    assert fields["species"] == [
        {"value": "Adelie", "count": 152},
        {"value": "Chinstrap", "count": 68},
        {"value": "Gentoo", "count": 124},
    ]
    assert fields["sex"] == [
        {"value": None, "count": 11},
        {"value": "female", "count": 165},
        {"value": "male", "count": 168},
    ]
    assert fields["year"] == [
        {"value": 2007, "count": 110},
        {"value": 2008, "count": 114},
        {"value": 2009, "count": 120},
    ]
    for values in fields.values():
        assert sum(entry["count"] for entry in values) == 344

    cache = await app.count("penguins", {"source": "cache", "filters": None})
    assert cache["stable_as_of"] == snapshot["watermark_ms"]
    filters = [
        [name, "Eq", entry["value"]]
        for name, values in fields.items()
        for entry in values
    ]
    for leaf in filters:
        counted = await snapshot_count(app, "penguins", leaf)
        expected = await count_value(app, "penguins", "cache", leaf)
        assert counted["count"] == expected, leaf
        assert counted["served_by"] == "snapshot"
        assert counted["snapshot_sha"] == snapshot["sha"][:8]
        assert counted["watermark_ms"] == snapshot["watermark_ms"]
    # An origin count starts Kafka consumers and reads the whole topic, about
    # 2 s each against the test broker. So origin checks every value of the
    # three-valued fields and, per field, null and all values at once.
    checks = [leaf for leaf in filters if len(fields[leaf[0]]) <= 3]
    for name, values in fields.items():
        checks.append([name, "Eq", None])
        checks.append([name, "In", [entry["value"] for entry in values]])
    origin = await origin_counts(app, "penguins", checks)
    hits = [(await snapshot_count(app, "penguins", leaf))["count"] for leaf in checks]
    assert hits == origin
    assert hits[-2:] == [0, 344]


async def test_handmade_fields_and_skips(app: Harness) -> None:
    await load_handmade(app, "mix")
    snapshot = await build_snapshot(app, "mix")

    assert snapshot["namespace"] == "mix"
    assert snapshot["document_count"] == 9
    assert snapshot["fields"] == HANDMADE_FIELDS
    assert snapshot["skipped"] == HANDMADE_SKIPPED
    assert snapshot["max_values"] == 10_000
    assert snapshot["seq"] == 1
    assert len(snapshot["sha"]) == 64
    warmed = app.runtime.consistency.state("mix").warmed
    assert warmed is not None
    assert snapshot["watermark_ms"] == warmed.watermark_ms
    assert snapshot["end_offsets"] == {
        str(p): end for p, end in sorted(warmed.end_offsets.items())
    }


async def test_handmade_counts(app: Harness) -> None:
    await load_handmade(app, "mix")
    await build_snapshot(app, "mix")

    for filters, expected in HANDMADE_COUNTS:
        counted = await snapshot_count(app, "mix", filters)
        assert counted["count"] == expected, filters
        assert await count_value(app, "mix", "cache", filters) == expected, filters
    origin = await origin_counts(
        app, "mix", [filters for filters, _ in HANDMADE_COUNTS]
    )
    assert origin == [expected for _, expected in HANDMADE_COUNTS]


async def test_config_skips_and_rebuilds(app: Harness) -> None:
    await load_handmade(app, "mix")
    first = await build_snapshot(app, "mix")

    status, config = await put_config(app, "mix", {"exclude": ["tag"], "max_values": 3})
    assert status == 200, config
    assert config == {
        "include": None,
        "exclude": ["tag"],
        "max_values": 3,
        "effective_max_values": 3,
    }
    rebuilt = await wait_latest(app, "mix", lambda body: body["sha"] != first["sha"])
    assert rebuilt["seq"] == 2
    assert rebuilt["max_values"] == 3
    assert [item["name"] for item in rebuilt["fields"]] == ["flag", "maybe"]
    assert rebuilt["skipped"] == [
        {"name": "arr", "reason": "array_values"},
        {"name": "mixed", "reason": "object_values"},
        {"name": "n", "reason": "too_many_values"},
        {"name": "obj", "reason": "object_values"},
        {"name": "tag", "reason": "excluded"},
        {"name": "wide", "reason": "too_many_values"},
    ]

    status, config = await put_config(app, "mix", {"include": ["n", "wide", "nowhere"]})
    assert status == 200, config
    narrowed = await wait_latest(app, "mix", lambda body: body["seq"] == 3)
    assert [item["name"] for item in narrowed["fields"]] == ["n", "wide"]
    assert [item["name"] for item in narrowed["skipped"]] == [
        "arr",
        "flag",
        "maybe",
        "mixed",
        "obj",
        "tag",
    ]
    assert {item["reason"] for item in narrowed["skipped"]} == {"excluded"}
    status, stored_config = await get_json(app, "/v2/namespaces/mix/snapshots/config")
    assert status == 200
    assert stored_config == {
        "include": ["n", "wide", "nowhere"],
        "exclude": [],
        "max_values": None,
        "effective_max_values": 10_000,
    }


async def test_config_validation(app: Harness) -> None:
    status, stored_config = await get_json(app, "/v2/namespaces/fresh/snapshots/config")
    assert status == 200
    assert stored_config == {
        "include": None,
        "exclude": [],
        "max_values": None,
        "effective_max_values": 10_000,
    }
    cases: list[tuple[Any, str]] = [
        ({"exclud": ["a"]}, "Object contains unknown field `exclud`"),
        (
            {"include": ["a"], "exclude": ["a"]},
            "field 'a' is both included and excluded",
        ),
        ({"exclude": ["id"]}, "field 'id' cannot be configured"),
        (
            {"include": ["_hevlayer_upserted_at"]},
            "field '_hevlayer_upserted_at' cannot be configured",
        ),
        ({"max_values": 0}, "Expected `int` >= 1 - at `$.max_values`"),
        ({"exclude": [""]}, "Expected `str` of length >= 1 - at `$.exclude[0]`"),
        ({"exclude": "a"}, "Expected `array`, got `str` - at `$.exclude`"),
    ]
    for body, message in cases:
        status, error = await put_config(app, "fresh", body)
        assert status == 422, body
        assert error["error"] == "validation_error"
        assert error["message"].startswith(message), error
    status, stored_config = await get_json(app, "/v2/namespaces/fresh/snapshots/config")
    assert stored_config["exclude"] == []


async def test_not_eligible_reasons(app: Harness) -> None:
    await load_handmade(app, "mix")
    await build_snapshot(app, "mix")
    cases: list[tuple[Any, str, str]] = [
        (None, "not_single_leaf", "a count without filters is not a single Eq"),
        (["And", [["n", "Eq", 1]]], "not_single_leaf", "filters use And;"),
        (
            ["Or", [["n", "Eq", 1], ["n", "Eq", 2]]],
            "not_single_leaf",
            "filters use Or;",
        ),
        (["Not", ["n", "Eq", 1]], "not_single_leaf", "filters use Not;"),
        (["n", "NotEq", 1], "operator", "operator 'NotEq' is not answered"),
        (["n", "Lt", 2], "operator", "operator 'Lt' is not answered"),
        (["tag", "Glob", "x*"], "operator", "operator 'Glob' is not answered"),
        (["nowhere", "Eq", 1], "field_absent", "field 'nowhere' is not in the latest"),
        (["id", "Eq", "a"], "field_absent", "snapshots do not count the document id"),
        (
            ["_hevlayer_upserted_at", "Eq", 1],
            "field_absent",
            "snapshots do not count '_hevlayer_upserted_at'",
        ),
        (["arr", "Eq", 1], "field_skipped", "field 'arr' is skipped by the latest"),
        (["obj", "In", [1]], "field_skipped", "field 'obj' is skipped by the latest"),
    ]
    for filters, reason, message in cases:
        status, error = await app.post_scan(
            "mix", {"mode": "count", "source": "snapshot", "filters": filters}
        )
        assert status == 412, filters
        assert error["error"] == "precondition_failed"
        assert error["reason"] == reason, filters
        assert error["message"].startswith(message), error["message"]
        assert error["message"].endswith("use source auto, cache or origin")

        fallen = await app.count("mix", {"source": "auto", "filters": filters})
        assert fallen["served_by"] == "cache", filters
        assert fallen["count"] == await count_value(app, "mix", "cache", filters)


async def test_no_snapshot_before_warm(app: Harness) -> None:
    await app.runtime.stop_applier()
    await app.create_topic("cold")
    await app.produce("cold", [("a", {"k": "v"}), ("b", {"k": "w"})])

    status, error = await app.post_scan(
        "cold", {"mode": "count", "source": "snapshot", "filters": ["k", "Eq", "v"]}
    )
    assert status == 412
    assert error["reason"] == "no_snapshot"
    assert error["message"] == (
        "namespace 'cold' has no snapshot yet; use source auto, cache or origin"
    )
    fallen = await app.count("cold", {"source": "auto", "filters": ["k", "Eq", "v"]})
    assert fallen["served_by"] == "origin"
    assert fallen["count"] == 1

    status, error = await post_snapshot(app, "cold")
    assert status == 409
    assert error["error"] == "conflict"
    assert error["message"].startswith(
        "namespace 'cold' has no cache_warmed_through yet, so no snapshot can be cut"
    )
    status, error = await get_json(app, "/v2/namespaces/cold/snapshots/latest")
    assert status == 404
    assert error["error"] == "not_found"
    status, listed = await get_json(app, "/v2/namespaces/cold/snapshots")
    assert (status, listed) == (200, {"snapshots": []})


async def test_sha_follows_content(apps: AppFactory, settings: Settings) -> None:
    # One automatic build at the first stamp, then none for an hour, so every
    # entry below comes from a request.
    app = await apps.start(msgspec.structs.replace(settings, snapshot_interval_s=3600))
    await load_handmade(app, "mix")
    first = await build_snapshot(app, "mix")
    again = await build_snapshot(app, "mix")
    assert again == first

    await app.produce("mix", [("a", dict(HANDMADE[0][1]))])
    await app.wait_warmed("mix")
    rewritten = await build_snapshot(app, "mix")
    assert rewritten["sha"] == first["sha"]
    assert rewritten["seq"] == first["seq"]
    assert rewritten["watermark_ms"] >= first["watermark_ms"]
    assert rewritten["end_offsets"] != first["end_offsets"]
    assert rewritten["created_at_ms"] == first["created_at_ms"]

    await app.produce("mix", [("a", {**HANDMADE[0][1], "tag": "z"})])
    await app.wait_warmed("mix")
    upserted = await build_snapshot(app, "mix")
    assert upserted["sha"] != first["sha"]
    assert upserted["seq"] == 2
    assert (await snapshot_count(app, "mix", ["tag", "Eq", "z"]))["count"] == 1

    await app.produce("mix", [("e", None)])
    await app.wait_warmed("mix")
    deleted = await build_snapshot(app, "mix")
    assert deleted["sha"] not in (first["sha"], upserted["sha"])
    assert deleted["seq"] == 3
    assert deleted["document_count"] == 8

    await app.produce("mix", [("a", dict(HANDMADE[0][1])), ("e", {})])
    await app.wait_warmed("mix")
    restored = await build_snapshot(app, "mix")
    assert restored["sha"] == first["sha"]
    assert restored["seq"] == 4
    status, listed = await get_json(app, "/v2/namespaces/mix/snapshots")
    assert status == 200
    assert [item["sha"] for item in listed["snapshots"]] == [
        first["sha"],
        deleted["sha"],
        upserted["sha"],
        first["sha"],
    ]


async def test_snapshots_kept_limit(apps: AppFactory, settings: Settings) -> None:
    app = await apps.start(msgspec.structs.replace(settings, snapshots_kept=2))
    await app.create_topic("few")
    for round_number in range(4):
        await app.produce("few", [("a", {"round": round_number})])
        await app.wait_warmed("few")
        await build_snapshot(app, "few")

    status, listed = await get_json(app, "/v2/namespaces/few/snapshots")
    assert status == 200
    assert len(listed["snapshots"]) == 2
    latest = await wait_latest(app, "few", lambda body: True)
    assert latest["seq"] == 4
    assert latest["fields"] == [{"name": "round", "values": [{"value": 3, "count": 1}]}]


async def test_automatic_rebuild_after_upserts(
    apps: AppFactory, settings: Settings
) -> None:
    interval_s = 1.0
    app = await apps.start(
        msgspec.structs.replace(settings, snapshot_interval_s=interval_s)
    )
    await app.create_topic("auto")
    await app.produce("auto", [(f"d{n}", {"k": n % 3}) for n in range(30)])
    first = await wait_latest(app, "auto", lambda body: body["document_count"] == 30)
    assert first["fields"] == [
        {
            "name": "k",
            "values": [
                {"value": 0, "count": 10},
                {"value": 1, "count": 10},
                {"value": 2, "count": 10},
            ],
        }
    ]

    for burst in range(5):
        await app.produce("auto", [(f"e{burst}", {"k": 7})])
        await asyncio.sleep(0.15)
    latest = await wait_latest(app, "auto", lambda body: body["document_count"] == 35)
    assert latest["fields"][0]["values"][-1] == {"value": 7, "count": 5}
    counted = await snapshot_count(app, "auto", ["k", "Eq", 7])
    assert counted["count"] == 5

    status, listed = await get_json(app, "/v2/namespaces/auto/snapshots")
    assert status == 200
    created = sorted(item["created_at_ms"] for item in listed["snapshots"])
    gaps = [later - earlier for earlier, later in pairwise(created)]
    # Builds start at least one interval apart. A build of 35 documents takes
    # well under 100 ms, so the gaps between their ends stay above this bound.
    assert all(gap >= interval_s * 1000 - 100 for gap in gaps), created


async def test_restart_keeps_latest(apps: AppFactory, settings: Settings) -> None:
    app = await apps.start()
    await load_handmade(app, "mix")
    status, config = await put_config(app, "mix", {"exclude": ["wide"]})
    assert status == 200, config
    built = await wait_latest(
        app,
        "mix",
        lambda body: {"name": "wide", "reason": "excluded"} in body["skipped"],
    )
    await apps.stop(app)

    restarted = await apps.start(settings)
    status, latest = await get_json(restarted, "/v2/namespaces/mix/snapshots/latest")
    assert status == 200
    assert latest == built
    status, config = await get_json(restarted, "/v2/namespaces/mix/snapshots/config")
    assert config["exclude"] == ["wide"]
    counted = await snapshot_count(restarted, "mix", ["tag", "Eq", "x"])
    assert counted["count"] == 2
    assert counted["snapshot_sha"] == built["sha"][:8]
    status, namespace = await get_json(restarted, "/v2/namespaces/mix")
    assert namespace["latest_snapshot"] == {
        "sha": built["sha"],
        "watermark_ms": built["watermark_ms"],
        "document_count": 9,
        "created_at_ms": built["created_at_ms"],
        "fields": ["flag", "maybe", "n", "tag"],
    }
    # The restored CWT has the snapshot's cut, so no build adds an entry.
    await asyncio.sleep(restarted.settings.snapshot_interval_s * 2)
    status, listed = await get_json(restarted, "/v2/namespaces/mix/snapshots")
    assert [item["sha"] for item in listed["snapshots"]][0] == built["sha"]
    assert len(listed["snapshots"]) == built["seq"]


async def test_cli_snapshot(app: Harness) -> None:
    await load_handmade(app, "mix")
    url = str(app.client.make_url("/")).rstrip("/")
    runner = CliRunner()

    done = await asyncio.to_thread(
        runner.invoke, cli_main, ["snapshot", "mix", "--url", url]
    )
    assert done.exit_code == 0, done.output
    latest = await wait_latest(app, "mix", lambda body: True)
    assert json.loads(done.output) == latest

    conflicted = await asyncio.to_thread(
        runner.invoke, cli_main, ["snapshot", "nothing", "--url", url]
    )
    assert conflicted.exit_code == 1
    assert (
        "returned HTTP 409: conflict: namespace 'nothing' has no" in conflicted.output
    )

    unreachable = await asyncio.to_thread(
        runner.invoke, cli_main, ["snapshot", "mix", "--url", "http://127.0.0.1:1"]
    )
    assert unreachable.exit_code == 1
    assert "could not reach hevlayer at http://127.0.0.1:1 (" in unreachable.output

"""Cache, origin and a reference evaluator agree on every filter operator.

The reference evaluator below implements these rules of the filter language,
independently of schemas/filters.py:

* A missing attribute behaves like null. It never matches a comparison,
  `Eq null` matches it, and every `NotX` operator is exactly `not X`.
* Numbers compare numerically (1 == 1.0) and booleans are not numbers. Values
  of different types are never equal and never ordered.
* `Contains`, `ContainsAny` and the `Any*` comparisons test the elements of
  an array attribute and never match a non-array value.
* `Glob` and `IGlob` are Unix globs over the whole string, and `IGlob` ignores
  case. `Regex` is an unanchored search. All three match strings only.
* `id` is the document id, and `_hevlayer_upserted_at` is the broker timestamp
  of the record that wrote the current version.

Documents come from a seeded generator (the seed is in the pytest header)
with updates, deletes and re-creates of the same ids.
"""

from __future__ import annotations

import asyncio
import random
import re
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer

from service import origin
from tests.integration.harness import Harness, LogModel

NS = "agree"
RECORD_COUNT = 400
# Concurrent scans. Origin scans wait for one watermark observation each, and
# the watcher makes those one at a time, so more would only queue there.
PARALLEL_SCANS = 4
# Extra start-up time of the slow origin reader. Reading the other partitions
# takes a few milliseconds, so they are done long before it starts.
SLOW_START_S = 0.5

NUMBERS: list[Any] = [0, 1, 1.0, -1, 2, 2.5, 3, 10, -0.5, 100, 1e3]
STRINGS: list[Any] = [
    "apple",
    "Apple",
    "APPLE",
    "banana",
    "b",
    "",
    "1",
    "a*b",
    "x/y",
    "äpfel",
    "Äpfel",
    "cherry pie",
    "zeta",
]
SCALARS: list[Any] = [*NUMBERS, *STRINGS, True, False, None]

# Fixed documents for the edge cases the random ones may miss. Each tuple is
# one record, and a None value deletes the document.
EDGE_RECORDS: list[tuple[str, dict[str, Any] | None]] = [
    ("int-one", {"n": 1}),
    ("float-one", {"n": 1.0}),
    ("bool-true", {"n": True}),
    ("string-one", {"n": "1"}),
    ("null-n", {"n": None}),
    ("empty", {}),
    ("array-n", {"n": [1]}),
    ("object-n", {"n": {"k": 1}}),
    ("gone", {"n": 1, "s": "apple"}),
    ("gone", None),
    ("back", {"n": 5}),
    ("back", None),
    ("back", {"n": 1.0, "s": "banana"}),
    ("updated", {"n": 1, "tags": ["a"]}),
    ("updated", {"n": 2, "tags": ["b", 1]}),
    ("never-there", None),
]


def random_value(rng: random.Random, pool: list[Any]) -> Any:
    return rng.choice(pool)


def random_attributes(rng: random.Random) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    if rng.random() < 0.8:
        attrs["n"] = random_value(rng, [*NUMBERS, *NUMBERS, None, "1", True, False])
    if rng.random() < 0.8:
        attrs["s"] = random_value(rng, [*STRINGS, *STRINGS, None, 1])
    if rng.random() < 0.8:
        attrs["v"] = random_value(rng, SCALARS)
    if rng.random() < 0.8:
        if rng.random() < 0.1:
            attrs["tags"] = random_value(rng, SCALARS)
        else:
            attrs["tags"] = [rng.choice(SCALARS) for _ in range(rng.randrange(5))]
    if rng.random() < 0.5:
        attrs["flag"] = rng.choice([True, False, None])
    if rng.random() < 0.2:
        attrs["meta"] = {"k": rng.choice(NUMBERS)}
    return attrs


def random_ids(rng: random.Random) -> list[str]:
    ids = [f"doc-{i:03d}" for i in range(60)]
    ids += [f"Doc-{i:03d}" for i in range(20)]
    ids += [f"item/{i:03d}" for i in range(20)]
    ids += [f"über-{i}" for i in range(10)]
    ids += [f"x*{i}" for i in range(5)]
    rng.shuffle(ids)
    return ids


def generate_records(seed: int) -> list[tuple[str, dict[str, Any] | None]]:
    """Return EDGE_RECORDS then RECORD_COUNT random upserts and deletes of a few ids."""
    rng = random.Random(seed)
    ids = random_ids(rng)
    records = list(EDGE_RECORDS)
    for _ in range(RECORD_COUNT):
        doc_id = rng.choice(ids)
        if rng.random() < 0.15:
            records.append((doc_id, None))
        else:
            records.append((doc_id, random_attributes(rng)))
    return records


# The reference evaluator.

MISSING = object()


def kind_of(value: Any) -> str:
    if value is None or value is MISSING:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def scalar_equal(value: Any, expected: Any) -> bool:
    kind = kind_of(value)
    if kind != kind_of(expected) or kind in ("array", "object"):
        return False
    if kind == "null":
        return True
    return bool(value == expected)


def ordered(value: Any, op: str, bound: Any) -> bool:
    kind = kind_of(value)
    if kind != kind_of(bound) or kind not in ("number", "string"):
        return False
    if op == "Lt":
        return bool(value < bound)
    if op == "Lte":
        return bool(value <= bound)
    if op == "Gt":
        return bool(value > bound)
    return bool(value >= bound)


def glob_regex(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    """Translate a Unix glob into a regex over the whole string.

    Supports `*`, `?`, `[set]` and `[!set]`. The patterns in this file close
    every set they open.
    """
    parts: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "*":
            parts.append(".*")
        elif char == "?":
            parts.append(".")
        elif char == "[":
            end = pattern.index("]", index + 1)
            body = pattern[index + 1 : end]
            if body.startswith("!"):
                body = "^" + body[1:]
            parts.append("[" + body.replace("\\", "\\\\") + "]")
            index = end
        else:
            parts.append(re.escape(char))
        index += 1
    flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
    return re.compile("".join(parts), flags)


def leaf_matches(value: Any, op: str, operand: Any) -> bool:
    if op.startswith("Not"):
        return not leaf_matches(value, op[3:], operand)
    if op == "Eq":
        return scalar_equal(value, operand)
    if op == "In":
        return any(scalar_equal(value, item) for item in operand)
    if op in ("Lt", "Lte", "Gt", "Gte"):
        return ordered(value, op, operand)
    if op in ("Contains", "ContainsAny"):
        operands = [operand] if op == "Contains" else operand
        if not isinstance(value, list):
            return False
        return any(scalar_equal(element, item) for element in value for item in operands)
    if op in ("AnyLt", "AnyLte", "AnyGt", "AnyGte"):
        if not isinstance(value, list):
            return False
        return any(ordered(element, op[3:], operand) for element in value)
    if op in ("Glob", "IGlob"):
        if not isinstance(value, str):
            return False
        return glob_regex(operand, op == "IGlob").fullmatch(value) is not None
    if op == "Regex":
        return isinstance(value, str) and re.search(operand, value) is not None
    raise AssertionError(f"reference evaluator has no rule for operator {op}")


def reference_matches(node: Any, doc_id: str, attrs: dict[str, Any]) -> bool:
    if node is None:
        return True
    if node[0] == "And" and len(node) == 2:
        return all(reference_matches(child, doc_id, attrs) for child in node[1])
    if node[0] == "Or" and len(node) == 2:
        return any(reference_matches(child, doc_id, attrs) for child in node[1])
    if node[0] == "Not" and len(node) == 2:
        return not reference_matches(node[1], doc_id, attrs)
    attribute, op, operand = node
    value = doc_id if attribute == "id" else attrs.get(attribute, MISSING)
    return leaf_matches(value, op, operand)


def reference_ids(model: LogModel, node: Any) -> list[str]:
    matched = []
    for doc_id, record in model.state().items():
        assert record.value is not None
        attrs = {**record.value, "_hevlayer_upserted_at": record.timestamp_ms}
        if reference_matches(node, doc_id, attrs):
            matched.append(doc_id)
    return sorted(matched)


# Stands for the median record timestamp, known only after producing.
MIDDLE_MS = "<median record timestamp>"

# Filters covering every operator and combinator, grouped by operator family
# so that each test stays short, because every origin scan observes the
# watermark first.
FILTER_GROUPS: dict[str, list[Any]] = {
    "eq": [
        None,
        ["n", "Eq", 1],
        ["n", "Eq", 1.0],
        ["n", "Eq", 0],
        ["n", "Eq", True],
        ["n", "Eq", "1"],
        ["n", "Eq", None],
        ["s", "Eq", "apple"],
        ["s", "Eq", ""],
        ["v", "Eq", False],
        ["meta", "Eq", 1],
        ["no_such_attribute", "Eq", None],
        ["id", "Eq", "doc-001"],
        ["n", "NotEq", 1],
        ["n", "NotEq", None],
        ["s", "NotEq", "apple"],
        ["v", "NotEq", True],
        ["no_such_attribute", "NotEq", 1],
    ],
    "in": [
        ["n", "In", [1, 2.5, "1"]],
        ["n", "In", [1.0]],
        ["v", "In", [None, True]],
        ["s", "In", []],
        ["id", "In", ["doc-001", "Doc-002", "item/003", "nope"]],
        ["n", "NotIn", [1, 2]],
        ["v", "NotIn", [None]],
        ["s", "NotIn", []],
    ],
    "order": [
        ["n", "Lt", 2],
        ["n", "Lte", 1],
        ["n", "Gt", 1.0],
        ["n", "Gte", 2.5],
        ["s", "Lt", "b"],
        ["s", "Gte", "apple"],
        ["v", "Gt", 0],
        ["v", "Lte", "Z"],
        ["id", "Gte", "doc-050"],
        ["_hevlayer_upserted_at", "Gte", MIDDLE_MS],
        ["_hevlayer_upserted_at", "Lt", MIDDLE_MS],
    ],
    "array": [
        ["tags", "Contains", "apple"],
        ["tags", "Contains", 1],
        ["tags", "Contains", 1.0],
        ["tags", "Contains", True],
        ["n", "Contains", 1],
        ["tags", "NotContains", "b"],
        ["tags", "ContainsAny", ["apple", "b"]],
        ["tags", "ContainsAny", [1, None]],
        ["tags", "ContainsAny", []],
        ["tags", "NotContainsAny", ["apple", 2.5]],
        ["tags", "NotContainsAny", []],
        ["tags", "AnyLt", 1],
        ["tags", "AnyLte", "apple"],
        ["tags", "AnyGt", 2],
        ["tags", "AnyGte", "b"],
        ["n", "AnyGt", 0],
    ],
    "glob": [
        ["s", "Glob", "a*"],
        ["s", "Glob", "?pple"],
        ["s", "Glob", "[aA]pple"],
        ["s", "Glob", "[!a]*"],
        ["s", "Glob", "a[*]b"],
        ["s", "Glob", "*"],
        ["n", "Glob", "*"],
        ["id", "Glob", "doc-0*"],
        ["id", "Glob", "item/*"],
        ["s", "NotGlob", "a*"],
        ["id", "NotGlob", "*-00?"],
        ["s", "IGlob", "APPLE"],
        ["s", "IGlob", "äp*"],
        ["id", "IGlob", "DOC-*"],
        ["s", "NotIGlob", "a*"],
    ],
    "regex_and_combinators": [
        ["s", "Regex", "^a"],
        ["s", "Regex", "(?i)apple"],
        ["s", "Regex", "an+a"],
        ["s", "Regex", "^.pfel$"],
        ["v", "Regex", "1"],
        ["id", "Regex", "^item/0[0-4]"],
        ["And", [["n", "Gte", 1], ["s", "Glob", "*a*"]]],
        ["Or", [["n", "Eq", 1], ["tags", "Contains", "b"], ["id", "Eq", "doc-003"]]],
        ["Not", ["n", "Eq", 1]],
        ["Not", ["And", [["v", "Eq", None], ["s", "NotEq", "apple"]]]],
        [
            "Or",
            [
                ["Not", ["n", "Lt", 2]],
                ["And", [["flag", "Eq", True], ["meta", "NotEq", None]]],
            ],
        ],
    ],
}


def filter_group(model: LogModel, group: str) -> list[Any]:
    """Return a group's filters with MIDDLE_MS replaced by the median timestamp."""
    timestamps = sorted(record.timestamp_ms for record in model.records)
    middle_ms = timestamps[len(timestamps) // 2]
    return [
        [*node[:2], middle_ms] if node is not None and node[2:] == [MIDDLE_MS] else node
        for node in FILTER_GROUPS[group]
    ]


async def load(app: Harness, seed: int) -> LogModel:
    await app.create_topic(NS)
    records = generate_records(seed)
    model = LogModel()
    model.add(records, await app.produce(NS, records))
    await app.wait_warmed(NS)
    return model


def test_reference_evaluator_rules() -> None:
    """Check the reference evaluator itself on the rules it encodes."""
    assert reference_matches(["n", "Eq", 1], "x", {"n": 1.0})
    assert not reference_matches(["n", "Eq", 1], "x", {"n": True})
    assert not reference_matches(["n", "Eq", "1"], "x", {"n": 1})
    assert reference_matches(["n", "Eq", None], "x", {})
    assert reference_matches(["n", "NotEq", 1], "x", {})
    assert not reference_matches(["n", "NotEq", None], "x", {})
    assert not reference_matches(["n", "Lt", 5], "x", {})
    assert not reference_matches(["n", "Lt", 5], "x", {"n": "1"})
    assert reference_matches(["s", "Glob", "a[*]b"], "x", {"s": "a*b"})
    assert not reference_matches(["s", "Glob", "a*"], "x", {"s": "Apple"})
    assert reference_matches(["s", "IGlob", "a*"], "x", {"s": "Apple"})
    assert reference_matches(["tags", "Contains", 1], "x", {"tags": [1.0]})
    assert not reference_matches(["tags", "Contains", 1], "x", {"tags": 1})


@pytest.mark.parametrize("group", sorted(FILTER_GROUPS))
async def test_counts_agree(app: Harness, test_seed: int, group: str) -> None:
    model = await load(app, test_seed)
    limit = asyncio.Semaphore(PARALLEL_SCANS)

    async def counts(node: Any) -> tuple[Any, int, int]:
        async with limit:
            cache = await app.count(NS, {"source": "cache", "filters": node})
            origin = await app.count(NS, {"source": "origin", "filters": node})
        assert cache["served_by"] == "cache"
        assert origin["served_by"] == "origin"
        assert origin["bounded"] is False
        return node, cache["count"], origin["count"]

    results = await asyncio.gather(*(counts(node) for node in filter_group(model, group)))
    mismatches = []
    for node, cache_count, origin_count in results:
        expected = len(reference_ids(model, node))
        if not cache_count == origin_count == expected:
            mismatches.append(
                f"{node}: cache {cache_count}, origin {origin_count}, reference {expected}"
            )
    assert not mismatches, f"seed {test_seed}:\n" + "\n".join(mismatches)


async def test_origin_paging_agrees(app: Harness, test_seed: int) -> None:
    """Read partitions one at a time in small pages; the result must not change."""
    model = await load(app, test_seed)
    paging = {"source": "origin", "threads": 1, "page_size": 7}
    for node in [None, ["Or", [["n", "Gte", 2], ["tags", "ContainsAny", ["b", 1]]]]]:
        expected = reference_ids(model, node)

        counted = await app.count(NS, {**paging, "filters": node})
        assert counted["count"] == len(expected), node
        assert counted["bounded"] is False, node

        job, ids = await app.ids(NS, {**paging, "filters": node})
        assert job["effective_source"] == "origin", node
        assert ids == expected, node


class SlowStartConsumer(AIOKafkaConsumer):
    """A consumer that, once in every three starts, takes SLOW_START_S longer to start."""

    started = 0

    async def start(self) -> None:
        SlowStartConsumer.started += 1
        if SlowStartConsumer.started % 3 == 2:
            await asyncio.sleep(SLOW_START_S)
        await super().start()


async def test_origin_slow_reader_agrees(
    app: Harness, test_seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One of three partition readers starts late and finds no partition left."""
    model = await load(app, test_seed)
    monkeypatch.setattr(origin, "AIOKafkaConsumer", SlowStartConsumer)
    expected = reference_ids(model, None)

    try:
        status, counted = await app.post_scan(NS, {"mode": "count", "source": "origin"})
    except aiohttp.ServerDisconnectedError:
        pytest.fail("the server closed the connection instead of returning the origin count")
    assert status == 200, counted
    assert counted["count"] == len(expected)
    assert counted["bounded"] is False

    job, ids = await app.ids(NS, {"source": "origin"})
    assert ids == expected


@pytest.mark.parametrize("group", sorted(FILTER_GROUPS))
async def test_ids_agree(app: Harness, test_seed: int, group: str) -> None:
    model = await load(app, test_seed)
    limit = asyncio.Semaphore(PARALLEL_SCANS)

    async def ids(node: Any) -> tuple[Any, list[str], list[str]]:
        async with limit:
            cache_job, cache_ids = await app.ids(NS, {"source": "cache", "filters": node})
            origin_job, origin_ids = await app.ids(NS, {"source": "origin", "filters": node})
        assert cache_job["effective_source"] == "cache"
        assert origin_job["effective_source"] == "origin"
        return node, cache_ids, origin_ids

    results = await asyncio.gather(*(ids(node) for node in filter_group(model, group)))
    mismatches = []
    for node, cache_ids, origin_ids in results:
        expected = reference_ids(model, node)
        if not cache_ids == origin_ids == expected:
            extra_cache = sorted(set(cache_ids) - set(expected))
            missing_cache = sorted(set(expected) - set(cache_ids))
            extra_origin = sorted(set(origin_ids) - set(expected))
            missing_origin = sorted(set(expected) - set(origin_ids))
            mismatches.append(
                f"{node}: cache +{extra_cache} -{missing_cache}, "
                f"origin +{extra_origin} -{missing_origin}, "
                f"order ok: {cache_ids == sorted(cache_ids)}/{origin_ids == sorted(origin_ids)}"
            )
    assert not mismatches, f"seed {test_seed}:\n" + "\n".join(mismatches)

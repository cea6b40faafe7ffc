"""Bad records in a namespace topic: skipped, dead-lettered, counted, never a stall.

Every test produces valid records, then bad ones, then more valid ones, and
checks that the applier and origin scans agree on the valid documents while
each bad record lands once in the dead-letter topic with the reason.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.structs import RecordMetadata
from prometheus_client.parser import text_string_to_metric_families

from consumers.settings import Settings
from schemas.record import MAX_ID_BYTES
from tests.integration.harness import Harness

NAMESPACE = "bad"
MAX_LENGTH_ID = "k" * MAX_ID_BYTES
# JSON nesting deeper than Python's default recursion limit of 1000.
DEEP_NESTING = 3000
DEAD_LETTER_HEADERS = (
    "hevlayer.reason",
    "hevlayer.topic",
    "hevlayer.partition",
    "hevlayer.offset",
)


@dataclass(frozen=True)
class BadCase:
    name: str
    key: bytes | None
    value: bytes | None
    # Text the dead-letter reason must contain.
    reason: str


def attributes(value: dict[str, Any]) -> bytes:
    return json.dumps(value).encode()


BAD_CASES = [
    BadCase("not-json", b"bad-json", b"{not json", "not valid JSON"),
    BadCase("truncated-json", b"bad-truncated", b'{"a": 1', "not valid JSON"),
    BadCase("empty-value", b"bad-empty-value", b"", "not valid JSON"),
    BadCase("array", b"bad-array", b"[1, 2]", "not an object"),
    BadCase("string", b"bad-string", b'"text"', "not an object"),
    BadCase("number", b"bad-number", b"42", "not an object"),
    BadCase("json-null", b"bad-null", b"null", "not an object"),
    BadCase("reserved", b"bad-reserved", attributes({"_hevlayer_x": 1}), "_hevlayer_x"),
    BadCase(
        "reserved-stamp",
        b"bad-stamp",
        attributes({"a": 1, "_hevlayer_upserted_at": 5}),
        "_hevlayer_upserted_at",
    ),
    BadCase("id-attribute", b"bad-id", attributes({"id": "other", "a": 1}), "'id'"),
    # A record without a key is bad too, but a Kafka 4.1 broker rejects it on a
    # compacted topic, so it never reaches a namespace topic created by hevlayer.
    BadCase("key-not-utf8", b"\xff\xfe", attributes({"a": 1}), "UTF-8"),
    BadCase("empty-key", b"", attributes({"a": 1}), "empty"),
    BadCase(
        "key-too-long",
        b"k" * (MAX_ID_BYTES + 1),
        attributes({"a": 1}),
        f"{MAX_ID_BYTES + 1} bytes",
    ),
    # A bad version of an existing document leaves its earlier version in place.
    BadCase("victim", b"victim", b"[]", "not an object"),
]

FIRST_VALID: list[tuple[str, dict[str, Any] | None]] = [
    ("a", {"v": 1, "cat": "x"}),
    ("b", {"v": 1, "cat": "y"}),
    ("victim", {"v": 1}),
    (MAX_LENGTH_ID, {"cat": "y"}),
    ("\u00fc-\u00f1", {"cat": "x"}),
    ("c", {"cat": "x"}),
    ("c", None),
]
LATER_VALID: list[tuple[str, dict[str, Any] | None]] = [
    ("a", {"v": 2, "cat": "x"}),
    ("d", {"cat": "y"}),
    ("ghost", None),
    ("e", {"cat": "x"}),
]
# Document counts per filter after FIRST_VALID and LATER_VALID.
EXPECTED_IDS = sorted(["a", "b", "victim", MAX_LENGTH_ID, "\u00fc-\u00f1", "d", "e"])
EXPECTED_COUNTS = [
    (None, 7),
    (["cat", "Eq", "x"], 3),
    (["cat", "Eq", "y"], 3),
    (["v", "Eq", 2], 1),
    (["v", "Eq", 1], 2),
    (["id", "Eq", "ghost"], 0),
    (["id", "Eq", "c"], 0),
    (["id", "Eq", "victim"], 1),
]


@dataclass
class Loaded:
    """Where the valid and bad records of `load_mixed` landed."""

    valid: list[RecordMetadata]
    bad: dict[str, RecordMetadata]

    def end_offsets(self, partitions: int) -> dict[int, int]:
        ends = dict.fromkeys(range(partitions), 0)
        for meta in [*self.valid, *self.bad.values()]:
            ends[meta.partition] = max(ends[meta.partition], meta.offset + 1)
        return ends


async def load_mixed(app: Harness, namespace: str = NAMESPACE) -> Loaded:
    """Produce valid records, every bad case, then more valid records."""
    await app.create_topic(namespace)
    first = await app.produce(namespace, FIRST_VALID)
    bad = await app.produce(namespace, [(case.key, case.value) for case in BAD_CASES])
    later = await app.produce(namespace, LATER_VALID)
    return Loaded(
        valid=[*first, *later],
        bad={case.name: meta for case, meta in zip(BAD_CASES, bad, strict=True)},
    )


async def read_topic(settings: Settings, topic: str) -> list[ConsumerRecord]:
    """Read every record of a one-partition topic up to its current end offset."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        begin = (await consumer.beginning_offsets([tp]))[tp]
        end = (await consumer.end_offsets([tp]))[tp]
        consumer.seek(tp, begin)
        records: list[ConsumerRecord] = []
        deadline = time.monotonic() + 15
        while await consumer.position(tp) < end:
            assert (
                time.monotonic() < deadline
            ), f"reading {topic} stuck before offset {end}"
            batch = await consumer.getmany(tp, timeout_ms=500)
            records.extend(r for r in batch.get(tp, []) if r.offset < end)
        return records
    finally:
        await consumer.stop()


def header_map(record: ConsumerRecord) -> dict[str, str]:
    return {name: value.decode() for name, value in record.headers}


async def bad_records_metric(app: Harness, namespace: str) -> float:
    """Return hevlayer_bad_records_total for one namespace from GET /metrics."""
    response = await app.client.get("/metrics")
    assert response.status == 200
    for family in text_string_to_metric_families(await response.text()):
        for sample in family.samples:
            if (
                sample.name == "hevlayer_bad_records_total"
                and sample.labels.get("namespace") == namespace
            ):
                return float(sample.value)
    return 0.0


async def all_ids(app: Harness, namespace: str, source: str) -> list[str]:
    _job, ids = await app.ids(namespace, {"source": source})
    return ids


# -- the applier ----------------------------------------------------------------


async def test_valid_records_applied(app: Harness) -> None:
    await load_mixed(app)
    await app.wait_warmed(NAMESPACE)

    for filters, expected in EXPECTED_COUNTS:
        body = await app.count(NAMESPACE, {"source": "cache", "filters": filters})
        assert body["count"] == expected, (filters, body)
        assert body["served_by"] == "cache", body
    assert await all_ids(app, NAMESPACE, "cache") == EXPECTED_IDS


async def test_origin_agrees_with_cache(app: Harness) -> None:
    await load_mixed(app)
    await app.wait_warmed(NAMESPACE)

    for filters, expected in EXPECTED_COUNTS:
        origin = await app.count(NAMESPACE, {"source": "origin", "filters": filters})
        cache = await app.count(NAMESPACE, {"source": "cache", "filters": filters})
        assert origin["count"] == expected, (filters, origin)
        assert origin["bounded"] is False, origin
        assert cache["count"] == origin["count"], (filters, cache, origin)
    assert await all_ids(app, NAMESPACE, "origin") == EXPECTED_IDS


async def test_offsets_pass_bad_records(app: Harness) -> None:
    loaded = await load_mixed(app)
    await app.wait_applied(NAMESPACE)
    expected = loaded.end_offsets(app.settings.partitions)

    next_offsets = app.runtime.consistency.state(NAMESPACE).next_offsets
    assert {p: next_offsets.get(p, 0) for p in expected} == expected
    for name, meta in loaded.bad.items():
        assert next_offsets[meta.partition] > meta.offset, name

    await app.wait_warmed(NAMESPACE)
    response = await app.client.get(f"/v2/namespaces/{NAMESPACE}")
    status = await response.json()
    assert response.status == 200, status
    assert status["applied_offsets"] == {
        str(p): end for p, end in expected.items() if end
    }
    assert status["applier_lag"] == 0, status
    assert status["cache_state"] == "populated", status
    assert app.runtime.applier_running


async def test_bad_records_dead_lettered(app: Harness) -> None:
    loaded = await load_mixed(app)
    await app.wait_applied(NAMESPACE)
    topic = app.settings.topic_for(NAMESPACE)

    dead = await read_topic(app.settings, app.settings.dead_letter_topic)
    assert len(dead) == len(BAD_CASES), [header_map(r) for r in dead]
    by_position = {
        (
            header_map(r).get("hevlayer.partition"),
            header_map(r).get("hevlayer.offset"),
        ): r
        for r in dead
    }
    for case in BAD_CASES:
        meta = loaded.bad[case.name]
        record = by_position.get((str(meta.partition), str(meta.offset)))
        assert (
            record is not None
        ), f"{case.name} at {meta.partition}/{meta.offset} missing"
        headers = header_map(record)
        for name in DEAD_LETTER_HEADERS:
            assert name in headers, (case.name, headers)
        assert headers["hevlayer.topic"] == topic, (case.name, headers)
        assert case.reason in headers["hevlayer.reason"], (case.name, headers)
        assert record.key == case.key, case.name
        assert record.value == case.value, case.name


async def test_bad_records_counted(app: Harness) -> None:
    before = await bad_records_metric(app, NAMESPACE)
    await load_mixed(app)
    await app.wait_applied(NAMESPACE)

    after = await bad_records_metric(app, NAMESPACE)
    assert after - before == len(BAD_CASES)


async def test_bad_record_logs_one_warning(
    app: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="consumers.applier")
    loaded = await load_mixed(app)
    await app.wait_applied(NAMESPACE)
    topic = app.settings.topic_for(NAMESPACE)

    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.name == "consumers.applier" and r.levelno == logging.WARNING
    ]
    assert len(warnings) == len(BAD_CASES), warnings
    for case in BAD_CASES:
        meta = loaded.bad[case.name]
        expected = f"topic={topic} partition={meta.partition} offset={meta.offset}"
        matching = [message for message in warnings if expected in message]
        assert len(matching) == 1, (case.name, warnings)
        assert case.reason in matching[0], (case.name, matching[0])


async def test_unknown_tombstone_is_harmless(app: Harness) -> None:
    await app.create_topic(NAMESPACE)
    before = await bad_records_metric(app, NAMESPACE)
    await app.produce(NAMESPACE, [("ghost", None), ("a", {"n": 1}), ("ghost", None)])
    await app.wait_warmed(NAMESPACE)

    assert await all_ids(app, NAMESPACE, "cache") == ["a"]
    assert await all_ids(app, NAMESPACE, "origin") == ["a"]
    assert await bad_records_metric(app, NAMESPACE) == before
    assert await read_topic(app.settings, app.settings.dead_letter_topic) == []


async def test_dead_letter_keeps_headers(app: Harness) -> None:
    await app.create_topic(NAMESPACE)
    topic = app.settings.topic_for(NAMESPACE)
    producer = AIOKafkaProducer(
        bootstrap_servers=app.settings.bootstrap_servers, acks="all"
    )
    await producer.start()
    try:
        original = [("trace-id", b"abc123"), ("source", b"importer")]
        await producer.send_and_wait(
            topic, b"[1]", key=b"with-headers", headers=original
        )
        await producer.send_and_wait(topic, attributes({"a": 1}), key=b"a")
    finally:
        await producer.stop()
    await app.wait_applied(NAMESPACE)

    dead = await read_topic(app.settings, app.settings.dead_letter_topic)
    assert len(dead) == 1, dead
    headers = list(dead[0].headers)
    for header in original:
        assert header in headers, headers
    assert "hevlayer.reason" in dict(headers), headers


async def test_dead_letter_not_reapplied(app: Harness) -> None:
    # The test settings put the dead-letter topic under the namespace prefix, so
    # an applier that took it for a namespace would copy its records again forever.
    await app.create_topic(NAMESPACE)
    await app.produce(NAMESPACE, [("a", {"n": 1}), ("b", b"[1]"), ("c", {"n": 2})])
    await app.wait_applied(NAMESPACE)
    # Several topic refreshes and applier steps.
    await asyncio.sleep(max(2.0, 4 * app.settings.topic_refresh_s))

    dead = await read_topic(app.settings, app.settings.dead_letter_topic)
    assert [r.key for r in dead] == [b"b"]
    assert await bad_records_metric(app, "deadletter") == 0
    assert "deadletter" not in app.runtime.consistency.namespaces()


async def test_out_of_range_number_reason(app: Harness) -> None:
    # 1e400 is valid JSON but overflows a float. The value is still an object.
    await app.create_topic(NAMESPACE)
    await app.produce(NAMESPACE, [("huge", b'{"a": 1e400}'), ("a", {"n": 1})])
    await app.wait_applied(NAMESPACE)

    dead = await read_topic(app.settings, app.settings.dead_letter_topic)
    assert len(dead) == 1, dead
    reason = header_map(dead[0])["hevlayer.reason"]
    assert "not an object" not in reason, reason
    assert "out of range" in reason, reason


# -- values that break the decoder itself ----------------------------------------------


def deep_value() -> bytes:
    return b'{"a": ' + b"[" * DEEP_NESTING + b"]" * DEEP_NESTING + b"}"


async def test_deep_value_does_not_stall(app: Harness) -> None:
    await app.create_topic(NAMESPACE)
    await app.produce(
        NAMESPACE, [("a", {"n": 1}), ("deep", deep_value()), ("b", {"n": 2})]
    )
    await app.wait_applied(NAMESPACE, timeout_s=15)
    await app.wait_warmed(NAMESPACE, timeout_s=15)

    assert await all_ids(app, NAMESPACE, "cache") == ["a", "b"]
    dead = await read_topic(app.settings, app.settings.dead_letter_topic)
    assert [r.key for r in dead] == [b"deep"]
    assert dead[0].value == deep_value()


async def test_deep_value_skipped_by_origin(app: Harness) -> None:
    await app.create_topic(NAMESPACE)
    await app.produce(
        NAMESPACE, [("a", {"n": 1}), ("deep", deep_value()), ("b", {"n": 2})]
    )

    body = await app.count(NAMESPACE, {"source": "origin", "timeout_seconds": 15})
    assert body["count"] == 2, body
    assert body["bounded"] is False, body
    assert body["shards_saturated"] == 0, body

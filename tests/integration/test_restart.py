"""Restarts: an applier stopped mid-stream resumes exactly, and CWT survives.

The applier writes each batch's documents and next offsets in one atomic
RocksDB write. An applier restarted on the same data directory, in a new
process or in the same one, must resume at the stored offsets, losing and
duplicating nothing.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY
from rocksdict import WriteBatch

from consumers.store import Store
from tests.integration.conftest import AppFactory
from tests.integration.harness import (
    Harness,
    LogModel,
    ProducedRecord,
    count_with_header,
    namespace_status,
    offsets_key,
)

NS = "restart"
PARTITIONS = 3
RECORDS = 20_000
DOCUMENTS = 5_000
TAGS = ["t0", "t1", "t2", "t3", "t4"]
MID_STREAM_TIMEOUT_S = 20.0


def generate(seed: int) -> list[tuple[str, dict[str, Any] | None]]:
    """Return RECORDS upserts and deletes, where `rev` counts the upserts of each id.

    Every version of an id has a different `rev`, so the set of ids per `rev`
    pins down which version the cache shows for each document.
    """
    rng = random.Random(seed)
    revisions: Counter[str] = Counter()
    records: list[tuple[str, dict[str, Any] | None]] = []
    for _ in range(RECORDS):
        doc_id = f"k{rng.randrange(DOCUMENTS):05d}"
        if rng.random() < 0.15:
            records.append((doc_id, None))
        else:
            revisions[doc_id] += 1
            records.append((doc_id, {"rev": revisions[doc_id], "tag": rng.choice(TAGS)}))
    return records


def ids_where(state: dict[str, ProducedRecord], name: str, value: Any) -> list[str]:
    return sorted(
        doc_id
        for doc_id, record in state.items()
        if record.value is not None and record.value[name] == value
    )


async def assert_cache_equals(app: Harness, state: dict[str, ProducedRecord]) -> None:
    """Check ids, per-tag and per-rev id sets of the cache against `state`."""
    _, ids = await app.ids(NS, {"source": "cache"})
    assert ids == sorted(state)

    for tag in TAGS:
        counted = await app.count(NS, {"source": "cache", "filters": ["tag", "Eq", tag]})
        assert counted["count"] == len(ids_where(state, "tag", tag)), tag

    max_rev = max(record.value["rev"] for record in state.values() if record.value)
    for rev in range(1, max_rev + 1):
        _, ids = await app.ids(NS, {"source": "cache", "filters": ["rev", "Eq", rev]})
        assert ids == ids_where(state, "rev", rev), rev


def records_applied() -> float:
    """Return the process-wide count of records the appliers applied."""
    value = REGISTRY.get_sample_value("hevlayer_records_applied_total")
    assert value is not None, "metric hevlayer_records_applied_total is not registered"
    return value


def stored_offsets(data_dir: str) -> dict[int, int]:
    """Read the next offsets a stopped process left in its cache directory."""
    store = Store(Path(data_dir) / "cache")
    try:
        return store.all_next_offsets().get(NS, {})
    finally:
        store.close()


async def test_restart_mid_stream_exact(apps: AppFactory, test_seed: int) -> None:
    first = await apps.start()
    await first.runtime.stop_applier()
    await first.create_topic(NS)
    records = generate(test_seed)
    model = LogModel()
    model.add(records, await first.produce(NS, records))
    ends = model.end_offsets(PARTITIONS)
    assert sum(ends.values()) == RECORDS

    # Stop the whole process as soon as the applier has committed some batches
    # but not all. The next batch may still be in flight.
    first.runtime.start_applier()
    state = first.runtime.consistency.state(NS)
    deadline = time.monotonic() + MID_STREAM_TIMEOUT_S
    while sum(state.next_offsets.values()) == 0:
        assert time.monotonic() < deadline, "applier applied nothing"
        await asyncio.sleep(0.001)
    await apps.stop(first)

    offsets = stored_offsets(first.settings.data_dir)
    assert 0 < sum(offsets.values()) < RECORDS, offsets
    for partition, offset in offsets.items():
        assert offset <= ends[partition], (partition, offset)

    applied_before = records_applied()
    second = await apps.start()
    await second.wait_warmed(NS)
    applied = records_applied() - applied_before
    # Every record not yet stored is applied once, and no stored one again.
    assert applied == RECORDS - sum(offsets.values())

    status = await namespace_status(second, NS)
    assert status["applied_offsets"] == offsets_key(ends)
    assert status["cache_warmed_through"]["end_offsets"] == offsets_key(ends)
    await assert_cache_equals(second, model.state())

    origin = await second.count(NS, {"source": "origin"})
    assert origin["count"] == len(model.state())


async def test_restart_keeps_cwt(apps: AppFactory) -> None:
    first = await apps.start()
    await first.create_topic(NS)
    model = LogModel()
    records: list[tuple[str, dict[str, Any] | None]] = [
        ("a", {"rev": 1, "tag": "t0"}),
        ("b", {"rev": 1, "tag": "t1"}),
        ("c", {"rev": 1, "tag": "t0"}),
        ("a", {"rev": 2, "tag": "t1"}),
        ("b", None),
    ]
    model.add(records, await first.produce(NS, records))
    await first.wait_warmed(NS)
    before = (await namespace_status(first, NS))["cache_warmed_through"]
    assert before["end_offsets"] == offsets_key(model.end_offsets(PARTITIONS))
    await apps.stop(first)

    second = await apps.start()
    status = await namespace_status(second, NS)
    assert status["cache_state"] == "populated"
    assert status["cache_warmed_through"] == before
    # An empty partition has nothing to apply, so it has no stored offset.
    nonempty = {p: end for p, end in model.end_offsets(PARTITIONS).items() if end > 0}
    assert status["applied_offsets"] == offsets_key(nonempty)

    counted, header = await count_with_header(second, NS, {"filters": ["tag", "Lte", "t9"]})
    assert counted["served_by"] == "cache"
    assert counted["count"] == 2
    assert counted["stable_as_of"] == before["watermark_ms"]
    assert header == str(before["watermark_ms"])

    # Observing the unchanged topic registers no new cut.
    await second.wait_warmed(NS)
    status = await namespace_status(second, NS)
    assert status["cache_warmed_through"]["end_offsets"] == before["end_offsets"]
    assert status["cache_warmed_through"]["watermark_ms"] == before["watermark_ms"]
    assert status["warm_in_flight"] is False


async def test_applier_stop_mid_write(apps: AppFactory, test_seed: int) -> None:
    """Stop the applier while a batch is being written, then start it in-process."""
    app = await apps.start()
    await app.runtime.stop_applier()
    await app.create_topic(NS)
    records = generate(test_seed)
    model = LogModel()
    model.add(records, await app.produce(NS, records))

    # Delay the write of the second batch with records, so that stop_applier
    # cancels the applier while the worker thread still commits that batch.
    store = app.runtime.store
    original_write = store.write
    state = app.runtime.consistency.state(NS)
    offsets_before_delay: dict[int, int] = {}
    delayed = threading.Event()
    delayed_write_done = threading.Event()

    def delayed_write(batch: WriteBatch) -> None:
        if sum(state.next_offsets.values()) == 0 or delayed.is_set():
            original_write(batch)
            return
        offsets_before_delay.update(state.next_offsets)
        delayed.set()
        time.sleep(0.5)
        original_write(batch)
        delayed_write_done.set()

    store.write = delayed_write  # type: ignore[method-assign]
    app.runtime.start_applier()
    assert await asyncio.to_thread(delayed.wait, MID_STREAM_TIMEOUT_S)
    await app.runtime.stop_applier()
    assert await asyncio.to_thread(delayed_write_done.wait, MID_STREAM_TIMEOUT_S)
    store.write = original_write  # type: ignore[method-assign]

    stored = store.all_next_offsets()[NS]
    published = dict(state.next_offsets)
    # The delayed batch is committed, and records remain to be applied.
    assert sum(offsets_before_delay.values()) < sum(stored.values()) < RECORDS

    applied_before = records_applied()
    app.runtime.start_applier()
    await app.wait_warmed(NS)
    applied = records_applied() - applied_before
    await assert_cache_equals(app, model.state())
    # Resuming at the stored offsets applies each remaining record once.
    expected = RECORDS - sum(stored.values())
    assert applied == expected, (
        f"{applied - expected:.0f} records applied twice: the applier resumed at "
        f"the published offsets {published}, not the stored offsets {stored}"
    )

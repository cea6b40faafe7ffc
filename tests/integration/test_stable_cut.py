"""Cache scans return the log's exact state at their cut while changes keep arriving.

A cache response reports its cut as `stable_as_of` (cache_warmed_through in
epoch ms). Documents updated or deleted after the cut must still show the
version the cut saw, and ids created after it must be absent, even though the
applier has already applied the newer records.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from consumers.cuts import Observation
from tests.integration.harness import (
    Harness,
    LogModel,
    ProducedRecord,
    count_with_header,
    namespace_status,
    offsets_key,
    wait_offsets,
    wait_status,
)

NS = "stable"
PARTITIONS = 3
COLORS = ["red", "green", "blue"]
CONCURRENT_RUN_S = 6.0
PRODUCE_EVERY_S = 0.02


def color_ids(state: dict[str, ProducedRecord], color: str | None) -> list[str]:
    """Return the sorted ids of live documents with `color` (None: all of them)."""
    return sorted(
        doc_id
        for doc_id, record in state.items()
        if color is None or (record.value is not None and record.value["color"] == color)
    )


def color_filter(color: str | None) -> list[Any] | None:
    return None if color is None else ["color", "Eq", color]


async def assert_view(
    app: Harness, state: dict[str, ProducedRecord], stable_as_of: int
) -> None:
    """Check cache counts and ID lists for every color against `state`."""
    for color in [None, *COLORS]:
        counted, header = await count_with_header(
            app, NS, {"source": "cache", "filters": color_filter(color)}
        )
        assert counted["count"] == len(color_ids(state, color)), color
        assert counted["stable_as_of"] == stable_as_of, color
        assert header == str(stable_as_of), color

        job, ids = await app.ids(NS, {"source": "cache", "filters": color_filter(color)})
        assert ids == color_ids(state, color), color
        assert job["stable_as_of"] == stable_as_of, color

        response = await app.client.get(f"/v2/namespaces/{NS}/scans/{job['id']}/results")
        page = await response.json()
        assert page["stable_as_of"] == stable_as_of, color
        assert response.headers.get("X-Hevlayer-Stable-As-Of") == str(stable_as_of), color


async def test_frozen_cut_hides_changes(app: Harness) -> None:
    await app.create_topic(NS)
    model = LogModel()
    first = [(f"d{i:02d}", {"color": COLORS[i % 3], "version": 1}) for i in range(30)]
    model.add(first, await app.produce(NS, first))
    await app.wait_warmed(NS)
    cut = model.end_offsets(PARTITIONS)
    cut_ms = max(record.timestamp_ms for record in model.records)

    status = await namespace_status(app, NS)
    assert status["cache_warmed_through"]["end_offsets"] == offsets_key(cut)
    assert status["cache_warmed_through"]["watermark_ms"] == cut_ms

    # Without observations there are no warm targets, so CWT stays at `cut`.
    await app.runtime.stop_watcher()
    later: list[tuple[str, dict[str, Any] | None]] = []
    for i in range(0, 30, 3):
        later.append((f"d{i:02d}", {"color": "blue", "version": 2}))
    for i in range(1, 30, 3):
        later.append((f"d{i:02d}", None))
    for i in range(2, 30, 6):
        later.append((f"d{i:02d}", None))
        later.append((f"d{i:02d}", {"color": "red", "version": 3}))
    for i in range(30, 40):
        later.append((f"d{i:02d}", {"color": "green", "version": 1}))
    later.append(("d39", None))
    model.add(later, await app.produce(NS, later))
    await wait_offsets(app, NS, model.end_offsets(PARTITIONS))

    expected_at_cut = model.state(cut)
    assert expected_at_cut != model.state()
    await assert_view(app, expected_at_cut, cut_ms)

    # Auto serves the same cut: the last observation is covered, so no warm.
    counted, header = await count_with_header(app, NS, {"filters": ["color", "Lte", "z"]})
    assert counted["served_by"] == "cache"
    assert counted["count"] == len(expected_at_cut)
    assert counted["stable_as_of"] == cut_ms
    status = await namespace_status(app, NS)
    assert status["warm_in_flight"] is False
    assert status["cache_warmed_through"]["end_offsets"] == offsets_key(cut)

    app.runtime.start_watcher()
    final = model.end_offsets(PARTITIONS)
    status = await wait_status(
        app,
        NS,
        lambda s: s["cache_warmed_through"]["end_offsets"] == offsets_key(final),
    )
    final_ms = max(record.timestamp_ms for record in model.records)
    assert status["cache_warmed_through"]["watermark_ms"] == final_ms
    await assert_view(app, model.state(), final_ms)


class Producer:
    """Background producer of updates, deletes and new ids into one LogModel."""

    def __init__(self, app: Harness, model: LogModel, seed: int) -> None:
        self.app = app
        self.model = model
        self.rng = random.Random(seed)
        self.next_new_id = 100

    def batch(self) -> list[tuple[str, dict[str, Any] | None]]:
        records: list[tuple[str, dict[str, Any] | None]] = []
        for _ in range(self.rng.randrange(1, 8)):
            roll = self.rng.random()
            if roll < 0.15:
                records.append((f"d{self.next_new_id:03d}", {"color": "red", "version": 0}))
                self.next_new_id += 1
            elif roll < 0.35:
                records.append((f"d{self.rng.randrange(self.next_new_id):03d}", None))
            else:
                doc_id = f"d{self.rng.randrange(self.next_new_id):03d}"
                color = self.rng.choice(COLORS)
                records.append((doc_id, {"color": color, "version": self.rng.randrange(99)}))
        return records

    async def run(self, until: float) -> int:
        """Produce batches until the monotonic time `until` and return how many were sent."""
        sent = 0
        while time.monotonic() < until:
            records = self.batch()
            self.model.add(records, await self.app.produce(NS, records))
            sent += 1
            await asyncio.sleep(PRODUCE_EVERY_S)
        return sent


async def test_concurrent_counts_match_cut(app: Harness, test_seed: int) -> None:
    await app.create_topic(NS)
    # Every stamp of CWT, so that a response's stable_as_of maps to exact end offsets.
    stamps: list[Observation] = []
    app.runtime.consistency.on_stamp(
        lambda namespace, observation: stamps.append(observation)
        if namespace == NS
        else None
    )
    model = LogModel()
    first = [(f"d{i:03d}", {"color": COLORS[i % 3], "version": 0}) for i in range(100)]
    model.add(first, await app.produce(NS, first))
    await app.wait_warmed(NS)

    producer = Producer(app, model, test_seed)
    producing = asyncio.create_task(producer.run(time.monotonic() + CONCURRENT_RUN_S))
    responses: list[tuple[str | None, int, int | None, str | None]] = []
    id_responses: list[tuple[list[str], int | None]] = []
    while not producing.done():
        color = random.Random(len(responses)).choice([None, *COLORS])
        counted, header = await count_with_header(
            app, NS, {"source": "cache", "filters": color_filter(color)}
        )
        responses.append((color, counted["count"], counted["stable_as_of"], header))
        if len(responses) % 10 == 0:
            job, ids = await app.ids(NS, {"source": "cache"})
            id_responses.append((ids, job["stable_as_of"]))
        await asyncio.sleep(0.01)
    batches = await producing
    assert batches > 50

    # Let the last stamps be published before mapping responses to cuts.
    await app.wait_warmed(NS)
    cuts_by_ms: dict[int, list[dict[int, int]]] = {}
    for observation in stamps:
        assert observation.watermark_ms is not None
        cuts = cuts_by_ms.setdefault(observation.watermark_ms, [])
        if observation.end_offsets not in cuts:
            cuts.append(observation.end_offsets)

    seen_cuts = {stable_as_of for _, _, stable_as_of, _ in responses}
    assert len(seen_cuts) >= 5, f"CWT advanced only through {sorted(seen_cuts)}"

    for color, count, stable_as_of, header in responses:
        assert stable_as_of is not None
        assert header == str(stable_as_of)
        cuts = cuts_by_ms.get(stable_as_of)
        assert cuts, f"response at {stable_as_of} matches no stamp of CWT"
        # Two stamps can share a millisecond, and then the response equals one of them.
        expected = {len(color_ids(model.state(cut), color)) for cut in cuts}
        assert count in expected, (color, stable_as_of, cuts)
        # On one broker the timestamp form of the cut is the same cut, unless
        # records of the same millisecond straddle it.
        if len(cuts) == 1 and model.state(cuts[0]) != model.state_at_ms(stable_as_of):
            same_ms = [r for r in model.records if r.timestamp_ms == stable_as_of]
            assert any(r.offset >= cuts[0].get(r.partition, 0) for r in same_ms)

    for ids, stable_as_of in id_responses:
        assert stable_as_of is not None
        cuts = cuts_by_ms.get(stable_as_of)
        assert cuts, f"ID scan at {stable_as_of} matches no stamp of CWT"
        assert any(ids == color_ids(model.state(cut), None) for cut in cuts), stable_as_of

"""SnapshotStore on a real RocksDB: builds, entries kept, and counts equal to scans.

Documents are written with the applier's BatchWriter, so the cache contains
the same keys as in production, and cache scans are the oracle.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from consumers.batch import BatchWriter
from consumers.cuts import Observation, Version
from consumers.settings import Settings
from consumers.snapshots import NoCut, NotEligible, SnapshotStore
from consumers.store import Store
from schemas.api import SnapshotConfig
from schemas.filters import compile_filter
from service.cache_scan import scan_cache
from service.progress import Progress

NAMESPACE = "unit"
# Scalars that collide or not under the filter rules: 1 and 1.0, True and 1,
# "1" and 1, null and missing.
VALUES: list[object] = [0, 1, 1.0, 2, 2.5, -0.0, True, False, None, "1", "a", "b", ""]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(tmp_path / "cache")
    yield opened
    opened.close()


def write(
    store: Store,
    documents: Sequence[tuple[str, dict[str, Any] | None]],
    first_offset: int = 0,
    stamp: bool = True,
) -> int:
    """Apply documents at offsets of partition 0 and stamp CWT; return the end."""
    writer = BatchWriter(store, {NAMESPACE: store.warmed(NAMESPACE)})
    offset = first_offset
    for doc_id, attrs in documents:
        value = None if attrs is None else json.dumps(attrs).encode()
        writer.apply(NAMESPACE, doc_id, Version(0, offset, 1000 + offset, value))
        offset += 1
    writer.advance(NAMESPACE, 0, offset)
    if stamp:
        observation = Observation(
            namespace=NAMESPACE,
            watermark_ms=1000 + offset - 1,
            end_offsets={0: offset},
            observed_at_ms=0,
        )
        writer.stamp(NAMESPACE, observation)
    writer.commit()
    return offset


def cache_count(store: Store, filters: Any) -> int:
    result = scan_cache(
        store, NAMESPACE, compile_filter(filters), want_ids=False, progress=Progress()
    )
    return result.count


def random_documents(
    rng: random.Random, count: int
) -> list[tuple[str, dict[str, Any]]]:
    documents = []
    for number in range(count):
        attrs = {
            name: rng.choice(VALUES) for name in ("p", "q", "r") if rng.random() < 0.7
        }
        documents.append((f"d{number}", attrs))
    return documents


def test_build_without_cut_raises(store: Store) -> None:
    snapshots = SnapshotStore(Settings(), store)
    write(store, [("a", {"x": 1})], stamp=False)

    with pytest.raises(NoCut, match="namespace 'unit' has no cache_warmed_through"):
        snapshots.build(NAMESPACE)


def test_counts_equal_cache_scans(store: Store, test_seed: int) -> None:
    seed = test_seed
    rng = random.Random(seed)
    write(store, random_documents(rng, 300))
    snapshots = SnapshotStore(Settings(), store)
    built = snapshots.build(NAMESPACE)
    assert built is not None

    for name in ("p", "q", "r"):
        for value in VALUES:
            filters = [name, "Eq", value]
            hit = snapshots.count(NAMESPACE, compile_filter(filters))
            assert hit.count == cache_count(store, filters), (seed, filters)
    for _ in range(200):
        chosen = [rng.choice(VALUES) for _ in range(rng.randrange(0, 5))]
        filters = [rng.choice(("p", "q", "r")), "In", chosen]
        hit = snapshots.count(NAMESPACE, compile_filter(filters))
        assert hit.count == cache_count(store, filters), (seed, filters)
        assert hit.sha == built.sha
        assert hit.watermark_ms == 1299


def test_count_reads_the_cut_not_newer_writes(store: Store) -> None:
    end = write(store, [("a", {"x": 1}), ("b", {"x": 1})])
    snapshots = SnapshotStore(Settings(), store)
    snapshots.build(NAMESPACE)
    write(store, [("a", {"x": 2}), ("b", None)], first_offset=end, stamp=False)

    rebuilt = snapshots.build(NAMESPACE)
    assert rebuilt is not None
    assert rebuilt.document_count == 2
    assert snapshots.count(NAMESPACE, compile_filter(["x", "Eq", 1])).count == 2


def test_same_content_rewrites_latest(store: Store) -> None:
    end = write(store, [("a", {"x": 1})])
    snapshots = SnapshotStore(Settings(), store)
    first = snapshots.build(NAMESPACE)
    write(store, [("a", {"x": 1.0})], first_offset=end)
    second = snapshots.build(NAMESPACE)

    assert first is not None and second is not None
    assert second.sha == first.sha
    assert second.seq == first.seq == 1
    assert second.watermark_ms == 1001
    assert second.end_offsets == {"0": 2}
    assert [summary.watermark_ms for summary in snapshots.summaries(NAMESPACE)] == [
        1001
    ]


def test_unforced_build_skips_same_cut(store: Store) -> None:
    write(store, [("a", {"x": 1})])
    snapshots = SnapshotStore(Settings(), store)
    assert snapshots.build(NAMESPACE, force=False) is not None

    assert snapshots.build(NAMESPACE, force=False) is None


def test_keeps_latest_entries(store: Store) -> None:
    snapshots = SnapshotStore(Settings(snapshots_kept=3), store)
    end = 0
    for round_number in range(5):
        end = write(store, [("a", {"x": round_number})], first_offset=end)
        snapshots.build(NAMESPACE)

    seqs = [seq for seq, _ in store.view(NAMESPACE).snapshots()]
    assert seqs == [3, 4, 5]
    reopened = SnapshotStore(Settings(snapshots_kept=3), store)
    loaded = reopened.latest(NAMESPACE)
    assert loaded is not None
    assert loaded.snapshot.seq == 5
    assert reopened.count(NAMESPACE, compile_filter(["x", "Eq", 4])).count == 1


def test_config_persists_and_applies(store: Store) -> None:
    write(store, [("a", {"x": 1, "y": "k", "z": 3})])
    snapshots = SnapshotStore(Settings(), store)
    config = SnapshotConfig(include=["x", "y"], exclude=["y"], max_values=5)

    assert snapshots.set_config(NAMESPACE, config) is True
    assert snapshots.set_config(NAMESPACE, config) is False
    assert SnapshotStore(Settings(), store).config(NAMESPACE) == config
    built = snapshots.build(NAMESPACE)
    assert built is not None
    assert [item.name for item in built.fields] == ["x"]
    assert [(item.name, item.reason) for item in built.skipped] == [
        ("y", "excluded"),
        ("z", "excluded"),
    ]
    assert built.max_values == 5


def test_eligibility_reasons(store: Store) -> None:
    snapshots = SnapshotStore(Settings(), store)
    cases: list[tuple[Any, str]] = [
        (None, "not_single_leaf"),
        (["And", [["x", "Eq", 1]]], "not_single_leaf"),
        (["x", "Gte", 1], "operator"),
        (["x", "Eq", 1], "no_snapshot"),
    ]
    for filters, reason in cases:
        with pytest.raises(NotEligible) as caught:
            snapshots.count(NAMESPACE, compile_filter(filters))
        assert caught.value.reason == reason, filters

    write(store, [("a", {"x": 1, "t": [1]})])
    built = snapshots.build(NAMESPACE)
    assert built is not None
    with pytest.raises(NotEligible) as caught:
        snapshots.count(NAMESPACE, compile_filter(["t", "Eq", 1]))
    assert caught.value.reason == "field_skipped"
    assert str(caught.value) == (
        f"field 't' is skipped by the latest snapshot of 'unit' (sha {built.sha[:8]}): "
        "it holds array values; use source auto, cache or origin"
    )
    with pytest.raises(NotEligible) as caught:
        snapshots.count(NAMESPACE, compile_filter(["w", "In", [1]]))
    assert caught.value.reason == "field_absent"

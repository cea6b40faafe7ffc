"""Replay: rebuild the cache of one namespace, or of all, from the log.

The cache is derived data. A replay deletes a namespace's documents,
offsets, cache_warmed_through and snapshots, then applies its topic from the
start. It ends when the applier covers the end offsets observed when the
replay began, and stamps that observation as the new cache_warmed_through.
It cannot run while a server uses the same data directory, because RocksDB
allows one process per database.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from consumers.applier import Applier
from consumers.consistency import Consistency
from consumers.cuts import covers
from consumers.settings import Settings
from consumers.store import (
    DOC,
    GC_MARK,
    OFFSET,
    SNAPSHOT,
    Store,
    new_batch,
    prefix,
    prefix_end,
    warmed_key,
)
from consumers.watermark import WatermarkWatcher

logger = logging.getLogger(__name__)


@dataclass
class ReplayResult:
    namespace: str
    records: int
    elapsed_s: float


def clear_namespace(store: Store, namespace: str) -> None:
    """Delete everything the cache holds for a namespace, in one batch."""
    batch = new_batch()
    for kind in (DOC, GC_MARK, OFFSET, SNAPSHOT):
        start = prefix(kind, namespace)
        batch.delete_range(start, prefix_end(start))
    batch.delete(warmed_key(namespace))
    store.write(batch)


async def replay(
    settings: Settings, namespaces: list[str] | None, *, progress: bool = True
) -> list[ReplayResult]:
    """Rebuild the named namespaces (None: every namespace topic)."""
    store = Store(Path(settings.data_dir) / "cache")
    try:
        consistency = Consistency()
        watcher = WatermarkWatcher(settings, consistency)
        try:
            if namespaces is None:
                namespaces = await watcher.namespaces()
            results = []
            for namespace in namespaces:
                results.append(
                    await _replay_one(
                        settings, store, consistency, watcher, namespace, progress
                    )
                )
            return results
        finally:
            await watcher.close()
    finally:
        store.close()


async def _replay_one(
    settings: Settings,
    store: Store,
    consistency: Consistency,
    watcher: WatermarkWatcher,
    namespace: str,
    progress: bool,
) -> ReplayResult:
    started = time.monotonic()
    target = await watcher.observe(namespace)
    total = sum(target.end_offsets.values())
    logger.info(
        "replaying %s: clearing its cache, then applying up to end offsets %s",
        namespace,
        target.end_offsets,
    )
    await asyncio.to_thread(clear_namespace, store, namespace)
    consistency.add_target(target)

    applier = Applier(settings, store, consistency, only=namespace, group_id=None)
    task = asyncio.create_task(applier.apply_routine())
    bar = tqdm(total=total, unit="records", desc=namespace, disable=not progress)
    try:
        state = consistency.state(namespace)
        while state.warmed is None or not covers(
            state.warmed.end_offsets, target.end_offsets
        ):
            if task.done():
                task.result()
            await asyncio.sleep(0.1)
            bar.n = min(total, sum(state.next_offsets.values()))
            bar.refresh()
        bar.n = total
        bar.refresh()
    finally:
        bar.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    elapsed = time.monotonic() - started
    logger.info("replayed %s: %d records in %.1fs", namespace, total, elapsed)
    return ReplayResult(namespace, total, elapsed)

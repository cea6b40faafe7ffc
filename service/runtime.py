"""The long-lived parts of one hevlayer process and their background tasks.

`hevlayer serve` runs the HTTP server, the applier and the watermark watcher
on one event loop; CPU-heavy work (cache scans, applier batches) runs in
worker threads.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Final

from consumers.applier import Applier
from consumers.consistency import Consistency
from consumers.settings import Settings
from consumers.snapshot_scheduler import SnapshotScheduler
from consumers.snapshots import SnapshotStore
from consumers.store import Store
from consumers.watermark import WatermarkWatcher
from service.engine import ScanEngine
from service.jobs import JobRegistry

logger = logging.getLogger(__name__)

CLOSE_STEP_TIMEOUT_S: Final = 15.0


class Runtime:
    """Store, consistency state, applier, watcher, engine and jobs of a process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = Store(Path(settings.data_dir) / "cache")
        self.consistency = Consistency()
        self.consistency.restore(self.store.all_warmed(), self.store.all_next_offsets())
        self.applier = Applier(settings, self.store, self.consistency)
        self.watcher = WatermarkWatcher(settings, self.consistency)
        self.snapshots = SnapshotStore(settings, self.store)
        self.snapshot_scheduler = SnapshotScheduler(
            settings, self.snapshots, self.consistency
        )
        self.consistency.on_stamp(self.snapshot_scheduler.on_stamp)
        self.engine = ScanEngine(
            settings, self.store, self.consistency, self.watcher, self.snapshots
        )
        self.jobs = JobRegistry(settings.job_ttl_s, settings.max_jobs_per_namespace)
        self._applier_task: asyncio.Task[None] | None = None
        self._watcher_task: asyncio.Task[None] | None = None
        self._janitor_task: asyncio.Task[None] | None = None

    @property
    def applier_running(self) -> bool:
        return self._applier_task is not None and not self._applier_task.done()

    @property
    def watcher_running(self) -> bool:
        return self._watcher_task is not None and not self._watcher_task.done()

    async def start(self) -> None:
        """Start the applier, the watcher and the job janitor."""
        self.start_applier()
        self.start_watcher()
        self._janitor_task = asyncio.create_task(self._janitor_routine(), name="janitor")
        self.snapshot_scheduler.start()
        logger.info(
            "hevlayer runtime started: brokers %s, cache %s",
            self.settings.bootstrap_servers,
            self.store.path,
        )

    def start_applier(self) -> None:
        if not self.applier_running:
            self._applier_task = asyncio.create_task(
                self.applier.apply_routine(), name="applier"
            )

    def start_watcher(self) -> None:
        if not self.watcher_running:
            self._watcher_task = asyncio.create_task(
                self.watcher.watch_routine(), name="watcher"
            )

    async def stop_applier(self) -> None:
        await _cancel(self._applier_task)
        self._applier_task = None

    async def stop_watcher(self) -> None:
        await _cancel(self._watcher_task)
        self._watcher_task = None

    async def _janitor_routine(self) -> None:
        while True:
            await asyncio.sleep(min(30.0, self.settings.job_ttl_s))
            self.jobs.expire()

    async def close(self) -> None:
        """Stop every background task, then close the database.

        Each step is bounded, so one stuck client cannot keep the process from
        exiting; a step that overruns is logged and the shutdown goes on.
        """
        steps = [
            ("applier", self.stop_applier()),
            ("scan jobs", self.jobs.close()),
            ("job janitor", _cancel(self._janitor_task)),
            ("watcher", self.stop_watcher()),
            ("watcher clients", self.watcher.close()),
            ("snapshot scheduler", self.snapshot_scheduler.close()),
        ]
        for name, step in steps:
            try:
                await asyncio.wait_for(step, CLOSE_STEP_TIMEOUT_S)
            except TimeoutError:
                logger.error(
                    "stopping the %s took over %.0fs; going on with shutdown",
                    name,
                    CLOSE_STEP_TIMEOUT_S,
                )
        self.store.close()
        logger.info("hevlayer runtime stopped")


async def _cancel(task: asyncio.Task[None] | None) -> None:
    """Cancel a background task and wait until it has ended.

    The cancellation is repeated each second: in Python 3.11 a cancellation
    that lands just as an `asyncio.timeout` block expires can be swallowed,
    and a single cancel() would then leave shutdown waiting forever.
    """
    if task is None:
        return
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=1.0)
    if not task.cancelled() and task.exception() is not None:
        logger.error("background task %s had failed: %r", task.get_name(), task.exception())

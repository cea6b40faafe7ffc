"""Automatic and requested snapshot builds, run in worker threads.

Every stamp of cache_warmed_through requests a build of its namespace unless
the latest snapshot already has the stamped cut. Requests coalesce: each
namespace has at most one pending build routine, which starts a build no
sooner than `Settings.snapshot_interval_s` after the previous automatic one
started, and builds again if more stamps arrived while it ran. A build
forced by a configuration change skips that wait. Builds requested through
the API run at once. `close` waits for running builds, because they read
the database that the runtime closes next.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from consumers.consistency import Consistency
from consumers.cuts import Observation
from consumers.settings import Settings
from consumers.snapshot_content import BuildCancelled
from consumers.snapshots import NoCut, SnapshotStore
from schemas.api import Snapshot

logger = logging.getLogger(__name__)


class SnapshotScheduler:
    """Builds of snapshots after the cache advances and on request.

    Automatic builds of one namespace start at most once per interval.
    """

    def __init__(
        self, settings: Settings, snapshots: SnapshotStore, consistency: Consistency
    ) -> None:
        self._interval_s = settings.snapshot_interval_s
        self._snapshots = snapshots
        self._consistency = consistency
        # Namespace -> its pending build routine.
        self._routines: dict[str, asyncio.Task[None]] = {}
        # Namespaces with a build requested and not yet started.
        self._dirty: set[str] = set()
        self._forced: set[str] = set()
        self._wake: dict[str, asyncio.Event] = {}
        # Namespace -> loop time at which its last automatic build started.
        self._last_started: dict[str, float] = {}
        self._running: set[asyncio.Future[Any]] = set()
        self._stopping = threading.Event()

    def start(self) -> None:
        """Request a build of every namespace with a CWT whose snapshot may lag.

        A build finds nothing to do when the latest snapshot has the CWT's cut.
        """
        for namespace in self._consistency.namespaces():
            if self._consistency.state(namespace).warmed is not None:
                self.request(namespace)

    def on_stamp(self, namespace: str, observation: Observation) -> None:
        """Request a build after a stamp of CWT (a Consistency listener)."""
        if self._snapshots.cached_cut(namespace) == observation.end_offsets:
            return
        self.request(namespace)

    def request(self, namespace: str, *, force: bool = False) -> None:
        """Schedule a build of a namespace; `force` builds even at an unchanged cut."""
        if self._stopping.is_set():
            return
        self._dirty.add(namespace)
        if force:
            self._forced.add(namespace)
            self._wake.setdefault(namespace, asyncio.Event()).set()
        if namespace not in self._routines:
            self._routines[namespace] = asyncio.create_task(
                self._build_routine(namespace), name=f"snapshot-{namespace}"
            )

    async def build_now(self, namespace: str) -> Snapshot:
        """Build a snapshot now; raise NoCut when the namespace has no CWT."""
        snapshot = await self._run(namespace, force=True)
        assert snapshot is not None
        return snapshot

    async def close(self) -> None:
        """Cancel pending builds and wait for the running ones to stop."""
        self._stopping.set()
        routines = list(self._routines.values())
        for routine in routines:
            routine.cancel()
        await asyncio.gather(*routines, return_exceptions=True)
        await asyncio.gather(*self._running, return_exceptions=True)

    async def _build_routine(self, namespace: str) -> None:
        loop = asyncio.get_running_loop()
        try:
            while namespace in self._dirty:
                await self._wait_turn(namespace)
                force = namespace in self._forced
                self._dirty.discard(namespace)
                self._forced.discard(namespace)
                self._last_started[namespace] = loop.time()
                await self._build_logged(namespace, force)
        finally:
            self._routines.pop(namespace, None)

    async def _wait_turn(self, namespace: str) -> None:
        """Sleep until the interval since the last build passed, or a forced request."""
        loop = asyncio.get_running_loop()
        wake = self._wake.setdefault(namespace, asyncio.Event())
        last = self._last_started.get(namespace)
        while last is not None and namespace not in self._forced:
            remaining = last + self._interval_s - loop.time()
            if remaining <= 0:
                break
            wake.clear()
            try:
                await asyncio.wait_for(wake.wait(), remaining)
            except TimeoutError:
                break
        wake.clear()

    async def _build_logged(self, namespace: str, force: bool) -> None:
        try:
            await self._run(namespace, force=force)
        except NoCut as exc:
            logger.debug("no automatic snapshot of %s: %s", namespace, exc)
        except BuildCancelled:
            logger.info("snapshot build of %s stopped for shutdown", namespace)
        except Exception:
            # A failed build must not end the routine: the next stamp retries.
            logger.exception("automatic snapshot build of %s failed", namespace)

    async def _run(self, namespace: str, *, force: bool) -> Snapshot | None:
        """Run one build in a worker thread that `close` waits for."""
        build = asyncio.ensure_future(
            asyncio.to_thread(
                self._snapshots.build, namespace, force=force, stopping=self._stopping
            )
        )
        self._running.add(build)
        build.add_done_callback(self._running.discard)
        return await asyncio.shield(build)

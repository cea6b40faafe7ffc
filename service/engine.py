"""The scan engine: picks the source of a scan and runs it.

Sources: `snapshot` (counts only), `cache` (the RocksDB view at its stable
cut), `origin` (the log itself) and `auto`, which applies the auto-mode
policy. A strong read observes the watermark now, waits for the cache to be
warmed through it, and falls back to origin when the wait times out.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Final, Literal

from aiokafka.errors import KafkaError

from consumers.consistency import Consistency
from consumers.cuts import Observation
from consumers.settings import Settings
from consumers.snapshots import NotEligible, SnapshotStore
from consumers.store import Store
from consumers.watermark import NoTopic, WatermarkWatcher
from schemas.api import CountResponse, ScanRequest
from schemas.filters import Filter
from service.cache_scan import CacheScanResult, scan_cache
from service.errors import NotFound, PreconditionFailed, Unavailable, ValidationFailed
from service.origin import OriginScanResult, OriginUnavailable, scan_origin
from service.policy import choose_source
from service.progress import Progress

logger = logging.getLogger(__name__)

COUNT_TIMEOUT_S: Final = 30.0
IDS_TIMEOUT_S: Final = 600.0
# Share of a strong read's timeout spent waiting for the cache before origin.
STRONG_WAIT_SHARE: Final = 0.5

Effective = Literal["cache", "origin", "snapshot"]


@dataclass
class Plan:
    """The source of a scan, decided before it starts."""

    source: Effective
    # Observation an origin scan reads up to (None for cache and snapshot).
    observation: Observation | None = None


@dataclass
class IdsOutcome:
    ids: list[str]
    stable_as_of: int | None = None
    watermark_ms: int | None = None


def is_strong(request: ScanRequest) -> bool:
    return request.consistency is not None and request.consistency.level == "strong"


class ScanEngine:
    """Run count scans and ID scans over one process's cache and log."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        consistency: Consistency,
        watcher: WatermarkWatcher,
        snapshots: SnapshotStore,
    ) -> None:
        self._settings = settings
        self._store = store
        self._consistency = consistency
        self._watcher = watcher
        self._snapshots = snapshots
        # Namespace -> documents seen by its last complete cache scan, which
        # lets the next scan estimate its progress.
        self._last_document_count: dict[str, int] = {}

    # -- planning ---------------------------------------------------------

    async def plan(
        self, namespace: str, request: ScanRequest, predicate: Filter, timeout_s: float
    ) -> Plan:
        """Decide the source of a live (non-snapshot) scan; observe for origin."""
        source = request.source
        strong = is_strong(request)
        if source == "origin":
            return Plan("origin", await self.observe(namespace, timeout_s))
        if strong:
            return await self._plan_strong(namespace, timeout_s)
        if source == "cache":
            return Plan("cache")

        view = self._store.view(namespace)
        state = self._consistency.state(namespace)
        decision = choose_source(view.populated, view.warmed, state.watermark)
        if decision.start_warm:
            self._consistency.start_warm(namespace)
        if decision.source == "origin":
            return Plan("origin", await self.observe(namespace, timeout_s))
        return Plan("cache")

    async def _plan_strong(self, namespace: str, timeout_s: float) -> Plan:
        target = await self.observe(namespace, timeout_s)
        if await self._consistency.wait_warmed(target, timeout_s * STRONG_WAIT_SHARE):
            return Plan("cache")
        logger.info(
            "strong read of %s: cache not warmed through %s in time, reading origin",
            namespace,
            target.end_offsets,
        )
        return Plan("origin", target)

    async def observe(self, namespace: str, timeout_s: float) -> Observation:
        """Observe a namespace's watermark now, mapping failures to API errors."""
        try:
            async with asyncio.timeout(timeout_s):
                return await self._watcher.observe(namespace)
        except NoTopic:
            raise NotFound(
                f"namespace {namespace!r} does not exist: no topic "
                f"{self._settings.topic_for(namespace)!r}; produce to it or run "
                "`hevlayer load`"
            ) from None
        except TimeoutError:
            latest = self._consistency.state(namespace).watermark
            if self._watcher.last_observation_ok and latest is not None:
                # The broker responded to the watcher a moment ago, so the
                # deadline is too short rather than the broker gone. The latest observation
                # is an equally valid cut to read up to.
                logger.info(
                    "observing %s timed out after %.3fs; reading up to the latest "
                    "observation %s",
                    namespace,
                    timeout_s,
                    latest.end_offsets,
                )
                return latest
            raise Unavailable(
                f"Kafka at {self._settings.bootstrap_servers} did not respond within "
                f"{timeout_s:g}s; cache and snapshot reads still work, retry origin "
                "later or with a longer timeout_seconds"
            ) from None
        except (KafkaError, OSError) as exc:
            raise Unavailable(
                f"Kafka at {self._settings.bootstrap_servers} is unreachable "
                f"({exc!r}); cache and snapshot reads still work, retry origin later"
            ) from None

    # -- counts -----------------------------------------------------------

    async def count(
        self, namespace: str, request: ScanRequest, predicate: Filter
    ) -> CountResponse:
        """Run a count-mode scan and build its response."""
        started = time.perf_counter()
        timeout_s = request.timeout_seconds or COUNT_TIMEOUT_S

        strong = is_strong(request)
        if request.source == "snapshot" and strong:
            raise ValidationFailed(
                "a strong read needs the cache or origin; a snapshot may lag the "
                "watermark. Use source auto, cache or origin",
                field="consistency",
            )
        if request.source in ("snapshot", "auto") and not strong:
            try:
                hit = await asyncio.to_thread(self._snapshots.count, namespace, predicate)
            except NotEligible as exc:
                if request.source == "snapshot":
                    raise PreconditionFailed(str(exc), reason=exc.reason) from None
            else:
                return CountResponse(
                    count=hit.count,
                    served_by="snapshot",
                    snapshot_sha=hit.sha[:8],
                    watermark_ms=hit.watermark_ms,
                    elapsed_ms=_elapsed_ms(started),
                )

        deadline = time.monotonic() + timeout_s
        plan = await self.plan(namespace, request, predicate, timeout_s)
        remaining = max(0.001, deadline - time.monotonic())
        if plan.source == "cache":
            result = await self._cache(namespace, predicate, False, Progress(), remaining)
            return CountResponse(
                count=result.count,
                served_by="cache",
                stable_as_of=result.stable_as_of,
                bounded=result.stopped,
                timed_out=result.stopped,
                elapsed_ms=_elapsed_ms(started),
            )
        assert plan.observation is not None
        origin = await self._origin(plan.observation, request, predicate, False, Progress(), remaining)
        return CountResponse(
            count=origin.count,
            served_by="origin",
            bounded=origin.bounded,
            timed_out=origin.timed_out,
            shards_saturated=origin.shards_saturated,
            shards_total=origin.shards_total,
            elapsed_ms=_elapsed_ms(started),
        )

    # -- ID scans ---------------------------------------------------------

    async def ids(
        self,
        namespace: str,
        plan: Plan,
        request: ScanRequest,
        predicate: Filter,
        progress: Progress,
    ) -> IdsOutcome:
        """Run an ID scan planned by `plan`; the job runner calls this."""
        timeout_s = request.timeout_seconds or IDS_TIMEOUT_S
        if plan.source == "cache":
            result = await self._cache(namespace, predicate, True, progress, timeout_s)
            if result.stopped:
                raise TimeoutError(f"cache scan did not finish within {timeout_s}s")
            return IdsOutcome(result.ids, stable_as_of=result.stable_as_of)
        assert plan.observation is not None
        origin = await self._origin(plan.observation, request, predicate, True, progress, timeout_s)
        if origin.timed_out:
            raise TimeoutError(
                f"origin scan did not finish within {timeout_s}s "
                f"({origin.shards_saturated} of {origin.shards_total} partitions unread)"
            )
        return IdsOutcome(origin.ids, watermark_ms=plan.observation.watermark_ms)

    # -- runners ----------------------------------------------------------

    async def _cache(
        self,
        namespace: str,
        predicate: Filter,
        want_ids: bool,
        progress: Progress,
        timeout_s: float,
    ) -> CacheScanResult:
        expected = self._last_document_count.get(namespace)
        task = asyncio.ensure_future(
            asyncio.to_thread(
                scan_cache,
                self._store,
                namespace,
                predicate,
                want_ids=want_ids,
                progress=progress,
                expected_documents=expected,
            )
        )
        try:
            result = await asyncio.wait_for(asyncio.shield(task), timeout_s)
        except TimeoutError:
            progress.cancel.set()
            result = await task
        except asyncio.CancelledError:
            progress.cancel.set()
            raise
        if not result.stopped:
            self._last_document_count[namespace] = progress.documents_scanned
        return result

    async def _origin(
        self,
        observation: Observation,
        request: ScanRequest,
        predicate: Filter,
        want_ids: bool,
        progress: Progress,
        timeout_s: float,
    ) -> OriginScanResult:
        try:
            return await scan_origin(
                self._settings,
                observation,
                predicate,
                want_ids=want_ids,
                threads=request.threads,
                page_size=request.page_size,
                timeout_s=timeout_s,
                progress=progress,
                broker_reachable=self._watcher.last_observation_ok is True,
            )
        except OriginUnavailable as exc:
            raise Unavailable(
                f"origin scan of {observation.namespace!r} failed: {exc}; cache and "
                "snapshot reads still work"
            ) from None


def _elapsed_ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)

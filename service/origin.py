"""Origin scans: read a namespace's topic directly and evaluate a filter.

Each partition is read from its log start to the end offset of the
observation taken when the scan started. The latest valid record per id
wins: a tombstone deletes, and a bad record is skipped as the applier skips
it.
`threads` partitions are read at once, each by its own consumer, fetching
`page_size` records per request. A partition not finished by the deadline is
saturated: counts then cover the finished partitions only, which makes them
a lower bound, because every version of an id lives in one partition.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Final

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from consumers.clients import stop_client
from consumers.cuts import Observation, Version, supersedes
from consumers.settings import Settings
from schemas.filters import Filter
from schemas.record import UPSERTED_AT, BadRecord, decode_record
from service.progress import Progress

logger = logging.getLogger(__name__)

FETCH_TIMEOUT_MS: Final = 500
# A short broker-side fetch wait keeps a reader's switch to its next partition
# cheap. NOTE: unsubscribing between partitions would avoid the wait too, but
# with aiokafka 0.14 it made the consumer's stop() hang until the deadline.
FETCH_MAX_WAIT_MS: Final = 100


class OriginUnavailable(RuntimeError):
    """The broker could not be reached before any partition was read."""


@dataclass
class OriginScanResult:
    count: int
    shards_total: int
    shards_saturated: int
    timed_out: bool
    documents_scanned: int
    ids: list[str] = field(default_factory=list)

    @property
    def bounded(self) -> bool:
        """Whether the count is a lower bound rather than exact."""
        return self.shards_saturated > 0


# Per id: the winning version's position and whether it matched (None: deleted).
Latest = dict[bytes, tuple[Version, bool | None]]


def fold_records(records: list[ConsumerRecord], latest: Latest, predicate: Filter) -> int:
    """Fold records of one partition into `latest`; return documents evaluated."""
    evaluated = 0
    for record in records:
        try:
            doc_id, attrs = decode_record(record.key, record.value)
        except BadRecord:
            continue
        version = Version(record.partition, record.offset, record.timestamp, None)
        if attrs is None:
            latest[record.key] = (version, None)
            continue
        attrs[UPSERTED_AT] = record.timestamp
        latest[record.key] = (version, predicate.matches(doc_id, attrs))
        evaluated += 1
    return evaluated


def merge_partitions(partitions: list[Latest]) -> dict[bytes, bool | None]:
    """Merge per-partition results; an id in two partitions keeps the newer version."""
    if len(partitions) == 1:
        return {key: matched for key, (_, matched) in partitions[0].items()}
    merged: dict[bytes, tuple[Version, bool | None]] = {}
    for latest in partitions:
        for key, entry in latest.items():
            current = merged.get(key)
            if current is None or supersedes(entry[0], current[0]):
                merged[key] = entry
    return {key: matched for key, (_, matched) in merged.items()}


class OriginScan:
    """One origin scan of one namespace at one observation."""

    def __init__(
        self,
        settings: Settings,
        observation: Observation,
        predicate: Filter,
        *,
        threads: int | None,
        page_size: int,
        progress: Progress,
    ) -> None:
        self._settings = settings
        self._observation = observation
        self._predicate = predicate
        self._page_size = page_size
        self._progress = progress
        self._topic = settings.topic_for(observation.namespace)
        self._pending = deque(
            p for p, end in sorted(observation.end_offsets.items()) if end > 0
        )
        self._threads = min(threads or len(self._pending), len(self._pending))
        self._finished: dict[int, Latest] = {
            p: {} for p, end in observation.end_offsets.items() if end == 0
        }
        # Records to read, counting from offset 0; log starts above 0 are
        # credited as read when a partition starts.
        self._total_records = sum(observation.end_offsets.values())
        self._records_read = 0
        self._connected = False

    async def run(
        self, timeout_s: float, *, want_ids: bool, broker_reachable: bool = False
    ) -> OriginScanResult:
        """Scan until done or until `timeout_s` passes; see the module docstring.

        A deadline that passes before any reader connects means an unreachable
        broker. When `broker_reachable` is set because the broker responded
        just before, every partition is reported saturated instead.
        """
        workers = [asyncio.create_task(self._worker()) for _ in range(self._threads)]
        timed_out = False
        if workers:
            done, running = await asyncio.wait(workers, timeout=timeout_s)
            timed_out = bool(running)
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            errors = [
                t.exception()
                for t in done
                if not t.cancelled() and t.exception() is not None
            ]
            if errors and not self._connected:
                raise OriginUnavailable(f"broker unreachable: {errors[0]!r}")
            if errors:
                logger.warning(
                    "origin scan of %s lost %d reader(s): %r",
                    self._observation.namespace,
                    len(errors),
                    errors[0],
                )
        if timed_out and not self._connected and not broker_reachable:
            raise OriginUnavailable(
                f"broker did not respond within the scan's timeout of {timeout_s}s"
            )
        return self._result(timed_out, want_ids)

    def _result(self, timed_out: bool, want_ids: bool) -> OriginScanResult:
        merged = merge_partitions(list(self._finished.values()))
        matched = sorted(key for key, hit in merged.items() if hit)
        self._progress.fraction = 1.0 if not timed_out else self._progress.fraction
        result = OriginScanResult(
            count=len(matched),
            shards_total=len(self._observation.end_offsets),
            shards_saturated=len(self._observation.end_offsets) - len(self._finished),
            timed_out=timed_out,
            documents_scanned=self._progress.documents_scanned,
        )
        if want_ids:
            result.ids = sorted(key.decode() for key in matched)
        return result

    async def _worker(self) -> None:
        # Claim a partition before connecting, so a reader that starts late
        # finds nothing left and never starts a consumer it would stop at once.
        if not self._pending:
            return
        partition = self._pending.popleft()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._settings.bootstrap_servers,
            client_id="hevlayer-origin",
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            max_poll_records=self._page_size,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        )
        try:
            await consumer.start()
            self._connected = True
            while True:
                self._finished[partition] = await self._read(consumer, partition)
                if not self._pending:
                    return
                partition = self._pending.popleft()
        finally:
            await stop_client(consumer, "origin consumer")

    async def _read(self, consumer: AIOKafkaConsumer, partition: int) -> Latest:
        tp = TopicPartition(self._topic, partition)
        end = self._observation.end_offsets[partition]
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        self._records_read += min(end, await consumer.position(tp))
        latest: Latest = {}
        while (position := await consumer.position(tp)) < end:
            batch = await consumer.getmany(
                tp, timeout_ms=FETCH_TIMEOUT_MS, max_records=self._page_size
            )
            records = [r for r in batch.get(tp, []) if r.offset < end]
            if records:
                evaluated = await asyncio.to_thread(
                    fold_records, records, latest, self._predicate
                )
                self._progress.documents_scanned += evaluated
            self._records_read += (await consumer.position(tp)) - position
            if self._total_records:
                self._progress.fraction = min(0.99, self._records_read / self._total_records)
        return latest


async def scan_origin(
    settings: Settings,
    observation: Observation,
    predicate: Filter,
    *,
    want_ids: bool,
    threads: int | None,
    page_size: int,
    timeout_s: float,
    progress: Progress,
    broker_reachable: bool = False,
) -> OriginScanResult:
    """Run one origin scan; raise OriginUnavailable when the broker is unreachable."""
    scan = OriginScan(
        settings,
        observation,
        predicate,
        threads=threads,
        page_size=page_size,
        progress=progress,
    )
    try:
        return await scan.run(
            timeout_s, want_ids=want_ids, broker_reachable=broker_reachable
        )
    except KafkaError as exc:
        raise OriginUnavailable(f"broker error: {exc!r}") from exc

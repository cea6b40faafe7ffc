"""The cache applier: reads every namespace topic and applies it to RocksDB.

The applier assigns itself every partition of every namespace topic (no
consumer group membership, so several processes with their own caches each
read everything) and seeks each to the next offset stored with the cache.
Each batch of records becomes one atomic RocksDB write holding the document
changes, the next offset of every partition it moved and any stamp of
cache_warmed_through. Kafka committed offsets are written afterwards, for lag
monitoring only.

Next offsets come from the consumer's position after a fetch, not from the
last record: with read_committed, control records and aborted transactions
advance the position without yielding records, and a partition emptied by
retention starts at its log start offset. Either way it counts as applied.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from consumers import metrics
from consumers.batch import ApplyOutcome, BatchWriter
from consumers.clients import stop_client
from consumers.consistency import Consistency
from consumers.cuts import Observation, Version, covers
from consumers.settings import Settings
from consumers.store import Store
from consumers.topics import (
    CreateTimeTopic,
    admin_client,
    check_timestamp_type,
    ensure_dead_letter_topic,
    namespace_partitions,
)
from schemas.record import BadRecord, decode_record

logger = logging.getLogger(__name__)

MAX_RECORDS_PER_BATCH: Final = 5000
FETCH_TIMEOUT_MS: Final = 200
RETRY_BACKOFF_S: Final = (0.2, 0.5, 1.0, 2.0, 5.0)
LAG_COMMIT_INTERVAL_S: Final = 5.0


@dataclass(frozen=True)
class NamespacePlan:
    """The consistency state one batch works from, copied on the event loop."""

    warmed: Observation | None
    next_offsets: dict[int, int]
    targets: list[Observation]


@dataclass(frozen=True)
class BadRecordReport:
    """A record skipped by the applier, with enough to find and replay it."""

    record: ConsumerRecord
    namespace: str
    reason: str


class Applier:
    """Apply every namespace topic of the configured prefix to the store.

    `only` limits it to one namespace (used by replay).
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        consistency: Consistency,
        *,
        only: str | None = None,
        group_id: str | None = "hevlayer-applier",
    ) -> None:
        self._settings = settings
        self._store = store
        self._consistency = consistency
        self._only = only
        self._group_id = group_id
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._assigned: set[TopicPartition] = set()
        self._refused: dict[str, str] = {}
        self._last_refresh = 0.0
        self._last_lag_commit = 0.0
        self._refresh_requested = asyncio.Event()
        self.batches_applied = 0

    def request_refresh(self) -> None:
        """Look for new topics and partitions at the next iteration."""
        self._refresh_requested.set()

    async def apply_routine(self) -> None:
        """Run until cancelled: fetch, apply, commit; retry with backoff on errors."""
        logger.info(
            "applier starting on %s (prefix %r, only=%s)",
            self._settings.bootstrap_servers,
            self._settings.topic_prefix,
            self._only,
        )
        failures = 0
        try:
            while True:
                try:
                    await self._ensure_clients()
                    await self.step()
                    failures = 0
                except Exception as exc:
                    # Kafka and disk errors are expected here. Anything else is a
                    # bug: it is logged with its traceback and retried all the
                    # same, so one poisoned batch cannot stop the applier.
                    delay = RETRY_BACKOFF_S[min(failures, len(RETRY_BACKOFF_S) - 1)]
                    failures += 1
                    metrics.APPLIER_RETRIES.inc()
                    logger.error(
                        "applier batch failed (attempt %d), retrying in %.1fs: %r",
                        failures,
                        delay,
                        exc,
                        exc_info=not isinstance(exc, (KafkaError, OSError)),
                    )
                    await self._reset_after_failure()
                    await asyncio.sleep(delay)
        finally:
            await self._close_clients()
            logger.info("applier stopped after %d batches", self.batches_applied)

    async def _ensure_clients(self) -> None:
        if self._consumer is not None:
            return
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._settings.bootstrap_servers,
            client_id="hevlayer-applier",
            group_id=self._group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_partition_fetch_bytes=4 * 1024 * 1024,
            metadata_max_age_ms=int(self._settings.topic_refresh_s * 1000),
        )
        producer = AIOKafkaProducer(
            bootstrap_servers=self._settings.bootstrap_servers,
            client_id="hevlayer-deadletter",
            acks="all",
            enable_idempotence=True,
        )
        admin = admin_client(self._settings)
        try:
            await consumer.start()
            await producer.start()
            await admin.start()
            await ensure_dead_letter_topic(admin, self._settings)
        except BaseException:
            await stop_client(consumer, "applier consumer")
            await stop_client(producer, "dead-letter producer")
            await admin.close()
            raise
        self._consumer, self._producer, self._admin = consumer, producer, admin
        self._assigned = set()
        self._last_refresh = 0.0

    async def _close_clients(self) -> None:
        consumer, producer, admin = self._consumer, self._producer, self._admin
        self._consumer = self._producer = self._admin = None
        if consumer is not None:
            await stop_client(consumer, "applier consumer")
        if producer is not None:
            await stop_client(producer, "dead-letter producer")
        if admin is not None:
            await admin.close()

    async def _reset_after_failure(self) -> None:
        """Drop the clients so the next attempt reconnects and re-seeks."""
        try:
            await self._close_clients()
        except (KafkaError, OSError) as exc:
            logger.warning("closing Kafka clients after a failure failed: %r", exc)

    async def step(self) -> ApplyOutcome:
        """Fetch one batch and apply it; stamp due warm targets even when idle."""
        assert self._consumer is not None
        await self._refresh_assignment()
        if not self._assigned:
            await self._stamp_due_targets()
            await asyncio.sleep(FETCH_TIMEOUT_MS / 1000)
            return ApplyOutcome()

        fetched = await self._consumer.getmany(
            timeout_ms=FETCH_TIMEOUT_MS, max_records=MAX_RECORDS_PER_BATCH
        )
        positions = {tp: await self._consumer.position(tp) for tp in self._assigned}
        records = [record for batch in fetched.values() for record in batch]
        decoded, bad = await asyncio.to_thread(self._decode, records)
        if bad:
            await self._dead_letter(bad)

        plans = self._plan({namespace for namespace, _, _ in decoded})
        outcome = await self._write_and_publish(decoded, positions, plans)
        await self._commit_lag_offsets()
        return outcome

    async def _stamp_due_targets(self) -> None:
        await self._write_and_publish([], {}, self._plan(set()))

    async def _write_and_publish(
        self,
        decoded: list[tuple[str, str, Version]],
        positions: dict[TopicPartition, int],
        plans: dict[str, NamespacePlan],
    ) -> ApplyOutcome:
        """Commit a batch in a worker thread and publish it, even when cancelled.

        Cancelling the await does not stop the thread, which may still commit
        the batch. Publishing it anyway keeps the in-memory offsets equal to
        the stored ones, so a restarted applier does not read records again.
        """
        write = asyncio.ensure_future(
            asyncio.to_thread(self._write, decoded, positions, plans)
        )
        try:
            outcome = await asyncio.shield(write)
        except asyncio.CancelledError:
            outcome = await write
            self._publish(outcome)
            raise
        self._publish(outcome)
        return outcome

    def _namespace(self, topic: str) -> str | None:
        namespace = self._settings.namespace_of(topic)
        if namespace is None or (self._only is not None and namespace != self._only):
            return None
        return namespace

    async def _refresh_assignment(self) -> None:
        """Assign every partition of every namespace topic, seeking new ones."""
        assert self._consumer is not None
        now = time.monotonic()
        due = now - self._last_refresh >= self._settings.topic_refresh_s
        if not due and not self._refresh_requested.is_set():
            return
        self._refresh_requested.clear()
        self._last_refresh = now

        assert self._admin is not None
        topics = await namespace_partitions(self._admin, self._settings, self._only)
        assignment: set[TopicPartition] = set()
        for topic, partitions in topics.items():
            namespace = self._namespace(topic)
            if namespace is None or not await self._accepts(topic, namespace):
                continue
            assignment.update(TopicPartition(topic, p) for p in partitions)
        if assignment == self._assigned:
            return

        self._consumer.assign(sorted(assignment))
        for tp in sorted(assignment):
            namespace = self._namespace(tp.topic)
            assert namespace is not None
            stored = self._consistency.state(namespace).next_offsets.get(tp.partition)
            if stored is None:
                await self._consumer.seek_to_beginning(tp)
            else:
                self._consumer.seek(tp, stored)
        added = assignment - self._assigned
        self._assigned = assignment
        logger.info(
            "applier assigned %d partitions (%d new: %s)",
            len(assignment),
            len(added),
            ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(added)),
        )

    async def _accepts(self, topic: str, namespace: str) -> bool:
        """Check a topic's timestamp type once; reject CreateTime without the opt-in."""
        if any(tp.topic == topic for tp in self._assigned):
            return True
        # Rejected topics are checked again at every refresh, so switching one
        # to LogAppendTime takes effect without a restart.
        assert self._admin is not None
        state = self._consistency.state(namespace)
        try:
            await check_timestamp_type(self._admin, self._settings, topic)
        except CreateTimeTopic as exc:
            if topic not in self._refused:
                logger.error("applier rejected topic %s: %s", topic, exc)
            self._refused[topic] = str(exc)
            state.topic_error = str(exc)
            return False
        if self._refused.pop(topic, None) is not None:
            logger.info("applier accepts topic %s now that it uses LogAppendTime", topic)
        state.topic_error = None
        return True

    def _decode(
        self, records: Sequence[ConsumerRecord]
    ) -> tuple[list[tuple[str, str, Version]], list[BadRecordReport]]:
        """Validate records into (namespace, id, version); split off bad ones."""
        decoded: list[tuple[str, str, Version]] = []
        bad: list[BadRecordReport] = []
        for record in records:
            namespace = self._namespace(record.topic)
            if namespace is None:
                continue
            try:
                doc_id, _ = decode_record(record.key, record.value)
            except BadRecord as exc:
                bad.append(BadRecordReport(record, namespace, str(exc)))
                continue
            version = Version(record.partition, record.offset, record.timestamp, record.value)
            decoded.append((namespace, doc_id, version))
        return decoded, bad

    async def _dead_letter(self, bad: list[BadRecordReport]) -> None:
        """Copy bad records to the dead-letter topic; raise if any send fails."""
        assert self._producer is not None
        sends = []
        for report in bad:
            record = report.record
            logger.warning(
                "skipping bad record topic=%s partition=%d offset=%d: %s",
                record.topic,
                record.partition,
                record.offset,
                report.reason,
            )
            metrics.BAD_RECORDS.labels(report.namespace).inc()
            headers = [
                *(record.headers or ()),
                ("hevlayer.reason", report.reason.encode()),
                ("hevlayer.topic", record.topic.encode()),
                ("hevlayer.partition", str(record.partition).encode()),
                ("hevlayer.offset", str(record.offset).encode()),
                ("hevlayer.timestamp_ms", str(record.timestamp).encode()),
            ]
            sends.append(
                await self._producer.send(
                    self._settings.dead_letter_topic,
                    value=record.value,
                    key=record.key,
                    headers=headers,
                )
            )
        await asyncio.gather(*sends)

    def _plan(self, namespaces: set[str]) -> dict[str, NamespacePlan]:
        """Copy what a batch needs of the consistency state (event loop)."""
        plans = {}
        for namespace in namespaces | set(self._consistency.namespaces()):
            state = self._consistency.state(namespace)
            plans[namespace] = NamespacePlan(
                warmed=state.warmed,
                next_offsets=dict(state.next_offsets),
                targets=list(state.targets),
            )
        return plans

    def _write(
        self,
        decoded: list[tuple[str, str, Version]],
        positions: dict[TopicPartition, int],
        plans: dict[str, NamespacePlan],
    ) -> ApplyOutcome:
        """Build and commit one batch (worker thread)."""
        writer = BatchWriter(self._store, {ns: plan.warmed for ns, plan in plans.items()})
        for namespace, doc_id, version in decoded:
            writer.apply(namespace, doc_id, version)
            writer.advance(namespace, version.partition, version.offset + 1)
        for tp, position in positions.items():
            namespace = self._namespace(tp.topic)
            if namespace is None:
                continue
            if position > plans[namespace].next_offsets.get(tp.partition, 0):
                writer.advance(namespace, tp.partition, position)

        for namespace, plan in plans.items():
            next_offsets = {**plan.next_offsets, **writer.moved(namespace)}
            for target in reversed(plan.targets):
                if covers(next_offsets, target.end_offsets):
                    writer.stamp(namespace, target)
                    break
        return writer.commit()

    def _publish(self, outcome: ApplyOutcome) -> None:
        """Publish a committed batch to the consistency state (event loop)."""
        for namespace, moved in outcome.next_offsets.items():
            offsets = dict(self._consistency.state(namespace).next_offsets)
            offsets.update(moved)
            self._consistency.applied(namespace, offsets)
        for namespace, observation in outcome.stamps.items():
            self._consistency.stamp(namespace, observation)
        if outcome.documents_changed or outcome.next_offsets or outcome.stamps:
            self.batches_applied += 1
            metrics.RECORDS_APPLIED.inc(outcome.documents_changed)

    async def _commit_lag_offsets(self) -> None:
        """Commit applied offsets to Kafka now and then, for lag monitoring."""
        now = time.monotonic()
        if self._group_id is None or now - self._last_lag_commit < LAG_COMMIT_INTERVAL_S:
            return
        self._last_lag_commit = now
        assert self._consumer is not None
        offsets = {}
        for tp in self._assigned:
            namespace = self._namespace(tp.topic)
            if namespace is None:
                continue
            next_offset = self._consistency.state(namespace).next_offsets.get(tp.partition)
            if next_offset is not None:
                offsets[tp] = next_offset
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except KafkaError as exc:
            logger.warning("committing lag-monitoring offsets failed: %r", exc)

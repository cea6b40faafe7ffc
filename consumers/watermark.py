"""The watermark watcher: observes each namespace's end offsets and newest timestamp.

An observation reads the last stable offsets of every partition of a
namespace's topic (read_committed, so open and aborted transactions are left
out), then the timestamp of the last data record below each end offset. The
topics use LogAppendTime, so a partition's last data record carries its
newest timestamp. Control records and aborted records yield nothing, so the
read steps backwards until it finds a data record or reaches the log start.
Each partition's reading is reused while its end offset stays the same.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Final

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from consumers import metrics
from consumers.clients import stop_client
from consumers.consistency import Consistency
from consumers.cuts import Observation, lag
from consumers.settings import Settings
from consumers.topics import admin_client, namespace_partitions

logger = logging.getLogger(__name__)

TAIL_FETCH_TIMEOUT_MS: Final = 500
# A healthy local broker completes an observation in well under 0.1 s (measured
# here: 40 to 70 ms).
OBSERVE_TIMEOUT_S: Final = 3.0


class NoTopic(LookupError):
    """The namespace has no topic on the broker."""


class WatermarkWatcher:
    """Observe watermarks periodically and on demand, reporting to Consistency."""

    def __init__(self, settings: Settings, consistency: Consistency) -> None:
        self._settings = settings
        self._consistency = consistency
        self._consumer: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        # Topic -> partitions, from the latest listing of namespace topics.
        self._partitions: dict[str, list[int]] = {}
        self._lock = asyncio.Lock()
        # (topic, partition) -> (end offset, timestamp of the last data record).
        self._tails: dict[TopicPartition, tuple[int, int | None]] = {}
        self._failing: set[str] = set()
        # Whether the latest listing or observation reached the broker (None:
        # not tried yet).
        self.last_observation_ok: bool | None = None

    async def watch_routine(self) -> None:
        """Observe every namespace about once per watch interval, until cancelled."""
        logger.info(
            "watermark watcher starting, every %.1fs", self._settings.watch_interval_s
        )
        try:
            while True:
                await self.observe_all()
                await asyncio.sleep(self._settings.watch_interval_s)
        finally:
            await self.close()
            logger.info("watermark watcher stopped")

    async def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        admin, self._admin = self._admin, None
        if consumer is not None:
            await stop_client(consumer, "watermark consumer")
        if admin is not None:
            await admin.close()

    async def observe_all(self) -> None:
        """Observe every namespace topic once; log failures and go on."""
        try:
            namespaces = await self.namespaces()
        except (KafkaError, OSError, TimeoutError) as exc:
            self.last_observation_ok = False
            self._note_failure("*", exc)
            return
        self.last_observation_ok = True
        if "*" in self._failing:
            self._failing.discard("*")
            logger.info("listing namespace topics works again")
        for namespace in namespaces:
            try:
                await self.observe(namespace)
            except (KafkaError, OSError, TimeoutError, NoTopic) as exc:
                self._note_failure(namespace, exc)

    def _note_failure(self, namespace: str, exc: BaseException) -> None:
        metrics.WATCH_FAILURES.labels(namespace).inc()
        if namespace not in self._failing:
            self._failing.add(namespace)
            logger.warning(
                "observing the watermark of %s failed, retrying every %.1fs: %r",
                namespace,
                self._settings.watch_interval_s,
                exc,
            )

    async def namespaces(self) -> list[str]:
        """List the namespaces whose topics exist on the broker (fresh metadata)."""
        async with self._lock:
            try:
                async with asyncio.timeout(OBSERVE_TIMEOUT_S):
                    await self._client()
                    assert self._admin is not None
                    topics = await namespace_partitions(self._admin, self._settings)
            except (KafkaError, OSError, TimeoutError):
                await self.close()
                raise
        self._partitions = topics
        found = (self._settings.namespace_of(topic) for topic in topics)
        return sorted(namespace for namespace in found if namespace is not None)

    async def observe(self, namespace: str) -> Observation:
        """Observe a namespace now and report it; raise NoTopic without a topic."""
        async with self._lock:
            try:
                async with asyncio.timeout(OBSERVE_TIMEOUT_S):
                    observation = await self._observe(namespace)
            except (KafkaError, OSError, TimeoutError):
                # Reconnect from scratch next time: the client may be wedged.
                self.last_observation_ok = False
                await self.close()
                raise
        self.last_observation_ok = True
        if namespace in self._failing:
            self._failing.discard(namespace)
            logger.info("observing the watermark of %s works again", namespace)
        self._consistency.observed(observation)
        self._export(observation)
        return observation

    async def _client(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self._settings.bootstrap_servers,
                client_id="hevlayer-watermark",
                group_id=None,
                enable_auto_commit=False,
                isolation_level="read_committed",
                request_timeout_ms=int(OBSERVE_TIMEOUT_S * 1000),
                fetch_max_wait_ms=50,
            )
            admin = admin_client(self._settings)
            try:
                await consumer.start()
                await admin.start()
            except BaseException:
                await stop_client(consumer, "watermark consumer")
                await admin.close()
                raise
            self._consumer, self._admin = consumer, admin
        return self._consumer

    async def _observe(self, namespace: str) -> Observation:
        consumer = await self._client()
        assert self._admin is not None
        topic = self._settings.topic_for(namespace)
        partitions = self._partitions.get(topic)
        if not partitions:
            found = await namespace_partitions(self._admin, self._settings, namespace)
            self._partitions.update(found)
            partitions = found.get(topic)
        if not partitions:
            raise NoTopic(f"topic {topic!r} of namespace {namespace!r} does not exist")

        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        observed_at_ms = int(time.time() * 1000)
        ends = await consumer.end_offsets(tps)
        # Only partitions whose end offset moved need a tail read; the others
        # keep the timestamp read before.
        stale = [tp for tp in tps if self._tails.get(tp, (None, None))[0] != ends[tp]]
        if stale:
            begins = await consumer.beginning_offsets(stale)
            try:
                for tp in stale:
                    timestamp = await self._tail_timestamp(consumer, tp, begins[tp], ends[tp])
                    self._tails[tp] = (ends[tp], timestamp)
            finally:
                # An assigned partition keeps a long-polling fetch in flight,
                # and the broker handles one connection's requests in order, so
                # the next offset listing would wait behind it.
                consumer.unsubscribe()
        timestamps = [self._tails[tp][1] for tp in tps]
        known = [timestamp for timestamp in timestamps if timestamp is not None]
        newest = max(known) if known else None
        return Observation(
            namespace=namespace,
            watermark_ms=newest,
            end_offsets={tp.partition: ends[tp] for tp in tps},
            observed_at_ms=observed_at_ms,
        )

    async def _tail_timestamp(
        self, consumer: AIOKafkaConsumer, tp: TopicPartition, begin: int, end: int
    ) -> int | None:
        """Return the timestamp of the last data record below `end`, if any."""
        timestamp = None
        upper, step = end, 1
        while upper > begin and timestamp is None:
            lower = max(begin, upper - step)
            timestamp = await self._max_timestamp(consumer, tp, lower, upper)
            upper, step = lower, step * 16
        return timestamp

    async def _max_timestamp(
        self, consumer: AIOKafkaConsumer, tp: TopicPartition, lower: int, upper: int
    ) -> int | None:
        """Read records in [lower, upper) and return their newest timestamp."""
        consumer.assign([tp])
        consumer.seek(tp, lower)
        newest: int | None = None
        while await consumer.position(tp) < upper:
            batch = await consumer.getmany(tp, timeout_ms=TAIL_FETCH_TIMEOUT_MS)
            for record in batch.get(tp, []):
                if record.offset < upper and (newest is None or record.timestamp > newest):
                    newest = record.timestamp
        return newest

    def _export(self, observation: Observation) -> None:
        namespace = observation.namespace
        if observation.watermark_ms is not None:
            metrics.WATERMARK_MS.labels(namespace).set(observation.watermark_ms)
        applied = self._consistency.state(namespace).next_offsets
        metrics.APPLIER_LAG.labels(namespace).set(lag(applied, observation.end_offsets))

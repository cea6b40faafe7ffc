"""A hevlayer process under test: the real app on a loopback port, a real broker.

`Harness` wraps an aiohttp test client of the app plus a producer, with
helpers that produce records, wait for the cache to catch up and run scans
the way a REST client would.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp.test_utils import TestClient
from aiokafka import AIOKafkaProducer
from aiokafka.structs import RecordMetadata

from consumers.cuts import covers
from consumers.settings import Settings
from consumers.topics import admin_client, ensure_topic
from service.runtime import Runtime

WAIT_TIMEOUT_S = 30.0


class Harness:
    """One running app with helpers for tests."""

    def __init__(self, settings: Settings, client: TestClient, runtime: Runtime) -> None:
        self.settings = settings
        self.client = client
        self.runtime = runtime
        self.producer: AIOKafkaProducer | None = None

    async def create_topic(self, namespace: str) -> None:
        admin = admin_client(self.settings)
        await admin.start()
        try:
            await ensure_topic(admin, self.settings, namespace)
        finally:
            await admin.close()

    async def _producer(self) -> AIOKafkaProducer:
        if self.producer is None:
            self.producer = AIOKafkaProducer(
                bootstrap_servers=self.settings.bootstrap_servers, acks="all"
            )
            await self.producer.start()
        return self.producer

    async def produce(
        self, namespace: str, records: list[tuple[str | bytes | None, Any]]
    ) -> list[RecordMetadata]:
        """Produce (id, attributes) pairs; attributes None is a delete, bytes are sent raw."""
        producer = await self._producer()
        topic = self.settings.topic_for(namespace)
        futures = []
        for key, value in records:
            key_bytes = key.encode() if isinstance(key, str) else key
            if value is None or isinstance(value, bytes):
                value_bytes = value
            else:
                value_bytes = json.dumps(value).encode()
            futures.append(await producer.send(topic, value_bytes, key=key_bytes))
        return list(await asyncio.gather(*futures))

    async def wait_warmed(self, namespace: str, timeout_s: float = WAIT_TIMEOUT_S) -> None:
        """Wait until cache_warmed_through covers a fresh observation of the topic."""
        target = await self.runtime.watcher.observe(namespace)
        ok = await self.runtime.consistency.wait_warmed(target, timeout_s)
        assert ok, f"cache of {namespace} not warmed through {target.end_offsets}"

    async def wait_applied(self, namespace: str, timeout_s: float = WAIT_TIMEOUT_S) -> None:
        """Wait until the applier's next offsets reach the topic's end offsets."""
        target = await self.runtime.watcher.observe(namespace)
        deadline = time.monotonic() + timeout_s
        state = self.runtime.consistency.state(namespace)
        while not covers(state.next_offsets, target.end_offsets):
            assert time.monotonic() < deadline, (
                f"applier of {namespace} stuck at {state.next_offsets}, "
                f"expected {target.end_offsets}"
            )
            await asyncio.sleep(0.05)

    async def post_scan(self, namespace: str, body: Any, **kwargs: Any) -> tuple[int, Any]:
        response = await self.client.post(
            f"/v2/namespaces/{namespace}/scans", json=body, **kwargs
        )
        return response.status, await response.json()

    async def count(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        status, payload = await self.post_scan(namespace, {"mode": "count", **body})
        assert status == 200, payload
        return payload

    async def wait_job(self, namespace: str, job_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + WAIT_TIMEOUT_S
        while True:
            response = await self.client.get(f"/v2/namespaces/{namespace}/scans/{job_id}")
            job = await response.json()
            if job["status"] != "running":
                return job
            assert time.monotonic() < deadline, f"job {job_id} still running: {job}"
            await asyncio.sleep(0.05)

    async def ids(self, namespace: str, body: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """Run an ID scan job to completion; return its final state and all ids."""
        status, job = await self.post_scan(namespace, {"mode": "ids", **body})
        assert status == 202, job
        job = await self.wait_job(namespace, job["id"])
        assert job["status"] == "completed", job
        ids: list[str] = []
        offset = 0
        while True:
            response = await self.client.get(
                f"/v2/namespaces/{namespace}/scans/{job['id']}/results",
                params={"limit": 1000, "offset": offset},
            )
            page = await response.json()
            assert response.status == 200, page
            ids.extend(page["ids"])
            offset += 1000
            if offset >= page["total"]:
                break
        return job, ids

    async def close(self) -> None:
        if self.producer is not None:
            await self.producer.stop()


# Helpers for tests of cuts, restarts and the auto policy.


@dataclass(frozen=True)
class ProducedRecord:
    """One record as the broker stored it: where, when, and what it wrote."""

    partition: int
    offset: int
    # Broker LogAppendTime in epoch ms, as RecordMetadata reports it.
    timestamp_ms: int
    doc_id: str
    # Attributes as sent, or None for a delete.
    value: dict[str, Any] | None


@dataclass
class LogModel:
    """The produced records of one namespace and the document states they define."""

    records: list[ProducedRecord] = field(default_factory=list)

    def add(
        self,
        sent: list[tuple[str, dict[str, Any] | None]],
        metadata: list[RecordMetadata],
    ) -> None:
        for (doc_id, value), meta in zip(sent, metadata, strict=True):
            self.records.append(
                ProducedRecord(meta.partition, meta.offset, meta.timestamp, doc_id, value)
            )

    def end_offsets(self, partitions: int) -> dict[int, int]:
        ends = dict.fromkeys(range(partitions), 0)
        for record in self.records:
            ends[record.partition] = max(ends[record.partition], record.offset + 1)
        return ends

    def state(self, cut: dict[int, int] | None = None) -> dict[str, ProducedRecord]:
        """Return id -> the live record of each document at `cut` (None: everything).

        Every version of an id lands in one partition, so the highest offset
        below the cut wins and a delete removes the document.
        """
        latest: dict[str, ProducedRecord] = {}
        for record in self.records:
            if cut is not None and record.offset >= cut.get(record.partition, 0):
                continue
            current = latest.get(record.doc_id)
            if current is None or record.offset > current.offset:
                latest[record.doc_id] = record
        return {doc_id: r for doc_id, r in latest.items() if r.value is not None}

    def state_at_ms(self, timestamp_ms: int) -> dict[str, ProducedRecord]:
        """Return the live documents of records with timestamps up to `timestamp_ms`."""
        cut: dict[int, int] = {}
        for record in self.records:
            if record.timestamp_ms <= timestamp_ms:
                cut[record.partition] = max(cut.get(record.partition, 0), record.offset + 1)
        return self.state(cut)


async def namespace_status(harness: Harness, namespace: str) -> dict[str, Any]:
    """Return the body of GET /v2/namespaces/{ns}."""
    response = await harness.client.get(f"/v2/namespaces/{namespace}")
    body = await response.json()
    assert response.status == 200, body
    return body


async def count_with_header(
    harness: Harness, namespace: str, body: dict[str, Any]
) -> tuple[dict[str, Any], str | None]:
    """Run a count and return its body and its X-Hevlayer-Stable-As-Of header."""
    response = await harness.client.post(
        f"/v2/namespaces/{namespace}/scans", json={"mode": "count", **body}
    )
    payload = await response.json()
    assert response.status == 200, payload
    return payload, response.headers.get("X-Hevlayer-Stable-As-Of")


async def wait_offsets(
    harness: Harness,
    namespace: str,
    end_offsets: dict[int, int],
    timeout_s: float = WAIT_TIMEOUT_S,
) -> None:
    """Wait until the applier reaches `end_offsets`, without observing the topic.

    Unlike `Harness.wait_applied`, this registers no observation, so the
    watermark and the warm targets stay as they are.
    """
    state = harness.runtime.consistency.state(namespace)
    deadline = time.monotonic() + timeout_s
    while not covers(state.next_offsets, end_offsets):
        assert time.monotonic() < deadline, (
            f"applier of {namespace} stuck at {state.next_offsets}, "
            f"expected {end_offsets}"
        )
        await asyncio.sleep(0.01)


async def wait_status(
    harness: Harness,
    namespace: str,
    condition: Callable[[dict[str, Any]], bool],
    timeout_s: float = WAIT_TIMEOUT_S,
) -> dict[str, Any]:
    """Poll GET /v2/namespaces/{ns} until `condition` is true and return that status."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = await namespace_status(harness, namespace)
        if condition(status):
            return status
        assert time.monotonic() < deadline, f"namespace {namespace} status stuck: {status}"
        await asyncio.sleep(0.05)


def offsets_key(end_offsets: dict[int, int]) -> dict[str, int]:
    """Return end offsets keyed the way the API's JSON bodies key them."""
    return {str(partition): offset for partition, offset in sorted(end_offsets.items())}

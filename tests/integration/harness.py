"""A hevlayer process under test: the real app on a loopback port, a real broker.

`Harness` wraps an aiohttp test client of the app plus a producer, with
helpers that produce records, wait for the cache to catch up and run scans
the way a REST client would.
"""

from __future__ import annotations

import asyncio
import json
import time
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

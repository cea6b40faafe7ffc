"""Kafka down or misconfigured: clear 503s, working cache reads, and recovery.

Three kinds of broker trouble, all on 127.0.0.1: a closed port (connection
refused), a listener that accepts connections and never sends a byte, and a private
broker that this module starts, stops and restarts on the same data directory.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError
from prometheus_client.parser import text_string_to_metric_families

from consumers.settings import Settings
from consumers.topics import admin_client
from tests.conftest import BROKER_SCRIPT
from tests.integration.conftest import AppFactory
from tests.integration.harness import Harness

NAMESPACE = "down"
# Allowance on top of a scan's timeout_seconds for the 503 to arrive.
TIMEOUT_SLACK_S = 2.0
HEALTH_WAIT_S = 5.0
BROKER_READY_S = 60.0
EVEN = ["even", "Eq", True]


def closed_port() -> int:
    """Return a 127.0.0.1 port that nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class SilentListener:
    """A TCP listener on 127.0.0.1 that accepts connections and never responds."""

    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self.address = ""

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._hold, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.address = f"127.0.0.1:{port}"

    async def _hold(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._writers.append(writer)
        await reader.read()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            await self._server.wait_closed()


@pytest.fixture
async def silent_listener() -> AsyncIterator[SilentListener]:
    listener = SilentListener()
    await listener.start()
    yield listener
    await listener.close()


class PrivateBroker:
    """A broker of this module, started and stopped with scripts/kafka/broker.sh."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.bootstrap = ""

    def start(self) -> None:
        started = subprocess.run(
            [str(BROKER_SCRIPT), "start", str(self.data_dir)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert (
            started.returncode == 0
        ), f"starting the private broker failed:\n{started.stderr}"
        bootstrap = started.stdout.strip().splitlines()[-1]
        # The data directory keeps its ports, so a restart keeps the address.
        assert not self.bootstrap or bootstrap == self.bootstrap
        self.bootstrap = bootstrap

    def stop(self) -> None:
        # broker.sh stops the broker by the PID it wrote in the data directory.
        subprocess.run([str(BROKER_SCRIPT), "stop", str(self.data_dir)], check=False)

    async def restart(self) -> None:
        """Start the broker again and wait until it responds to metadata requests.

        NOTE: broker.sh start waits for "Kafka Server started" in broker.log, which
        a restart in the same data directory finds in the previous run's lines, so
        it can return before the new broker listens.
        """
        await asyncio.to_thread(self.start)
        deadline = time.monotonic() + BROKER_READY_S
        while True:
            admin = AIOKafkaAdminClient(
                bootstrap_servers=self.bootstrap, request_timeout_ms=2000
            )
            try:
                await admin.start()
                await admin.list_topics()
                return
            except KafkaError as exc:
                assert (
                    time.monotonic() < deadline
                ), f"broker not ready after restart: {exc!r}"
            finally:
                await admin.close()
            await asyncio.sleep(0.2)


@pytest.fixture(scope="module")
def private_broker() -> Iterator[PrivateBroker]:
    # As for the session broker, the data lives in its own temporary directory.
    broker = PrivateBroker(Path(tempfile.mkdtemp(prefix="hevlayer-private-broker-")))
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()
        shutil.rmtree(broker.data_dir, ignore_errors=True)


@pytest.fixture
async def running_broker(private_broker: PrivateBroker) -> PrivateBroker:
    """The private broker, restarted if an earlier test left it stopped."""
    await private_broker.restart()
    return private_broker


def settings_for(apps: AppFactory, bootstrap: str, **changes: Any) -> Settings:
    return msgspec.structs.replace(
        apps.settings, bootstrap_servers=bootstrap, **changes
    )


async def timed_post(
    app: Harness, body: dict[str, Any]
) -> tuple[int, dict[str, Any], float]:
    started = time.monotonic()
    status, payload = await app.post_scan(NAMESPACE, body)
    return status, payload, time.monotonic() - started


async def wait_health(
    app: Harness, reachable: bool, timeout_s: float
) -> dict[str, Any]:
    """Poll GET /health until broker_reachable is `reachable` and return the body."""
    deadline = time.monotonic() + timeout_s
    while True:
        response = await app.client.get("/health")
        body = dict(await response.json())
        assert response.status == 200, body
        if body["broker_reachable"] is reachable:
            return body
        assert time.monotonic() < deadline, f"health still {body} after {timeout_s}s"
        await asyncio.sleep(0.1)


async def applier_retries(app: Harness) -> float:
    """Return hevlayer_applier_retries_total from GET /metrics."""
    response = await app.client.get("/metrics")
    assert response.status == 200
    for family in text_string_to_metric_families(await response.text()):
        for sample in family.samples:
            if sample.name == "hevlayer_applier_retries_total":
                return float(sample.value)
    return 0.0


# -- no broker at all --------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"mode": "count", "source": "origin", "timeout_seconds": 3},
        {"mode": "count", "source": "auto", "timeout_seconds": 3},
        {"mode": "ids", "source": "origin", "timeout_seconds": 3},
        {"mode": "count", "source": "origin"},
    ],
    ids=["count-origin", "count-auto", "ids-origin", "default-timeout"],
)
async def test_refused_origin_is_503(apps: AppFactory, body: dict[str, Any]) -> None:
    bootstrap = f"127.0.0.1:{closed_port()}"
    app = await apps.start(settings_for(apps, bootstrap))

    status, payload, elapsed = await timed_post(app, body)

    assert status == 503, payload
    assert payload["error"] == "unavailable", payload
    assert bootstrap in payload["message"], payload
    assert elapsed < body.get("timeout_seconds", 30) + TIMEOUT_SLACK_S


@pytest.mark.parametrize(
    "body",
    [
        {"mode": "count", "source": "origin", "timeout_seconds": 2},
        {"mode": "count", "source": "auto", "timeout_seconds": 2},
        {"mode": "ids", "source": "origin", "timeout_seconds": 2},
        {"mode": "count", "source": "origin", "timeout_seconds": 0.5},
    ],
    ids=["count-origin", "count-auto", "ids-origin", "short-timeout"],
)
async def test_silent_broker_is_503_in_time(
    apps: AppFactory, silent_listener: SilentListener, body: dict[str, Any]
) -> None:
    app = await apps.start(settings_for(apps, silent_listener.address))

    status, payload, elapsed = await timed_post(app, body)

    assert status == 503, payload
    assert payload["error"] == "unavailable", payload
    assert silent_listener.address in payload["message"], payload
    assert elapsed < body["timeout_seconds"] + TIMEOUT_SLACK_S, elapsed


async def test_cache_read_without_broker(apps: AppFactory) -> None:
    app = await apps.start(settings_for(apps, f"127.0.0.1:{closed_port()}"))

    body = await app.count(NAMESPACE, {"source": "cache"})
    assert body["count"] == 0, body
    assert body["served_by"] == "cache", body
    job, ids = await app.ids(NAMESPACE, {"source": "cache"})
    assert ids == [], job


async def test_health_degraded_without_broker(apps: AppFactory) -> None:
    app = await apps.start(settings_for(apps, f"127.0.0.1:{closed_port()}"))

    body = await wait_health(app, reachable=False, timeout_s=HEALTH_WAIT_S)
    assert body["status"] == "degraded", body
    assert body["applier"] == "running", body
    assert body["watcher"] == "running", body


async def test_reachable_short_timeout_not_503(app: Harness) -> None:
    # A deadline that expires while the broker responds gives a bounded count, not 503.
    await app.create_topic(NAMESPACE)
    await app.produce(NAMESPACE, [(f"doc-{i}", {"n": i}) for i in range(5000)])
    await wait_health(app, reachable=True, timeout_s=HEALTH_WAIT_S)
    # The fallback reads up to the latest observation, so one must exist.
    await app.runtime.watcher.observe(NAMESPACE)

    status, payload, _ = await timed_post(
        app, {"mode": "count", "source": "origin", "timeout_seconds": 0.001}
    )

    assert status == 200, payload
    assert payload["timed_out"] is True, payload
    assert payload["bounded"] is True, payload


# -- a broker that goes away and comes back -----------------------------------------


async def fill_and_warm(app: Harness, count: int) -> None:
    await app.create_topic(NAMESPACE)
    await app.produce(
        NAMESPACE,
        [(f"doc-{i:04d}", {"n": i, "even": i % 2 == 0}) for i in range(count)],
    )
    await app.wait_warmed(NAMESPACE)


async def wait_snapshot_count(app: Harness, filters: Any, timeout_s: float) -> None:
    """Wait until the namespace has a snapshot that can count `filters`."""
    deadline = time.monotonic() + timeout_s
    body = {"mode": "count", "source": "snapshot", "filters": filters}
    while True:
        status, payload = await app.post_scan(NAMESPACE, body)
        if status == 200:
            return
        assert time.monotonic() < deadline, f"no snapshot after {timeout_s}s: {payload}"
        await asyncio.sleep(0.2)


async def test_cache_survives_broker_loss(
    apps: AppFactory, running_broker: PrivateBroker
) -> None:
    app = await apps.start(settings_for(apps, running_broker.bootstrap))
    await fill_and_warm(app, 100)
    await app.close()
    await wait_snapshot_count(app, EVEN, timeout_s=10)

    await asyncio.to_thread(running_broker.stop)
    try:
        snapshot = await app.count(NAMESPACE, {"source": "snapshot", "filters": EVEN})
        assert snapshot["count"] == 50, snapshot
        for source in ("cache", "auto"):
            body = await app.count(NAMESPACE, {"source": source})
            assert body["count"] == 100, (source, body)
            assert body["served_by"] == "cache", (source, body)
        even = await app.count(NAMESPACE, {"source": "cache", "filters": EVEN})
        assert even["count"] == 50, even
        _job, ids = await app.ids(NAMESPACE, {"source": "cache"})
        assert ids == [f"doc-{i:04d}" for i in range(100)]

        status, payload, elapsed = await timed_post(
            app, {"mode": "count", "source": "origin", "timeout_seconds": 3}
        )
        assert status == 503, payload
        assert payload["error"] == "unavailable", payload
        assert elapsed < 3 + TIMEOUT_SLACK_S, elapsed

        health = await wait_health(app, reachable=False, timeout_s=HEALTH_WAIT_S)
        assert health["status"] == "degraded", health
        assert health["watcher"] == "running", health
        assert health["applier"] == "running", health
    finally:
        await running_broker.restart()


async def test_applier_catches_up_after_restart(
    apps: AppFactory, running_broker: PrivateBroker
) -> None:
    app = await apps.start(settings_for(apps, running_broker.bootstrap))
    await fill_and_warm(app, 10)
    await app.close()
    app.producer = None

    retries_before = await applier_retries(app)
    await asyncio.to_thread(running_broker.stop)
    # The applier retries with backoff while the broker is down.
    deadline = time.monotonic() + 10
    while await applier_retries(app) < retries_before + 2:
        assert (
            app.runtime.applier_running
        ), "applier task ended while the broker was down"
        assert (
            time.monotonic() < deadline
        ), "applier did not retry while the broker was down"
        await asyncio.sleep(0.1)
    await running_broker.restart()

    await app.produce(NAMESPACE, [(f"late-{i}", {"n": i}) for i in range(20)])
    await app.wait_applied(NAMESPACE, timeout_s=20)
    await app.wait_warmed(NAMESPACE, timeout_s=20)
    await wait_health(app, reachable=True, timeout_s=HEALTH_WAIT_S)

    body = await app.count(NAMESPACE, {"source": "cache"})
    assert body["count"] == 30, body
    origin = await app.count(NAMESPACE, {"source": "origin"})
    assert origin["count"] == 30, origin


# -- CreateTime topics -----------------------------------------------------------------


async def create_create_time_topic(settings: Settings, namespace: str) -> None:
    admin = admin_client(settings)
    await admin.start()
    try:
        configs = {"message.timestamp.type": "CreateTime", "cleanup.policy": "compact"}
        topic = NewTopic(
            settings.topic_for(namespace),
            num_partitions=settings.partitions,
            replication_factor=1,
            topic_configs=configs,
        )
        response = await admin.create_topics([topic])
        assert all(
            code == 0 for _name, code, _message in response.topic_errors
        ), response
    finally:
        await admin.close()


async def set_log_append_time(settings: Settings, namespace: str) -> None:
    admin = admin_client(settings)
    await admin.start()
    try:
        resource = ConfigResource(
            ConfigResourceType.TOPIC,
            settings.topic_for(namespace),
            configs={
                "message.timestamp.type": "LogAppendTime",
                "cleanup.policy": "compact",
            },
        )
        await admin.alter_configs([resource])
    finally:
        await admin.close()


async def wait_topic_error(
    app: Harness, namespace: str, timeout_s: float
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        response = await app.client.get(f"/v2/namespaces/{namespace}")
        body = dict(await response.json())
        assert response.status == 200, body
        if body["topic_error"]:
            return body
        assert time.monotonic() < deadline, f"no topic_error after {timeout_s}s: {body}"
        await asyncio.sleep(0.1)


async def test_create_time_topic_refused(app: Harness) -> None:
    await create_create_time_topic(app.settings, NAMESPACE)
    await app.produce(NAMESPACE, [("a", {"n": 1}), ("b", {"n": 2})])

    body = await wait_topic_error(app, NAMESPACE, timeout_s=10)
    message = body["topic_error"]
    assert app.settings.topic_for(NAMESPACE) in message, body
    assert "CreateTime" in message, body
    assert "LogAppendTime" in message, body
    assert "--allow-create-time" in message, body
    assert body["cache_state"] == "empty", body
    assert body["applied_offsets"] == {}, body


async def test_create_time_allowed_by_opt_in(apps: AppFactory) -> None:
    app = await apps.start(
        msgspec.structs.replace(apps.settings, allow_create_time=True)
    )
    await create_create_time_topic(app.settings, NAMESPACE)
    await app.produce(NAMESPACE, [("a", {"n": 1}), ("b", {"n": 2})])
    await app.wait_warmed(NAMESPACE)

    response = await app.client.get(f"/v2/namespaces/{NAMESPACE}")
    body = await response.json()
    assert body["topic_error"] is None, body
    assert body["cache_state"] == "populated", body
    count = await app.count(NAMESPACE, {"source": "cache"})
    assert count["count"] == 2, count


async def test_create_time_fix_picked_up(app: Harness) -> None:
    # The topic_error message names LogAppendTime as the fix, so after the operator
    # switches the topic, the applier must accept it without a restart.
    await create_create_time_topic(app.settings, NAMESPACE)
    await app.produce(NAMESPACE, [("a", {"n": 1})])
    await wait_topic_error(app, NAMESPACE, timeout_s=10)

    await set_log_append_time(app.settings, NAMESPACE)
    await app.produce(NAMESPACE, [("b", {"n": 2})])
    await app.wait_applied(NAMESPACE, timeout_s=10)

    response = await app.client.get(f"/v2/namespaces/{NAMESPACE}")
    body = await response.json()
    assert body["topic_error"] is None, body
    assert body["cache_state"] == "populated", body

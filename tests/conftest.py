"""Shared fixtures: one real Kafka broker per test session and fresh names per test.

The broker comes from scripts/kafka/broker.sh unless HEVLAYER_TEST_BOOTSTRAP
names one that is already running. Every test gets its own topic prefix, so
tests never see each other's topics.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from consumers.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
BROKER_SCRIPT = ROOT / "scripts" / "kafka" / "broker.sh"


def pytest_report_header(config: pytest.Config) -> str:
    seed = os.environ.setdefault("HEVLAYER_TEST_SEED", str(random.randrange(2**32)))
    return f"hevlayer random seed: {seed} (set HEVLAYER_TEST_SEED to repeat)"


@pytest.fixture(scope="session")
def test_seed() -> int:
    """Seed for randomized tests, printed in the pytest header."""
    return int(os.environ.setdefault("HEVLAYER_TEST_SEED", str(random.randrange(2**32))))


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap address of a real broker, started for the session if needed."""
    external = os.environ.get("HEVLAYER_TEST_BOOTSTRAP")
    if external:
        yield external
        return
    data_dir = Path(tempfile.mkdtemp(prefix="hevlayer-test-broker-"))
    started = subprocess.run(
        [str(BROKER_SCRIPT), "start", str(data_dir)],
        capture_output=True,
        text=True,
        check=False,
    )
    if started.returncode != 0:
        pytest.fail(f"starting the test broker failed:\n{started.stderr}")
    try:
        yield started.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run([str(BROKER_SCRIPT), "stop", str(data_dir)], check=False)
        log = data_dir / "broker.log"
        if os.environ.get("HEVLAYER_KEEP_BROKER_LOG") and log.exists():
            shutil.copy(log, ROOT / "broker-test.log")
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def settings(kafka_bootstrap: str, tmp_path: Path) -> Settings:
    """Settings with a topic prefix and data directory unique to this test."""
    run = uuid.uuid4().hex[:10]
    return Settings(
        bootstrap_servers=kafka_bootstrap,
        data_dir=str(tmp_path / "data"),
        topic_prefix=f"test.{run}.",
        dead_letter_topic=f"test.{run}.deadletter",
        partitions=3,
        watch_interval_s=0.2,
        topic_refresh_s=0.5,
        snapshot_interval_s=0.5,
    )

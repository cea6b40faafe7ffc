"""Replay and the command line, run as a user would."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from consumers.replay import replay
from consumers.settings import Settings
from tests.integration.conftest import AppFactory

HEVLAYER = [sys.executable, "-m", "service.cli"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_replay_rebuilds_cache(apps: AppFactory) -> None:
    app = await apps.start()
    await app.create_topic("books")
    await app.produce(
        "books",
        [("a", {"g": "sf"}), ("b", {"g": "sf"}), ("c", {"g": "crime"}), ("a", None)],
    )
    await app.wait_warmed("books")
    before = await app.count("books", {"source": "cache", "filters": ["g", "Eq", "sf"]})
    await apps.stop(app)

    results = await replay(app.settings, ["books"], progress=False)

    assert [(r.namespace, r.records) for r in results] == [("books", 4)]
    again = await apps.start()
    after = await again.count("books", {"source": "cache", "filters": ["g", "Eq", "sf"]})
    assert before["count"] == 1
    assert after["count"] == 1
    assert after["stable_as_of"] == before["stable_as_of"]


async def test_replay_all_clears_stale_documents(apps: AppFactory) -> None:
    app = await apps.start()
    await app.create_topic("one")
    await app.produce("one", [("x", {"v": 1})])
    await app.wait_warmed("one")
    await apps.stop(app)

    # A stale document the log does not hold must be gone after a replay.
    from consumers.store import Store, doc_key

    store = Store(Path(app.settings.data_dir) / "cache")
    store.db[doc_key("one", "ghost")] = store.db[doc_key("one", "x")]
    store.close()
    await replay(app.settings, None, progress=False)

    again = await apps.start()
    _, ids = await again.ids("one", {"source": "cache"})
    assert ids == ["x"]


def _get(url: str) -> tuple[int, dict[str, object]]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, json.loads(response.read())


def _post(url: str, body: dict[str, object]) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, json.loads(response.read())


async def test_cli_load_then_serve(settings: Settings, tmp_path: Path) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"id": "r1", "kind": "a"}\n{"id": "r2", "kind": "b"}\n')
    port = free_port()
    env = {
        **os.environ,
        "HEVLAYER_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "HEVLAYER_DATA_DIR": settings.data_dir,
        "HEVLAYER_TOPIC_PREFIX": settings.topic_prefix,
        "HEVLAYER_HOST": "127.0.0.1",
        "HEVLAYER_PORT": str(port),
        "HEVLAYER_PARTITIONS": "2",
    }
    loaded = subprocess.run(
        [*HEVLAYER, "load", "cli", str(rows), "--no-progress"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert loaded.returncode == 0, loaded.stderr
    assert f"loaded 2 rows into {settings.topic_prefix}cli" in loaded.stdout

    server = subprocess.Popen([*HEVLAYER, "serve"], env=env, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                status, namespace = await asyncio.to_thread(_get, f"{base}/v2/namespaces/cli")
                if namespace["cache_warmed_through"] is not None:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "server did not warm the cache in 30 s"
            await asyncio.sleep(0.2)
        status, counted = await asyncio.to_thread(
            _post,
            f"{base}/v2/namespaces/cli/scans",
            {"mode": "count", "source": "cache", "filters": ["kind", "Eq", "a"]},
        )
        assert status == 200
        assert counted["count"] == 1
        assert sorted(namespace["watermark"]["end_offsets"]) == ["0", "1"]
        assert sum(namespace["applied_offsets"].values()) == 2
    finally:
        server.send_signal(signal.SIGINT)
        _, stderr = server.communicate(timeout=30)
    log = stderr.decode()
    assert server.returncode == 0, log
    assert "applier stopped" in log
    assert "closed cache database" in log

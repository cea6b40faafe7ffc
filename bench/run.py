"""Benchmark hevlayer end to end on the diamonds data set and print a table.

Measures, in one run so the ratios share the machine's load: load rate into
Kafka, applier catch-up rate, and the latency of counts from each source and
of an ID scan job, each repeated and reported as min / median / max.

    .venv/bin/python bench/run.py --bootstrap 127.0.0.1:PORT [--repeat 15]

Without --bootstrap it starts a broker with scripts/kafka/broker.sh in a
temporary directory and stops it at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from consumers.cuts import covers  # noqa: E402
from consumers.settings import Settings  # noqa: E402
from service.app import create_app  # noqa: E402
from service.keys import RUNTIME  # noqa: E402
from service.loader import load_file  # noqa: E402

FILTERS = {
    "Eq": ["cut", "Eq", "Ideal"],
    "And(In, Gt)": ["And", [["color", "In", ["D", "E"]], ["price", "Gt", 5000]]],
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def timed(repeat: int, action: Callable[[], Awaitable[Any]]) -> list[float]:
    """Run `action` `repeat` times; return each run's seconds."""
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        await action()
        seconds.append(time.perf_counter() - started)
    return seconds


def row(name: str, seconds: list[float], note: str = "") -> str:
    ms = sorted(s * 1000 for s in seconds)
    return (
        f"| {name} | {ms[0]:.1f} | {statistics.median(ms):.1f} | {ms[-1]:.1f} | {note} |"
    )


async def bench(bootstrap: str, repeat: int, data_dir: Path, csv_path: Path) -> None:
    run = uuid.uuid4().hex[:8]
    settings = Settings(
        bootstrap_servers=bootstrap,
        data_dir=str(data_dir),
        topic_prefix=f"bench.{run}.",
        dead_letter_topic=f"bench.{run}.deadletter",
        partitions=4,
    )
    loaded = await load_file(settings, "diamonds", csv_path, progress=False)

    app = create_app(settings)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    runtime = app[RUNTIME]
    base = f"http://127.0.0.1:{port}/v2/namespaces/diamonds"

    started = time.perf_counter()
    target = await runtime.watcher.observe("diamonds")
    while not covers(runtime.consistency.state("diamonds").next_offsets, target.end_offsets):
        await asyncio.sleep(0.01)
    apply_s = time.perf_counter() - started
    assert await runtime.consistency.wait_warmed(target, 30)

    lines = [
        f"diamonds: {loaded.rows_sent} rows, 4 partitions, repeat {repeat}",
        "",
        "| measure | min ms | median ms | max ms | note |",
        "| --- | ---: | ---: | ---: | --- |",
        f"| load (hevlayer load) | | {loaded.elapsed_s * 1000:.0f} | | "
        f"{loaded.rows_per_s:,.0f} rows/s |",
        f"| applier catch-up | | {apply_s * 1000:.0f} | | "
        f"{loaded.rows_sent / apply_s:,.0f} records/s |",
    ]
    async with aiohttp.ClientSession() as http:

        async def post(body: dict[str, Any]) -> dict[str, Any]:
            async with http.post(base + "/scans", json=body) as response:
                payload = await response.json()
                assert response.status in (200, 202), payload
                return payload

        async def id_job(body: dict[str, Any]) -> None:
            job = await post(body)
            while job["status"] == "running":
                await asyncio.sleep(0.005)
                async with http.get(f"{base}/scans/{job['id']}") as response:
                    job = await response.json()
            assert job["status"] == "completed", job

        for name, filters in FILTERS.items():
            for source in ("cache", "origin"):
                body = {"mode": "count", "source": source, "filters": filters}
                result = await post(body)
                seconds = await timed(repeat, lambda body=body: post(body))
                lines.append(row(f"count {source} {name}", seconds, f"count {result['count']}"))
        async with http.post(base + "/snapshots") as response:
            snapshot_ready = response.status in (200, 201)
        if snapshot_ready:
            body = {"mode": "count", "source": "snapshot", "filters": FILTERS["Eq"]}
            result = await post(body)
            seconds = await timed(repeat, lambda: post(body))
            lines.append(row("count snapshot Eq", seconds, f"count {result['count']}"))
        for source in ("cache", "origin"):
            body = {"mode": "ids", "source": source, "filters": FILTERS["Eq"]}
            seconds = await timed(max(3, repeat // 3), lambda body=body: id_job(body))
            lines.append(row(f"ID job {source} Eq", seconds, "create to completed"))

    await runner.cleanup()
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", help="running broker; default: start one")
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="hevlayer-bench-") as tmp:
        work = Path(tmp)
        csv_path = work / "diamonds.csv"
        subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "fetch_dataset.py"), str(csv_path)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        broker_dir = work / "broker"
        bootstrap = args.bootstrap
        if bootstrap is None:
            started = subprocess.run(
                [str(ROOT / "scripts/kafka/broker.sh"), "start", str(broker_dir)],
                check=True,
                capture_output=True,
                text=True,
            )
            bootstrap = started.stdout.strip().splitlines()[-1]
        try:
            asyncio.run(bench(bootstrap, args.repeat, work / "data", csv_path))
        finally:
            if args.bootstrap is None:
                subprocess.run(
                    [str(ROOT / "scripts/kafka/broker.sh"), "stop", str(broker_dir)],
                    check=False,
                )


if __name__ == "__main__":
    main()

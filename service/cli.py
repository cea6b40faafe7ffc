"""The `hevlayer` command: serve, replay, load and snapshot."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from aiohttp import web

from consumers.settings import Settings, is_valid_namespace

logger = logging.getLogger(__name__)

_DEFAULTS = Settings()


def _common(function: Callable[..., Any]) -> Callable[..., Any]:
    """Add the settings every subcommand shares, each with an environment variable."""
    options = [
        click.option(
            "--bootstrap-servers",
            envvar="HEVLAYER_BOOTSTRAP_SERVERS",
            default=_DEFAULTS.bootstrap_servers,
            show_default=True,
            help="Kafka bootstrap servers, host:port[,host:port...].",
        ),
        click.option(
            "--data-dir",
            envvar="HEVLAYER_DATA_DIR",
            default=_DEFAULTS.data_dir,
            show_default=True,
            help="Directory of the RocksDB cache.",
        ),
        click.option(
            "--topic-prefix",
            envvar="HEVLAYER_TOPIC_PREFIX",
            default=_DEFAULTS.topic_prefix,
            show_default=True,
            help="Prefix of namespace topics: a namespace's topic is PREFIX + name.",
        ),
        click.option(
            "--partitions",
            envvar="HEVLAYER_PARTITIONS",
            type=click.IntRange(1, 10_000),
            default=_DEFAULTS.partitions,
            show_default=True,
            help="Partition count of namespace topics hevlayer creates.",
        ),
        click.option(
            "--log-level",
            envvar="HEVLAYER_LOG_LEVEL",
            type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
            default="INFO",
            show_default=True,
            help="Level of log lines written to stderr.",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _settings(**values: Any) -> Settings:
    level = values.pop("log_level")
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, logging.getLevelName(level.upper())))
    return Settings(**{k: v for k, v in values.items() if v is not None})


def _namespace(value: str) -> str:
    if not is_valid_namespace(value):
        raise click.BadParameter(
            f"{value!r} is not a valid namespace; use 1 to 128 characters from "
            "A-Z, a-z, 0-9, '.', '_' and '-'"
        )
    return value


@click.group()
@click.version_option(package_name="hevlayer")
def main() -> None:
    """hevlayer: a scan gateway over a Kafka event log with a RocksDB cache."""


@main.command()
@_common
@click.option(
    "--host", envvar="HEVLAYER_HOST", default=_DEFAULTS.host, show_default=True,
    help="Address the HTTP server listens on.",
)
@click.option(
    "--port", envvar="HEVLAYER_PORT", type=click.IntRange(0, 65535),
    default=_DEFAULTS.port, show_default=True, help="Port the HTTP server listens on.",
)
@click.option(
    "--allow-create-time", envvar="HEVLAYER_ALLOW_CREATE_TIME", is_flag=True,
    help="Apply topics whose timestamps come from producer clocks (CreateTime).",
)
@click.option(
    "--snapshot-interval", "snapshot_interval_s", envvar="HEVLAYER_SNAPSHOT_INTERVAL_S",
    type=click.FloatRange(min=0.1), default=_DEFAULTS.snapshot_interval_s,
    show_default=True, help="Minimum seconds between automatic snapshots of a namespace.",
)
@click.option(
    "--snapshot-max-values", envvar="HEVLAYER_SNAPSHOT_MAX_VALUES",
    type=click.IntRange(1, 10_000_000), default=_DEFAULTS.snapshot_max_values,
    show_default=True,
    help="Distinct values past which a field is skipped by snapshots.",
)
def serve(**values: Any) -> None:
    """Run the HTTP server, the cache applier and the watermark watcher."""
    from service.app import create_app

    settings = _settings(**values)
    logger.info(
        "serving on http://%s:%d with Kafka at %s, cache in %s",
        settings.host,
        settings.port,
        settings.bootstrap_servers,
        settings.data_dir,
    )
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        print=None,
        access_log=None,
    )


@main.command()
@_common
@click.argument("namespaces", nargs=-1, callback=lambda _c, _p, v: [_namespace(n) for n in v])
@click.option("--all", "replay_all", is_flag=True, help="Replay every namespace topic.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def replay(namespaces: list[str], replay_all: bool, no_progress: bool, **values: Any) -> None:
    """Rebuild the cache of NAMESPACES (or --all) from the log.

    Stop `hevlayer serve` on the same data directory first.
    """
    from consumers.replay import replay as run_replay

    if not namespaces and not replay_all:
        raise click.UsageError("name one or more namespaces, or pass --all")
    settings = _settings(**values)
    results = asyncio.run(
        run_replay(settings, None if replay_all else namespaces, progress=not no_progress)
    )
    for result in results:
        click.echo(
            f"replayed {result.namespace}: {result.records} records in "
            f"{result.elapsed_s:.1f}s"
        )


@main.command()
@_common
@click.argument("namespace", callback=lambda _c, _p, v: _namespace(v))
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "jsonl"]),
    help="File format; by default the suffix decides (.csv, .jsonl, .ndjson).",
)
@click.option(
    "--id-field", default="id", show_default=True,
    help="Column or field holding the document id (the record key).",
)
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def load(
    namespace: str, file: Path, fmt: str | None, id_field: str, no_progress: bool,
    **values: Any,
) -> None:
    """Produce the rows of a CSV or JSON Lines FILE into NAMESPACE's topic."""
    from service.loader import LoadError, load_file

    settings = _settings(**values)
    try:
        result = asyncio.run(
            load_file(
                settings, namespace, file, fmt=fmt, id_field=id_field,
                progress=not no_progress,
            )
        )
    except LoadError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"loaded {result.rows_sent} rows into {result.topic} in "
        f"{result.elapsed_s:.1f}s"
    )


@main.command()
@click.argument("namespace", callback=lambda _c, _p, v: _namespace(v))
@click.option(
    "--url", envvar="HEVLAYER_URL", default=f"http://{_DEFAULTS.host}:{_DEFAULTS.port}",
    show_default=True, help="Base URL of the running hevlayer server.",
)
@click.option(
    "--timeout", "timeout_s", type=click.FloatRange(min=1), default=600.0,
    show_default=True, help="Seconds to wait for the server to build the snapshot.",
)
def snapshot(namespace: str, url: str, timeout_s: float) -> None:
    """Ask a running server to build a snapshot of NAMESPACE now; print it.

    The server keeps the cache database open and locked, so the build goes
    through its API (POST /v2/namespaces/NAMESPACE/snapshots).
    """
    from service.snapshot_client import SnapshotRequestError, request_snapshot

    try:
        body = request_snapshot(url, namespace, timeout_s)
    except SnapshotRequestError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(body)


if __name__ == "__main__":
    main()

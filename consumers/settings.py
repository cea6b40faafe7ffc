"""Process settings shared by the server, the applier and the CLI."""

from __future__ import annotations

import re
from typing import Final

import msgspec

NAMESPACE_PATTERN: Final = re.compile(r"[A-Za-z0-9._-]{1,128}")


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Settings of one hevlayer process; the CLI fills them from flags and env."""

    bootstrap_servers: str = "127.0.0.1:9092"
    data_dir: str = "./data"
    host: str = "127.0.0.1"
    port: int = 8080
    topic_prefix: str = "hevlayer.ns."
    # Partition count and replication factor of topics the service creates.
    partitions: int = 4
    replication_factor: int = 1
    # Stamping _hevlayer_upserted_at from producer clocks is opt-in.
    allow_create_time: bool = False
    dead_letter_topic: str = "hevlayer.deadletter"
    watch_interval_s: float = 1.0
    topic_refresh_s: float = 5.0
    job_ttl_s: float = 600.0
    max_jobs_per_namespace: int = 64
    snapshot_interval_s: float = 10.0
    snapshot_max_values: int = 10_000
    snapshots_kept: int = 5

    def topic_for(self, namespace: str) -> str:
        """Return the topic of a namespace's log."""
        return self.topic_prefix + namespace

    def namespace_of(self, topic: str) -> str | None:
        """Return the namespace of a topic, or None when it is not one of ours."""
        if not topic.startswith(self.topic_prefix) or topic == self.dead_letter_topic:
            return None
        namespace = topic[len(self.topic_prefix) :]
        if NAMESPACE_PATTERN.fullmatch(namespace) is None:
            return None
        return namespace


def is_valid_namespace(namespace: str) -> bool:
    """Return whether a namespace name matches [A-Za-z0-9._-]{1,128}."""
    return NAMESPACE_PATTERN.fullmatch(namespace) is not None

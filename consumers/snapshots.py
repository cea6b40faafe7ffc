"""Snapshots: exact value counts of a namespace's cache at one cut.

`SnapshotStore` builds snapshots (worker threads), keeps the latest
`Settings.snapshots_kept` of each namespace under `S ns NUL seq` keys with its
configuration under `K ns`, and computes counts from the latest one. What a
snapshot counts and how its sha is computed is in consumers/snapshot_content.py.

A count is eligible for exactly one leaf `Eq` or `In` on a field in the
latest snapshot's `fields`. The checks run in this order, each failing with
its NotEligible reason: the filter is one leaf (`not_single_leaf`, also for
no filter at all), its operator is Eq or In (`operator`), a snapshot exists
(`no_snapshot`), and the field is counted (`field_absent`, `field_skipped`).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Final

import msgspec

from consumers.settings import Settings
from consumers.snapshot_content import FieldSelection, content_sha, tally_view
from consumers.store import (
    CacheView,
    Store,
    new_batch,
    snapshot_config_key,
    snapshot_key,
)
from schemas.api import (
    SkipReason,
    Snapshot,
    SnapshotConfig,
    SnapshotContent,
    SnapshotSummary,
)
from schemas.filters import Filter, Leaf, value_key
from schemas.record import RESERVED_PREFIX

logger = logging.getLogger(__name__)

ELIGIBLE_OPERATORS: Final = ("Eq", "In")
_FALLBACK: Final = "use source auto, cache or origin"
_snapshot_decoder: Final = msgspec.json.Decoder(Snapshot)
_config_decoder: Final = msgspec.json.Decoder(SnapshotConfig)
_encoder: Final = msgspec.json.Encoder()


class NotEligible(Exception):
    """A count the latest snapshot cannot serve, with a machine-readable reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class NoCut(Exception):
    """A snapshot cannot be cut: the namespace has no cache_warmed_through yet."""


@dataclass(frozen=True)
class SnapshotHit:
    count: int
    sha: str
    watermark_ms: int | None


class LoadedSnapshot:
    """A snapshot with its histograms indexed for counting."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.cut = {int(p): end for p, end in snapshot.end_offsets.items()}
        # Field -> value_key -> documents holding that value.
        self.counts = {
            item.name: {value_key(entry.value): entry.count for entry in item.values}
            for item in snapshot.fields
        }
        # Field -> documents holding the field, null included.
        self.present = {name: sum(c.values()) for name, c in self.counts.items()}
        self.skipped = {item.name: item.reason for item in snapshot.skipped}

    def count(self, namespace: str, leaf: Leaf) -> int:
        """Count the documents matching a leaf Eq or In on a counted field."""
        counts = self._field_counts(namespace, leaf.attr)
        values = leaf.value if leaf.op == "In" else (leaf.value,)
        assert isinstance(values, tuple)
        total = sum(counts.get(value_key(value), 0) for value in values)
        if any(value is None for value in values):
            # Eq null also matches documents without the attribute.
            total += self.snapshot.document_count - self.present[leaf.attr]
        return total

    def _field_counts(self, namespace: str, name: str) -> dict[tuple[str, object], int]:
        counts = self.counts.get(name)
        if counts is not None:
            return counts
        reason = self.skipped.get(name)
        where = f"the latest snapshot of {namespace!r} (sha {self.snapshot.sha[:8]})"
        if reason is not None:
            raise NotEligible(
                "field_skipped",
                f"field {name!r} is skipped by {where}: "
                f"{self._skip_text(reason)}; {_FALLBACK}",
            )
        raise NotEligible("field_absent", f"{_absent_text(name, where)}; {_FALLBACK}")

    def _skip_text(self, reason: SkipReason) -> str:
        if reason == "too_many_values":
            return f"it has more than {self.snapshot.max_values} distinct values"
        if reason == "array_values":
            return "it holds array values"
        if reason == "object_values":
            return "it holds object values"
        return "the namespace's snapshot configuration excludes it"

    def summary(self) -> SnapshotSummary:
        return summarize(self.snapshot)


def summarize(snapshot: Snapshot) -> SnapshotSummary:
    """Return a snapshot without its histograms."""
    return SnapshotSummary(
        sha=snapshot.sha,
        watermark_ms=snapshot.watermark_ms,
        document_count=snapshot.document_count,
        created_at_ms=snapshot.created_at_ms,
        fields=[item.name for item in snapshot.fields],
    )


def _absent_text(name: str, where: str) -> str:
    if name == "id":
        return f"snapshots do not count the document id, so {where} has no field 'id'"
    if name.startswith(RESERVED_PREFIX):
        return f"snapshots do not count {name!r}, a reserved attribute"
    return f"field {name!r} is not in {where}: no document held it at its cut"


def single_leaf(predicate: Filter) -> Leaf:
    """Return the filter's one Eq or In leaf, or raise NotEligible."""
    node = predicate.node
    if node is None:
        raise NotEligible(
            "not_single_leaf",
            "a count without filters is not a single Eq or In leaf, which is all "
            f"a snapshot answers; {_FALLBACK}",
        )
    if not isinstance(node, Leaf):
        raise NotEligible(
            "not_single_leaf",
            f"filters use {type(node).__name__}; a snapshot answers only a single "
            f"[attribute, Eq or In, value] leaf; {_FALLBACK}",
        )
    if node.op not in ELIGIBLE_OPERATORS:
        raise NotEligible(
            "operator",
            f"operator {node.op!r} is not answered by snapshots, only Eq and In; "
            f"{_FALLBACK}",
        )
    return node


def check_config(config: SnapshotConfig) -> None:
    """Raise ValueError naming the first invalid field name of a configuration."""
    for name in [*(config.include or []), *config.exclude]:
        if name == "id" or name.startswith(RESERVED_PREFIX):
            raise ValueError(
                f"field {name!r} cannot be configured: snapshots never count the "
                f"document id or attributes starting with {RESERVED_PREFIX!r}"
            )
    both = sorted(set(config.include or []) & set(config.exclude))
    if both:
        raise ValueError(
            f"field {both[0]!r} is both included and excluded; name it in one list"
        )


class SnapshotStore:
    """Reads and builds the snapshots kept in the cache database.

    Safe to call from several threads: builds of one namespace take turns,
    and the cache of latest snapshots is replaced only after a write.
    """

    def __init__(self, settings: Settings, store: Store) -> None:
        self._settings = settings
        self._store = store
        self._build_locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()
        self._config_lock = threading.Lock()
        self._cache_lock = threading.Lock()
        # Namespace -> latest snapshot, for namespaces that have one.
        self._latest: dict[str, LoadedSnapshot] = {}

    # -- reading ----------------------------------------------------------

    def count(self, namespace: str, predicate: Filter) -> SnapshotHit:
        """Count from the latest snapshot, or raise NotEligible."""
        leaf = single_leaf(predicate)
        loaded = self.latest(namespace)
        if loaded is None:
            raise NotEligible(
                "no_snapshot",
                f"namespace {namespace!r} has no snapshot yet; {_FALLBACK}",
            )
        count = loaded.count(namespace, leaf)
        return SnapshotHit(count, loaded.snapshot.sha, loaded.snapshot.watermark_ms)

    def latest(self, namespace: str) -> LoadedSnapshot | None:
        """Return the latest snapshot of a namespace, decoding it once per write.

        A namespace without snapshots is not remembered, so requests naming
        many namespaces do not grow the cache.
        """
        with self._cache_lock:
            loaded = self._latest.get(namespace)
            if loaded is None:
                entries = list(self._store.view(namespace).snapshots())
                if not entries:
                    return None
                loaded = LoadedSnapshot(_snapshot_decoder.decode(entries[-1][1]))
                self._latest[namespace] = loaded
            return loaded

    def cached_cut(self, namespace: str) -> dict[int, int] | None:
        """Return the latest snapshot's cut if it is in memory (no disk read)."""
        loaded = self._latest.get(namespace)
        return loaded.cut if loaded is not None else None

    def latest_summary(self, namespace: str) -> SnapshotSummary | None:
        """Return a summary of the latest snapshot, or None when none is kept."""
        loaded = self.latest(namespace)
        return loaded.summary() if loaded is not None else None

    def summaries(self, namespace: str) -> list[SnapshotSummary]:
        """Return summaries of the kept snapshots, newest first."""
        entries = list(self._store.view(namespace).snapshots())
        return [
            summarize(_snapshot_decoder.decode(raw)) for _seq, raw in reversed(entries)
        ]

    def config(self, namespace: str) -> SnapshotConfig:
        """Return a namespace's snapshot configuration (the default if never set)."""
        raw = self._store.db.get(snapshot_config_key(namespace))
        return _config_decoder.decode(raw) if raw is not None else SnapshotConfig()

    def max_values(self, config: SnapshotConfig) -> int:
        return config.max_values or self._settings.snapshot_max_values

    # -- writing ----------------------------------------------------------

    def set_config(self, namespace: str, config: SnapshotConfig) -> bool:
        """Store a configuration checked by check_config; return whether it changed."""
        with self._config_lock:
            if self.config(namespace) == config:
                return False
            batch = new_batch()
            batch.put(snapshot_config_key(namespace), _encoder.encode(config))
            self._store.write(batch)
        logger.info("snapshot configuration of %s set to %s", namespace, config)
        return True

    def build(
        self,
        namespace: str,
        *,
        force: bool = True,
        stopping: threading.Event | None = None,
    ) -> Snapshot | None:
        """Cut a snapshot at the current cache_warmed_through and keep it.

        Without `force`, returns None and builds nothing when the latest
        snapshot already has this cut. Raises NoCut when no CWT is stamped,
        and BuildCancelled when `stopping` is set during the build.
        """
        with self._build_lock(namespace):
            started = time.perf_counter()
            view = self._store.view(namespace)
            warmed = view.warmed
            if warmed is None:
                raise NoCut(
                    f"namespace {namespace!r} has no cache_warmed_through yet, so no "
                    "snapshot can be cut; produce to its topic and wait for the "
                    "cache to be warmed, or run a count with source origin"
                )
            loaded = self.latest(namespace)
            latest = loaded.snapshot if loaded is not None else None
            if not force and loaded is not None and loaded.cut == warmed.end_offsets:
                return None
            config = self.config(namespace)
            max_values = self.max_values(config)
            content = tally_view(view, FieldSelection(config), max_values, stopping)
            snapshot = self._keep(namespace, latest, content, max_values, view)
        logger.info(
            "built snapshot of %s: sha %s, %d documents, %d fields, %d skipped, "
            "watermark_ms=%s, entry %d, in %.3fs",
            namespace,
            snapshot.sha[:8],
            snapshot.document_count,
            len(snapshot.fields),
            len(snapshot.skipped),
            snapshot.watermark_ms,
            snapshot.seq,
            time.perf_counter() - started,
        )
        return snapshot

    def _keep(
        self,
        namespace: str,
        latest: Snapshot | None,
        content: SnapshotContent,
        max_values: int,
        view: CacheView,
    ) -> Snapshot:
        """Write a new entry, or rewrite the latest when its content is the same."""
        assert view.warmed is not None
        sha = content_sha(content)

        snapshot = Snapshot(
            namespace=namespace,
            sha=sha,
            seq=latest.seq + 1 if latest is not None else 1,
            watermark_ms=view.warmed.watermark_ms,
            end_offsets={
                str(p): end for p, end in sorted(view.warmed.end_offsets.items())
            },
            created_at_ms=int(time.time() * 1000),
            max_values=max_values,
            document_count=content.document_count,
            fields=content.fields,
            skipped=content.skipped,
        )
        if latest is not None and latest.sha == sha:
            # Same counts: still exact at the newer cut, so move the entry there.
            snapshot.seq, snapshot.created_at_ms = latest.seq, latest.created_at_ms

        batch = new_batch()
        batch.put(snapshot_key(namespace, snapshot.seq), _encoder.encode(snapshot))
        oldest_kept = snapshot.seq - max(1, self._settings.snapshots_kept) + 1
        for seq, _raw in view.snapshots():
            if seq < oldest_kept:
                batch.delete(snapshot_key(namespace, seq))
        self._store.write(batch)

        with self._cache_lock:
            self._latest[namespace] = LoadedSnapshot(snapshot)
        return snapshot

    def _build_lock(self, namespace: str) -> threading.Lock:
        with self._locks_lock:
            lock = self._build_locks.get(namespace)
            if lock is None:
                lock = self._build_locks[namespace] = threading.Lock()
            return lock

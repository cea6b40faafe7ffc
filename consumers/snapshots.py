"""Snapshots: exact value counts of a namespace's cache at one cut."""

from __future__ import annotations

from dataclasses import dataclass

from consumers.settings import Settings
from consumers.store import Store
from schemas.filters import Filter


class NotEligible(Exception):
    """A count the latest snapshot cannot answer, with a machine-readable reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class SnapshotHit:
    count: int
    sha: str
    watermark_ms: int | None


class SnapshotStore:
    """Reads and builds the snapshots kept in the cache database."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self._settings = settings
        self._store = store

    def count(self, namespace: str, predicate: Filter) -> SnapshotHit:
        """Answer a count from the latest snapshot, or raise NotEligible."""
        raise NotEligible(
            "no_snapshot",
            f"namespace {namespace!r} has no snapshot yet; use source auto, cache "
            "or origin",
        )

    def latest_summary(self, namespace: str) -> None:
        """Return a summary of the latest snapshot (none are built yet)."""
        return None

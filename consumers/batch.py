"""One applier batch: document changes, offsets and stamps in one write.

Runs in a worker thread, off the event loop. The batch reads entries through
an overlay, so several records of one id in a batch build on each other. It
writes everything with one atomic RocksDB write, so a crash before the write
leaves the previous offsets and the records are read and applied again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from consumers.cuts import Observation, Version, insert_version, prune
from consumers.store import (
    Store,
    doc_key,
    encode_observation,
    encode_u64,
    encode_versions,
    gc_key,
    new_batch,
    offset_key,
    warmed_key,
)


@dataclass
class ApplyOutcome:
    """Changes of one committed batch, for the event loop to publish."""

    # Namespace -> partition -> next offset after this batch (only those moved).
    next_offsets: dict[str, dict[int, int]] = field(default_factory=dict)
    # Namespace -> the observation stamped as cache_warmed_through.
    stamps: dict[str, Observation] = field(default_factory=dict)
    documents_changed: int = 0


class BatchWriter:
    """Collect one batch of changes over the store, then write it at once."""

    def __init__(self, store: Store, warmed: dict[str, Observation | None]) -> None:
        self._store = store
        # Namespace -> the cut of its cache_warmed_through, used for pruning.
        self._cuts = {
            namespace: observation.end_offsets if observation else None
            for namespace, observation in warmed.items()
        }
        self._entries: dict[tuple[str, str], list[Version]] = {}
        self._outcome = ApplyOutcome()

    def _versions(self, namespace: str, doc_id: str) -> list[Version]:
        key = (namespace, doc_id)
        versions = self._entries.get(key)
        if versions is None:
            versions = self._store.versions(namespace, doc_id)
        return versions

    def apply(self, namespace: str, doc_id: str, version: Version) -> None:
        """Add one upsert or delete of a document."""
        versions = insert_version(self._versions(namespace, doc_id), version)
        self._entries[(namespace, doc_id)] = prune(versions, self._cuts.get(namespace))
        self._outcome.documents_changed += 1

    def advance(self, namespace: str, partition: int, next_offset: int) -> None:
        """Move a partition's next offset forward (never back)."""
        moved = self._outcome.next_offsets.setdefault(namespace, {})
        moved[partition] = max(next_offset, moved.get(partition, 0))

    def moved(self, namespace: str) -> dict[int, int]:
        """Return the partitions of a namespace this batch moved, with next offsets."""
        return dict(self._outcome.next_offsets.get(namespace, {}))

    def stamp(self, namespace: str, observation: Observation) -> None:
        """Stamp cache_warmed_through and prune entries waiting for it."""
        cut = observation.end_offsets
        self._cuts[namespace] = cut
        for doc_id in self._store.gc_marked(namespace):
            versions = self._versions(namespace, doc_id)
            self._entries[(namespace, doc_id)] = prune(versions, cut)
        for (entry_namespace, doc_id), versions in self._entries.items():
            if entry_namespace == namespace:
                self._entries[(namespace, doc_id)] = prune(versions, cut)
        self._outcome.stamps[namespace] = observation

    def commit(self) -> ApplyOutcome:
        """Write every change in one atomic batch; return what changed."""
        batch = new_batch()
        for (namespace, doc_id), versions in self._entries.items():
            if versions:
                batch.put(doc_key(namespace, doc_id), encode_versions(versions))
            else:
                batch.delete(doc_key(namespace, doc_id))
            if len(versions) > 1:
                batch.put(gc_key(namespace, doc_id), b"")
            else:
                batch.delete(gc_key(namespace, doc_id))
        for namespace, offsets in self._outcome.next_offsets.items():
            for partition, next_offset in offsets.items():
                batch.put(offset_key(namespace, partition), encode_u64(next_offset))
        for namespace, observation in self._outcome.stamps.items():
            batch.put(warmed_key(namespace), encode_observation(observation))
        self._store.write(batch)
        return self._outcome

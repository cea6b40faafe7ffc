"""Observations of a namespace's log and the cuts they define over the cache.

An observation pairs a namespace's watermark (the newest record timestamp in
its topic) with the end offsets read at the same moment. Its end offsets are
a cut: a version of a document belongs to the view at that cut when its
offset is below the end offset observed for its partition.

Worked example with one partition, cut = {0: 3}:

    offset 0  upsert a={"x": 1}    below 3: in the view
    offset 1  upsert b={"x": 2}    below 3: in the view
    offset 2  delete a (tombstone) below 3: a is absent from the view
    offset 3  upsert b={"x": 9}    not below 3: the view still shows b={"x": 2}

An empty partition has end offset 0, so nothing of it is in the view and the
applier covers it before reading anything. Next offsets stored by the applier
use the same unit as end offsets (the offset after the last one read), so an
applier covers an observation when its next offset is at least the observed
end offset of every partition.
"""

from __future__ import annotations

import msgspec


class Version(msgspec.Struct, array_like=True, frozen=True):
    """One version of a document as the log wrote it."""

    partition: int
    offset: int
    # Broker timestamp of the record in epoch ms: its _hevlayer_upserted_at.
    timestamp_ms: int
    # The record value as JSON bytes, or None for a delete (tombstone).
    value: bytes | None


class Observation(msgspec.Struct, frozen=True, kw_only=True):
    """The watermark of a namespace and the end offsets read with it."""

    namespace: str
    # Newest record timestamp below the end offsets; None while the topic
    # contains no data record.
    watermark_ms: int | None
    # Partition -> end offset (last stable offset, the next offset to be written).
    end_offsets: dict[int, int]
    observed_at_ms: int


def covers(next_offsets: dict[int, int], cut: dict[int, int]) -> bool:
    """Return whether next offsets reach every end offset of a cut."""
    return all(next_offsets.get(p, 0) >= end for p, end in cut.items())


def lag(next_offsets: dict[int, int], cut: dict[int, int]) -> int:
    """Return how many offsets of a cut the next offsets have not reached yet."""
    return sum(max(0, end - next_offsets.get(p, 0)) for p, end in cut.items())


def in_cut(version: Version, cut: dict[int, int]) -> bool:
    """Return whether a version is below its partition's end offset in a cut."""
    return version.offset < cut.get(version.partition, 0)


def supersedes(new: Version, old: Version) -> bool:
    """Return whether `new` replaces `old` as the newer version of a document.

    Within a partition the later offset wins. Keys are partitioned by id, so
    one id in two partitions means a producer chose partitions by hand. Then
    the later timestamp wins and a tie goes to the higher partition, so the
    cache and origin scans pick the same version.
    """
    if new.partition == old.partition:
        return new.offset > old.offset
    return (new.timestamp_ms, new.partition) > (old.timestamp_ms, old.partition)


def insert_version(versions: list[Version], new: Version) -> list[Version]:
    """Return versions with `new` placed in supersede order (oldest first)."""
    position = len(versions)
    while position > 0 and not supersedes(new, versions[position - 1]):
        if versions[position - 1] == new:
            return versions
        position -= 1
    return [*versions[:position], new, *versions[position:]]


def visible_version(versions: list[Version], cut: dict[int, int] | None) -> Version | None:
    """Return the version visible at `cut` (None: the document is absent).

    With no cut (no cache_warmed_through stamped yet) the newest version
    applied is visible.
    """
    if cut is None:
        return versions[-1] if versions else None
    for version in reversed(versions):
        if in_cut(version, cut):
            return version
    return None


def prune(versions: list[Version], cut: dict[int, int] | None) -> list[Version]:
    """Drop versions that no reader at `cut` or at any later cut can see.

    Keeps the version visible at `cut` and every version after it; with no
    cut stamped yet every version stays. A tombstone with no version before
    it hides nothing, so it goes too, and an entry left with one version is
    then always a live document.
    """
    kept = versions
    if cut is not None:
        for index in range(len(versions) - 1, -1, -1):
            if in_cut(versions[index], cut):
                kept = versions[index:]
                break
    while kept and kept[0].value is None:
        kept = kept[1:]
    return kept

"""Counting a namespace's documents into snapshot content, and its sha.

A snapshot counts every top-level attribute whose values are all scalars
(strings, numbers, booleans, null) with at most `max_values` distinct values.
Values are grouped with `schemas.filters.value_key`, the key the filter
evaluator compares by, so `1` and `1.0` are one value and `True` is not `1`.
A null is counted like any other value. A document without the attribute is
not counted under it, so `Eq null` is the null count plus the documents that
lack the attribute.

The sha is the SHA-256 of `CANONICAL_TAG` followed by the compact JSON of
`SnapshotContent` (keys `document_count`, `fields`, `skipped` in that order).
Fields and skipped fields are ordered by name, values by type (null, bool,
number, string) and then by value. A number is written as an int when it is
integral and fits in a signed 64-bit int, or when no float equals it;
otherwise as the float. So equal content has one encoding whatever the order
or the spelling (1 or 1.0) in which documents arrived.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from consumers.cuts import visible_version
from consumers.store import CacheView
from schemas.api import (
    FieldCounts,
    Scalar,
    SkippedField,
    SkipReason,
    SnapshotConfig,
    SnapshotContent,
    ValueCount,
)
from schemas.filters import value_key

CANONICAL_TAG: Final = b"hevlayer-snapshot-v1\n"
# Documents between two checks of the stop request.
STOP_CHECK_EVERY: Final = 1024

_attributes_decoder: Final = msgspec.json.Decoder(dict[str, Any])
_canonical_encoder: Final = msgspec.json.Encoder()
_KIND_RANK: Final = {"null": 0, "b": 1, "n": 2, "s": 3}
_INT64_LIMIT: Final = 2**63

ValueKey = tuple[str, object]


class BuildCancelled(Exception):
    """A build stopped early because the process is shutting down."""


@dataclass
class FieldTally:
    """Running counts of one attribute while a build reads the documents."""

    # value_key -> documents; None once the field is skipped.
    counts: dict[ValueKey, int] | None = field(default_factory=dict)
    has_array: bool = False
    has_object: bool = False
    too_many: bool = False

    def add(self, value: object, max_values: int) -> None:
        if isinstance(value, list):
            self.has_array, self.counts = True, None
            return
        if isinstance(value, dict):
            self.has_object, self.counts = True, None
            return
        counts = self.counts
        if counts is None:
            return
        key = value_key(value)
        counts[key] = counts.get(key, 0) + 1
        if len(counts) > max_values:
            self.too_many, self.counts = True, None

    def skip_reason(self) -> SkipReason | None:
        """Return why the field is skipped, or None when it is counted.

        Objects win over arrays and arrays over too many values, so the reason
        does not depend on the order in which documents were read.
        """
        if self.has_object:
            return "object_values"
        if self.has_array:
            return "array_values"
        if self.too_many:
            return "too_many_values"
        return None


class FieldSelection:
    """The attributes a namespace's configuration lets snapshots count."""

    def __init__(self, config: SnapshotConfig) -> None:
        self._include = None if config.include is None else frozenset(config.include)
        self._exclude = frozenset(config.exclude)

    def excludes(self, name: str) -> bool:
        if self._include is not None and name not in self._include:
            return True
        return name in self._exclude


def tally_view(
    view: CacheView,
    selection: FieldSelection,
    max_values: int,
    stopping: threading.Event | None = None,
) -> SnapshotContent:
    """Count the documents of a view at its cut (cache_warmed_through).

    The view must have a cut. Raises BuildCancelled when `stopping` is set.
    """
    assert view.warmed is not None
    cut = view.warmed.end_offsets
    tallies: dict[str, FieldTally | None] = {}
    document_count = 0
    for _doc_id, versions in view.entries():
        version = visible_version(versions, cut)
        if version is None or version.value is None:
            continue
        document_count += 1
        if stopping is not None and document_count % STOP_CHECK_EVERY == 0:
            if stopping.is_set():
                raise BuildCancelled("snapshot build stopped: the process is stopping")
        attrs = _attributes_decoder.decode(version.value)
        _add_document(attrs, tallies, selection, max_values)
    return _content(document_count, tallies)


def _add_document(
    attrs: Mapping[str, object],
    tallies: dict[str, FieldTally | None],
    selection: FieldSelection,
    max_values: int,
) -> None:
    for name, value in attrs.items():
        if name in tallies:
            tally = tallies[name]
        else:
            tally = tallies[name] = None if selection.excludes(name) else FieldTally()
        if tally is not None:
            tally.add(value, max_values)


def _content(
    document_count: int, tallies: dict[str, FieldTally | None]
) -> SnapshotContent:
    fields: list[FieldCounts] = []
    skipped: list[SkippedField] = []
    for name in sorted(tallies):
        tally = tallies[name]
        if tally is None:
            skipped.append(SkippedField(name=name, reason="excluded"))
            continue
        reason = tally.skip_reason()
        if reason is not None or tally.counts is None:
            skipped.append(SkippedField(name=name, reason=reason or "too_many_values"))
            continue
        fields.append(FieldCounts(name=name, values=_ordered_values(tally.counts)))
    return SnapshotContent(
        document_count=document_count, fields=fields, skipped=skipped
    )


def _ordered_values(counts: dict[ValueKey, int]) -> list[ValueCount]:
    entries = [
        (kind, canonical_scalar(value), n) for (kind, value), n in counts.items()
    ]
    entries.sort(key=lambda entry: (_KIND_RANK[entry[0]], entry[1]))
    return [ValueCount(value=value, count=n) for _kind, value, n in entries]


def canonical_scalar(value: Any) -> Scalar:
    """Return the one spelling of a scalar that the canonical encoding uses."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    if isinstance(value, float):
        if value.is_integer() and abs(value) < _INT64_LIMIT:
            return int(value)
        return value
    if abs(value) < _INT64_LIMIT:
        return value
    try:
        as_float = float(value)
    except OverflowError:
        return value
    return as_float if as_float == value else value


def content_sha(content: SnapshotContent) -> str:
    """Return the hex SHA-256 of a snapshot's canonical encoding."""
    return hashlib.sha256(
        CANONICAL_TAG + _canonical_encoder.encode(content)
    ).hexdigest()

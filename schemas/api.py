"""Request and response bodies of the HTTP API.

Evolution: new response fields get defaults, so older clients keep
decoding. Request structs reject unknown fields, so a typo such as `filter`
for `filters` is a 422 rather than a scan of everything.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

MAX_PAGE_SIZE = 10_000
MAX_TIMEOUT_SECONDS = 3600.0
MAX_THREADS = 256
MAX_RESULTS_LIMIT = 10_000

Mode = Literal["ids", "count"]
Source = Literal["auto", "cache", "origin", "snapshot"]
ServedBy = Literal["cache", "origin", "snapshot"]
JobStatus = Literal["running", "completed", "failed", "cancelled"]


class ConsistencyRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Consistency level of a scan: eventual (the default) or strong."""

    level: Literal["eventual", "strong"] = "eventual"


class ScanRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Body of POST /v2/namespaces/{ns}/scans."""

    mode: Mode = "ids"
    source: Source = "auto"
    # Filter expression; null or absent scans every document.
    filters: Any = None
    # Records fetched per request by origin scans.
    page_size: Annotated[int, Meta(ge=1, le=MAX_PAGE_SIZE)] = 1000
    # Deadline of the scan; defaults to 30 s for counts and 600 s for ID jobs.
    timeout_seconds: (
        Annotated[float, Meta(gt=0, le=MAX_TIMEOUT_SECONDS)] | None
    ) = None
    # Partitions an origin scan reads at once; default all.
    threads: Annotated[int, Meta(ge=1, le=MAX_THREADS)] | None = None
    consistency: ConsistencyRequest | None = None


class CountResponse(msgspec.Struct, kw_only=True):
    """Body of a count-mode scan."""

    count: int
    served_by: ServedBy
    elapsed_ms: int
    snapshot_sha: str | UnsetType = UNSET
    watermark_ms: int | None | UnsetType = UNSET
    # Cut of a cache response: cache_warmed_through in epoch ms, or null.
    stable_as_of: int | None | UnsetType = UNSET
    bounded: bool | UnsetType = UNSET
    timed_out: bool | UnsetType = UNSET
    shards_saturated: int | UnsetType = UNSET
    shards_total: int | UnsetType = UNSET


class JobError(msgspec.Struct, kw_only=True):
    """Reason a scan job failed."""

    error: str
    message: str


class ScanJobView(msgspec.Struct, kw_only=True):
    """One ID scan job as the API shows it."""

    id: str
    namespace: str
    source: Source
    effective_source: ServedBy
    status: JobStatus
    # Fraction of the scan done, from 0.0 to 1.0.
    progress: float
    documents_scanned: int
    created_at: str
    completed_at: str | None = None
    filters: Any = None
    # Number of matching ids, once completed.
    total: int | None = None
    stable_as_of: int | None | UnsetType = UNSET
    watermark_ms: int | None | UnsetType = UNSET
    error: JobError | None = None


class ScanJobList(msgspec.Struct, kw_only=True):
    """Body of GET /v2/namespaces/{ns}/scans."""

    scans: list[ScanJobView]


class ScanResults(msgspec.Struct, kw_only=True):
    """One page of a completed ID scan, sorted by id."""

    ids: list[str]
    total: int
    stable_as_of: int | None | UnsetType = UNSET


class ErrorBody(msgspec.Struct, kw_only=True):
    """Every error response: a stable code and a message naming the bad value."""

    error: str
    message: str


class ObservationView(msgspec.Struct, kw_only=True):
    """A watermark observation: newest record timestamp and the end offsets."""

    watermark_ms: int | None
    end_offsets: dict[str, int]
    observed_at_ms: int


class SnapshotSummary(msgspec.Struct, kw_only=True):
    """The latest snapshot of a namespace, without its histograms."""

    sha: str
    watermark_ms: int | None
    document_count: int
    created_at_ms: int
    fields: list[str]


# A value a snapshot counts: a JSON scalar. Numbers that compare equal (1 and
# 1.0) are one value, written as an int when integral and within int64 range.
Scalar = str | int | float | bool | None
SkipReason = Literal["too_many_values", "array_values", "object_values", "excluded"]
MAX_CONFIG_FIELDS = 10_000
FieldNames = Annotated[
    list[Annotated[str, Meta(min_length=1, max_length=1024)]],
    Meta(max_length=MAX_CONFIG_FIELDS),
]
MAX_SNAPSHOT_VALUES = 10_000_000


class ValueCount(msgspec.Struct, kw_only=True):
    """One value of a field and the number of documents holding it."""

    value: Scalar
    count: int


class FieldCounts(msgspec.Struct, kw_only=True):
    """Exact value counts of one field; a null entry counts explicit nulls."""

    name: str
    # Ordered by type (null, bool, number, string), then by value.
    values: list[ValueCount]


class SkippedField(msgspec.Struct, kw_only=True):
    """A field a snapshot does not count, and why."""

    name: str
    reason: SkipReason


class SnapshotContent(msgspec.Struct, kw_only=True):
    """The part of a snapshot that its sha covers: the counts, never the cut."""

    document_count: int
    # Ordered by field name.
    fields: list[FieldCounts]
    # Ordered by field name.
    skipped: list[SkippedField]


class Snapshot(msgspec.Struct, kw_only=True):
    """Body of the snapshot routes: a snapshot with its full histograms."""

    namespace: str
    # Hex SHA-256 of the canonical encoding of document_count, fields and
    # skipped (a SnapshotContent); the cut is not part of it.
    sha: str
    # Entry number in the namespace's history; a rebuild with the same sha
    # rewrites the entry under its number.
    seq: int
    # cache_warmed_through the counts are exact at; null when the topic held
    # no data record at that cut.
    watermark_ms: int | None
    # The cut: partition -> end offset of the CWT observation.
    end_offsets: dict[str, int]
    # When the entry was first written; a rewrite at a newer cut keeps it.
    created_at_ms: int
    # Distinct values past which a field was skipped.
    max_values: int
    document_count: int
    fields: list[FieldCounts]
    skipped: list[SkippedField]


class SnapshotList(msgspec.Struct, kw_only=True):
    """Body of GET /v2/namespaces/{ns}/snapshots: kept snapshots, newest first."""

    snapshots: list[SnapshotSummary]


class SnapshotConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Body of PUT /v2/namespaces/{ns}/snapshots/config.

    `include` null counts every field, and a list counts only the fields it
    names. `exclude` names fields never counted; a name may not be in both
    lists. `max_values` null takes the server's default.
    """

    include: FieldNames | None = None
    exclude: FieldNames = []
    max_values: Annotated[int, Meta(ge=1, le=MAX_SNAPSHOT_VALUES)] | None = None


class SnapshotConfigView(msgspec.Struct, kw_only=True):
    """Body of GET and PUT /v2/namespaces/{ns}/snapshots/config."""

    include: list[str] | None
    exclude: list[str]
    max_values: int | None
    # The limit builds use: max_values, or the server's default when null.
    effective_max_values: int


class NamespaceStatus(msgspec.Struct, kw_only=True):
    """Body of GET /v2/namespaces/{ns}."""

    namespace: str
    topic: str
    cache_state: Literal["empty", "populated"]
    watermark: ObservationView | None
    cache_warmed_through: ObservationView | None
    # Partition -> next offset the applier reads.
    applied_offsets: dict[str, int]
    # Records between the observed end offsets and the applied offsets.
    applier_lag: int | None
    warm_in_flight: bool
    latest_snapshot: SnapshotSummary | None
    topic_error: str | None = None


class Health(msgspec.Struct, kw_only=True):
    """Body of GET /health."""

    status: Literal["ok", "degraded"]
    applier: Literal["running", "stopped"]
    watcher: Literal["running", "stopped"]
    broker_reachable: bool | None

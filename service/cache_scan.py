"""Cache scans: evaluate a filter over a namespace's cache at its stable cut.

A scan reads the cut (cache_warmed_through) and the documents through one
RocksDB iterator, so documents updated or deleted after the cut still show
the version the cut saw. With no cut stamped yet, it reads the newest
versions and reports `stable_as_of` as null.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from consumers.cuts import visible_version
from consumers.store import Store
from schemas.filters import Filter
from schemas.record import UPSERTED_AT
from service.progress import Progress

logger = logging.getLogger(__name__)

_attributes_decoder: Final = msgspec.json.Decoder(dict[str, Any])
PROGRESS_EVERY: Final = 1024


@dataclass
class CacheScanResult:
    count: int
    # Cut of the result: cache_warmed_through in epoch ms, or None.
    stable_as_of: int | None
    populated: bool
    # Whether the scan stopped early (deadline or cancel) with a partial count.
    stopped: bool = False
    ids: list[str] = field(default_factory=list)


def scan_cache(
    store: Store,
    namespace: str,
    predicate: Filter,
    *,
    want_ids: bool,
    progress: Progress,
    expected_documents: int | None = None,
) -> CacheScanResult:
    """Count (and list, when `want_ids`) the documents that match, in id order.

    Runs in a worker thread. Sets `stopped` when `progress.cancel` is set,
    leaving the count so far, which is a lower bound of the full count.
    """
    view = store.view(namespace)
    warmed = view.warmed
    cut = warmed.end_offsets if warmed is not None else None
    result = CacheScanResult(
        count=0,
        stable_as_of=_stable_as_of(warmed),
        populated=view.populated,
    )
    matches = predicate.matches
    for doc_id, versions in view.entries():
        version = visible_version(versions, cut)
        if version is None or version.value is None:
            continue
        attrs = _attributes_decoder.decode(version.value)
        attrs[UPSERTED_AT] = version.timestamp_ms
        if matches(doc_id, attrs):
            result.count += 1
            if want_ids:
                result.ids.append(doc_id)
        progress.documents_scanned += 1
        if progress.documents_scanned % PROGRESS_EVERY == 0:
            if expected_documents:
                progress.fraction = min(
                    0.99, progress.documents_scanned / expected_documents
                )
            if progress.cancel.is_set():
                result.stopped = True
                return result
    progress.fraction = 1.0
    return result


def _stable_as_of(warmed: Any) -> int | None:
    """Return the epoch ms of a cut, or None when none is stamped.

    A cut stamped before the topic held any data record has no timestamp;
    its view is the empty log, reported as 0.
    """
    if warmed is None:
        return None
    return warmed.watermark_ms if warmed.watermark_ms is not None else 0

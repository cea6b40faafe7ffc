"""The auto-mode policy: the source that serves a scan, and whether to warm.

| cache      | watermark                       | action                         |
| ---------- | ------------------------------- | ------------------------------ |
| empty      | any                             | origin                         |
| populated  | observed, CWT covers it         | cache                          |
| populated  | observed, CWT behind it         | cache, start a background warm |
| populated  | observed, no CWT stamped yet    | cache, start a background warm |
| populated  | not yet observed                | cache                          |

"CWT covers the watermark" compares end offsets, partition by partition:
offsets are exact where two records can share one millisecond.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from consumers.cuts import Observation, covers


@dataclass(frozen=True)
class Decision:
    source: Literal["cache", "origin"]
    start_warm: bool


def choose_source(
    populated: bool, warmed: Observation | None, watermark: Observation | None
) -> Decision:
    """Apply the auto-mode table to one namespace's state."""
    if not populated:
        return Decision("origin", start_warm=False)
    if watermark is None:
        return Decision("cache", start_warm=False)
    if warmed is None:
        return Decision("cache", start_warm=True)
    behind = not covers(warmed.end_offsets, watermark.end_offsets)
    return Decision("cache", start_warm=behind)

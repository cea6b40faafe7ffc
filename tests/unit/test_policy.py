"""The auto-mode table, row by row."""

from __future__ import annotations

from consumers.cuts import Observation
from service.policy import Decision, choose_source


def obs(ms: int, **ends: int) -> Observation:
    end_offsets = {int(k[1:]): value for k, value in ends.items()}
    return Observation(
        namespace="n", watermark_ms=ms, end_offsets=end_offsets, observed_at_ms=ms
    )


def test_empty_cache_runs_origin() -> None:
    assert choose_source(False, None, None) == Decision("origin", False)
    assert choose_source(False, obs(1, p0=5), obs(2, p0=9)) == Decision("origin", False)


def test_warmed_through_watermark_serves_cache() -> None:
    assert choose_source(True, obs(5, p0=9, p1=2), obs(5, p0=9, p1=2)) == Decision(
        "cache", False
    )


def test_warmed_behind_watermark_starts_warm() -> None:
    assert choose_source(True, obs(4, p0=8, p1=2), obs(5, p0=9, p1=2)) == Decision(
        "cache", True
    )


def test_offsets_decide_within_one_millisecond() -> None:
    assert choose_source(True, obs(5, p0=8), obs(5, p0=9)) == Decision("cache", True)


def test_no_cwt_yet_starts_warm() -> None:
    assert choose_source(True, None, obs(5, p0=9)) == Decision("cache", True)


def test_unobserved_watermark_serves_cache() -> None:
    assert choose_source(True, None, None) == Decision("cache", False)
    assert choose_source(True, obs(5, p0=9), None) == Decision("cache", False)

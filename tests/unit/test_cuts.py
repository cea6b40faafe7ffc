"""Cut arithmetic: visibility, pruning and supersede order of document versions."""

from __future__ import annotations

from consumers.cuts import (
    Version,
    covers,
    in_cut,
    insert_version,
    prune,
    supersedes,
    visible_version,
)


def v(partition: int, offset: int, value: bytes | None = b"{}", ts: int = 0) -> Version:
    return Version(partition, offset, ts or offset, value)


def test_covers_requires_every_partition() -> None:
    assert covers({0: 5, 1: 3}, {0: 5, 1: 3})
    assert covers({0: 6, 1: 3}, {0: 5, 1: 3})
    assert not covers({0: 5}, {0: 5, 1: 1})
    assert covers({0: 5}, {0: 5, 1: 0})
    assert covers({}, {})


def test_in_cut_is_offset_below_end() -> None:
    assert in_cut(v(0, 2), {0: 3})
    assert not in_cut(v(0, 3), {0: 3})
    assert not in_cut(v(1, 0), {0: 3})


def test_visible_version_worked_example() -> None:
    versions = [v(0, 1, b'{"x": 2}'), v(0, 3, b'{"x": 9}')]
    assert visible_version(versions, {0: 3}) == v(0, 1, b'{"x": 2}')
    assert visible_version(versions, {0: 4}) == v(0, 3, b'{"x": 9}')
    assert visible_version(versions, {0: 1}) is None
    assert visible_version(versions, None) == v(0, 3, b'{"x": 9}')


def test_visible_tombstone_hides_document() -> None:
    versions = [v(0, 0), v(0, 2, None)]
    assert visible_version(versions, {0: 3}) == v(0, 2, None)
    assert visible_version(versions, {0: 2}) == v(0, 0)


def test_prune_keeps_view_and_later_versions() -> None:
    versions = [v(0, 0), v(0, 4), v(0, 7), v(0, 9)]
    assert prune(versions, {0: 8}) == [v(0, 7), v(0, 9)]
    assert prune(versions, {0: 10}) == [v(0, 9)]
    assert prune(versions, {0: 0}) == versions
    assert prune(versions, None) == versions


def test_prune_drops_leading_tombstones() -> None:
    assert prune([v(0, 0), v(0, 2, None)], {0: 5}) == []
    assert prune([v(0, 2, None)], {0: 1}) == []
    assert prune([v(0, 0), v(0, 2, None), v(0, 4)], {0: 3}) == [v(0, 4)]
    assert prune([v(0, 0), v(0, 2, None)], {0: 1}) == [v(0, 0), v(0, 2, None)]


def test_supersedes_same_partition_by_offset() -> None:
    assert supersedes(v(0, 5, ts=1), v(0, 4, ts=9))
    assert not supersedes(v(0, 4, ts=9), v(0, 5, ts=1))


def test_supersedes_across_partitions_by_time() -> None:
    assert supersedes(v(1, 0, ts=10), v(0, 50, ts=9))
    assert not supersedes(v(0, 50, ts=9), v(1, 0, ts=10))
    assert supersedes(v(1, 0, ts=10), v(0, 50, ts=10))


def test_insert_version_orders_and_dedupes() -> None:
    assert insert_version([v(0, 1), v(0, 5)], v(0, 3)) == [v(0, 1), v(0, 3), v(0, 5)]
    assert insert_version([v(0, 1)], v(0, 2)) == [v(0, 1), v(0, 2)]
    assert insert_version([v(0, 1), v(0, 2)], v(0, 2)) == [v(0, 1), v(0, 2)]
    assert insert_version([], v(0, 0)) == [v(0, 0)]

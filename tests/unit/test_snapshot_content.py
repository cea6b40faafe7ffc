"""Snapshot content: value grouping, skip reasons, canonical numbers and the sha."""

from __future__ import annotations

from consumers.snapshot_content import FieldTally, canonical_scalar, content_sha
from schemas.api import FieldCounts, SkippedField, SnapshotContent, ValueCount


def tally(values: list[object], max_values: int = 10) -> FieldTally:
    counted = FieldTally()
    for value in values:
        counted.add(value, max_values)
    return counted


def content(values: list[ValueCount], document_count: int = 3) -> SnapshotContent:
    return SnapshotContent(
        document_count=document_count,
        fields=[FieldCounts(name="n", values=values)],
        skipped=[SkippedField(name="tags", reason="array_values")],
    )


def test_tally_groups_filter_equal_values() -> None:
    counted = tally([1, 1.0, True, "1", None, None, -0.0, 0])

    assert counted.skip_reason() is None
    assert counted.counts == {
        ("n", 1): 2,
        ("b", True): 1,
        ("s", "1"): 1,
        ("null", None): 2,
        ("n", 0): 2,
    }


def test_tally_skip_reasons() -> None:
    assert tally([1, [1]]).skip_reason() == "array_values"
    assert tally([{"a": 1}, 1]).skip_reason() == "object_values"
    assert tally([[1], {"a": 1}]).skip_reason() == "object_values"
    assert tally([{"a": 1}, [1]]).skip_reason() == "object_values"
    assert tally([1, 2, 3], max_values=2).skip_reason() == "too_many_values"
    assert tally([1, 2, 3, [1]], max_values=2).skip_reason() == "array_values"
    assert tally([1, 2, 2.0], max_values=2).skip_reason() is None


def test_tally_drops_counts_once_skipped() -> None:
    assert tally([1, [1], 2]).counts is None
    assert tally([1, 2, 3], max_values=2).counts is None


def test_canonical_scalar_numbers() -> None:
    cases: list[tuple[object, object]] = [
        (1.0, 1),
        (-0.0, 0),
        (2.5, 2.5),
        (1e15, 1_000_000_000_000_000),
        (1e20, 1e20),
        (2.0**63, 2.0**63),
        (2**63, 2.0**63),
        (2**63 + 1, 2**63 + 1),
        (10**400, 10**400),
        (-(2**63), 2.0**63 * -1),
        (-(2**63) + 1, -(2**63) + 1),
    ]
    for value, expected in cases:
        result = canonical_scalar(value)
        assert result == expected, value
        assert type(result) is type(expected), value


def test_canonical_scalar_keeps_other_types() -> None:
    for value in (True, False, None, "1", ""):
        assert canonical_scalar(value) is value


def test_sha_is_hex_sha256() -> None:
    sha = content_sha(content([ValueCount(value=1, count=3)]))

    assert len(sha) == 64
    assert int(sha, 16) >= 0


def test_sha_same_for_equal_content() -> None:
    first = content([ValueCount(value=1, count=2), ValueCount(value="a", count=1)])
    again = content([ValueCount(value=1, count=2), ValueCount(value="a", count=1)])

    assert content_sha(first) == content_sha(again)


def test_sha_differs_for_other_content() -> None:
    base = content_sha(content([ValueCount(value=1, count=3)]))

    assert content_sha(content([ValueCount(value=1, count=2)])) != base
    assert content_sha(content([ValueCount(value=2, count=3)])) != base
    assert content_sha(content([ValueCount(value=1.5, count=3)])) != base
    assert content_sha(content([ValueCount(value=True, count=3)])) != base
    assert content_sha(content([ValueCount(value="1", count=3)])) != base
    assert content_sha(content([ValueCount(value=1, count=3)], 4)) != base

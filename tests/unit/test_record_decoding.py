"""Unit tests for schemas.record: which records are bad, and the reason given."""

from __future__ import annotations

import json
from typing import Any

import pytest

from schemas.record import MAX_ID_BYTES, BadRecord, decode_record

# JSON nesting deeper than Python's default recursion limit of 1000.
DEEP_NESTING = 3000


def attributes(value: Any) -> bytes:
    return json.dumps(value).encode()


BAD_RECORDS = [
    pytest.param(b"a", b"{not json", "not valid JSON", id="not-json"),
    pytest.param(b"a", b'{"a": 1', "not valid JSON", id="truncated"),
    pytest.param(b"a", b"", "not valid JSON", id="empty-value"),
    pytest.param(b"a", b'{"a": "\xff"}', "not valid JSON", id="invalid-utf8-value"),
    pytest.param(b"a", b"[1, 2]", "not an object", id="array"),
    pytest.param(b"a", b'"text"', "not an object", id="string"),
    pytest.param(b"a", b"42", "not an object", id="number"),
    pytest.param(b"a", b"null", "not an object", id="json-null"),
    pytest.param(b"a", b"true", "not an object", id="bool"),
    pytest.param(b"a", attributes({"_hevlayer_x": 1}), "'_hevlayer_x'", id="reserved"),
    pytest.param(
        b"a",
        attributes({"_hevlayer_upserted_at": 1}),
        "_hevlayer_upserted_at",
        id="stamp",
    ),
    pytest.param(b"a", attributes({"id": "b"}), "'id'", id="id-attribute"),
    pytest.param(None, attributes({"a": 1}), "no key", id="no-key"),
    pytest.param(None, None, "no key", id="no-key-tombstone"),
    pytest.param(b"", attributes({"a": 1}), "empty", id="empty-key"),
    pytest.param(b"", None, "empty", id="empty-key-tombstone"),
    pytest.param(b"\xff\xfe", attributes({"a": 1}), "UTF-8", id="key-not-utf8"),
    pytest.param(
        b"k" * (MAX_ID_BYTES + 1),
        attributes({"a": 1}),
        f"{MAX_ID_BYTES + 1} bytes",
        id="key-too-long",
    ),
]


@pytest.mark.parametrize(("key", "value", "reason"), BAD_RECORDS)
def test_bad_record_reason(key: bytes | None, value: bytes | None, reason: str) -> None:
    with pytest.raises(BadRecord) as caught:
        decode_record(key, value)
    assert reason in str(caught.value)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        (b"a", attributes({"n": 1}), ("a", {"n": 1})),
        (b"a", None, ("a", None)),
        (b"a", b"{}", ("a", {})),
        ("\u00fc".encode(), attributes({"n": 1}), ("\u00fc", {"n": 1})),
        (b"k" * MAX_ID_BYTES, b"{}", ("k" * MAX_ID_BYTES, {})),
        (b"a", attributes({"hevlayer_x": 1}), ("a", {"hevlayer_x": 1})),
        (b"a", attributes({"ID": 1, "_id": 2}), ("a", {"ID": 1, "_id": 2})),
        (b"a", attributes({"nested": {"id": 1}}), ("a", {"nested": {"id": 1}})),
    ],
    ids=[
        "object",
        "tombstone",
        "empty",
        "unicode-id",
        "max-key",
        "prefix-lookalike",
        "id-lookalike",
        "nested-id",
    ],
)
def test_valid_record_decodes(
    key: bytes, value: bytes | None, expected: tuple[str, Any]
) -> None:
    assert decode_record(key, value) == expected


def test_deep_value_is_bad_record() -> None:
    # Valid JSON whose nesting exhausts the decoder's recursion limit must still be
    # a BadRecord, or the applier retries the batch that contains it forever.
    value = b'{"a": ' + b"[" * DEEP_NESTING + b"]" * DEEP_NESTING + b"}"
    with pytest.raises(BadRecord):
        decode_record(b"deep", value)


def test_out_of_range_number_reason() -> None:
    with pytest.raises(BadRecord) as caught:
        decode_record(b"a", b'{"a": 1e400}')
    assert "not an object" not in str(caught.value)
    assert "out of range" in str(caught.value)

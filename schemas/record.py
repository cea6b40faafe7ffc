"""The log record: one document upsert or delete in a namespace topic.

A record's key is the document id as UTF-8. Its value is the document's
attributes as one JSON object, or null (a Kafka tombstone) to delete the
document. Attribute names starting with ``_hevlayer_`` are reserved, and so is
``id`` because the id travels in the key. Every consumer of the log (the
cache applier, origin scans, replay) decodes records with `decode_record`, so
they agree on what a bad record is.

Evolution: attributes are free-form, so producers add fields at will. A new
rule here that rejects records which used to pass would change what the cache
holds, so such a change needs a replay of the cache.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Final

import msgspec

RESERVED_PREFIX: Final = "_hevlayer_"
UPSERTED_AT: Final = "_hevlayer_upserted_at"
MAX_ID_BYTES: Final = 1024

# A document's attributes: any JSON object. Values are scalars, arrays of
# scalars or nested objects; the filter grammar decides what each matches.
Attributes = dict[str, Any]


class BadRecord(ValueError):
    """A record that cannot become a document, with the reason why."""


_attributes_decoder: Final = msgspec.json.Decoder(dict[str, Any])


def decode_id(key: bytes | None) -> str:
    """Decode a record key into a document id, or raise BadRecord."""
    if key is None:
        raise BadRecord("record has no key; the key must be the document id")
    if len(key) == 0:
        raise BadRecord("record key is empty; the key must be the document id")
    if len(key) > MAX_ID_BYTES:
        raise BadRecord(f"record key is {len(key)} bytes; the maximum is {MAX_ID_BYTES}")
    try:
        return key.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRecord(f"record key is not valid UTF-8: {exc}") from None


def decode_attributes(value: bytes) -> Attributes:
    """Decode a record value into attributes, or raise BadRecord."""
    try:
        attrs = _attributes_decoder.decode(value)
    except msgspec.ValidationError as exc:
        if str(exc).startswith("Expected `object`"):
            raise BadRecord("record value is JSON but not an object") from None
        raise BadRecord(f"record value is invalid: {exc}") from None
    except msgspec.DecodeError as exc:
        raise BadRecord(f"record value is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadRecord("record value nests too deeply to decode") from None
    for name in attrs:
        if name.startswith(RESERVED_PREFIX):
            raise BadRecord(f"attribute {name!r} uses the reserved prefix {RESERVED_PREFIX!r}")
        if name == "id":
            raise BadRecord("attribute 'id' is reserved: the document id is the record key")
    return attrs


def decode_record(key: bytes | None, value: bytes | None) -> tuple[str, Attributes | None]:
    """Decode one record into (document id, attributes or None for a delete)."""
    doc_id = decode_id(key)
    if value is None:
        return doc_id, None
    return doc_id, decode_attributes(value)


class LogRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One record of a namespace topic, as producers write it."""

    # Record key: the document id as UTF-8.
    key: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_BYTES)]
    # Record value: the attributes, or None (a tombstone) to delete.
    value: Attributes | None


def record_json_schema() -> dict[str, Any]:
    """Return the JSON Schema of a record, for producers in any language.

    msgspec generates it from LogRecord; the rule on reserved attribute names,
    which no msgspec constraint expresses, is added by hand.
    """
    schema = msgspec.json.schema(LogRecord)
    record = schema["$defs"]["LogRecord"]
    record["description"] = (
        "A record of a hevlayer namespace topic. `key` is the Kafka record key "
        "(the document id as UTF-8, at most 1024 bytes); `value` is the record "
        "value: a JSON object of attributes, or null (a tombstone) to delete. "
        "The broker's LogAppendTime becomes the document's _hevlayer_upserted_at."
    )
    value = record["properties"]["value"]["anyOf"][0]
    value["propertyNames"] = {
        "not": {"anyOf": [{"pattern": "^_hevlayer_"}, {"const": "id"}]}
    }
    return schema


def main() -> None:
    """Print the record's JSON Schema (schemas/log-record.schema.json is a copy)."""
    print(json.dumps(record_json_schema(), indent=2))


if __name__ == "__main__":
    main()

"""The exported JSON Schema of the log record stays in step with the code."""

from __future__ import annotations

import json
from pathlib import Path

from schemas.record import record_json_schema

EXPORTED = Path(__file__).resolve().parents[2] / "schemas" / "log-record.schema.json"


def test_exported_schema_matches_code() -> None:
    # Regenerate with: python -m schemas.record > schemas/log-record.schema.json
    assert json.loads(EXPORTED.read_text()) == record_json_schema()


def test_schema_forbids_reserved_names() -> None:
    record = record_json_schema()["$defs"]["LogRecord"]
    value = record["properties"]["value"]["anyOf"][0]
    assert value["type"] == "object"
    assert value["propertyNames"] == {
        "not": {"anyOf": [{"pattern": "^_hevlayer_"}, {"const": "id"}]}
    }
    assert record["properties"]["key"]["maxLength"] == 1024
    assert record["required"] == ["key", "value"]

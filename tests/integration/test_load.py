"""Loading files into a real broker, and the sample data set script."""

from __future__ import annotations

import asyncio
import csv
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from consumers.settings import Settings
from consumers.topics import admin_client
from service.loader import LoadError, load_file

ROOT = Path(__file__).resolve().parents[2]
FETCH_SCRIPT = ROOT / "scripts" / "fetch_dataset.py"
RECEIVE_TIMEOUT_S = 10.0
# Kafka's timestamp type code for LogAppendTime (CreateTime is 0).
LOG_APPEND_TIME = 1
PENGUIN_COLUMNS = [
    "id",
    "species",
    "island",
    "bill_length_mm",
    "bill_depth_mm",
    "flipper_length_mm",
    "body_mass_g",
    "sex",
    "year",
]


async def partition_numbers(settings: Settings, topic: str) -> list[int]:
    """Return a topic's partition numbers as the broker's metadata lists them."""
    admin = admin_client(settings)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    assert described[0]["error_code"] == 0, f"describing {topic} failed: {described}"
    return sorted(partition["partition"] for partition in described[0]["partitions"])


async def read_topic(settings: Settings, topic: str) -> list[ConsumerRecord]:
    """Read every committed record of a topic, from the beginning to its end."""
    numbers = await partition_numbers(settings, topic)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        isolation_level="read_committed",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        assigned = [TopicPartition(topic, number) for number in numbers]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        end_offsets = await consumer.end_offsets(assigned)
        records: list[ConsumerRecord] = []
        for partition in assigned:
            while await consumer.position(partition) < end_offsets[partition]:
                record = await asyncio.wait_for(
                    consumer.getone(partition), RECEIVE_TIMEOUT_S
                )
                records.append(record)
        return records
    finally:
        await consumer.stop()


def values_by_key(records: list[ConsumerRecord]) -> dict[bytes, bytes]:
    return {record.key: record.value for record in records}


async def test_load_csv_file(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "stones.csv"
    path.write_text(
        "id,carat,cut,price,code,note\n"
        "d-00001,0.23,Ideal,326,007,\n"
        'd-00002,1.5,"Very Good, really",-4,1e5,"two\nlines"\n'
        "d-00003,0,Fair,0,,plain\n",
        encoding="utf-8",
    )
    result = await load_file(settings, "stones", path, progress=False)

    topic = settings.topic_for("stones")
    assert result.topic == topic
    assert result.namespace == "stones"
    assert result.rows_sent == 3
    assert result.topic_created is True
    assert sum(result.rows_per_partition.values()) == 3
    assert await partition_numbers(settings, topic) == [0, 1, 2]
    assert set(result.partitions_touched) <= {0, 1, 2}
    records = await read_topic(settings, topic)
    assert len(records) == 3
    assert values_by_key(records) == {
        b"d-00001": b'{"carat":0.23,"cut":"Ideal","price":326,"code":"007",'
        b'"note":null}',
        b"d-00002": b'{"carat":1.5,"cut":"Very Good, really","price":-4,'
        b'"code":"1e5","note":"two\\nlines"}',
        b"d-00003": b'{"carat":0,"cut":"Fair","price":0,"code":null,"note":"plain"}',
    }
    assert Counter(record.partition for record in records) == Counter(
        result.rows_per_partition
    )
    assert {record.timestamp_type for record in records} == {LOG_APPEND_TIME}


async def test_load_jsonl_file(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "items.ndjson"
    path.write_text(
        '{"id": "a", "n": 1, "f": 0.5, "s": "007", "z": null}\n'
        "\n"
        '{"id": 7, "tags": ["x", "y"], "dims": {"w": 2}}\n'
        '{"name": "ñandú", "id": "ñ"}\n',
        encoding="utf-8",
    )
    result = await load_file(settings, "items", path, progress=True)

    assert result.rows_sent == 3
    records = await read_topic(settings, settings.topic_for("items"))
    assert len(records) == 3
    values = values_by_key(records)
    assert values == {
        b"a": b'{"n":1,"f":0.5,"s":"007","z":null}',
        b"7": b'{"tags":["x","y"],"dims":{"w":2}}',
        "ñ".encode(): '{"name":"ñandú"}'.encode(),
    }
    assert {record.timestamp_type for record in records} == {LOG_APPEND_TIME}


async def test_load_format_argument(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "rows.txt"
    path.write_text('{"sku": "s-1", "qty": 3}\n', encoding="utf-8")
    result = await load_file(
        settings, "rows", path, fmt="jsonl", id_field="sku", progress=False
    )

    assert result.rows_sent == 1
    records = await read_topic(settings, settings.topic_for("rows"))
    assert values_by_key(records) == {b"s-1": b'{"qty":3}'}


async def test_load_existing_topic(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("id,n\na,1\n", encoding="utf-8")
    first = await load_file(settings, "again", path, progress=False)
    path.write_text("id,n\na,2\n", encoding="utf-8")
    second = await load_file(settings, "again", path, progress=False)

    assert first.topic_created is True
    assert second.topic_created is False
    records = await read_topic(settings, settings.topic_for("again"))
    assert [(record.key, record.value) for record in records] == [
        (b"a", b'{"n":1}'),
        (b"a", b'{"n":2}'),
    ]


async def test_load_csv_bad_row(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("id,n\na,1\nb,2\n,3\nd,4\n", encoding="utf-8")
    with pytest.raises(LoadError) as caught:
        await load_file(settings, "bad", path, progress=False)

    error = caught.value
    assert error.path == path
    assert error.line == 4
    assert error.reason == "the id field 'id' is empty"
    assert error.rows_acknowledged == 2
    assert str(error).startswith(f"{path}, line 4: the id field 'id' is empty.")
    records = await read_topic(settings, settings.topic_for("bad"))
    assert sorted(record.key for record in records) == [b"a", b"b"]


async def test_load_jsonl_bad_row(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "a"}\n{"id": "b", "_hevlayer_x": 1}\n', encoding="utf-8")
    with pytest.raises(LoadError) as caught:
        await load_file(settings, "badjson", path, progress=False)

    error = caught.value
    assert error.line == 2
    assert error.reason == (
        "attribute '_hevlayer_x' uses the reserved prefix '_hevlayer_'"
    )
    assert error.rows_acknowledged == 1
    records = await read_topic(settings, settings.topic_for("badjson"))
    assert [record.key for record in records] == [b"a"]


async def test_load_record_too_large(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    big_text = "x" * (1024 * 1024 + 1)
    path.write_text(
        f'{{"id": "a"}}\n{{"id": "b", "text": "{big_text}"}}\n', encoding="utf-8"
    )
    with pytest.raises(LoadError) as caught:
        await load_file(settings, "big", path, progress=False)

    error = caught.value
    assert error.line == 2
    assert error.reason.startswith("the record is too large: ")
    assert error.rows_acknowledged == 1


async def test_load_rejects_invalid_arguments(
    settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("id,n\na,1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="invalid namespace 'no/slash'"):
        await load_file(settings, "no/slash", path, progress=False)
    with pytest.raises(ValueError, match="batch_hint 10 is out of range"):
        await load_file(settings, "ns", path, progress=False, batch_hint=10)
    with pytest.raises(FileNotFoundError, match="missing.csv is not found"):
        await load_file(settings, "ns", tmp_path / "missing.csv", progress=False)


@pytest.fixture(scope="module")
def penguins_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Penguins written by fetch_dataset.py with a fresh wheel cache."""
    folder = tmp_path_factory.mktemp("penguins")
    out = folder / "penguins.csv"
    done = subprocess.run(
        [
            sys.executable,
            str(FETCH_SCRIPT),
            "--dataset",
            "penguins",
            "--cache",
            str(folder / "cache"),
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"wrote 344 rows of penguins to {out}\n"
    return out


def test_fetch_dataset_penguins(penguins_csv: Path) -> None:
    with penguins_csv.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))

    assert rows[0] == PENGUIN_COLUMNS
    data = rows[1:]
    assert len(data) == 344
    assert [row[0] for row in data] == [f"p-{n:03d}" for n in range(1, 345)]
    assert data[0] == [
        "p-001",
        "Adelie",
        "Torgersen",
        "39.1",
        "18.7",
        "181",
        "3750",
        "male",
        "2007",
    ]
    assert data[3] == ["p-004", "Adelie", "Torgersen", "", "", "", "", "", "2007"]
    assert all(len(row) == len(PENGUIN_COLUMNS) for row in data)


def test_fetch_dataset_uses_cache(penguins_csv: Path, tmp_path: Path) -> None:
    cache = penguins_csv.parent / "cache"
    wheel = cache / "plotnine-0.15.9-py3-none-any.whl"
    modified = wheel.stat().st_mtime_ns
    out = tmp_path / "again.csv"
    done = subprocess.run(
        [
            sys.executable,
            str(FETCH_SCRIPT),
            "--dataset",
            "penguins",
            "--cache",
            str(cache),
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert wheel.stat().st_mtime_ns == modified
    assert out.read_bytes() == penguins_csv.read_bytes()


async def test_load_penguins(settings: Settings, penguins_csv: Path) -> None:
    result = await load_file(settings, "penguins", penguins_csv, progress=False)

    assert result.rows_sent == 344
    records = await read_topic(settings, settings.topic_for("penguins"))
    assert len(records) == 344
    values = values_by_key(records)
    assert sorted(values) == [f"p-{n:03d}".encode() for n in range(1, 345)]
    assert values[b"p-001"] == (
        b'{"species":"Adelie","island":"Torgersen","bill_length_mm":39.1,'
        b'"bill_depth_mm":18.7,"flipper_length_mm":181,"body_mass_g":3750,'
        b'"sex":"male","year":2007}'
    )
    assert values[b"p-004"] == (
        b'{"species":"Adelie","island":"Torgersen","bill_length_mm":null,'
        b'"bill_depth_mm":null,"flipper_length_mm":null,"body_mass_g":null,'
        b'"sex":null,"year":2007}'
    )

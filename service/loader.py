"""Bulk load of a CSV or JSON Lines file into a namespace topic.

Every row becomes one upsert record (see schemas/record.py): the key is the
row's id as UTF-8 and the value is a JSON object of the row's other fields.
Loading never deletes a document. Rows are validated one at a time just before
they are sent, with the same decode functions the cache applier uses, so a row
that loads is a row the applier accepts. The first invalid row stops the load:
the rows before it are flushed and acknowledged, and LoadError names the file,
the line and the reason. Loading a file again is safe because each record is
an upsert by id.
"""

from __future__ import annotations

import asyncio
import csv
import logging
import re
import time
from collections import Counter
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import msgspec
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError
from aiokafka.structs import RecordMetadata
from tqdm import tqdm

from consumers.settings import Settings, is_valid_namespace
from consumers.topics import admin_client, ensure_topic
from schemas.record import decode_attributes, decode_id

logger = logging.getLogger(__name__)

FORMATS: Final = ("csv", "jsonl")
SUFFIX_FORMATS: Final = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}

# Producer batch size in bytes per partition. Kafka's default broker and topic
# limit on a record batch (message.max.bytes) is 1048588 bytes, so batches are
# kept under 1 MiB.
DEFAULT_BATCH_HINT: Final = 256 * 1024
MIN_BATCH_HINT: Final = 1024
MAX_BATCH_HINT: Final = 1024 * 1024
LINGER_MS: Final = 20
# Rows sent between progress bar updates, and between yields to the event loop
# so the producer's sender task can run while the file is read.
PROGRESS_STEP: Final = 1000
# Files up to this size are scanned once for their line count, which becomes
# the progress bar's total. Larger files get a bar without a total.
COUNT_LINES_MAX_BYTES: Final = 256 * 1024 * 1024

# CSV cells in these exact forms become JSON numbers. Anything else, such as
# "007", "+1", "1e5", ".5", "5." or " 3", stays a string.
# The group matches the fraction, so a match without it is an integer.
_NUMBER: Final = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?")
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_UTF8_BOM: Final = b"\xef\xbb\xbf"
_MISSING: Final = object()


class RowError(ValueError):
    """A file row that cannot become a record, with its 1-based line number."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


class LoadError(Exception):
    """A load that stopped early, after the rows before the failure were written.

    ``line`` is the file line of the invalid row, or None when producing
    failed rather than a row. ``rows_acknowledged`` is the number of records
    the broker acknowledged before the load stopped.
    """

    def __init__(
        self, path: Path, line: int | None, reason: str, rows_acknowledged: int
    ) -> None:
        where = f"{path}, line {line}" if line is not None else str(path)
        super().__init__(
            f"{where}: {reason}. The {rows_acknowledged} rows before it were "
            "produced and acknowledged; fix the problem and load the file again "
            "(reloaded rows overwrite the same documents)."
        )
        self.path = path
        self.line = line
        self.reason = reason
        self.rows_acknowledged = rows_acknowledged


@dataclass(frozen=True, slots=True)
class Record:
    """One validated row: its line in the file and the record's key and value."""

    line: int
    key: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class LoadResult:
    """Outcome of a finished load, in which every row was acknowledged."""

    namespace: str
    topic: str
    path: Path
    rows_sent: int
    rows_per_partition: dict[int, int]
    elapsed_s: float
    topic_created: bool

    @property
    def partitions_touched(self) -> tuple[int, ...]:
        """Partitions that received at least one row, in ascending order."""
        return tuple(sorted(self.rows_per_partition))

    @property
    def rows_per_s(self) -> float:
        """Mean throughput of the load, in rows per second."""
        return self.rows_sent / self.elapsed_s if self.elapsed_s > 0 else 0.0


def parse_cell(text: str) -> str | int | float | None:
    """Type one CSV cell: empty is None, canonical numbers are numbers.

    A cell matching ``-?(0|[1-9][0-9]*)`` becomes an int when it fits in a
    signed 64-bit integer, and one matching ``-?(0|[1-9][0-9]*)\\.[0-9]+``
    becomes a float. Every other cell stays the exact string, so ids and codes
    such as "007", "1e5", "+1", "NaN" or "1,5" are never changed.
    """
    if text == "":
        return None
    match = _NUMBER.fullmatch(text)
    if match is None:
        return text
    if match.group(1) is not None:
        return float(text)
    number = int(text)
    return number if _INT64_MIN <= number <= _INT64_MAX else text


def document_key(value: object, id_field: str) -> bytes:
    """Encode a row's id as a record key, or raise ValueError naming the problem.

    A string id is used as is. An int or float id from JSON becomes its
    Python ``str`` form, so 7 becomes "7" and 1.5 becomes "1.5".
    """
    if value is _MISSING:
        raise ValueError(f"the id field {id_field!r} is missing")
    if value is None:
        raise ValueError(f"the id field {id_field!r} is null")
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(
            f"the id field {id_field!r} is {type(value).__name__}, "
            "expected a string or a number"
        )
    text = value if isinstance(value, str) else str(value)
    if text == "":
        raise ValueError(f"the id field {id_field!r} is empty")
    try:
        key = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"the id is not valid Unicode: {exc}") from None
    decode_id(key)
    return key


def encode_value(attributes: dict[str, Any]) -> bytes:
    """Encode attributes as a record value, or raise ValueError as the applier would.

    The encoded bytes go through schemas.record.decode_attributes, so reserved
    names (``id``, ``_hevlayer_*``) fail here exactly as they would in the
    applier.
    """
    value: bytes = msgspec.json.encode(attributes)
    decode_attributes(value)
    return value


def build_record(line: int, attributes: dict[str, Any], id_field: str) -> Record:
    """Remove the id field from attributes and encode the rest as a Record."""
    try:
        key = document_key(attributes.pop(id_field, _MISSING), id_field)
        value = encode_value(attributes)
    except ValueError as exc:
        raise RowError(line, str(exc)) from None
    return Record(line, key, value)


def csv_header(row: list[str], id_field: str) -> list[str]:
    """Check a CSV header row and return its column names."""
    seen: set[str] = set()
    for position, name in enumerate(row, 1):
        if name == "":
            raise RowError(1, f"column {position} of the header has an empty name")
        if name in seen:
            raise RowError(1, f"the header has the column {name!r} twice")
        seen.add(name)
    if id_field not in seen:
        raise RowError(
            1,
            f"the header has no id column {id_field!r}; "
            "pass id_field naming the column that holds document ids",
        )
    return row


def csv_row_attributes(
    line: int, header: list[str], cells: list[str], id_field: str
) -> dict[str, Any]:
    """Map one CSV row to attributes, keeping the id cell as its raw string."""
    if len(cells) != len(header):
        raise RowError(
            line, f"the row has {len(cells)} cells but the header has {len(header)}"
        )
    attributes: dict[str, Any] = {}
    for name, cell in zip(header, cells, strict=True):
        attributes[name] = cell if name == id_field else parse_cell(cell)
    return attributes


def csv_records(lines: Iterable[str], id_field: str) -> Iterator[Record]:
    """Parse CSV text lines (header first, newlines kept) into Records.

    Blank lines are skipped. A row's line number is the line where it starts,
    which matters for quoted cells that span lines. Quoting is strict, so an
    unterminated quote or text after a closing quote is an error rather than
    a silently merged cell.
    """
    reader = csv.reader(lines, strict=True)
    header: list[str] | None = None
    start = 1
    try:
        for cells in reader:
            if cells:
                if header is None:
                    header = csv_header(cells, id_field)
                else:
                    attributes = csv_row_attributes(start, header, cells, id_field)
                    yield build_record(start, attributes, id_field)
            start = reader.line_num + 1
    except csv.Error as exc:
        raise RowError(start, f"invalid CSV: {exc}") from None
    if header is None:
        raise RowError(1, "the file is empty: a CSV file needs a header row")


def jsonl_attributes(line: int, text: bytes) -> dict[str, Any]:
    """Decode one JSON Lines line into a JSON object."""
    try:
        decoded = msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        raise RowError(line, f"invalid JSON: {exc}") from None
    if not isinstance(decoded, dict):
        raise RowError(
            line, f"the line is a JSON {type(decoded).__name__}, expected an object"
        )
    return decoded


def jsonl_records(lines: Iterable[bytes], id_field: str) -> Iterator[Record]:
    """Parse JSON Lines (one JSON object a line) into Records, skipping blank lines."""
    for line, raw in enumerate(lines, 1):
        text = raw.removeprefix(_UTF8_BOM) if line == 1 else raw
        text = text.strip()
        if text:
            yield build_record(line, jsonl_attributes(line, text), id_field)


def decoded_lines(lines: Iterable[bytes]) -> Iterator[str]:
    """Decode UTF-8 lines one by one, so an invalid byte is reported with its line."""
    for line, raw in enumerate(lines, 1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RowError(line, f"invalid UTF-8: {exc}") from None
        yield text.removeprefix("\ufeff") if line == 1 else text


def detect_format(path: Path, fmt: str | None) -> str:
    """Return "csv" or "jsonl": fmt when given, else from the file's suffix."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise ValueError(f"invalid format {fmt!r}; expected one of {FORMATS}")
        return fmt
    detected = SUFFIX_FORMATS.get(path.suffix.lower())
    if detected is None:
        raise ValueError(
            f"cannot tell the format of {path} from its suffix "
            f"{path.suffix!r}; pass fmt='csv' or fmt='jsonl'"
        )
    return detected


def read_records(path: Path, fmt: str, id_field: str) -> Generator[Record, None, None]:
    """Stream the validated Records of a file, raising RowError at the first bad row."""
    with path.open("rb") as handle:
        if fmt == "csv":
            yield from csv_records(decoded_lines(handle), id_field)
        else:
            yield from jsonl_records(handle, id_field)


def count_rows(path: Path, fmt: str) -> int | None:
    """Estimate a file's row count from its lines, or None for a large file.

    The estimate counts blank lines and CSV cells that span lines as rows, so
    it only sizes the progress bar.
    """
    if path.stat().st_size > COUNT_LINES_MAX_BYTES:
        return None
    lines = 0
    last = b"\n"
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    if last != b"\n":
        lines += 1
    return max(lines - 1, 0) if fmt == "csv" else lines


class AckTally:
    """Acknowledgements of the sends in flight, filled in by done callbacks."""

    def __init__(self) -> None:
        self.pending: set[asyncio.Future[RecordMetadata]] = set()
        self.rows = 0
        self.per_partition: Counter[int] = Counter()
        self.error: BaseException | None = None

    def track(self, future: asyncio.Future[RecordMetadata]) -> None:
        """Count the record when the broker acknowledges it."""
        self.pending.add(future)
        future.add_done_callback(self._settle)

    def _settle(self, future: asyncio.Future[RecordMetadata]) -> None:
        self.pending.discard(future)
        if future.cancelled():
            self.error = self.error or asyncio.CancelledError("send was cancelled")
            return
        error = future.exception()
        if error is not None:
            self.error = self.error or error
            return
        self.rows += 1
        self.per_partition[future.result().partition] += 1

    async def wait(self) -> None:
        """Wait until every tracked send is acknowledged or failed."""
        if self.pending:
            await asyncio.gather(*list(self.pending), return_exceptions=True)


def build_producer(settings: Settings, batch_hint: int) -> AIOKafkaProducer:
    """Build an idempotent producer that batches for throughput (not started)."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        client_id="hevlayer-loader",
        acks="all",
        enable_idempotence=True,
        linger_ms=LINGER_MS,
        max_batch_size=batch_hint,
        max_request_size=MAX_BATCH_HINT,
    )


async def prepare_topic(settings: Settings, namespace: str) -> bool:
    """Create the namespace topic unless it exists; return True if it was created."""
    admin = admin_client(settings)
    await admin.start()
    try:
        return await ensure_topic(admin, settings, namespace)
    finally:
        await admin.close()


async def send_records(
    producer: AIOKafkaProducer,
    topic: str,
    records: Iterable[Record],
    tally: AckTally,
    bar: tqdm[Any],
) -> None:
    """Send records until they run out or a send fails, and update the progress bar."""
    unreported = 0
    for record in records:
        if tally.error is not None:
            return
        try:
            future = await producer.send(topic, record.value, key=record.key)
        except MessageSizeTooLargeError as exc:
            raise RowError(record.line, f"the record is too large: {exc}") from None
        tally.track(future)
        unreported += 1
        if unreported == PROGRESS_STEP:
            bar.update(unreported)
            unreported = 0
            await asyncio.sleep(0)
    bar.update(unreported)


async def produce_file(
    producer: AIOKafkaProducer,
    topic: str,
    path: Path,
    records: Iterable[Record],
    bar: tqdm[Any],
) -> AckTally:
    """Send records and wait for every acknowledgement, or raise LoadError."""
    tally = AckTally()
    failure: tuple[int | None, str] | None = None
    try:
        await send_records(producer, topic, records, tally, bar)
    except RowError as exc:
        failure = (exc.line, exc.reason)
    except KafkaError as exc:
        failure = (None, f"producing to {topic} failed: {exc!r}")
    # Flush even after a failure, so every row sent before it is acknowledged.
    await producer.flush()
    await tally.wait()
    if failure is None and tally.error is not None:
        failure = (None, f"producing to {topic} failed: {tally.error!r}")
    if failure is not None:
        raise LoadError(path, failure[0], failure[1], tally.rows)
    return tally


async def load_file(
    settings: Settings,
    namespace: str,
    path: Path,
    *,
    fmt: str | None = None,
    id_field: str = "id",
    progress: bool = True,
    batch_hint: int = DEFAULT_BATCH_HINT,
) -> LoadResult:
    """Produce every row of a CSV or JSON Lines file into a namespace's topic.

    The topic is created with the log's configs if it does not exist. ``fmt``
    is "csv" or "jsonl", and when it is None the suffix decides: .csv, or
    .jsonl and .ndjson. ``id_field`` names the field holding document ids. It
    is removed from the attributes and becomes the record key. CSV cells are
    typed by `parse_cell`, and JSON Lines values are kept as they are.
    ``progress`` shows a tqdm bar of rows sent on stderr when stderr is a
    terminal. ``batch_hint`` is the producer's batch size per partition, in
    bytes, from 1 KiB to 1 MiB.

    Return once the broker has acknowledged every row. Raise LoadError at the
    first invalid row or failed send, after the rows before it are
    acknowledged. Raise ValueError for an invalid namespace, format or
    batch_hint, and FileNotFoundError for a missing file, before the topic is
    created.
    """
    if not is_valid_namespace(namespace):
        raise ValueError(
            f"invalid namespace {namespace!r}; use 1 to 128 of A-Z a-z 0-9 . _ -"
        )
    if not MIN_BATCH_HINT <= batch_hint <= MAX_BATCH_HINT:
        raise ValueError(
            f"batch_hint {batch_hint} is out of range "
            f"[{MIN_BATCH_HINT}, {MAX_BATCH_HINT}] bytes"
        )
    file_format = detect_format(path, fmt)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is not found or is not a regular file")
    total = count_rows(path, file_format) if progress else None
    topic = settings.topic_for(namespace)
    created = await prepare_topic(settings, namespace)
    logger.info(
        "loading %s (%s) into namespace %s, topic %s",
        path,
        file_format,
        namespace,
        topic,
    )
    started = time.monotonic()
    producer = build_producer(settings, batch_hint)
    await producer.start()
    bar = tqdm(total=total, unit="rows", desc=topic, disable=None if progress else True)
    records = read_records(path, file_format, id_field)
    try:
        tally = await produce_file(producer, topic, path, records, bar)
    finally:
        records.close()
        bar.close()
        await producer.stop()
    result = LoadResult(
        namespace=namespace,
        topic=topic,
        path=path,
        rows_sent=tally.rows,
        rows_per_partition=dict(tally.per_partition),
        elapsed_s=time.monotonic() - started,
        topic_created=created,
    )
    logger.info(
        "loaded %d rows from %s into namespace %s, topic %s, in %.2f s (%.0f rows/s)",
        result.rows_sent,
        path,
        namespace,
        topic,
        result.elapsed_s,
        result.rows_per_s,
    )
    return result

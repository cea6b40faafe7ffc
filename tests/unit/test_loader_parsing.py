"""Parsing and validation of load files, without a broker."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.loader import (
    LoadError,
    LoadResult,
    Record,
    RowError,
    count_rows,
    csv_records,
    decoded_lines,
    detect_format,
    document_key,
    jsonl_records,
    parse_cell,
    read_records,
)

RESERVED_ID_REASON = "attribute 'id' is reserved: the document id is the record key"


def csv_of(text: str, id_field: str = "id") -> list[Record]:
    return list(csv_records(text.splitlines(keepends=True), id_field))


def jsonl_of(text: str, id_field: str = "id") -> list[Record]:
    return list(jsonl_records(text.encode().splitlines(keepends=True), id_field))


def csv_error(text: str, id_field: str = "id") -> RowError:
    with pytest.raises(RowError) as caught:
        csv_of(text, id_field)
    return caught.value


def jsonl_error(text: str, id_field: str = "id") -> RowError:
    with pytest.raises(RowError) as caught:
        jsonl_of(text, id_field)
    return caught.value


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("", None),
        ("0", 0),
        ("-12", -12),
        ("326", 326),
        ("9223372036854775807", 9223372036854775807),
        ("-9223372036854775808", -9223372036854775808),
        ("3.5", 3.5),
        ("0.23", 0.23),
        ("-0.5", -0.5),
        ("3.50", 3.5),
    ],
)
def test_parse_cell_numbers(cell: str, expected: int | float | None) -> None:
    parsed = parse_cell(cell)
    assert parsed == expected
    assert type(parsed) is type(expected)


@pytest.mark.parametrize(
    "cell",
    [
        "007",
        "01.5",
        "1e5",
        "+1",
        ".5",
        "5.",
        " 3",
        "3 ",
        "NaN",
        "inf",
        "1,5",
        "0x1F",
        "1_000",
        "Ideal",
        "9223372036854775808",
        "-9223372036854775809",
    ],
)
def test_parse_cell_keeps_strings(cell: str) -> None:
    assert parse_cell(cell) == cell


def test_csv_records_types_cells() -> None:
    records = csv_of(
        "id,cut,price,carat,code,note\n"
        "d-1,Ideal,326,0.23,007,\n"
        '007,"Very Good, really",-4,1.5,x,""\n'
    )
    assert records == [
        Record(
            2,
            b"d-1",
            b'{"cut":"Ideal","price":326,"carat":0.23,"code":"007","note":null}',
        ),
        Record(
            3,
            b"007",
            b'{"cut":"Very Good, really","price":-4,"carat":1.5,"code":"x",'
            b'"note":null}',
        ),
    ]


def test_csv_records_custom_id_field() -> None:
    records = csv_of("name,sku,qty\nbolt,42,7\n", id_field="sku")
    assert records == [Record(2, b"42", b'{"name":"bolt","qty":7}')]


def test_csv_records_multiline_cell_lines() -> None:
    records = csv_of('id,text\na,"one\ntwo"\n\nb,three\n')
    assert [record.line for record in records] == [2, 5]
    assert records[0].value == b'{"text":"one\\ntwo"}'


def test_csv_records_crlf_lines() -> None:
    records = csv_of("id,n\r\na,1\r\nb,2\r\n")
    assert records == [Record(2, b"a", b'{"n":1}'), Record(3, b"b", b'{"n":2}')]


def test_csv_records_unicode_id() -> None:
    records = csv_of("id,n\nñandú-1,1\n")
    assert records[0].key == "ñandú-1".encode()


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("", 1, "the file is empty: a CSV file needs a header row"),
        (
            "name,price\nx,1\n",
            1,
            "the header has no id column 'id'; "
            "pass id_field naming the column that holds document ids",
        ),
        ("id,a,a\nx,1,2\n", 1, "the header has the column 'a' twice"),
        ("id,,b\nx,1,2\n", 1, "column 2 of the header has an empty name"),
        ("id,a\nx,1\ny,2,3\n", 3, "the row has 3 cells but the header has 2"),
        ("id,a\nx,1\ny\n", 3, "the row has 1 cells but the header has 2"),
        ("id,a\nx,1\n,2\n", 3, "the id field 'id' is empty"),
        (
            "id,_hevlayer_upserted_at\nx,1\n",
            2,
            "attribute '_hevlayer_upserted_at' uses the reserved prefix '_hevlayer_'",
        ),
    ],
)
def test_csv_records_errors(text: str, line: int, reason: str) -> None:
    error = csv_error(text)
    assert error.line == line
    assert error.reason == reason
    assert str(error) == f"line {line}: {reason}"


def test_csv_records_reserved_id_attribute() -> None:
    error = csv_error("sku,id\nx,1\n", id_field="sku")
    assert error.line == 2
    assert error.reason == RESERVED_ID_REASON


def test_csv_records_key_too_long() -> None:
    error = csv_error("id,a\n" + "k" * 1025 + ",1\n")
    assert error.line == 2
    assert error.reason == "record key is 1025 bytes; the maximum is 1024"


def test_csv_records_unterminated_quote() -> None:
    error = csv_error('id,a\nx,1\ny,"open\nz,2\n')
    assert error.line == 3
    assert error.reason == "invalid CSV: unexpected end of data"


def test_csv_records_text_after_quote() -> None:
    error = csv_error('id,a\nx,"a"b\n')
    assert error.line == 2
    assert error.reason == "invalid CSV: ',' expected after '\"'"


def test_decoded_lines_invalid_utf8() -> None:
    lines = [b"id,a\n", b"x,1\n", b"y,\xff\n"]
    with pytest.raises(RowError) as caught:
        list(decoded_lines(lines))
    assert caught.value.line == 3
    assert caught.value.reason.startswith("invalid UTF-8: ")


def test_decoded_lines_strips_bom() -> None:
    lines = [b"\xef\xbb\xbfid,a\n", b"x,1\n"]
    assert list(decoded_lines(lines)) == ["id,a\n", "x,1\n"]


def test_jsonl_records_values() -> None:
    records = jsonl_of(
        '{"id": "a", "n": 1, "f": 0.5, "s": "007", "z": null}\n'
        "\n"
        '{"id": 7, "tags": ["x", "y"], "dims": {"w": 2}}\n'
        '{"id": 1.5, "ok": true}\n'
        '{"name": "k", "id": "ñ"}'
    )
    assert records == [
        Record(1, b"a", b'{"n":1,"f":0.5,"s":"007","z":null}'),
        Record(3, b"7", b'{"tags":["x","y"],"dims":{"w":2}}'),
        Record(4, b"1.5", b'{"ok":true}'),
        Record(5, "ñ".encode(), b'{"name":"k"}'),
    ]


def test_jsonl_records_custom_id_field() -> None:
    records = jsonl_of('{"sku": "s-1", "qty": 3}\n', id_field="sku")
    assert records == [Record(1, b"s-1", b'{"qty":3}')]


def test_jsonl_records_bom_and_crlf() -> None:
    lines = [b'\xef\xbb\xbf{"id": "a"}\r\n', b'{"id": "b", "n": 2}\r\n']
    records = list(jsonl_records(lines, "id"))
    assert records == [Record(1, b"a", b"{}"), Record(2, b"b", b'{"n":2}')]


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ('{"id": "a"}\n[1, 2]\n', 2, "the line is a JSON list, expected an object"),
        ('{"id": "a"}\n"x"\n', 2, "the line is a JSON str, expected an object"),
        ('{"n": 1}\n', 1, "the id field 'id' is missing"),
        ('{"id": null}\n', 1, "the id field 'id' is null"),
        ('{"id": ""}\n', 1, "the id field 'id' is empty"),
        (
            '{"id": true}\n',
            1,
            "the id field 'id' is bool, expected a string or a number",
        ),
        (
            '{"id": {"k": 1}}\n',
            1,
            "the id field 'id' is dict, expected a string or a number",
        ),
        (
            '{"id": ["a"]}\n',
            1,
            "the id field 'id' is list, expected a string or a number",
        ),
        (
            '{"id": "a", "_hevlayer_x": 1}\n',
            1,
            "attribute '_hevlayer_x' uses the reserved prefix '_hevlayer_'",
        ),
    ],
)
def test_jsonl_records_errors(text: str, line: int, reason: str) -> None:
    error = jsonl_error(text)
    assert error.line == line
    assert error.reason == reason
    assert str(error) == f"line {line}: {reason}"


def test_jsonl_records_invalid_json() -> None:
    error = jsonl_error('{"id": "a"}\n\n{"id": "b",}\n')
    assert error.line == 3
    assert error.reason.startswith("invalid JSON: ")


def test_jsonl_records_reserved_id_attribute() -> None:
    error = jsonl_error('{"sku": "a", "id": 1}\n', id_field="sku")
    assert error.line == 1
    assert error.reason == RESERVED_ID_REASON


def test_jsonl_records_stop_at_first_error() -> None:
    lines = b'{"id": "a"}\n{"id": ""}\n{"id": "c"}\n'.splitlines(keepends=True)
    records = jsonl_records(lines, "id")
    assert next(records) == Record(1, b"a", b"{}")
    with pytest.raises(RowError):
        next(records)


def test_document_key_numbers() -> None:
    assert document_key(7, "id") == b"7"
    assert document_key(-3, "id") == b"-3"
    assert document_key(2.5, "id") == b"2.5"
    assert document_key("x y", "id") == b"x y"


@pytest.mark.parametrize(
    ("name", "fmt", "expected"),
    [
        ("rows.csv", None, "csv"),
        ("ROWS.CSV", None, "csv"),
        ("rows.jsonl", None, "jsonl"),
        ("rows.ndjson", None, "jsonl"),
        ("rows.txt", "csv", "csv"),
        ("rows.csv", "jsonl", "jsonl"),
    ],
)
def test_detect_format(name: str, fmt: str | None, expected: str) -> None:
    assert detect_format(Path(name), fmt) == expected


def test_detect_format_unknown_suffix() -> None:
    with pytest.raises(ValueError) as caught:
        detect_format(Path("rows.txt"), None)
    assert str(caught.value) == (
        "cannot tell the format of rows.txt from its suffix '.txt'; "
        "pass fmt='csv' or fmt='jsonl'"
    )


def test_detect_format_invalid_fmt() -> None:
    with pytest.raises(ValueError) as caught:
        detect_format(Path("rows.csv"), "parquet")
    assert str(caught.value) == (
        "invalid format 'parquet'; expected one of ('csv', 'jsonl')"
    )


def test_read_records_csv_file(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_bytes(b"\xef\xbb\xbfid,n\r\na,1\r\nb,\r\n")
    records = list(read_records(path, "csv", "id"))
    assert records == [Record(2, b"a", b'{"n":1}'), Record(3, b"b", b'{"n":null}')]


def test_read_records_jsonl_file(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'{"id": "a", "n": null}\n{"id": 2}\n')
    records = list(read_records(path, "jsonl", "id"))
    assert records == [Record(1, b"a", b'{"n":null}'), Record(2, b"2", b"{}")]


def test_count_rows(tmp_path: Path) -> None:
    csv_path = tmp_path / "rows.csv"
    csv_path.write_bytes(b"id,n\na,1\nb,2")
    jsonl_path = tmp_path / "rows.jsonl"
    jsonl_path.write_bytes(b'{"id": "a"}\n{"id": "b"}\n')
    empty_path = tmp_path / "empty.csv"
    empty_path.write_bytes(b"")
    assert count_rows(csv_path, "csv") == 2
    assert count_rows(jsonl_path, "jsonl") == 2
    assert count_rows(empty_path, "csv") == 0


def test_load_error_message() -> None:
    error = LoadError(Path("data/d.csv"), 4, "the id field 'id' is empty", 2)
    assert str(error) == (
        "data/d.csv, line 4: the id field 'id' is empty. The 2 rows before it "
        "were produced and acknowledged; fix the problem and load the file "
        "again (reloaded rows overwrite the same documents)."
    )
    assert error.line == 4
    assert error.rows_acknowledged == 2


def test_load_error_without_line() -> None:
    error = LoadError(Path("d.csv"), None, "producing failed", 0)
    assert str(error).startswith("d.csv: producing failed. The 0 rows")


def test_load_result_properties() -> None:
    result = LoadResult(
        namespace="ns",
        topic="hevlayer.ns.ns",
        path=Path("d.csv"),
        rows_sent=30,
        rows_per_partition={2: 10, 0: 20},
        elapsed_s=2.0,
        topic_created=True,
    )
    assert result.partitions_touched == (0, 2)
    assert result.rows_per_s == 15.0

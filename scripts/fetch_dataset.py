#!/usr/bin/env python3
"""Write a sample data set from the plotnine wheel as a CSV with an `id` column.

The data comes from the ``plotnine==0.15.9`` wheel on PyPI, fetched with
``python -m pip download --no-deps --only-binary=:all:`` into a cache folder
and checked against its pinned SHA-256. The CSV is read from the wheel with
zipfile, so this script needs only the standard library and runs before the
project is installed.

The output keeps every original column and value in order and adds a first
column ``id``. An id is a prefix and the 1-based row number, zero-padded to
the width of the row count: ``d-00001`` to ``d-53940`` for diamonds and
``p-001`` to ``p-344`` for penguins. Quoting may differ from the original, because the
output quotes only cells that need it. A first column that is a pure row index
(an empty or ``Unnamed: 0`` header over the values 0..n-1 or 1..n) is dropped.
In plotnine 0.15.9 neither diamonds.csv nor penguins.csv has one, so both keep
all their columns.

Usage: fetch_dataset.py [--dataset diamonds|penguins] [--cache DIR] OUT
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Final, NamedTuple

PLOTNINE_VERSION: Final = "0.15.9"
WHEEL_NAME: Final = f"plotnine-{PLOTNINE_VERSION}-py3-none-any.whl"
# SHA-256 of the wheel on PyPI. PyPI does not accept a second upload under a
# released file name, so this digest stays valid.
WHEEL_SHA256: Final = "36f4526235b3ddd9ea379dd677093ea2ee1b58ab98adec1bde891930283448cd"
DEFAULT_CACHE: Final = Path.home() / ".cache" / "hevlayer" / "datasets"
INDEX_HEADERS: Final = ("", "Unnamed: 0")


class Dataset(NamedTuple):
    """A CSV inside the plotnine wheel and the prefix of the ids given to its rows."""

    member: str
    id_prefix: str


DATASETS: Final = {
    "diamonds": Dataset("plotnine/data/diamonds.csv", "d-"),
    "penguins": Dataset("plotnine/data/penguins.csv", "p-"),
}


class FetchError(RuntimeError):
    """The wheel could not be fetched or does not contain the expected data."""


def sha256_of(path: Path) -> str:
    """Return the hex SHA-256 digest of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_wheel(cache: Path) -> Path:
    """Download the pinned plotnine wheel into cache unless a verified copy is there."""
    wheel = cache / WHEEL_NAME
    if wheel.is_file() and sha256_of(wheel) == WHEEL_SHA256:
        return wheel

    cache.mkdir(parents=True, exist_ok=True)
    wheel.unlink(missing_ok=True)
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "-d",
        str(cache),
        f"plotnine=={PLOTNINE_VERSION}",
    ]

    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise FetchError(
            f"pip download of plotnine=={PLOTNINE_VERSION} failed "
            f"(exit {done.returncode}):\n{done.stderr.strip()}"
        )
    if not wheel.is_file():
        raise FetchError(f"pip download finished but {wheel} is missing")

    digest = sha256_of(wheel)
    if digest != WHEEL_SHA256:
        raise FetchError(
            f"{wheel} has SHA-256 {digest}, expected {WHEEL_SHA256}, so it is "
            "not the published plotnine wheel; check pip's package index settings"
        )
    return wheel


def read_member_rows(wheel: Path, member: str) -> list[list[str]]:
    """Read every row, header first, of a CSV file inside the wheel."""
    with zipfile.ZipFile(wheel) as archive:
        try:
            raw = archive.open(member)
        except KeyError:
            raise FetchError(f"{wheel} has no member {member}") from None
        with raw, io.TextIOWrapper(raw, encoding="utf-8", newline="") as text:
            return list(csv.reader(text))


def is_row_index(header: list[str], rows: list[list[str]]) -> bool:
    """Return whether the first column is an unnamed 0..n-1 or 1..n row counter."""
    if not header or header[0] not in INDEX_HEADERS or not rows:
        return False
    first = rows[0][0] if rows[0] else ""
    if first not in ("0", "1"):
        return False
    start = int(first)
    for number, row in enumerate(rows, start=start):
        if not row or row[0] != str(number):
            return False
    return True


def with_ids(rows: list[list[str]], prefix: str) -> tuple[list[str], list[list[str]]]:
    """Return the header and data rows with a new first column `id`."""
    if not rows:
        raise FetchError("the data set is empty: it has no header row")
    header, data = rows[0], rows[1:]
    if is_row_index(header, data):
        header = header[1:]
        data = [row[1:] for row in data]
    if "id" in header:
        raise FetchError("the data set already has an 'id' column")
    width = len(str(len(data)))
    numbered = [
        [f"{prefix}{number:0{width}d}", *row] for number, row in enumerate(data, 1)
    ]
    return ["id", *header], numbered


def write_csv(out: Path, header: list[str], rows: list[list[str]]) -> None:
    """Write a CSV atomically, so an interrupted run leaves no partial file at out."""
    out.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=out.name, dir=out.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(rows)
        os.replace(temporary, out)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        description=(
            f"Write a data set from the plotnine {PLOTNINE_VERSION} wheel as CSV "
            "with a new first column 'id'."
        )
    )
    parser.add_argument("out", type=Path, metavar="OUT", help="CSV file to write")
    parser.add_argument(
        "--dataset",
        choices=sorted(DATASETS),
        default="diamonds",
        help="data set to write (default: diamonds, 53940 rows; penguins has 344)",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=DEFAULT_CACHE,
        help=f"folder that keeps the downloaded wheel (default: {DEFAULT_CACHE})",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Fetch the wheel, write the chosen data set and print its row count."""
    args = parse_args(argv)
    dataset = DATASETS[args.dataset]
    try:
        wheel = fetch_wheel(args.cache.expanduser())
        original = read_member_rows(wheel, dataset.member)
        header, rows = with_ids(original, dataset.id_prefix)
    except FetchError as exc:
        print(f"fetch_dataset.py: {exc}", file=sys.stderr)
        return 1
    write_csv(args.out, header, rows)
    print(f"wrote {len(rows)} rows of {args.dataset} to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The RocksDB cache: its key layout, reads, and atomic write batches.

One database contains every namespace. Keys start with one byte naming their
kind, then the namespace, a NUL byte and the rest:

    D ns NUL id           document entry: the versions still needed (msgpack)
    G ns NUL id           marker: the entry holds more than one version, so
                          the next stamp of cache_warmed_through prunes it
    O ns NUL partition    next offset to read (big-endian u64), written in
                          the same batch as the documents it covers
    C ns                  cache_warmed_through: the Observation it stamped
    S ns NUL seq          snapshot number seq (big-endian u64) as JSON
    K ns                  snapshot configuration of the namespace (JSON)
    P ...                 reserved for posting lists built in the applier's
                          write batch

The applier is the only writer of D, G, O and C keys, and the snapshot store
(consumers/snapshots.py) the only writer of S and K keys. A replay, which
runs with the server stopped, deletes a namespace's D, G, O, S and C keys.
Readers take a RocksDB iterator, which keeps one consistent view for its
lifetime, and read the cut (key C) through that same iterator, so a scan
never mixes a cut with documents of another moment.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import msgspec
from rocksdict import Options, Rdict, ReadOptions, WriteBatch

from consumers.cuts import Observation, Version

logger = logging.getLogger(__name__)

DOC: Final = b"D"
GC_MARK: Final = b"G"
OFFSET: Final = b"O"
WARMED: Final = b"C"
SNAPSHOT: Final = b"S"
SNAPSHOT_CONFIG: Final = b"K"
SEP: Final = b"\x00"

_u64: Final = struct.Struct(">Q")
_versions_encoder: Final = msgspec.msgpack.Encoder()
_versions_decoder: Final = msgspec.msgpack.Decoder(list[Version])
_observation_decoder: Final = msgspec.msgpack.Decoder(Observation)


def doc_key(namespace: str, doc_id: str) -> bytes:
    return DOC + namespace.encode() + SEP + doc_id.encode()


def gc_key(namespace: str, doc_id: str) -> bytes:
    return GC_MARK + namespace.encode() + SEP + doc_id.encode()


def offset_key(namespace: str, partition: int) -> bytes:
    return OFFSET + namespace.encode() + SEP + _u64.pack(partition)


def warmed_key(namespace: str) -> bytes:
    return WARMED + namespace.encode()


def snapshot_key(namespace: str, seq: int) -> bytes:
    return SNAPSHOT + namespace.encode() + SEP + _u64.pack(seq)


def snapshot_config_key(namespace: str) -> bytes:
    return SNAPSHOT_CONFIG + namespace.encode()


def prefix(kind: bytes, namespace: str) -> bytes:
    """Return the key prefix of one kind of key in one namespace."""
    return kind + namespace.encode() + SEP


def prefix_end(start: bytes) -> bytes:
    """Return the smallest key above every key starting with `start`."""
    return start[:-1] + bytes([start[-1] + 1])


def encode_versions(versions: list[Version]) -> bytes:
    return _versions_encoder.encode(versions)


def decode_versions(raw: bytes) -> list[Version]:
    return _versions_decoder.decode(raw)


def encode_observation(observation: Observation) -> bytes:
    return _versions_encoder.encode(observation)


def decode_u64(raw: bytes) -> int:
    return _u64.unpack(raw)[0]


def encode_u64(value: int) -> bytes:
    return _u64.pack(value)


class CacheView:
    """A consistent read of one namespace: its cut and its documents.

    It keeps one RocksDB iterator, and every read through it returns the
    database as it was when the view was opened.
    """

    def __init__(self, db: Rdict, namespace: str) -> None:
        self._namespace = namespace
        self._iter = db.iter(ReadOptions())
        self.warmed = self._read_warmed()
        self.next_offsets = self._read_offsets()

    @property
    def populated(self) -> bool:
        """Whether the applier has applied anything of the namespace's topic."""
        return bool(self.next_offsets)

    def _read_warmed(self) -> Observation | None:
        key = warmed_key(self._namespace)
        self._iter.seek(key)
        if self._iter.valid() and self._iter.key() == key:
            return _observation_decoder.decode(self._iter.value())
        return None

    def _read_offsets(self) -> dict[int, int]:
        offsets: dict[int, int] = {}
        for key, value in self._range(prefix(OFFSET, self._namespace)):
            offsets[decode_u64(key[-8:])] = decode_u64(value)
        return offsets

    def _range(self, start: bytes) -> Iterator[tuple[bytes, bytes]]:
        end = prefix_end(start)
        self._iter.seek(start)
        while self._iter.valid():
            key = self._iter.key()
            if key >= end:
                return
            yield key, self._iter.value()
            self._iter.next()

    def entries(self) -> Iterator[tuple[str, list[Version]]]:
        """Yield (document id, versions) in id byte order."""
        start = prefix(DOC, self._namespace)
        skip = len(start)
        for key, value in self._range(start):
            yield key[skip:].decode(), decode_versions(value)

    def snapshots(self) -> Iterator[tuple[int, bytes]]:
        """Yield (seq, encoded snapshot), oldest first."""
        for key, value in self._range(prefix(SNAPSHOT, self._namespace)):
            yield decode_u64(key[-8:]), value


class Store:
    """The cache database of one process."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        self.db = Rdict(str(self.path), options=options)
        logger.info("opened cache database %s", self.path)

    def close(self) -> None:
        self.db.close()
        logger.info("closed cache database %s", self.path)

    def view(self, namespace: str) -> CacheView:
        """Open a consistent read of one namespace."""
        return CacheView(self.db, namespace)

    def versions(self, namespace: str, doc_id: str) -> list[Version]:
        raw = self.db.get(doc_key(namespace, doc_id))
        return decode_versions(raw) if raw is not None else []

    def warmed(self, namespace: str) -> Observation | None:
        raw = self.db.get(warmed_key(namespace))
        return _observation_decoder.decode(raw) if raw is not None else None

    def gc_marked(self, namespace: str) -> list[str]:
        """Return the ids whose entries wait for the next stamp to be pruned."""
        start = prefix(GC_MARK, namespace)
        skip = len(start)
        return [key[skip:].decode() for key, _ in self._range(start)]

    def all_next_offsets(self) -> dict[str, dict[int, int]]:
        """Return namespace -> partition -> next offset, for every namespace."""
        result: dict[str, dict[int, int]] = {}
        for key, value in self._range(OFFSET):
            namespace, _, partition = key[1:].partition(SEP)
            result.setdefault(namespace.decode(), {})[decode_u64(partition)] = (
                decode_u64(value)
            )
        return result

    def all_warmed(self) -> dict[str, Observation]:
        """Return namespace -> cache_warmed_through, for every stamped namespace."""
        return {
            key[1:].decode(): _observation_decoder.decode(value)
            for key, value in self._range(WARMED)
        }

    def _range(self, start: bytes) -> Iterator[tuple[bytes, bytes]]:
        read_options = ReadOptions()
        read_options.set_iterate_upper_bound(prefix_end(start))
        iterator = self.db.iter(read_options)
        iterator.seek(start)
        while iterator.valid():
            yield iterator.key(), iterator.value()
            iterator.next()

    def write(self, batch: WriteBatch) -> None:
        """Apply a write batch atomically.

        The write-ahead log is not synced per batch: a machine crash may lose
        the newest batches, but their offsets go with them, so the applier
        reads those records again and nothing is lost or applied twice.
        """
        self.db.write(batch)


def new_batch() -> WriteBatch:
    return WriteBatch(raw_mode=True)

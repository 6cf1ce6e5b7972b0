"""WriteOnceJsonLines: a text sink whose every object is a deterministic, create-only write.

Beam's ``WriteToText`` writes temp files and renames them in its finalize step (GCS: copy
and delete through the JSON batch API, which fake-gcs-server cannot serve), and its shard
contents depend on bundling. Here the lines are hashed into a number of shards fixed by
the line count, grouped, sorted, and each shard is written once with ``fs.write_once``
(GCS: ``if_generation_match=0``): the same input always gives the same objects, byte for
byte, on any runner, so a retried worker rewriting a shard is a no-op and no shard is ever
duplicated or half-written. An empty input writes nothing.

The input may be compact records instead of lines, with ``to_line`` making each line where
it is needed (to pick its shard, to write it): the shard count has to be known before any
line is keyed, so the input waits in full between the count and the keying, and again in
the shuffle before the shards are written (on FnApiRunner, in the launching process). So
records cross both as ``RecordPack``s, up to a thousand zlib-compressed records each: one
object per pack instead of one string per record, and several times fewer bytes (JSON
rows of file names compress 4-7x).
"""
from __future__ import annotations

import hashlib
import math
import zlib
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import apache_beam as beam
from apache_beam.pvalue import AsSingleton
from apache_beam.transforms.window import GlobalWindows

from transforms import fs

LINES_PER_SHARD = 50_000  # bounds the memory a shard's sort needs (~25 MB of JSON lines)
RECORDS_PER_PACK = 1_000


def shard_count(lines: int, lines_per_shard: int = LINES_PER_SHARD) -> int:
    return max(1, math.ceil(lines / lines_per_shard))


def shard_of(line: str, count: int) -> int:
    return int(hashlib.sha256(line.encode("utf-8")).hexdigest()[:12], 16) % count


def shard_path(prefix: str, index: int, count: int, suffix: str) -> str:
    return f"{prefix}-{index:05d}-of-{count:05d}{suffix}"


def shard_glob(prefix: str, suffix: str) -> str:
    """Every shard a WriteOnceJsonLines(prefix, suffix) may have written, of any count."""
    return f"{prefix}-*-of-*{suffix}"


def shard_bytes(lines) -> bytes:
    return "".join(line + "\n" for line in sorted(lines)).encode("utf-8")


def _same(line: str) -> str:
    return line


@dataclass(frozen=True)
class RecordPack:
    """Records (str without a newline, as every line and JSON row is) joined by newlines
    and compressed: what the sink holds between its steps instead of the records."""

    count: int
    data: bytes

    @classmethod
    def of(cls, records: list[str]) -> "RecordPack":
        return cls(len(records), zlib.compress("\n".join(records).encode("utf-8"), 1))

    def records(self) -> list[str]:
        return zlib.decompress(self.data).decode("utf-8").split("\n")


def unpacked(values: Iterable) -> Iterator:
    """The records of a shard's grouped values: the sink's RecordPacks, or records as
    they are (a caller may hand ``WriteShardDoFn`` a shard's records directly)."""
    for value in values:
        if isinstance(value, RecordPack):
            yield from value.records()
        else:
            yield value


class PackRecordsDoFn(beam.DoFn):
    """Records → RecordPacks of up to RECORDS_PER_PACK, within a bundle."""

    def start_bundle(self):
        self._records: list[str] = []

    def process(self, record: str):
        self._records.append(record)
        if len(self._records) >= RECORDS_PER_PACK:
            yield self._pack()

    def finish_bundle(self):
        if self._records:
            yield GlobalWindows.windowed_value(self._pack())

    def _pack(self) -> RecordPack:
        pack, self._records = RecordPack.of(self._records), []
        return pack


def packs_by_shard(pack: RecordPack, count: int, to_line: Callable[[object], str]):
    """A pack's records regrouped by the shard of their line: one pack per shard."""
    shards: dict[int, list[str]] = {}
    for record in pack.records():
        shards.setdefault(shard_of(to_line(record), count), []).append(record)
    for index, records in shards.items():
        yield (index, count), RecordPack.of(records)


class WriteShardDoFn(beam.DoFn):
    def __init__(self, prefix: str, suffix: str, to_line: Callable[[object], str] = _same):
        self._prefix = prefix
        self._suffix = suffix
        self._to_line = to_line

    def process(self, element):
        (index, count), values = element
        path = shard_path(self._prefix, index, count, self._suffix)
        fs.write_once(path, shard_bytes(map(self._to_line, unpacked(values))))
        yield path


class WriteOnceJsonLines(beam.PTransform):
    """Lines (str, no newline), or records (str, no newline) with ``to_line`` (record →
    line), → shard objects ``<prefix>-SSSSS-of-NNNNN<suffix>``; outputs the paths written."""

    def __init__(self, prefix: str, suffix: str = ".jsonl", lines_per_shard: int = LINES_PER_SHARD,
                 to_line: Callable[[object], str] = _same):
        super().__init__()
        self._prefix = prefix
        self._suffix = suffix
        self._per_shard = lines_per_shard
        self._to_line = to_line

    def expand(self, lines):
        per_shard, to_line = self._per_shard, self._to_line
        packs = lines | "Pack records" >> beam.ParDo(PackRecordsDoFn())
        count = (
            packs
            | "Count lines" >> beam.Map(lambda pack: pack.count)
            | "Sum counts" >> beam.CombineGlobally(sum)
            | "Shard count" >> beam.Map(shard_count, per_shard)
        )
        return (
            packs
            | "Key by shard" >> beam.FlatMap(packs_by_shard, AsSingleton(count), to_line)
            | "Group by shard" >> beam.GroupByKey()
            | "Write shards" >> beam.ParDo(WriteShardDoFn(self._prefix, self._suffix, to_line))
        )

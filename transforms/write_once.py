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
line is keyed, so the input waits in full between the count and the keying (on
FnApiRunner, in the launching process), and a smaller record is less memory there.
"""
from __future__ import annotations

import hashlib
import math
from typing import Callable

import apache_beam as beam
from apache_beam.pvalue import AsSingleton

from transforms import fs

LINES_PER_SHARD = 50_000  # bounds the memory a shard's sort needs (~25 MB of JSON lines)


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


class WriteShardDoFn(beam.DoFn):
    def __init__(self, prefix: str, suffix: str, to_line: Callable[[object], str] = _same):
        self._prefix = prefix
        self._suffix = suffix
        self._to_line = to_line

    def process(self, element):
        (index, count), records = element
        path = shard_path(self._prefix, index, count, self._suffix)
        fs.write_once(path, shard_bytes(map(self._to_line, records)))
        yield path


class WriteOnceJsonLines(beam.PTransform):
    """Lines (str, no newline), or records with ``to_line`` (record → line), → shard
    objects ``<prefix>-SSSSS-of-NNNNN<suffix>``; outputs the paths written."""

    def __init__(self, prefix: str, suffix: str = ".jsonl", lines_per_shard: int = LINES_PER_SHARD,
                 to_line: Callable[[object], str] = _same):
        super().__init__()
        self._prefix = prefix
        self._suffix = suffix
        self._per_shard = lines_per_shard
        self._to_line = to_line

    def expand(self, lines):
        per_shard, to_line = self._per_shard, self._to_line
        count = (
            lines
            | "Count lines" >> beam.combiners.Count.Globally()
            | "Shard count" >> beam.Map(shard_count, per_shard)
        )
        return (
            lines
            | "Key by shard" >> beam.Map(lambda record, n: ((shard_of(to_line(record), n), n), record),
                                         AsSingleton(count))
            | "Group by shard" >> beam.GroupByKey()
            | "Write shards" >> beam.ParDo(WriteShardDoFn(self._prefix, self._suffix, to_line))
        )

"""WriteOnceJsonLines: a text sink whose every object is a deterministic, create-only write.

Beam's ``WriteToText`` writes temp files and renames them in its finalize step (GCS: copy
and delete through the JSON batch API, which fake-gcs-server cannot serve), and its shard
contents depend on bundling. Here the lines are hashed into a number of shards fixed by
the line count, grouped, sorted, and each shard is written once with ``fs.write_once``
(GCS: ``if_generation_match=0``): the same input always gives the same objects, byte for
byte, on any runner, so a retried worker rewriting a shard is a no-op and no shard is ever
duplicated or half-written. An empty input writes nothing.
"""
from __future__ import annotations

import hashlib
import math

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


class WriteShardDoFn(beam.DoFn):
    def __init__(self, prefix: str, suffix: str):
        self._prefix = prefix
        self._suffix = suffix

    def process(self, element):
        (index, count), lines = element
        path = shard_path(self._prefix, index, count, self._suffix)
        fs.write_once(path, shard_bytes(lines))
        yield path


class WriteOnceJsonLines(beam.PTransform):
    """Lines (str, no newline) → shard objects ``<prefix>-SSSSS-of-NNNNN<suffix>``;
    outputs the paths written."""

    def __init__(self, prefix: str, suffix: str = ".jsonl", lines_per_shard: int = LINES_PER_SHARD):
        super().__init__()
        self._prefix = prefix
        self._suffix = suffix
        self._per_shard = lines_per_shard

    def expand(self, lines):
        per_shard = self._per_shard
        count = (
            lines
            | "Count lines" >> beam.combiners.Count.Globally()
            | "Shard count" >> beam.Map(shard_count, per_shard)
        )
        return (
            lines
            | "Key by shard" >> beam.Map(lambda line, n: ((shard_of(line, n), n), line), AsSingleton(count))
            | "Group by shard" >> beam.GroupByKey()
            | "Write shards" >> beam.ParDo(WriteShardDoFn(self._prefix, self._suffix))
        )

"""DiffAgainstLastRun: compare this listing with the previous successful run's, so only
new or changed objects are chunked and paid for.

An object is *unchanged* when the previous run (same config fingerprint) listed it with
the same generation and embedded it (or found it empty); its rows and its dead letters
are carried into this run's outputs by copy, so every run directory is self-contained
and older runs can be deleted. Objects the previous run listed that are gone now are
*tombstones*: counted, and absent from this run's outputs.

Only URIs and generations are shuffled; vectors are copied part by part, so carrying a
large corpus costs a read and a write of its Parquet, never a shuffle of its vectors.
A records file's rows (and their dead letters) are named ``<file>#<id>``: they belong
to the object ``<file>``, found among the unchanged records files (a side input, one URI
per records file), so they are carried with it.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from transforms import fs
from transforms.types import ObjectOutcome

UNCHANGED = "unchanged"
TOMBSTONES = "tombstones"
CARRIED_STATUSES = {"chunked", "empty", "unchanged"}


@dataclass(frozen=True)
class PreviousRun:
    """Where the previous successful run's listing, embeddings and dead letters are."""

    run_id: str
    listing_glob: str
    embedding_parts: tuple  # sorted part paths
    deadletter_globs: tuple  # its dead letters (only those of unchanged objects are carried)


def decide(uri: str, current: list, previous: list):
    """('changed', SourceObject) | ('unchanged', SourceObject, prev) | ('tombstone', prev)."""
    prev = previous[0] if previous else None
    if not current:
        if prev is not None and prev["status"] != "tombstone":
            return ("tombstone", prev)
        return None
    source = current[0]
    if (
        prev is not None
        and prev["generation"] == source.generation
        and prev["status"] in CARRIED_STATUSES
    ):
        return ("unchanged", source, prev)
    return ("changed", source)


class DecideDoFn(beam.DoFn):
    def process(self, element):
        uri, grouped = element
        decision = decide(uri, list(grouped["current"]), list(grouped["previous"]))
        if decision is None:
            return
        if decision[0] == "changed":
            yield decision[1]
        elif decision[0] == "unchanged":
            source, prev = decision[1], decision[2]
            yield beam.pvalue.TaggedOutput(
                UNCHANGED,
                ObjectOutcome(source.uri, source.generation, source.detected_type, UNCHANGED,
                              prev["chunks"], source.size_bytes),
            )
        else:
            prev = decision[1]
            yield beam.pvalue.TaggedOutput(
                TOMBSTONES,
                ObjectOutcome(prev["uri"], prev["generation"], prev["detected_type"],
                              "tombstone", 0, prev.get("size_bytes", 0)),
            )


class DiffAgainstLastRun(beam.PTransform):
    """SourceObjects → changed SourceObjects (main), ``unchanged`` and ``tombstones``
    ObjectOutcomes."""

    def __init__(self, previous: PreviousRun):
        super().__init__()
        self._previous = previous

    def expand(self, sources):
        previous = (
            sources.pipeline
            # ReadAll: the glob is matched when the pipeline runs, on workers, by plain
            # DoFns (ReadFromText matches it at graph build and needs a runner-level Read)
            | "Previous listing files" >> beam.Create([self._previous.listing_glob])
            | "Read previous listing" >> beam.io.ReadAllFromText()
            | "Parse previous listing" >> beam.Map(json.loads)
            | "Key previous by URI" >> beam.Map(lambda row: (row["uri"], row))
        )
        current = sources | "Key current by URI" >> beam.Map(lambda s: (s.uri, s))
        return (
            {"current": current, "previous": previous}
            | "Join listings" >> beam.CoGroupByKey()
            | "Decide" >> beam.ParDo(DecideDoFn()).with_outputs(UNCHANGED, TOMBSTONES, main="changed")
        )


def owner_uri(source_uri: str, records_uris) -> str:
    """The listed object a row or dead letter belongs to: ``<file>#<id>`` belongs to the
    records file ``<file>`` (the longest such prefix among ``records_uris``, a set or dict;
    matching known files, not splitting on ``#``, keeps ``notes#1.txt`` and ids holding
    ``#`` right)."""
    for cut in range(len(source_uri) - 1, 0, -1):
        if source_uri[cut] == "#" and source_uri[:cut] in records_uris:
            return source_uri[:cut]
    return source_uri


def part_uris(indexed_part: tuple[int, str], records_uris=()):
    """(object uri, (part index, generation)) for every distinct source in one previous part."""
    index, path = indexed_part
    table = pq.read_table(io.BytesIO(fs.read_bytes(path)), columns=["source_uri", "source_generation"])
    seen = {(owner_uri(uri, records_uris), generation) for uri, generation in
            zip(table.column("source_uri").to_pylist(), table.column("source_generation").to_pylist())}
    for uri, generation in sorted(seen):
        yield uri, (index, generation)


def keep_decisions(element):
    """(part index, uri) for each previous part holding rows of an unchanged object."""
    uri, grouped = element
    generations = {o.generation for o in grouped["unchanged"]}
    for index, generation in grouped["parts"]:
        if generation in generations:
            yield index, uri


def carried_name(index: int, count: int) -> str:
    return f"carried-{index:05d}-of-{count:05d}.parquet"


def copy_rows(element, parts: tuple, out_dir: str, records_uris=()) -> int:
    """Copy one previous part's rows of the kept URIs, schema and metadata unchanged."""
    index, uris = element
    path = parts[index]
    table = pq.read_table(io.BytesIO(fs.read_bytes(path)))
    owners = pa.array([owner_uri(u, records_uris) for u in table.column("source_uri").to_pylist()], pa.string())
    kept = table.filter(pc.is_in(owners, value_set=pa.array(sorted(set(uris)), pa.string())))
    buf = io.BytesIO()
    pq.write_table(kept, buf)
    fs.write_bytes(fs.join(out_dir, carried_name(index, len(parts))), buf.getvalue())
    return kept.num_rows


class CarryUnchanged(beam.PTransform):
    """Unchanged ObjectOutcomes → carried Parquet parts (row counts) in ``out_dir``."""

    def __init__(self, previous: PreviousRun, out_dir: str):
        super().__init__()
        self._previous = previous
        self._out = out_dir

    def expand(self, unchanged):
        parts = self._previous.embedding_parts
        records = beam.pvalue.AsDict(unchanged | "Unchanged records files" >> UnchangedRecordsUris())
        by_uri = (
            unchanged.pipeline
            | "Previous parts" >> beam.Create(list(enumerate(parts)))
            | "Sources per part" >> beam.FlatMap(part_uris, records)
        )
        keys = unchanged | "Key unchanged by URI" >> beam.Map(lambda o: (o.uri, o))
        return (
            {"parts": by_uri, "unchanged": keys}
            | "Join parts to unchanged" >> beam.CoGroupByKey()
            | "Rows to keep" >> beam.FlatMap(keep_decisions)
            | "Group by part" >> beam.GroupByKey()
            | "Copy rows" >> beam.Map(copy_rows, parts, self._out, records)
        )


class UnchangedRecordsUris(beam.PTransform):
    """Unchanged ObjectOutcomes → (uri, True) for the records files among them (a dict
    side input: membership without rebuilding a set per element)."""

    def expand(self, unchanged):
        return (
            unchanged
            | "Records files" >> beam.Filter(lambda o: o.detected_type == "records")
            | "Their URIs" >> beam.Map(lambda o: (o.uri, True))
        )


def carried_dead_letters(element):
    """Previous dead letters (JSON lines) of unchanged objects, unchanged."""
    _uri, grouped = element
    if list(grouped["unchanged"]):
        yield from grouped["dead"]


class CarryDeadLetters(beam.PTransform):
    """Unchanged ObjectOutcomes → the previous run's dead-letter lines for them."""

    def __init__(self, previous: PreviousRun):
        super().__init__()
        self._previous = previous

    def expand(self, unchanged):
        records = beam.pvalue.AsDict(unchanged | "Unchanged records files" >> UnchangedRecordsUris())
        dead = (
            unchanged.pipeline
            | "Previous dead-letter files" >> beam.Create(list(self._previous.deadletter_globs))
            | "Read previous dead letters" >> beam.io.ReadAllFromText()
            | "Key dead letters by URI" >> beam.Map(
                lambda line, uris: (owner_uri(json.loads(line)["source_uri"], uris), line), records)
        )
        keys = unchanged | "Key unchanged for dead letters" >> beam.Map(lambda o: (o.uri, o))
        return (
            {"dead": dead, "unchanged": keys}
            | "Join dead letters" >> beam.CoGroupByKey()
            | "Dead letters to carry" >> beam.FlatMap(carried_dead_letters)
        )


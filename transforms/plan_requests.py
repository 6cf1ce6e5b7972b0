"""PlanRequests: chunks → Batch API request lines, packed into request files.

Files are deterministic: a chunk's bucket is a function of its id and the corpus totals,
lines inside a file are sorted by key, and JSON is serialised canonically, so rerunning
the same input gives byte-identical request files (and the ledger recognises them).
Beside each ``req-BBBBB-SSS.jsonl`` a ``.keys.parquet`` lists its keys with the chunk
metadata WriteEmbeddings needs, so results are joined by key, never by order.

Memory stays bounded as the corpus grows: each request line is written once to a spill
file (``<run>/.plan-spill-<id>/``, one folder per pipeline, removed at its end) by the step
that serialises it, only batches of small refs go through the bucket shuffle, and a
bucket's writer sorts its refs and streams the lines back in key order into the file. No
step holds a request file's worth of lines.
"""
from __future__ import annotations

import collections
import contextlib
import hashlib
import io
import itertools
import json
import math
import mimetypes
import os
import pickle
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from typing import Iterable, Iterator

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pybase64
from apache_beam.transforms.window import GlobalWindows

from transforms import fs
from transforms.types import Chunk

KEYS_SCHEMA = pa.schema(
    [
        pa.field("chunk_id", pa.string(), nullable=False),
        pa.field("source_uri", pa.string(), nullable=False),
        pa.field("source_generation", pa.string(), nullable=False),
        pa.field("modality", pa.string(), nullable=False),
        pa.field("mime_type", pa.string()),
        pa.field("unit", pa.string(), nullable=False),
        pa.field("start", pa.float64()),
        pa.field("end", pa.float64()),
        pa.field("task", pa.string()),
        pa.field("est_tokens", pa.int64()),
        pa.field("line_bytes", pa.int64()),
    ]
)


STAGED_SCHEME = "embedpipe-staged:"


@dataclass(frozen=True)
class RequestSizing:
    """Bounds for one request file; the token bound keeps every file under the quota.

    Inline media parts larger than ``files_api_threshold_bytes`` are staged under
    ``media_dir`` and referenced as ``embedpipe-staged:<name>``; the submitter uploads
    them through the Files API and swaps in the real URI (the API key never reaches
    workers, and request files stay small and deterministic)."""

    model: str
    dimensionality: int
    max_file_bytes: int
    max_lines: int
    max_tokens: int
    media_dir: str = ""
    files_api_threshold_bytes: int = 8_000_000


def stage_large_parts(parts: tuple, media_dir: str, threshold: int) -> tuple:
    """Replace inline parts over ``threshold`` bytes with staged-file references.

    Names are content hashes, so reruns and retries write the same object once."""
    staged = []
    for part in parts:
        inline = part.get("inline_data")
        if not inline or len(inline["data"]) * 3 // 4 <= threshold:
            staged.append(part)
            continue
        data = pybase64.b64decode(inline["data"])
        ext = mimetypes.guess_extension(inline["mime_type"]) or ".bin"
        name = hashlib.sha256(data).hexdigest()[:32] + ext
        target = fs.join(media_dir, name)
        if not fs.exists(target):
            fs.write_bytes(target, data)
        staged.append(
            {"file_data": {"mime_type": inline["mime_type"], "file_uri": STAGED_SCHEME + name}}
        )
    return tuple(staged)


def staged_media(request_path: str) -> dict[str, str]:
    """Staged media name → mime type, for every staged reference in a request file."""
    found: dict[str, str] = {}
    for line in fs.iter_lines(request_path):
        if STAGED_SCHEME not in line:
            continue
        for part in json.loads(line)["request"]["content"]["parts"]:
            ref = part.get("file_data", {})
            if ref.get("file_uri", "").startswith(STAGED_SCHEME):
                found[ref["file_uri"][len(STAGED_SCHEME):]] = ref["mime_type"]
    return found


@dataclass(frozen=True)
class PlannedLine:
    """A serialised request line plus the metadata row that goes into the key list."""

    chunk_id: str
    line: bytes
    meta: tuple  # values in KEYS_SCHEMA order, without line_bytes
    est_tokens: int
    modality: str


@dataclass(frozen=True)
class RequestFileInfo:
    name: str
    path: str
    keys_path: str
    lines: int
    bytes: int
    est_tokens: int
    tokens_by_modality: tuple  # ((modality, tokens), ...)
    lines_by_modality: tuple

    def to_json(self) -> dict:
        d = dict(self.__dict__)
        d["tokens_by_modality"] = dict(self.tokens_by_modality)
        d["lines_by_modality"] = dict(self.lines_by_modality)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "RequestFileInfo":
        d = dict(d)
        d["tokens_by_modality"] = tuple(sorted(d["tokens_by_modality"].items()))
        d["lines_by_modality"] = tuple(sorted(d["lines_by_modality"].items()))
        return cls(**d)


def request_line(chunk: Chunk, model: str, dimensionality: int, parts: tuple | None = None) -> bytes:
    """One JSONL line in the Gemini Batch API's embed format, canonically serialised."""
    body = {
        "key": chunk.chunk_id,
        "request": {
            "model": f"models/{model}",
            "content": {"parts": list(chunk.parts if parts is None else parts)},
            "outputDimensionality": dimensionality,
        },
    }
    return (
        json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        + b"\n"
    )


def plan_line(chunk: Chunk, sizing: RequestSizing) -> PlannedLine:
    loc = chunk.locator
    parts = chunk.parts
    if sizing.media_dir:
        parts = stage_large_parts(parts, sizing.media_dir, sizing.files_api_threshold_bytes)
    return PlannedLine(
        chunk_id=chunk.chunk_id,
        line=request_line(chunk, sizing.model, sizing.dimensionality, parts),
        meta=(
            chunk.chunk_id, chunk.source_uri, chunk.source_generation, chunk.modality,
            chunk.mime_type, loc.unit, loc.start, loc.end, chunk.task, chunk.est_tokens,
        ),
        est_tokens=chunk.est_tokens,
        modality=chunk.modality,
    )


def bucket_count(totals: tuple[int, int, int], sizing: RequestSizing) -> int:
    """How many hash buckets so a bucket is about half a file on every bound
    (headroom for hash imbalance; an overfull bucket is split, never truncated)."""
    lines, nbytes, tokens = totals
    return max(
        1,
        math.ceil(nbytes / (sizing.max_file_bytes / 2)),
        math.ceil(lines / max(1, sizing.max_lines // 2)),
        math.ceil(tokens / (sizing.max_tokens / 2)),
    )


def bucket_of(chunk_id: str, n_buckets: int) -> int:
    return int(chunk_id[:12], 16) % n_buckets


def cut_files(items: Iterable, sizing: RequestSizing, line_bytes, est_tokens) -> list[list]:
    """Cut key-sorted items into consecutive files within lines, bytes and tokens
    (greedy: a file ends when the next line would break a bound)."""
    files: list[list] = [[]]
    nbytes = tokens = 0
    for item in items:
        size, cost = line_bytes(item), est_tokens(item)
        current = files[-1]
        if current and (
            len(current) + 1 > sizing.max_lines
            or nbytes + size > sizing.max_file_bytes
            or tokens + cost > sizing.max_tokens
        ):
            files.append([])
            nbytes = tokens = 0
        files[-1].append(item)
        nbytes += size
        tokens += cost
    return [f for f in files if f]


def pack_lines(lines: Iterable[PlannedLine], sizing: RequestSizing) -> list[list[PlannedLine]]:
    """Sort by key and cut into files within bytes, lines and tokens."""
    return cut_files(
        sorted(lines, key=lambda p: p.chunk_id), sizing,
        lambda p: len(p.line), lambda p: p.est_tokens,
    )


def keys_table(rows: list[tuple]) -> pa.Table:
    """The key list of one request file from its lines' metadata rows (KEYS_SCHEMA order)."""
    columns = list(zip(*rows))
    return pa.Table.from_arrays(
        [pa.array(col, type=f.type) for col, f in zip(columns, KEYS_SCHEMA)], schema=KEYS_SCHEMA
    )


def write_request_file(
    planned: Iterable[PlannedLine], requests_dir: str, name: str
) -> RequestFileInfo:
    """Stream ``planned`` (in order) into ``<name>.jsonl`` and write its key list: only
    the lines' metadata rows are kept, never the lines."""
    path = fs.join(requests_dir, f"{name}.jsonl")
    keys_path = fs.join(requests_dir, f"{name}.keys.parquet")
    rows: list[tuple] = []
    tokens: dict[str, int] = {}
    counts: dict[str, int] = {}
    nbytes = 0
    with fs.open_write(path) as fh:
        for p in planned:
            fh.write(p.line)
            rows.append(p.meta + (len(p.line),))
            nbytes += len(p.line)
            tokens[p.modality] = tokens.get(p.modality, 0) + p.est_tokens
            counts[p.modality] = counts.get(p.modality, 0) + 1
    buf = io.BytesIO()
    pq.write_table(keys_table(rows), buf)
    fs.write_bytes(keys_path, buf.getvalue())
    return RequestFileInfo(
        name=name,
        path=path,
        keys_path=keys_path,
        lines=len(rows),
        bytes=nbytes,
        est_tokens=sum(tokens.values()),
        tokens_by_modality=tuple(sorted(tokens.items())),
        lines_by_modality=tuple(sorted(counts.items())),
    )


def select_lines(
    original: RequestFileInfo, wanted: set[str], requests_dir: str, name: str
) -> RequestFileInfo:
    """A new request file holding only ``wanted`` keys of ``original`` (for resubmission).

    Lines are copied byte for byte, so a resubmitted chunk is exactly the request that
    was planned (and priced) the first time.
    """
    keys = pq.read_table(io.BytesIO(fs.read_bytes(original.keys_path))).to_pylist()
    meta = {row["chunk_id"]: row for row in keys if row["chunk_id"] in wanted}

    def selected() -> Iterator[PlannedLine]:
        for raw in fs.iter_lines(original.path):
            key = json.loads(raw)["key"]
            if key in meta:
                row = meta[key]
                yield PlannedLine(
                    chunk_id=key,
                    line=raw.encode("utf-8"),
                    meta=tuple(row[f.name] for f in KEYS_SCHEMA if f.name != "line_bytes"),
                    est_tokens=row["est_tokens"],
                    modality=row["modality"],
                )

    return write_request_file(selected(), requests_dir, name)


# -- the Beam transform: lines spill to files once; only batches of refs are shuffled --
# A ref is (chunk_id, spill file name, offset, record length, line bytes, est_tokens).
LineRef = tuple
REFS_PER_BATCH = 20_000  # refs a spilling worker holds before it hands them on
_OPEN_SPILLS = 64  # spill files a writer keeps open at once
_SPILL_BUFFER = 1 << 20  # a spill is written in 1 MB system calls, not one per 8 KB


def new_spill_dir(requests_dir: str) -> str:
    """A folder of its own beside ``requests/`` for one pipeline's spilled lines: two
    processes preparing the same run never share (or delete) each other's spill."""
    name = f".plan-spill-{uuid.uuid4().hex[:16]}"
    if fs.is_remote(requests_dir):
        return fs.join(requests_dir.rstrip("/").rsplit("/", 1)[0], name)
    return os.path.join(os.path.dirname(os.path.abspath(requests_dir)), name)


def spill_record(planned: PlannedLine) -> bytes:
    """A planned line as it is spilled (pickle: a private, short-lived file)."""
    return pickle.dumps((planned.meta, planned.line), protocol=pickle.HIGHEST_PROTOCOL)


def planned_from_record(record: bytes) -> PlannedLine:
    meta, line = pickle.loads(record)
    return PlannedLine(chunk_id=meta[0], line=line, meta=meta, est_tokens=meta[9], modality=meta[3])


@dataclass(frozen=True)
class RefBatch:
    """Refs to lines spilled into one file: what the bucket shuffle carries (a few bytes
    of columns per line, one element per batch instead of one per chunk)."""

    spill: str
    chunk_ids: tuple[str, ...]
    offsets: np.ndarray  # int64 columns, one value per line
    lengths: np.ndarray
    line_bytes: np.ndarray
    tokens: np.ndarray

    def totals(self) -> tuple[int, int, int]:
        return len(self.chunk_ids), int(self.line_bytes.sum()), int(self.tokens.sum())

    def by_bucket(self, n_buckets: int) -> Iterator[tuple[int, "RefBatch"]]:
        buckets = np.fromiter((bucket_of(c, n_buckets) for c in self.chunk_ids), np.int64,
                              len(self.chunk_ids))
        for bucket in np.unique(buckets):
            rows = np.flatnonzero(buckets == bucket)
            yield int(bucket), RefBatch(
                self.spill, tuple(self.chunk_ids[r] for r in rows), self.offsets[rows],
                self.lengths[rows], self.line_bytes[rows], self.tokens[rows],
            )

    def refs(self) -> Iterator[LineRef]:
        return zip(self.chunk_ids, itertools.repeat(self.spill), self.offsets.tolist(),
                   self.lengths.tolist(), self.line_bytes.tolist(), self.tokens.tolist())


class SpillRequestLines(beam.DoFn):
    """Chunk → its request line, appended to this bundle's spill file; refs to the lines
    leave in RefBatches of up to REFS_PER_BATCH.

    Request lines (up to MBs with inline media) are written to storage once, here, and
    read back once by the writer of their file: the bucket shuffle (and, on FnApiRunner,
    the runner's in-memory buffers) carries refs, never lines, and Beam handles one
    element per batch, not one per chunk."""

    def __init__(self, spill_dir: str, sizing: RequestSizing):
        self._dir = spill_dir
        self._sizing = sizing

    def start_bundle(self):
        self._files = None
        self._refs: list[tuple] = []

    def process(self, chunk: Chunk):
        planned = plan_line(chunk, self._sizing)
        if self._files is None:
            self._files = contextlib.ExitStack()
            self._name = f"{uuid.uuid4().hex}.spill"
            self._out = self._files.enter_context(
                fs.open_write(fs.join(self._dir, self._name), _SPILL_BUFFER)
            )
            self._offset = 0
        record = spill_record(planned)
        self._out.write(record)
        self._refs.append((planned.chunk_id, self._offset, len(record), len(planned.line),
                           planned.est_tokens))
        self._offset += len(record)
        if len(self._refs) >= REFS_PER_BATCH:
            yield self._batch()

    def finish_bundle(self):
        if self._files is not None:
            self._files.close()  # the spill file is complete before the bundle commits
            self._files = None
        if self._refs:
            yield GlobalWindows.windowed_value(self._batch())

    def _batch(self) -> RefBatch:
        ids, offsets, lengths, sizes, tokens = zip(*self._refs)
        self._refs = []
        return RefBatch(self._name, ids, *(np.asarray(c, np.int64)
                                           for c in (offsets, lengths, sizes, tokens)))


class SpillReader:
    """Reads spilled records back by (file, offset, length), a few files open at a time;
    a local spill by one ``pread`` per record (records come back in key order, so a
    buffered reader's seek would throw its buffer away for every one)."""

    def __init__(self, spill_dir: str):
        self._dir = spill_dir
        self._remote = fs.is_remote(spill_dir)
        self._open: collections.OrderedDict = collections.OrderedDict()

    def record(self, name: str, offset: int, length: int) -> bytes:
        handle = self._open.pop(name, None)
        if handle is None:
            if len(self._open) >= _OPEN_SPILLS:
                self._close(self._open.popitem(last=False)[1])
            uri = fs.join(self._dir, name)
            handle = fs.open_read(uri) if self._remote else os.open(uri, os.O_RDONLY)
        self._open[name] = handle
        if not self._remote:
            return os.pread(handle, length, offset)
        handle.seek(offset)
        return handle.read(length)

    def _close(self, handle) -> None:
        if self._remote:
            handle.close()
        else:
            os.close(handle)

    def planned(self, ref: LineRef) -> PlannedLine:
        _, name, offset, length, _, _ = ref
        return planned_from_record(self.record(name, offset, length))

    def close(self) -> None:
        while self._open:
            self._close(self._open.popitem()[1])


@contextlib.contextmanager
def spilled_lines(spill_dir: str, refs: list[LineRef]) -> Iterator:
    """A reader ``ref → PlannedLine`` over ``refs`` (one bucket's), for reading in key order.

    Local spill files are read where they are. Remote ones (gs://) are first copied in
    file-and-offset order (forward reads, no per-line request) into one local temp file,
    which is then read in key order."""
    reader = SpillReader(spill_dir)
    try:
        if not fs.is_remote(spill_dir):
            yield reader.planned
            return
        with tempfile.TemporaryFile() as local:
            at: dict[tuple[str, int], tuple[int, int]] = {}
            for _, name, offset, length, _, _ in sorted(refs, key=lambda r: (r[1], r[2])):
                at[name, offset] = (local.tell(), length)
                local.write(reader.record(name, offset, length))

            def planned(ref: LineRef) -> PlannedLine:
                position, length = at[ref[1], ref[2]]
                local.seek(position)
                return planned_from_record(local.read(length))

            yield planned
    finally:
        reader.close()


class WriteRequestFilesDoFn(beam.DoFn):
    """(bucket, ref batches) → the bucket's request files, lines streamed from the spill in
    key order: memory holds the bucket's refs and one line, never a file's worth of lines."""

    def __init__(self, requests_dir: str, spill_dir: str, sizing: RequestSizing):
        self._dir = requests_dir
        self._spill = spill_dir
        self._sizing = sizing

    def process(self, element):
        bucket, batches = element
        refs = sorted(ref for batch in batches for ref in batch.refs())
        with spilled_lines(self._spill, refs) as planned:
            for sub, group in enumerate(cut_files(refs, self._sizing, lambda r: r[4], lambda r: r[5])):
                yield write_request_file(
                    map(planned, group), self._dir, f"req-{bucket:05d}-{sub:03d}"
                )


def remove_spill(spill_dir: str) -> None:
    """Drop this pipeline's spilled lines once every request file is written (with any
    left by a retried bundle); one plain delete per object, as GCS emulators serve no
    batch requests."""
    if not fs.is_remote(spill_dir):
        shutil.rmtree(spill_dir, ignore_errors=True)
        return
    fs.delete_many([path for path, _ in fs.match(fs.join(spill_dir, "*"))])


def _sum3(items: Iterable[tuple[int, int, int]]) -> tuple[int, int, int]:
    a = b = c = 0
    for x, y, z in items:
        a, b, c = a + x, b + y, c + z
    return a, b, c


class PlanRequests(beam.PTransform):
    """Chunks → RequestFileInfo (one per written request file)."""

    def __init__(self, requests_dir: str, sizing: RequestSizing):
        super().__init__()
        self._dir = requests_dir
        self._sizing = sizing

    def expand(self, chunks):
        sizing = self._sizing
        spill_dir = new_spill_dir(self._dir)
        batches = chunks | "Serialise request lines" >> beam.ParDo(
            SpillRequestLines(spill_dir, sizing)
        )
        totals = (
            batches
            | "Line sizes" >> beam.Map(RefBatch.totals)
            | "Corpus totals" >> beam.CombineGlobally(_sum3)
        )
        files = (
            batches
            | "Assign buckets"
            >> beam.FlatMap(
                lambda b, t: b.by_bucket(bucket_count(t, sizing)),
                t=beam.pvalue.AsSingleton(totals),
            )
            | "Group by bucket" >> beam.GroupByKey()
            | "Write request files"
            >> beam.ParDo(WriteRequestFilesDoFn(self._dir, spill_dir, sizing))
        )
        _ = (
            files
            | "All request files" >> beam.combiners.ToList()
            | "Remove spilled lines" >> beam.Map(lambda _, d: remove_spill(d), spill_dir)
        )
        return files

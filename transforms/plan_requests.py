"""PlanRequests: chunks → Batch API request lines, packed into request files.

Files are deterministic: a chunk's bucket is a function of its id and the corpus totals,
lines inside a file are sorted by key, and JSON is serialised canonically, so rerunning
the same input gives byte-identical request files (and the ledger recognises them).
Beside each ``req-BBBBB-SSS.jsonl`` a ``.keys.parquet`` lists its keys with the chunk
metadata WriteEmbeddings needs, so results are joined by key, never by order.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import math
import mimetypes
from dataclasses import dataclass
from typing import Iterable

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq

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
        data = base64.b64decode(inline["data"])
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


def pack_lines(lines: Iterable[PlannedLine], sizing: RequestSizing) -> list[list[PlannedLine]]:
    """Sort by key and cut into files within bytes, lines and tokens."""
    files: list[list[PlannedLine]] = [[]]
    nbytes = tokens = 0
    for planned in sorted(lines, key=lambda p: p.chunk_id):
        current = files[-1]
        if current and (
            len(current) + 1 > sizing.max_lines
            or nbytes + len(planned.line) > sizing.max_file_bytes
            or tokens + planned.est_tokens > sizing.max_tokens
        ):
            files.append([])
            nbytes = tokens = 0
        files[-1].append(planned)
        nbytes += len(planned.line)
        tokens += planned.est_tokens
    return [f for f in files if f]


def keys_table(planned: list[PlannedLine]) -> pa.Table:
    columns = list(zip(*[p.meta + (len(p.line),) for p in planned]))
    return pa.Table.from_arrays(
        [pa.array(col, type=f.type) for col, f in zip(columns, KEYS_SCHEMA)], schema=KEYS_SCHEMA
    )


def write_request_file(planned: list[PlannedLine], requests_dir: str, name: str) -> RequestFileInfo:
    path = fs.join(requests_dir, f"{name}.jsonl")
    keys_path = fs.join(requests_dir, f"{name}.keys.parquet")
    with fs.open_write(path) as fh:
        for p in planned:
            fh.write(p.line)
    buf = io.BytesIO()
    pq.write_table(keys_table(planned), buf)
    fs.write_bytes(keys_path, buf.getvalue())
    tokens: dict[str, int] = {}
    counts: dict[str, int] = {}
    for p in planned:
        tokens[p.modality] = tokens.get(p.modality, 0) + p.est_tokens
        counts[p.modality] = counts.get(p.modality, 0) + 1
    return RequestFileInfo(
        name=name,
        path=path,
        keys_path=keys_path,
        lines=len(planned),
        bytes=sum(len(p.line) for p in planned),
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
    planned = []
    for raw in fs.iter_lines(original.path):
        key = json.loads(raw)["key"]
        if key in meta:
            row = meta[key]
            planned.append(
                PlannedLine(
                    chunk_id=key,
                    line=raw.encode("utf-8"),
                    meta=tuple(row[f.name] for f in KEYS_SCHEMA if f.name != "line_bytes"),
                    est_tokens=row["est_tokens"],
                    modality=row["modality"],
                )
            )
    return write_request_file(planned, requests_dir, name)


class WriteRequestFilesDoFn(beam.DoFn):
    def __init__(self, requests_dir: str, sizing: RequestSizing):
        self._dir = requests_dir
        self._sizing = sizing

    def process(self, element):
        bucket, planned = element
        for sub, group in enumerate(pack_lines(planned, self._sizing)):
            yield write_request_file(group, self._dir, f"req-{bucket:05d}-{sub:03d}")


def _totals(p: PlannedLine) -> tuple[int, int, int]:
    return 1, len(p.line), p.est_tokens


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
        planned = chunks | "Serialise request lines" >> beam.Map(plan_line, sizing)
        totals = (
            planned
            | "Line sizes" >> beam.Map(_totals)
            | "Corpus totals" >> beam.CombineGlobally(_sum3)
        )
        return (
            planned
            | "Assign buckets"
            >> beam.Map(
                lambda p, t: (bucket_of(p.chunk_id, bucket_count(t, sizing)), p),
                t=beam.pvalue.AsSingleton(totals),
            )
            | "Group by bucket" >> beam.GroupByKey()
            | "Write request files" >> beam.ParDo(WriteRequestFilesDoFn(self._dir, sizing))
        )

"""``migrate import``: read a legacy gemini-embedding-001 store, validate every row, write
the good ones as embeddings Parquet (schema v1, bound to gemini-embedding-001 and its
dimensionality) and build the legacy index with the same index builder as any run.

Inputs: Parquet, JSON Lines or Avro files (one file, a directory, a glob, gs:// too),
with columns named by ``migration.columns`` (defaults: ``id``, ``text``, ``title``,
``embedding``, ``task_type``, ``source_uri``); or an embedpipe run (its output or run
directory) made with ``model: gemini-embedding-001``.

Each row is checked, first failure wins, and a bad row becomes a dead letter with its
reason (``deadletters/import.jsonl``): ``missing_id``, ``missing_embedding``,
``not_numbers``, ``wrong_dimensionality``, ``non_finite``, ``zero_norm``,
``unknown_task_type``, ``empty_text`` (no text and no source_uri), ``duplicate_id``
(the first good row with an id wins). Vectors are L2-normalised (001 returns unit
vectors only at 3,072 dimensions); how many needed it is reported.

Reading is streamed batch by batch and vectorised on Arrow buffers for Parquet; memory
grows only with the set of ids seen (duplicate detection needs the whole corpus).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import time
from collections import Counter
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.config import ConfigError
from pipeline.migrate.config import LEGACY_MODEL, LegacyColumns, Migration
from pipeline.migrate.layout import MigrationPaths
from pipeline.migrate.serving import pointer, read_serving, write_serving
from pipeline.migrate.state import SCHEMA, now, read_state, write_state
from pipeline.run import RunContext, build_index, set_phase, start_run
from pipeline.run_layout import RunPaths, read_json, write_json
from transforms import fs
from transforms.embeddings_schema import EmbeddingsMeta, schema_with_meta, validate_metadata
from transforms.list_sources import expand_pattern
from transforms.prompts import TASK_TYPES
from transforms.tabular import iter_dict_rows, iter_parquet, table_format
from transforms.types import DeadLetter

BATCH_ROWS = 8192
ROWS_PER_PART = 200_000
NORM_TOLERANCE = 1e-3
INFER_ROWS = 1000

ROWS_SCHEMA = pa.schema([
    pa.field("legacy_id", pa.string(), nullable=False),
    pa.field("group", pa.string(), nullable=False),
    pa.field("text", pa.string()),
    pa.field("title", pa.string()),
    pa.field("object_uri", pa.string()),
    pa.field("task_type", pa.string(), nullable=False),
    pa.field("unit", pa.string(), nullable=False),
    pa.field("stratum", pa.string(), nullable=False),
])
"""``rows/part-*.parquet``: what re-embedding needs of each imported row.

``unit`` is what gets re-embedded (``t:<id>`` = the row's text, ``o:<uri>`` = the object
at source_uri, through the normal chunkers); ``group`` is the key both indexes' hits are
compared on (the legacy id for text units, the source uri for object units); ``stratum``
is (source, length bucket) for stratified samples."""


@dataclass(frozen=True)
class LegacyFile:
    uri: str
    format: str  # parquet | jsonl | avro | embedpipe
    size_bytes: int
    generation: str


@dataclass(frozen=True)
class LegacySource:
    """What ``--legacy`` names: files of one store, with the column names to read."""

    uri: str
    files: tuple[LegacyFile, ...]
    columns: LegacyColumns
    embedpipe_run: str | None = None  # the run dir when importing an embedpipe run

    def identity(self) -> str:
        material = json.dumps([dataclasses.astuple(f) for f in self.files] + [self.columns.model_dump()])
        return hashlib.sha256(material.encode()).hexdigest()[:16]


@dataclass
class RowBatch:
    """One batch of legacy rows in a common shape, whatever the file format."""

    numbers: Sequence[int]  # 1-based row (or line) number of each row in its file
    file: LegacyFile
    ids: list
    text: list
    title: list
    task_type: list
    source_uri: list
    source: list
    vectors: np.ndarray  # (n, D) float32; rows with a shape problem hold zeros
    problems: list  # per row: None or (error_class, message) found while reading


# -- finding the store -------------------------------------------------------------------------
EMBEDPIPE_COLUMNS = LegacyColumns(id="chunk_id", text="-", title="-", embedding="embedding",
                                  task_type="task", source_uri="source_uri")


def _embedpipe_run_dir(uri: str) -> str | None:
    """The run directory when ``uri`` is an embedpipe run or an output with current.json."""
    if fs.exists(fs.join(uri, "run.json")):
        return uri
    current = fs.join(uri, "current.json")
    if fs.exists(current):
        return RunPaths(uri, read_json(current)["run_id"]).root
    return None


def find_legacy(uri: str, columns: LegacyColumns) -> LegacySource:
    """The files of the store ``uri`` names; ConfigError if there is nothing importable."""
    run_dir = _embedpipe_run_dir(uri.rstrip("/"))
    if run_dir is not None:
        model = read_json(fs.join(run_dir, "run.json"))["config"]["model"]
        if model != LEGACY_MODEL:
            raise ConfigError(
                f"--legacy {uri}: that run embedded with {model!r}, not {LEGACY_MODEL}: "
                "only 001 vectors are imported as the legacy side (vector spaces never mix)"
            )
        pattern, fmt, columns = fs.join(run_dir, "embeddings", "*.parquet"), "embedpipe", EMBEDPIPE_COLUMNS
    else:
        pattern, fmt = uri, None
    try:
        listed = list(expand_pattern(pattern))
    except FileNotFoundError as exc:
        raise ConfigError(f"--legacy: {exc}") from None
    files = tuple(
        LegacyFile(o.uri, fmt or table_format(o.uri), o.size_bytes, o.generation)
        for o in listed if fmt or table_format(o.uri)
    )
    if not files:
        raise ConfigError(
            f"--legacy {uri}: no .parquet, .jsonl/.json or .avro files (or an embedpipe run) there"
        )
    return LegacySource(uri, files, columns, run_dir)


# -- reading: every format into RowBatch ---------------------------------------------------------
def _column(batch: pa.RecordBatch, name: str | None) -> list:
    if name and name in batch.schema.names:
        return batch.column(name).to_pylist()
    return [None] * batch.num_rows


def arrow_vectors(column: pa.Array | None, n: int, dims: int) -> tuple[np.ndarray, list]:
    """(n, dims) float32 vectors of a list column and a per-row shape problem (or None).

    When every row holds exactly ``dims`` values (the normal case) the values buffer is
    reshaped as is; otherwise the good rows are gathered by their offsets."""
    if column is None:
        return np.zeros((n, dims), np.float32), [("missing_embedding", "no embedding column")] * n
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    kind = column.type
    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)):
        return np.zeros((n, dims), np.float32), [("not_numbers", f"embedding is {kind}, not a list of numbers")] * n
    if not (pa.types.is_floating(kind.value_type) or pa.types.is_integer(kind.value_type)):
        return np.zeros((n, dims), np.float32), [("not_numbers", f"embedding holds {kind.value_type}, not numbers")] * n
    lengths = pc.list_value_length(column).fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    values = pc.cast(column.flatten(), pa.float32()).fill_null(np.nan).to_numpy(zero_copy_only=False)
    ok = lengths == dims
    if ok.all():
        return values.reshape(n, dims), [None] * n
    vectors = np.zeros((n, dims), np.float32)
    starts = np.concatenate([[0], np.cumsum(np.maximum(lengths, 0))[:-1]])
    if ok.any():
        vectors[ok] = values[starts[ok, None] + np.arange(dims)]
    problems = [
        None if length == dims else
        ("missing_embedding", "no embedding") if length < 0 else
        ("wrong_dimensionality", f"{length} values, the store's 001 vectors have {dims}")
        for length in lengths.tolist()
    ]
    return vectors, problems


def _from_arrow(batch: pa.RecordBatch, first: int, file: LegacyFile, cols: LegacyColumns,
                dims: int) -> RowBatch:
    emb = batch.column(cols.embedding) if cols.embedding in batch.schema.names else None
    vectors, problems = arrow_vectors(emb, batch.num_rows, dims)
    return RowBatch(range(first, first + batch.num_rows), file, _column(batch, cols.id),
                    _column(batch, cols.text), _column(batch, cols.title), _column(batch, cols.task_type),
                    _column(batch, cols.source_uri), _column(batch, cols.source), vectors, problems)


def _dict_vector(value, dims: int) -> tuple[np.ndarray | None, tuple | None]:
    if value is None:
        return None, ("missing_embedding", "no embedding")
    if not isinstance(value, (list, tuple)):
        return None, ("not_numbers", f"embedding is {type(value).__name__}, not a list of numbers")
    if len(value) != dims:
        return None, ("wrong_dimensionality", f"{len(value)} values, the store's 001 vectors have {dims}")
    try:
        vec = np.asarray([np.nan if v is None else v for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        return None, ("not_numbers", "embedding holds values that are not numbers")
    if vec.ndim != 1 or any(isinstance(v, (bool, str)) for v in value):
        return None, ("not_numbers", "embedding holds values that are not numbers")
    return vec, None


def _from_dicts(rows: list, file: LegacyFile, cols: LegacyColumns, dims: int) -> RowBatch:
    n = len(rows)
    vectors = np.zeros((n, dims), np.float32)
    problems: list = [None] * n
    fields: dict[str, list] = {k: [None] * n for k in ("id", "text", "title", "task_type", "source_uri", "source")}
    for i, (number, row) in enumerate(rows):
        if isinstance(row, str):
            problems[i] = ("unreadable_row", row)
            continue
        for key in fields:
            name = getattr(cols, key)
            fields[key][i] = row.get(name) if name else None
        vec, problem = _dict_vector(row.get(cols.embedding), dims)
        if problem:
            problems[i] = problem
        else:
            vectors[i] = vec
    return RowBatch([number for number, _ in rows], file, fields["id"], fields["text"], fields["title"],
                    fields["task_type"], fields["source_uri"], fields["source"], vectors, problems)


def _read_columns(cols: LegacyColumns) -> list[str]:
    return [c for c in (cols.id, cols.text, cols.title, cols.embedding, cols.task_type,
                        cols.source_uri, cols.source) if c]


def iter_row_batches(source: LegacySource, dims: int) -> Iterator[RowBatch]:
    """Every row of every file, in order, as RowBatches (row numbers are 1-based per file)."""
    cols = source.columns
    for file in source.files:
        if file.format in ("parquet", "embedpipe"):
            first = 1
            for batch in iter_parquet(file.uri, _read_columns(cols), BATCH_ROWS):
                yield _from_arrow(batch, first, file, cols, dims)
                first += batch.num_rows
            continue
        pending: list = []
        for number, row in iter_dict_rows(file.uri, file.format):
            pending.append((number, row))
            if len(pending) == BATCH_ROWS:
                yield _from_dicts(pending, file, cols, dims)
                pending = []
        if pending:
            yield _from_dicts(pending, file, cols, dims)


def infer_dimensionality(source: LegacySource) -> int:
    """The most common vector length among the first rows (a few bad rows do not decide)."""
    lengths: Counter = Counter()
    cols = source.columns
    for file in source.files:
        if file.format in ("parquet", "embedpipe"):
            for batch in iter_parquet(file.uri, [cols.embedding], INFER_ROWS):
                if cols.embedding in batch.schema.names:
                    column = batch.column(cols.embedding)
                    lengths.update(x for x in pc.list_value_length(column).to_pylist() if x)
                break
        else:
            for number, row in iter_dict_rows(file.uri, file.format):
                if isinstance(row, dict) and isinstance(row.get(cols.embedding), (list, tuple)):
                    lengths[len(row[cols.embedding])] += 1
                if number >= INFER_ROWS:
                    break
        if lengths:
            return lengths.most_common(1)[0][0]
    raise ConfigError(
        f"--legacy {source.uri}: no row has a list in column {cols.embedding!r} "
        "(fix: migration.columns.embedding names the vector column)"
    )


# -- validating ------------------------------------------------------------------------------
def task_type_of(value, default: str) -> str:
    """A row's 001 task type; exports write enum names in either case (``retrieval_document``)."""
    return str(value).strip().upper() if value not in (None, "") else default


def _text(value) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    return text if text.strip() else None


@dataclass
class ImportTally:
    rows: int = 0
    imported: int = 0
    renormalised: int = 0
    dead: Counter = dataclasses.field(default_factory=Counter)
    task_types: Counter = dataclasses.field(default_factory=Counter)


def validate_batch(batch: RowBatch, seen: set, migration: Migration, tally: ImportTally):
    """(good row indexes, normalised vectors of those rows, dead letters) of one batch."""
    settings = migration.settings
    norms = np.sqrt(np.einsum("ij,ij->i", batch.vectors, batch.vectors, dtype=np.float64))
    finite = np.isfinite(norms)  # a NaN or infinite component makes the norm so
    good: list[int] = []
    dead: list[DeadLetter] = []
    for i in range(len(batch.ids)):
        raw_id = batch.ids[i]
        legacy_id = None if raw_id is None or str(raw_id) == "" else str(raw_id)
        task = task_type_of(batch.task_type[i], settings.default_task_type)
        problem = batch.problems[i]
        if problem is None and legacy_id is None:
            problem = ("missing_id", f"no value in column {migration.settings.columns.id!r}")
        if problem is None and not finite[i]:
            problem = ("non_finite", "the embedding holds NaN or infinity")
        if problem is None and norms[i] == 0:
            problem = ("zero_norm", "the embedding is all zeros")
        if problem is None and task not in TASK_TYPES:
            problem = ("unknown_task_type", f"{task!r} is not a gemini-embedding-001 task type")
        if problem is None and _text(batch.text[i]) is None and _text(batch.source_uri[i]) is None:
            problem = ("empty_text", "no text and no source_uri: nothing to re-embed")
        if problem is None and legacy_id in seen:
            problem = ("duplicate_id", f"id {legacy_id!r} already imported from an earlier row")
        if problem is not None:
            tally.dead[problem[0]] += 1
            dead.append(DeadLetter(
                source_uri=f"{batch.file.uri}#row={batch.numbers[i]}", stage="import",
                error_class=problem[0], message=problem[1], chunk_id=legacy_id,
                source_generation=batch.file.generation,
            ))
            continue
        seen.add(legacy_id)
        tally.task_types[task] += 1
        good.append(i)
    keep = slice(None) if len(good) == len(batch.ids) else good  # a slice does not copy
    vectors = batch.vectors[keep] / norms[keep, None].astype(np.float32)
    tally.renormalised += int(np.sum(np.abs(norms[good] - 1.0) > NORM_TOLERANCE))
    tally.rows += len(batch.ids)
    tally.imported += len(good)
    return good, vectors, dead


def absolute(uri: str) -> str:
    """Local paths as ListSources lists them (absolute), so legacy and new rows join."""
    return uri if fs.is_remote(uri) else os.path.abspath(os.path.expanduser(uri))


def _length_bucket(text: str | None) -> str:
    """log2 buckets of the text length: short, medium and long rows are sampled alike."""
    return f"len{len(text).bit_length()}" if text else "object"


def rows_table(batch: RowBatch, good: list[int], migration: Migration, from_embedpipe: bool) -> pa.Table:
    settings = migration.settings
    cols: dict[str, list] = {f.name: [] for f in ROWS_SCHEMA}
    for i in good:
        legacy_id = str(batch.ids[i])
        text, uri = _text(batch.text[i]), _text(batch.source_uri[i])
        obj = absolute(uri.split("#", 1)[0] if from_embedpipe else uri) if uri else None
        by_text = text is not None and (settings.reembed_from == "text" or uri is None)
        source = _text(batch.source[i]) or obj or ""
        cols["legacy_id"].append(legacy_id)
        cols["group"].append(legacy_id if by_text else (uri if from_embedpipe else obj))
        cols["text"].append(text)
        cols["title"].append(_text(batch.title[i]))
        cols["object_uri"].append(obj)
        cols["task_type"].append(task_type_of(batch.task_type[i], settings.default_task_type))
        cols["unit"].append(f"t:{legacy_id}" if by_text else f"o:{obj}")
        cols["stratum"].append(f"{source}|{_length_bucket(text if by_text else None)}")
    return pa.Table.from_pydict(cols, schema=ROWS_SCHEMA)


def embeddings_table(batch: RowBatch, good: list[int], vectors: np.ndarray, dims: int,
                     created_at: dt.datetime, default_task: str) -> pa.Table:
    n = len(good)
    ids = [str(batch.ids[i]) for i in good]
    uris = [_text(batch.source_uri[i]) or f"{batch.file.uri}#{legacy_id}" for i, legacy_id in zip(good, ids)]
    return pa.Table.from_pydict({
        "chunk_id": ids,
        "source_uri": uris,
        "source_generation": [batch.file.generation] * n,
        "modality": ["text"] * n,
        "mime_type": ["text/plain"] * n,
        "unit": ["none"] * n,
        "start": [0.0] * n,
        "end": [0.0] * n,
        "model": [LEGACY_MODEL] * n,
        "task": [task_type_of(batch.task_type[i], default_task) for i in good],
        "dimensionality": [dims] * n,
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), dims),
        "token_count": [None] * n,
        "batch_job": [None] * n,
        "created_at": [created_at] * n,
    })


class PartWriter:
    """Streams tables into ``<dir>/part-NNNNN.parquet``, a new part every ``max_rows`` rows."""

    def __init__(self, directory: str, schema: pa.Schema, max_rows: int = ROWS_PER_PART):
        self.directory, self.schema, self.max_rows = directory, schema, max_rows
        self.parts = 0
        self._rows = 0
        self._open = None

    def write(self, table: pa.Table) -> None:
        offset = 0
        while offset < table.num_rows:
            if self._open is None:
                path = fs.join(self.directory, f"part-{self.parts:05d}.parquet")
                handle = fs.open_write(path)
                # dictionary-encoding float vectors is wasted work: they never repeat
                dictionary = [n for n in self.schema.names if n != "embedding"]
                self._open = (handle, pq.ParquetWriter(handle.__enter__(), self.schema,
                                                       use_dictionary=dictionary))
                self.parts += 1
            take = min(self.max_rows - self._rows, table.num_rows - offset)
            self._open[1].write_table(table.slice(offset, take).cast(self.schema))
            offset += take
            self._rows += take
            if self._rows == self.max_rows:
                self.close()

    def close(self) -> None:
        if self._open is not None:
            handle, writer = self._open
            writer.close()
            handle.__exit__(None, None, None)
            self._open, self._rows = None, 0


def read_validate_write(source: LegacySource, migration: Migration, dims: int, paths: RunPaths,
                        dead_uri: str) -> ImportTally:
    """Stream every row through validation into the embeddings, rows and dead-letter files."""
    created_at = dt.datetime.now(dt.timezone.utc)
    meta = EmbeddingsMeta(LEGACY_MODEL, dims, True, f"legacy-{source.identity()}")
    embeddings = PartWriter(paths.embeddings, schema_with_meta(meta))
    rows = PartWriter(fs.join(paths.root, "rows"), ROWS_SCHEMA)
    tally = ImportTally()
    seen: set[str] = set()
    if source.embedpipe_run:
        for file in source.files:
            with fs.open_read(file.uri) as fh:
                validate_metadata(pq.ParquetFile(fh).schema_arrow, model=LEGACY_MODEL)
    with fs.open_write(dead_uri) as dead_out:
        for batch in iter_row_batches(source, dims):
            good, vectors, dead = validate_batch(batch, seen, migration, tally)
            for letter in dead:
                dead_out.write((json.dumps(dataclasses.asdict(letter), sort_keys=True) + "\n").encode())
            if good:
                embeddings.write(embeddings_table(batch, good, vectors, dims, created_at,
                                                  migration.settings.default_task_type))
                rows.write(rows_table(batch, good, migration, source.embedpipe_run is not None))
    embeddings.close()
    rows.close()
    return tally


def check_dimensionality(dims: int, limits) -> None:
    if not limits.dimensionality_min <= dims <= limits.dimensionality_max:
        raise ConfigError(
            f"migration.legacy_dimensionality: the store's vectors have {dims} dimensions; "
            f"{LEGACY_MODEL} makes {limits.dimensionality_min}..{limits.dimensionality_max} "
            "(fix: point migration.columns.embedding at the 001 vectors)"
        )


def row_counts(tally: ImportTally) -> dict:
    return {
        "rows_read": tally.rows,
        "imported": tally.imported,
        "dead_letters": sum(tally.dead.values()),
        "dead_letters_by_reason": dict(sorted(tally.dead.items())),
        "renormalised": tally.renormalised,
        "task_types": dict(sorted(tally.task_types.items())),
    }


def import_legacy(paths: MigrationPaths, migration: Migration, legacy_uri: str,
                  beam_args: tuple = ()) -> tuple[dict, int]:
    """Import (or, for the same store, report the earlier import of) ``legacy_uri``.

    Returns (summary, exit code): 3 when more than ``deadletter_tolerance`` of the rows
    were dead-lettered (the index is still built from the good ones).
    """
    state = read_state(paths)
    source = find_legacy(legacy_uri, migration.settings.columns)
    identity = source.identity()
    if state is not None and "legacy" in state:
        if state["legacy"]["identity"] == identity:
            return {**state["legacy"]["summary"], "already_imported": True}, state["legacy"]["exit_code"]
        if state.get("runs") or fs.match(fs.join(paths.source, "*.jsonl")):
            raise ConfigError(
                f"--legacy {legacy_uri}: {paths.output} is already migrating "
                f"{state['legacy']['uri']} and has re-embedded some of it (fix: a new --output, "
                f"or delete {paths.root} to start over)"
            )
    dims = migration.settings.legacy_dimensionality or infer_dimensionality(source)
    settings = migration.run_settings(model=LEGACY_MODEL, dimensionality=dims, sources=[legacy_uri],
                                      output=paths.legacy_output)
    check_dimensionality(dims, settings.limits)
    run = RunPaths(paths.legacy_output, f"import-{identity}")
    for sub in ("embeddings", "rows", "index", "deadletters"):
        for path, _ in fs.match(fs.join(run.root, sub, "**")):
            fs.delete(path)
    start_run(settings, run)
    started = time.perf_counter()
    tally = read_validate_write(source, migration, dims, run, fs.join(run.deadletters, "import.jsonl"))
    read_seconds = time.perf_counter() - started
    summary = {
        "legacy": legacy_uri,
        "format": sorted({f.format for f in source.files}),
        "files": len(source.files),
        "model": LEGACY_MODEL,
        "dimensionality": dims,
        **row_counts(tally),
        "deadletters": fs.join(run.deadletters, "import.jsonl"),
        "rows_per_second": round(tally.rows / max(read_seconds, 1e-9), 1),
        "seconds": {"read_validate_write": round(read_seconds, 3)},
    }
    failed = sum(tally.dead.values()) / max(tally.rows, 1)
    exit_code = 3 if failed > settings.config.deadletter_tolerance else 0
    if tally.imported == 0:
        return {**summary, "legacy_index": None}, 3
    started = time.perf_counter()
    report = build_index(RunContext(settings, run, tuple(beam_args)))
    summary["seconds"]["index"] = round(time.perf_counter() - started, 3)
    summary["legacy_index"] = {"dir": run.index, **index_summary(report)}
    set_phase(run, "done")
    write_json(fs.join(run.root, "import.json"), summary)
    write_state(paths, {
        "schema": SCHEMA,
        "created_at": now(),
        "migration": migration.to_json(),
        "legacy": {
            "uri": legacy_uri, "identity": identity, "files": [dataclasses.asdict(f) for f in source.files],
            "output": run.output, "run_id": run.run_id, "dimensionality": dims,
            "imported": tally.imported, "summary": summary, "exit_code": exit_code,
        },
        "runs": [],
        "history": [],
    })
    serving = read_serving(paths.output)
    if serving is None or serving["side"] == "legacy":  # (a re-import replaces the old legacy side)
        write_serving(paths.output, pointer("legacy", run, migration, reason="imported"))
    return summary, exit_code


def index_summary(report: dict | None) -> dict:
    """The parts of an index report a migration summary shows."""
    if not report:
        return {}
    return {k: report.get(k) for k in ("factory", "index_type", "n", "d", "space", "chosen_nprobe")}

"""Which legacy rows a re-embedding pass takes, and how they reach the normal pipeline.

**Sample.** A deterministic stratified sample of *units* (a text row, or an object given by
source_uri with all its rows): strata are (source, log2 length bucket), each stratum gets
its proportional share of ``round(fraction × units)`` (largest remainder), and inside a
stratum units are taken in the order of a hash of their key. The same fraction always
picks the same units, on any machine; a larger fraction picks a superset in practice
(the hash order is fixed), and a pass never removes what an earlier pass materialised.

**Materialise.** Selected text rows become records rows (``source/rows-<sha>.jsonl``:
``id``, ``legacy_id``, ``text`` and the ``prefix`` its 001 task type translates to), so
they go through the normal, ledger-guarded run: ListSources → Chunk (records) →
PlanRequests → Batch jobs. Files are content-addressed and create-only, so a later pass
adds new files and leaves earlier ones byte-identical: the next run sees them unchanged
and carries their rows instead of paying again. Legacy chunks are NOT merged (one legacy
row → one new vector): ids stay 1:1 for downstream joins and for the A/B comparison, and a
chunk cut for 001's 2,048 tokens fits Embedding 2's 8,192 anyway. A row whose prompt +
text is over the provable token bound is split into pieces (``<id>~1``, ``<id>~2``), all
mapped back to the legacy id. Objects given by source_uri are listed as run sources and
cut by the normal chunkers (PDF, image, audio, video now enter the index).
"""
from __future__ import annotations

import hashlib
import json
from collections import defaultdict

import pyarrow as pa
import pyarrow.json as pajson
import pyarrow.parquet as pq

from pipeline.migrate.config import Migration
from pipeline.migrate.layout import MigrationPaths
from pipeline.migrate.legacy import ROWS_SCHEMA
from pipeline.run_layout import RunPaths
from transforms import fs
from transforms.chunk_text import plan_chunks
from transforms.types import DeadLetter


def unit_score(unit: str) -> int:
    return int.from_bytes(hashlib.blake2b(unit.encode("utf-8"), digest_size=8).digest(), "big")


def select_units(units: list[str], strata: list[str], fraction: float) -> set[str]:
    """The stratified sample of ``fraction`` of the distinct units (see module docstring)."""
    stratum_of: dict[str, str] = {}
    for unit, stratum in zip(units, strata):
        stratum_of.setdefault(unit, stratum)
    members: dict[str, list[str]] = defaultdict(list)
    for unit, stratum in stratum_of.items():
        members[stratum].append(unit)
    total = len(stratum_of)
    if fraction >= 1.0:
        return set(stratum_of)
    target = min(total, max(1, round(fraction * total))) if total else 0
    quotas = {s: fraction * len(m) for s, m in members.items()}
    take = {s: int(q) for s, q in quotas.items()}
    by_remainder = sorted(members, key=lambda s: (-(quotas[s] - take[s]), unit_score(s)))
    for stratum in by_remainder[: max(0, target - sum(take.values()))]:
        take[stratum] += 1
    chosen: set[str] = set()
    for stratum, units_in in members.items():
        chosen.update(sorted(units_in, key=unit_score)[: take[stratum]])
    return chosen


def rows_dir(legacy: RunPaths) -> str:
    return fs.join(legacy.root, "rows")


def read_rows(legacy: RunPaths, columns: list[str] | None = None) -> pa.Table:
    parts = [p for p, _ in fs.match(fs.join(rows_dir(legacy), "part-*.parquet"))]
    schema = ROWS_SCHEMA if columns is None else pa.schema([ROWS_SCHEMA.field(c) for c in columns])
    tables = []
    for part in parts:
        with fs.open_read(part) as fh:
            tables.append(pq.read_table(fh, columns=columns))
    return pa.concat_tables(tables) if tables else schema.empty_table()


def selection(rows: pa.Table, fraction: float) -> set[str]:
    return select_units(rows.column("unit").to_pylist(), rows.column("stratum").to_pylist(), fraction)


def record_rows(legacy_id: str, text: str, prefix: str, budget: int) -> list[dict]:
    """One records row, or several when prompt + text is over the provable token bound."""
    room = budget - len(prefix.encode("utf-8"))
    if len(text.encode("utf-8")) <= room:
        return [{"id": legacy_id, "legacy_id": legacy_id, "prefix": prefix, "text": text}]
    spans = plan_chunks(text, room, 0, room)
    return [{"id": f"{legacy_id}~{n}", "legacy_id": legacy_id, "prefix": prefix, "text": text[s:e]}
            for n, (s, e) in enumerate(spans, 1)]


def materialised_records(paths: MigrationPaths) -> dict[str, str]:
    """``<records file>#<record id>`` → legacy id, for every records row written so far."""
    out: dict[str, str] = {}
    for path, _ in fs.match(fs.join(paths.source, "rows-*.jsonl")):
        with fs.open_read(path) as fh:
            table = pajson.read_json(fh)
        for record_id, legacy_id in zip(table.column("id").to_pylist(), table.column("legacy_id").to_pylist()):
            out[f"{path}#{record_id}"] = legacy_id
    return out


def write_records(paths: MigrationPaths, rows: list[dict], rows_per_file: int) -> list[str]:
    """Content-addressed, create-only records files; returns the files this call created."""
    created = []
    for start in range(0, len(rows), rows_per_file):
        body = "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n"
                       for r in rows[start:start + rows_per_file]).encode("utf-8")
        uri = fs.join(paths.source, f"rows-{hashlib.sha256(body).hexdigest()[:16]}.jsonl")
        if fs.create_only(uri, body) is not None:
            created.append(uri)
    return created


def text_records(rows: pa.Table, chosen: set[str], done: set[str], migration: Migration,
                 budget: int) -> list[dict]:
    """Records rows for the chosen text units not materialised yet, sorted by legacy id."""
    out = []
    cols = rows.select(["legacy_id", "unit", "text", "title", "task_type"]).to_pylist()
    for row in sorted(cols, key=lambda r: r["legacy_id"]):
        if row["unit"] not in chosen or not row["unit"].startswith("t:") or row["legacy_id"] in done:
            continue
        prefix = migration.task_types.document_prefix(row["task_type"], row["title"])
        out.extend(record_rows(row["legacy_id"], row["text"], prefix, budget))
    return out


def object_uris(chosen: set[str]) -> list[str]:
    return sorted(unit[2:] for unit in chosen if unit.startswith("o:"))


def missing_objects(uris: list[str]) -> tuple[list[str], list[DeadLetter]]:
    """(URIs that exist, a dead letter per URI that does not): a vanished source must not
    stop the re-embedding of everything else."""
    present, dead = [], []
    for uri in uris:
        if fs.exists(uri):
            present.append(uri)
        else:
            dead.append(DeadLetter(uri, "migrate", "missing_source",
                                   "the legacy row's source_uri no longer exists; it cannot be re-embedded"))
    return present, dead

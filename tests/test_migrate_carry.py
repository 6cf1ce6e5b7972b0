"""Incremental reruns carry the rows of an unchanged records file (the migration's
materialised legacy rows are records files: a later, larger pass must keep the earlier
pass's vectors without paying for them again)."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from transforms.diff_last_run import copy_rows, owner_uri, part_uris


def _part(path, rows):
    pq.write_table(pa.Table.from_pylist(rows), path)
    return str(path)


def test_rows_of_an_unchanged_records_file_are_carried(tmp_path):
    part = _part(tmp_path / "part-00000-of-00001.parquet", [
        {"source_uri": "/in/rows.jsonl#a", "source_generation": "g1", "modality": "records", "chunk_id": "1"},
        {"source_uri": "/in/rows.jsonl#b#c", "source_generation": "g1", "modality": "records", "chunk_id": "2"},
        {"source_uri": "/in/notes#1.txt", "source_generation": "g2", "modality": "text", "chunk_id": "3"},
        {"source_uri": "/in/other.jsonl#z", "source_generation": "g3", "modality": "records", "chunk_id": "4"},
    ])
    records = {"/in/rows.jsonl": True, "/in/other.jsonl": True}
    assert sorted(part_uris((0, part), records)) == [
        ("/in/notes#1.txt", (0, "g2")), ("/in/other.jsonl", (0, "g3")), ("/in/rows.jsonl", (0, "g1"))]
    out = tmp_path / "carried"
    assert copy_rows((0, ["/in/rows.jsonl", "/in/notes#1.txt"]), (part,), str(out), records) == 3
    carried = pq.read_table(next(out.glob("carried-*.parquet")))
    assert sorted(carried.column("chunk_id").to_pylist()) == ["1", "2", "3"]


def test_a_records_row_dead_letter_is_keyed_by_its_file():
    records = {"/in/rows.jsonl": True, "/in/a#b.jsonl": True}
    assert owner_uri("/in/rows.jsonl#a", records) == "/in/rows.jsonl"
    assert owner_uri("/in/a#b.jsonl#x#y", records) == "/in/a#b.jsonl"  # '#' in the name and the id
    assert owner_uri("/in/notes#1.txt", records) == "/in/notes#1.txt"

"""Embeddings Parquet schema v1: readers refuse every file that is not what they expect.

Each rejection branch of ``validate_metadata`` on a real Parquet file written to disk:
wrong schema version, a missing metadata key, a missing column, a column of the wrong
type (including a vector column whose width disagrees with the metadata), and a file
from another model, dimensionality or normalisation than the reader asked for.
"""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from transforms.embeddings_schema import (
    META_PREFIX,
    EmbeddingsMeta,
    SchemaMismatchError,
    embeddings_schema,
    schema_with_meta,
    validate_metadata,
)

META = EmbeddingsMeta(model="gemini-embedding-2", dimensionality=8, normalized=True,
                      config_fingerprint="f" * 16)
EXPECT = dict(model="gemini-embedding-2", dimensionality=8, normalized=True)


def _table(schema: pa.Schema) -> pa.Table:
    """Two rows that fit ``schema`` (whatever columns and types it has)."""
    columns = []
    for f in schema:
        if pa.types.is_fixed_size_list(f.type):
            values = pa.array([0.5] * (2 * f.type.list_size), f.type.value_type)
            columns.append(pa.FixedSizeListArray.from_arrays(values, f.type.list_size))
        elif pa.types.is_list(f.type):
            columns.append(pa.array([[0.5, 0.5], [0.5]], f.type))
        elif pa.types.is_timestamp(f.type):
            columns.append(pa.array([0, 1], pa.int64()).cast(f.type))
        elif pa.types.is_string(f.type):
            columns.append(pa.array(["a", "b"], f.type))
        else:
            columns.append(pa.array([1, 2]).cast(f.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _written(tmp_path, schema: pa.Schema) -> pa.Schema:
    path = tmp_path / "part-00000-of-00001.parquet"
    pq.write_table(_table(schema), path)
    return pq.read_schema(path)


def _replace(schema: pa.Schema, name: str, type_: pa.DataType) -> pa.Schema:
    return schema.set(schema.get_field_index(name), pa.field(name, type_))


def test_the_schema_is_the_readme_s():
    """README "Embeddings Parquet, schema v1", written out here (not derived from the code)."""
    expected = [
        ("chunk_id", pa.string(), False), ("source_uri", pa.string(), False),
        ("source_generation", pa.string(), False), ("modality", pa.string(), False),
        ("mime_type", pa.string(), True), ("unit", pa.string(), False),
        ("start", pa.float64(), True), ("end", pa.float64(), True), ("model", pa.string(), False),
        ("task", pa.string(), True), ("dimensionality", pa.int32(), False),
        ("embedding", pa.list_(pa.float32(), 8), False), ("token_count", pa.int64(), True),
        ("batch_job", pa.string(), True), ("created_at", pa.timestamp("us", tz="UTC"), True),
    ]
    assert [(f.name, f.type, f.nullable) for f in embeddings_schema(8)] == expected


def test_the_file_metadata_keys_and_values():
    raw = EmbeddingsMeta(model="gemini-embedding-2", dimensionality=768, normalized=False,
                         config_fingerprint="0123456789abcdef")
    assert raw.to_kv() == {
        b"embedpipe.schema_version": b"1", b"embedpipe.model": b"gemini-embedding-2",
        b"embedpipe.dimensionality": b"768", b"embedpipe.normalized": b"false",
        b"embedpipe.config_fingerprint": b"0123456789abcdef",
    }
    assert META.to_kv()[b"embedpipe.normalized"] == b"true"
    assert EmbeddingsMeta.from_kv(raw.to_kv()) == raw


def test_a_file_as_written_is_accepted(tmp_path):
    assert validate_metadata(_written(tmp_path, schema_with_meta(META)), **EXPECT) == META


def test_another_schema_version_is_refused(tmp_path):
    schema = schema_with_meta(EmbeddingsMeta(**{**META.__dict__, "schema_version": "2"}))
    with pytest.raises(SchemaMismatchError, match="schema version '2'"):
        validate_metadata(_written(tmp_path, schema))


@pytest.mark.parametrize("key", ["schema_version", "model", "dimensionality", "normalized",
                                 "config_fingerprint"])
def test_a_missing_metadata_key_is_refused(tmp_path, key):
    kv = {k: v for k, v in META.to_kv().items() if k != META_PREFIX + key.encode()}
    with pytest.raises(SchemaMismatchError, match=f"embedpipe.{key}"):
        validate_metadata(_written(tmp_path, embeddings_schema(8).with_metadata(kv)))


@pytest.mark.parametrize("column", ["chunk_id", "embedding", "token_count", "created_at", "unit"])
def test_a_missing_column_is_refused(tmp_path, column):
    schema = schema_with_meta(META)
    schema = schema.remove(schema.get_field_index(column))
    with pytest.raises(SchemaMismatchError, match=f"missing column '{column}'"):
        validate_metadata(_written(tmp_path, schema))


@pytest.mark.parametrize("column, wrong", [
    ("dimensionality", pa.int64()),
    ("start", pa.string()),
    ("token_count", pa.float64()),
    ("embedding", pa.list_(pa.float64(), 8)),  # float64 vectors
    ("embedding", pa.list_(pa.float32(), 4)),  # narrower than the metadata says
    ("embedding", pa.list_(pa.float32())),  # variable-length lists
])
def test_a_column_of_the_wrong_type_is_refused(tmp_path, column, wrong):
    schema = _replace(schema_with_meta(META), column, wrong)
    with pytest.raises(SchemaMismatchError, match=f"column '{column}' has type"):
        validate_metadata(_written(tmp_path, schema))


@pytest.mark.parametrize("expect, message", [
    ({"model": "gemini-embedding-001"}, "vector spaces must not mix"),
    ({"dimensionality": 768}, "vectors have 8 dimensions, expected 768"),
    ({"normalized": False}, "normalized=True, expected normalized=False"),
])
def test_another_vector_space_is_refused(tmp_path, expect, message):
    schema = _written(tmp_path, schema_with_meta(META))
    with pytest.raises(SchemaMismatchError, match=message):
        validate_metadata(schema, **{**EXPECT, **expect})


def test_unnormalised_vectors_are_refused_where_normalised_ones_are_expected(tmp_path):
    raw = EmbeddingsMeta(**{**META.__dict__, "normalized": False})
    with pytest.raises(SchemaMismatchError, match="normalized=False, expected normalized=True"):
        validate_metadata(_written(tmp_path, schema_with_meta(raw)), **EXPECT)

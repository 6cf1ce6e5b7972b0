"""Embeddings Parquet schema v1: the contract between WriteEmbeddings, BuildIndex and query.

Readers must call :func:`validate_metadata` so that vectors from different models,
dimensionalities or normalisation never mix.
"""
from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

SCHEMA_VERSION = "1"
META_PREFIX = b"embedpipe."


def embeddings_schema(dimensionality: int) -> pa.Schema:
    return pa.schema(
        [
            pa.field("chunk_id", pa.string(), nullable=False),
            pa.field("source_uri", pa.string(), nullable=False),
            pa.field("source_generation", pa.string(), nullable=False),
            pa.field("modality", pa.string(), nullable=False),
            pa.field("mime_type", pa.string()),
            pa.field("unit", pa.string(), nullable=False),
            pa.field("start", pa.float64()),
            pa.field("end", pa.float64()),
            pa.field("model", pa.string(), nullable=False),
            pa.field("task", pa.string()),
            pa.field("dimensionality", pa.int32(), nullable=False),
            pa.field("embedding", pa.list_(pa.float32(), dimensionality), nullable=False),
            pa.field("token_count", pa.int64()),
            pa.field("batch_job", pa.string()),
            pa.field("created_at", pa.timestamp("us", tz="UTC")),
        ]
    )


@dataclass(frozen=True)
class EmbeddingsMeta:
    """File-level key-value metadata every embeddings Parquet file carries."""

    model: str
    dimensionality: int
    normalized: bool
    config_fingerprint: str
    schema_version: str = SCHEMA_VERSION

    def to_kv(self) -> dict[bytes, bytes]:
        return {
            META_PREFIX + b"schema_version": self.schema_version.encode(),
            META_PREFIX + b"model": self.model.encode(),
            META_PREFIX + b"dimensionality": str(self.dimensionality).encode(),
            META_PREFIX + b"normalized": b"true" if self.normalized else b"false",
            META_PREFIX + b"config_fingerprint": self.config_fingerprint.encode(),
        }

    @classmethod
    def from_kv(cls, kv: dict[bytes, bytes] | None) -> "EmbeddingsMeta":
        kv = kv or {}

        def get(name: str) -> str:
            value = kv.get(META_PREFIX + name.encode())
            if value is None:
                raise SchemaMismatchError(f"missing file metadata key 'embedpipe.{name}'")
            return value.decode()

        return cls(
            model=get("model"),
            dimensionality=int(get("dimensionality")),
            normalized=get("normalized") == "true",
            config_fingerprint=get("config_fingerprint"),
            schema_version=get("schema_version"),
        )


class SchemaMismatchError(ValueError):
    """An embeddings file does not match the schema or the vector space expected."""


def schema_with_meta(meta: EmbeddingsMeta) -> pa.Schema:
    return embeddings_schema(meta.dimensionality).with_metadata(meta.to_kv())


def validate_metadata(
    schema: pa.Schema,
    *,
    model: str | None = None,
    dimensionality: int | None = None,
    normalized: bool | None = None,
) -> EmbeddingsMeta:
    """Check a file's schema and metadata; return its metadata or raise SchemaMismatchError."""
    meta = EmbeddingsMeta.from_kv(schema.metadata)
    if meta.schema_version != SCHEMA_VERSION:
        raise SchemaMismatchError(
            f"schema version {meta.schema_version!r}, this reader understands {SCHEMA_VERSION!r}"
        )
    expected = embeddings_schema(meta.dimensionality)
    for f in expected:
        if f.name not in schema.names:
            raise SchemaMismatchError(f"missing column {f.name!r}")
        if not schema.field(f.name).type.equals(f.type):
            raise SchemaMismatchError(
                f"column {f.name!r} has type {schema.field(f.name).type}, expected {f.type}"
            )
    if model is not None and meta.model != model:
        raise SchemaMismatchError(
            f"vectors are from model {meta.model!r}, expected {model!r}: vector spaces must not mix"
        )
    if dimensionality is not None and meta.dimensionality != dimensionality:
        raise SchemaMismatchError(
            f"vectors have {meta.dimensionality} dimensions, expected {dimensionality}"
        )
    if normalized is not None and meta.normalized != normalized:
        raise SchemaMismatchError(
            f"normalized={meta.normalized}, expected normalized={normalized}"
        )
    return meta

"""``embedpipe query``: embed a query through the run's own backend and model, search the
run's index, and map hits back to their chunks.

A file or image query is chunked by the same chunker the corpus went through, so a
corpus member finds itself first. A text query follows the convention of the model the
index is bound to (``QueryConvention``): the Embedding 2 query prompt, or for
gemini-embedding-001 the raw text with a ``taskType``. The index's vector space is
checked against the model before anything is embedded: spaces never mix.
"""
from __future__ import annotations

import os

import numpy as np

from pipeline.backend import open_backend
from pipeline.config import ConfigError
from transforms.chunk import chunk_source
from transforms.chunk_errors import ChunkingError
from transforms.list_sources import describe, expand_local
from transforms.prompts import QueryConvention


def query_parts(settings, text: str | None, image: str | None, file: str | None,
                convention: QueryConvention | None = None) -> list[dict]:
    given = [v for v in (text, image, file) if v]
    if len(given) != 1:
        raise ConfigError("query: give exactly one of TEXT, --image PATH or --file PATH")
    if text:
        convention = convention or QueryConvention.for_model(settings.config.model)
        return [{"text": convention.text(text)}]
    path = image or file
    if not os.path.isfile(path):
        raise ConfigError(f"query: {path!r} is not a file")
    source = describe(next(expand_local(path)))
    try:
        chunks, _errors = chunk_source(source, settings.chunk_settings())
    except ChunkingError as exc:
        raise ConfigError(f"query: {path!r}: {exc.message}") from None
    if not chunks:
        raise ConfigError(f"query: {path!r} has no embeddable content")
    return list(chunks[0].parts)


def query_run(ctx, *, text=None, image=None, file=None, k: int = 5,
              convention: QueryConvention | None = None) -> list[dict]:
    """Top-k hits of one query against the run's index, embedded with the run's model,
    which must be the model the index is bound to."""
    from transforms.index.search import IndexSearcher

    c = ctx.settings.config
    searcher = IndexSearcher.open(ctx.paths.index)
    searcher.check_space(c.model, c.dimensionality)
    convention = convention or QueryConvention.for_model(c.model)
    parts = query_parts(ctx.settings, text, image, file, convention)
    with open_backend(ctx.settings) as client:
        vectors = client.embed_sync(c.model, [parts], c.dimensionality, task_type=convention.task_type)
    vectors = np.asarray(vectors, dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [
        {
            "score": float(hit.score),
            "chunk_id": hit.chunk_id,
            "source_uri": hit.source_uri,
            "modality": hit.modality,
            "unit": hit.unit,
            "start": hit.start,
            "end": hit.end,
        }
        for hit in searcher.search(vectors, k)[0]
    ]

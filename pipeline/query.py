"""``embedpipe query``: embed a query through the run's own backend and model, search the
run's index, and map hits back to their chunks.

A file or image query is chunked by the same chunker the corpus went through, so a
corpus member finds itself first; a text query gets the Embedding 2 query prompt.
"""
from __future__ import annotations

import os

import numpy as np

from pipeline.backend import open_backend
from pipeline.config import ConfigError
from transforms.chunk import chunk_source
from transforms.list_sources import describe, expand_local
from transforms.prompts import query_text


def query_parts(settings, text: str | None, image: str | None, file: str | None) -> list[dict]:
    given = [v for v in (text, image, file) if v]
    if len(given) != 1:
        raise ConfigError("query: give exactly one of TEXT, --image PATH or --file PATH")
    if text:
        return [{"text": query_text(text)}]
    path = image or file
    if not os.path.isfile(path):
        raise ConfigError(f"query: {path!r} is not a file")
    source = describe(next(expand_local(path)))
    chunks, _errors = chunk_source(source, settings.chunk_settings())
    if not chunks:
        raise ConfigError(f"query: {path!r} has no embeddable content")
    return list(chunks[0].parts)


def query_run(ctx, *, text=None, image=None, file=None, k: int = 5) -> list[dict]:
    from transforms.index.search import IndexSearcher

    c = ctx.settings.config
    parts = query_parts(ctx.settings, text, image, file)
    searcher = IndexSearcher.open(ctx.paths.index)
    searcher.check_space(c.model, c.dimensionality)
    with open_backend(ctx.settings) as client:
        vectors = client.embed_sync(c.model, [parts], c.dimensionality)
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

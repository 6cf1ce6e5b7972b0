"""``embedpipe query``: embed a query through the run's own backend and model, search the
run's index, and map hits back to their chunks.

A file or image query is chunked by the same chunker the corpus went through, so a
corpus member finds itself first. A text query follows the convention of the model the
index is bound to (``QueryConvention``): the Embedding 2 query prompt, or for
gemini-embedding-001 the raw text with a ``taskType``. Every argument, and the index's
vector space against the model, is checked before anything is embedded: an ``--image``
must be an image (by content), a ``--file`` something the model embeds; spaces never mix.
"""
from __future__ import annotations

import itertools
import os
import sys
import time
from typing import Iterable, Iterator

import numpy as np

from pipeline.config import ConfigError
from transforms import fs
from transforms.prompts import QueryConvention


class NothingToSearch(RuntimeError):
    """The run has no embeddings (an empty corpus, or every source deleted)."""


def _describe_query_file(flag: str, path: str):
    from transforms.list_sources import describe, expand_local

    if not os.path.exists(path):
        raise ConfigError(f"query {flag}: {path!r} does not exist")
    if not os.path.isfile(path):
        raise ConfigError(f"query {flag}: {path!r} is not a regular file")
    return describe(next(expand_local(path)))


def query_parts(settings, text: str | None, image: str | None, file: str | None,
                convention: QueryConvention | None = None) -> list[dict]:
    from transforms.chunk import chunk_source
    from transforms.chunk_errors import ChunkingError

    given = [v for v in (text, image, file) if v is not None]
    if len(given) != 1:
        raise ConfigError("query: give exactly one of TEXT, --image PATH or --file PATH")
    if text is not None:
        if not text.strip():
            raise ConfigError("query: TEXT is empty (fix: give the words to search for)")
        convention = convention or QueryConvention.for_model(settings.config.model)
        return [{"text": convention.text(text)}]
    flag, path = ("--image", image) if image is not None else ("--file", file)
    source = _describe_query_file(flag, path)
    if flag == "--image" and source.detected_type != "image":
        raise ConfigError(
            f"query --image: {path!r} is {source.detected_type} by its content, not an image "
            "(fix: --file PATH for documents, audio, video and PDFs)"
        )
    try:
        chunks, errors = chunk_source(source, settings.chunk_settings())
    except ChunkingError as exc:
        raise ConfigError(f"query {flag}: {path!r} cannot be embedded ({exc.error_class}: {exc.message})") from None
    except (OSError, ValueError, RuntimeError) as exc:
        raise ConfigError(f"query {flag}: {path!r} cannot be embedded ({type(exc).__name__}: {exc})") from None
    if not chunks:
        reason = f"{errors[0].error_class}: {errors[0].message}" if errors else "it is empty"
        raise ConfigError(f"query {flag}: {path!r} has no embeddable content ({reason})")
    return list(chunks[0].parts)


def _index_or_nothing(ctx):
    """The run's index dir, or NothingToSearch / a clear error when there is none."""
    from pipeline.run_layout import read_json
    from transforms.index.layout import IndexLayout

    layout = IndexLayout.of_run(ctx.paths.root)
    fix = f"fix: embedpipe index --output {ctx.paths.output} --run {ctx.paths.run_id}"
    if fs.exists(layout.report):
        if read_json(layout.report)["serving"].get("nprobe") is not None:
            return layout.root
        raise ConfigError(f"query: the index of run {ctx.paths.run_id} failed its recall gate "
                          f"(see {layout.report}; {fix} --set index.target_recall_at_10=<lower>)")
    if not fs.exists(ctx.paths.manifest):
        raise ConfigError(f"query: run {ctx.paths.run_id} has not finished; nothing to search yet "
                          f"(see embedpipe status --output {ctx.paths.output})")
    index = read_json(ctx.paths.manifest).get("index") or {}
    counts = read_json(ctx.paths.manifest)["counts"]
    if counts["embedded_rows"] + counts["carried_rows"] == 0:
        raise NothingToSearch(f"run {ctx.paths.run_id} has no embeddings (an empty corpus or every "
                              "source deleted): nothing to search")
    raise ConfigError(
        f"query: run {ctx.paths.run_id} has no index ({index.get('error') or index.get('reason')}; {fix})"
    )


def _normalised(vectors) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _hit_json(hit) -> dict:
    return {
        "score": float(hit.score),
        "chunk_id": hit.chunk_id,
        "source_uri": hit.source_uri,
        "modality": hit.modality,
        "unit": hit.unit,
        "start": hit.start,
        "end": hit.end,
    }


def _open_searcher(ctx):
    """The run's index, opened (a gs:// index is downloaded first: said on stderr, with
    its cost) and checked against the run's vector space."""
    from transforms.index.search import IndexSearcher

    c = ctx.settings.config
    index_dir = _index_or_nothing(ctx)
    started = time.monotonic()
    searcher = IndexSearcher.open(index_dir)
    if fs.is_remote(index_dir):
        files = fs.match(fs.join(index_dir, "**"))
        print(f"[embedpipe] index: downloaded from {index_dir} to a local temp dir and opened in "
              f"{time.monotonic() - started:.2f}s (the index holds {len(files)} file(s), "
              f"{sum(size for _, size in files) / 1e6:.2f} MB)", file=sys.stderr, flush=True)
    searcher.check_space(c.model, c.dimensionality)
    return searcher


def query_run(ctx, *, text=None, image=None, file=None, k: int = 5,
              convention: QueryConvention | None = None) -> list[dict]:
    """Top-k hits of one query against the run's index, embedded with the run's model,
    which must be the model the index is bound to."""
    from pipeline.backend import open_backend

    c = ctx.settings.config
    convention = convention or QueryConvention.for_model(c.model)
    parts = query_parts(ctx.settings, text, image, file, convention)
    searcher = _open_searcher(ctx)
    with open_backend(ctx.settings) as client:
        vectors = _normalised(client.embed_sync(c.model, [parts], c.dimensionality,
                                                task_type=convention.task_type))
    return [_hit_json(hit) for hit in searcher.search(vectors, k)[0]]


QUERY_BATCH = 1000  # queries embedded and searched together by ``--queries``


def query_lines(lines: Iterable[str]) -> Iterator[tuple[int, str]]:
    """(1-based line number, query) for every non-blank line."""
    for number, line in enumerate(lines, 1):
        if line.strip():
            yield number, line.strip()


def embed_query_texts(settings, client, texts: list[str],
                      convention: QueryConvention | None = None) -> np.ndarray:
    """Text queries → unit vectors, with the model's query convention, through the run's
    backend."""
    c = settings.config
    convention = convention or QueryConvention.for_model(c.model)
    contents = [[{"text": convention.text(t)}] for t in texts]
    return _normalised(client.embed_sync(c.model, contents, c.dimensionality,
                                         task_type=convention.task_type))


def query_batch(ctx, lines: Iterable[str], k: int,
                convention: QueryConvention | None = None) -> Iterator[dict]:
    """``embedpipe query --queries FILE``: one result per non-blank line, in order.

    The index is loaded once; queries are embedded and searched QUERY_BATCH at a time,
    so memory stays flat for any number of lines."""
    from pipeline.backend import open_backend

    searcher = _open_searcher(ctx)
    numbered = query_lines(lines)
    with open_backend(ctx.settings) as client:
        while batch := list(itertools.islice(numbered, QUERY_BATCH)):
            vectors = embed_query_texts(ctx.settings, client, [q for _, q in batch], convention)
            for (number, query), hits in zip(batch, searcher.search(vectors, k)):
                yield {"line": number, "query": query, "hits": [_hit_json(h) for h in hits]}


def eval_query_vectors(settings) -> np.ndarray:
    """``index.eval_queries`` embedded in the launching process (the only one with the
    key); the index build gets the vectors as a file."""
    from pipeline.backend import open_backend

    uri = settings.config.index.eval_queries
    texts = [q for _, q in query_lines(fs.iter_lines(uri))]
    if not texts:
        raise ConfigError(f"index.eval_queries: {uri} holds no queries (fix: one query per line)")
    with open_backend(settings) as client:
        return embed_query_texts(settings, client, texts)

"""Calibration study (not a test, not in ``make bench``: ~5 min) behind the recall gate's
query-like proxy (``transforms.index.recall.query_like``).

A 12,000-document synthetic text corpus (400 topics, topic words + shared words) and 400
real text queries of 3–6 topic words are embedded by the emulator's text featuriser (what
``backend: emulator`` returns); an IVF-Flat index like the one embedpipe builds for this N
is searched with (a) held-out corpus vectors, leave-one-out, (b) the real queries, and (c)
proxies at several noise levels, each against exact search. Prints recall@10 per nprobe.

    python scripts/bench_gate_proxy.py [--docs 12000] [--dims 768 256]
"""
from __future__ import annotations

import argparse

import faiss
import numpy as np

from bench_common import load_average
from pipeline.emulator.vectors import text_vector
from transforms.index.params import default_nlist
from transforms.index.recall import PROXY_SIGMA, query_like

TOPICS, TOPIC_WORDS, SHARED_WORDS = 400, 30, 400
SYLLABLES = "ka lo mi ne ru ta vo shi pe da ri go zu fa be no xi qua ter lin".split()
NPROBES = (1, 2, 4, 8, 16, 32, 64)


def vocabulary(rng: np.random.Generator) -> tuple[list[list[str]], list[str]]:
    words: set[str] = set()
    while len(words) < TOPICS * TOPIC_WORDS + SHARED_WORDS:
        words.add("".join(rng.choice(SYLLABLES, rng.integers(3, 5))))
    ordered = sorted(words)
    rng.shuffle(ordered)
    topics = [ordered[i * TOPIC_WORDS:(i + 1) * TOPIC_WORDS] for i in range(TOPICS)]
    return topics, ordered[TOPICS * TOPIC_WORDS:]


def document(rng, topics, shared, topic: int) -> str:
    others = rng.choice(TOPICS, 2)
    words = []
    for _ in range(rng.integers(120, 250)):
        r = rng.random()
        pool = (topics[topic] if r < 0.5 else topics[others[0]] if r < 0.6
                else topics[others[1]] if r < 0.65 else shared)
        words.append(rng.choice(pool))
    return " ".join(words)


def query(rng, topics, shared, topic: int) -> str:
    words = list(rng.choice(topics[topic], rng.integers(3, 7)))
    if rng.random() < 0.5:
        words.append(rng.choice(shared))
    return " ".join(words)


def unit(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x / np.linalg.norm(x, axis=1, keepdims=True), np.float32)


def recall_at_10(index, exact, queries, exclude=None) -> list[float]:
    _, truth = exact.search(queries, 11)
    out = []
    for nprobe in NPROBES:
        index.nprobe = nprobe
        _, found = index.search(queries, 11)
        hits = 0
        for i in range(len(queries)):
            want = [v for v in truth[i] if exclude is None or v != exclude[i]][:10]
            got = [v for v in found[i] if exclude is None or v != exclude[i]][:10]
            hits += len(set(want) & set(got))
        out.append(hits / (10 * len(queries)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=12_000)
    ap.add_argument("--dims", type=int, nargs="+", default=[768, 256])
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    topics, shared = vocabulary(rng)
    labels = rng.integers(0, TOPICS, args.docs)
    print(f"embedding {args.docs:,} documents and 400 queries with the emulator ({load_average()})")
    docs = np.stack([text_vector(document(rng, topics, shared, t)) for t in labels])
    real = np.stack([text_vector(query(rng, topics, shared, t)) for t in rng.integers(0, TOPICS, 400)])
    for d in args.dims:
        x, q = unit(docs[:, :d]), unit(real[:, :d])  # Matryoshka prefix, renormalised
        nlist, _ = default_nlist(len(x))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = 0
        index.train(x)
        index.add(x)
        exact = faiss.IndexFlatIP(d)
        exact.add(x)
        held_out = np.random.default_rng(1).choice(len(x), 400, replace=False)
        rows = {
            "held-out corpus vectors": recall_at_10(index, exact, x[held_out], held_out),
            "real text queries": recall_at_10(index, exact, q),
        }
        for sigma in (0.08, PROXY_SIGMA, 0.12):
            rows[f"proxy, sigma {sigma}"] = recall_at_10(index, exact, query_like(x[held_out], 2, sigma))
        top1 = exact.search(q, 1)[0].mean()
        print(f"\nd={d}, IVF{nlist},Flat; real queries' mean top-1 similarity {top1:.2f}")
        print(f"  {'recall@10 at nprobe':26}" + "".join(f"{p:>7}" for p in NPROBES))
        for name, values in rows.items():
            print(f"  {name:26}" + "".join(f"{v:7.3f}" for v in values))


if __name__ == "__main__":
    main()

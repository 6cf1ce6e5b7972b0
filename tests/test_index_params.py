"""Index parameters, sample draw and id scheme: pure functions, no Beam."""

import numpy as np
import pytest

from transforms.index.params import (
    IndexConfig,
    choose_params,
    default_nlist,
    parse_size,
    train_size,
)
from transforms.index.plan import draw_rows, global_ids, split_ids


@pytest.mark.parametrize(
    "text, expected",
    [
        ("8G", 8 << 30),
        ("512M", 512 << 20),
        ("1.5GiB", int(1.5 * (1 << 30))),
        ("2gb", 2 << 30),
        ("100", 100),
        (4096, 4096),
        ("64K", 64 << 10),
    ],
)
def test_parse_size(text, expected):
    assert parse_size(text) == expected


def test_parse_size_rejects_garbage():
    with pytest.raises(ValueError, match="memory size"):
        parse_size("lots")
    with pytest.raises(ValueError):
        IndexConfig(memory_budget="8 potatoes")


def test_config_validates_merge_mode():
    with pytest.raises(ValueError, match="merge"):
        IndexConfig(merge="tape")


@pytest.mark.parametrize(
    "n, nlist",
    [
        (10_000, 256),
        (200_000, 2048),
        (999_999, 4096),
        (1_000_000, 8192),
        (2_000_000, 8192),
        (5_000_000, 16384),
        (50_000_000, 262144),
        (200_000_000, 1 << 20),
    ],
)
def test_default_nlist(n, nlist):
    assert default_nlist(n)[0] == nlist


def test_nlist_keeps_39_points_per_list():
    for n in (10_000, 12_000, 30_000, 90_000, 1_000_000, 2_000_000, 10_000_000, 100_000_000):
        nlist, _ = default_nlist(n)
        assert 39 * nlist <= n


def test_small_corpus_is_exact_and_says_why():
    p = choose_params(5_000, 64, IndexConfig())
    assert p.exact and p.factory == "IVF1,Flat" and p.nlist == 1 and p.train_size == 0
    assert "exact_below" in p.reasons["index_type"]


def test_codec_follows_the_memory_budget():
    n, d = 200_000, 768
    codecs = {
        budget: choose_params(n, d, IndexConfig(memory_budget=budget)).codec
        for budget in ("8G", "400M", "200M", "60M")
    }
    assert codecs == {"8G": "Flat", "400M": "SQfp16", "200M": "SQ8", "60M": "PQ192x4fs"}
    pq = choose_params(n, d, IndexConfig(memory_budget="60M"))
    assert pq.refine == "float16" and pq.k_factor == 8 and "re-ranked" in pq.reasons["codec"]
    ondisk = choose_params(n, d, IndexConfig(memory_budget="60M", merge="ondisk"))
    assert ondisk.codec == "PQ96" and "fast-scan" in ondisk.reasons["codec"]
    with pytest.raises(ValueError, match="raise memory_budget"):
        choose_params(n, d, IndexConfig(memory_budget="1M"))


def test_large_corpus_uses_hnsw_quantizer():
    p = choose_params(5_000_000, 768, IndexConfig(memory_budget="64G"))
    assert p.factory.startswith("IVF16384_HNSW32,") and "HNSW32" in p.reasons["coarse_quantizer"]
    assert not choose_params(2_000_000, 768, IndexConfig(memory_budget="64G")).factory.count("HNSW")


def test_overrides_are_honoured_and_recorded():
    p = choose_params(50_000, 32, IndexConfig(nlist=100, train_sample_max=3000, merge="shards"))
    assert p.nlist == 100 and "override" in p.reasons["nlist"]
    assert p.train_size == 3000 and "WARNING" in p.reasons["train_sample"]
    assert p.merge == "shards" and p.reasons["merge"].startswith("shards")
    f = choose_params(50_000, 32, IndexConfig(factory="IVF128,SQ8"))
    assert (f.factory, f.nlist, f.codec) == ("IVF128,SQ8", 128, "SQ8")
    assert "factory override" in f.reasons["codec"]
    e = choose_params(50_000, 32, IndexConfig(factory="Flat"))
    assert e.exact and "override" in e.reasons["index_type"]


@pytest.mark.parametrize(
    "factory", ["OPQ16,IVF64,PQ16", "IVF64,PQ8x4fs,Refine(SQ8)", "HNSW32", "IVF64,LSH"]
)
def test_unshardable_factories_are_refused(factory):
    with pytest.raises(ValueError):
        choose_params(50_000, 32, IndexConfig(factory=factory))


def test_train_size_clamp():
    assert train_size(1000, 10**9, None)[0] == 64_000
    assert train_size(1000, 50_000, None)[0] == 50_000
    assert train_size(1000, 10**9, 100_000)[0] == 64_000


def test_draw_rows_is_uniform_deterministic_and_disjoint():
    counts = [50_000, 10_000, 40_000]
    train, queries, held_out = draw_rows(counts, 20_000, 200, seed=7)
    again = draw_rows(counts, 20_000, 200, seed=7)
    assert all(np.array_equal(a, b) for a, b in zip(train, again[0]))
    assert held_out and sum(map(len, train)) == 20_000 and sum(map(len, queries)) == 200
    for t, q, c in zip(train, queries, counts):
        assert np.all(np.diff(t) > 0) and (t.size == 0 or t[-1] < c)
        assert not np.intersect1d(t, q).size
    shares = [len(t) / 20_000 for t in train]  # proportional to shard size, not "first file"
    assert shares == pytest.approx([0.5, 0.1, 0.4], abs=0.02)
    other = draw_rows(counts, 20_000, 200, seed=8)
    assert not np.array_equal(train[0], other[0][0])


def test_draw_rows_overlaps_when_corpus_is_small():
    train, queries, held_out = draw_rows([300], 250, 100, seed=0)
    assert not held_out and len(train[0]) == 250 and len(queries[0]) == 100


def test_global_ids_roundtrip():
    ids = global_ids(3, np.array([0, 5, (1 << 40) - 1]))
    shard, row = split_ids(ids)
    assert shard.tolist() == [3, 3, 3] and row.tolist() == [0, 5, (1 << 40) - 1]
    assert ids.dtype == np.int64 and (ids >= 0).all()

"""RunningTopK: the add pass's exact neighbours, batch by batch, equal one exact ranking of
all rows — on its sparse path, on its dense fallback (ties), and for batches shorter than
the list."""

import numpy as np
import pytest

from transforms.index import recall
from transforms.index.recall import RunningTopK, exact_topk, merge_topk


def _whole(q, x, ids, depth):
    return merge_topk([exact_topk(q, x, ids, depth=depth)], depth=depth)


def _running(q, x, ids, depth, batch):
    top = RunningTopK(q, depth)
    for i in range(0, len(x), batch):
        top.add(x[i : i + batch], ids[i : i + batch])
    return top.result()


@pytest.mark.parametrize("batch", [7, 1000, 5000, 20000])
def test_running_lists_equal_one_exact_ranking(batch):
    rng = np.random.default_rng(3)
    centres = rng.standard_normal((40, 32)).astype(np.float32)
    x = centres[rng.integers(0, 40, 20000)] + 0.3 * rng.standard_normal((20000, 32)).astype(np.float32)
    q = np.vstack([x[rng.choice(20000, 30)], rng.standard_normal((10, 32))]).astype(np.float32)
    ids = rng.permutation(20000).astype(np.int64) + 7

    scores, got = _running(q, x, ids, 21, batch)
    want_scores, want = _whole(q, x, ids, 21)

    assert np.array_equal(got, want)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-6)  # BLAS sums by block shape


def test_many_ties_take_the_dense_path_and_keep_the_scores(monkeypatch):
    """More rows tie at a query's floor than the sparse lists hold: the block is ranked
    whole, the scores stay exact, and only which tied row holds the last places may differ."""
    dense_blocks = []

    def ranked_whole(scores, ids, depth, floor):
        dense_blocks.append(floor is not None)
        return top_of(scores, ids, depth, floor)

    top_of = recall._top_of
    monkeypatch.setattr(recall, "_top_of", ranked_whole)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((12000, 16)).astype(np.float32)
    x[3000:3000 + RunningTopK.SPARSE_WIDTH + 100] = x[2]  # ties far beyond the sparse width
    q = np.vstack([x[2] + 0.01, rng.standard_normal((3, 16))]).astype(np.float32)
    ids = np.arange(12000, dtype=np.int64)

    scores, got = _running(q, x, ids, 21, 5000)
    want_scores, want = _whole(q, x, ids, 21)

    assert dense_blocks.count(True) == 1  # only the block holding the ties
    np.testing.assert_allclose(scores, want_scores, rtol=1e-6)
    assert np.array_equal(got[1:], want[1:])
    assert len(set(got[0].tolist())) == 21
    np.testing.assert_allclose(q[0] @ x[got[0]].T, scores[0], rtol=1e-5)


def test_fewer_rows_than_the_list_and_no_queries():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((9, 8)).astype(np.float32)
    q = rng.standard_normal((2, 8)).astype(np.float32)
    ids = np.arange(9, dtype=np.int64)
    scores, got = _running(q, x, ids, 21, 4)
    assert got.shape == (2, 9)
    assert np.array_equal(got, _whole(q, x, ids, 21)[1])

    empty = RunningTopK(np.zeros((0, 8), np.float32))
    empty.add(x, ids)
    assert empty.result()[1].shape == (0, 0)

"""Recall arithmetic: exact top-k merging, leave-one-out recall, tie handling, nprobe choice."""

import numpy as np
import pytest

from transforms.index.recall import (
    SweepPoint,
    choose_nprobe,
    exact_topk,
    merge_topk,
    nprobe_sweep,
    recall_at,
    returned_scores,
)


def test_sharded_exact_topk_equals_global():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((900, 16)).astype(np.float32)
    q = rng.standard_normal((7, 16)).astype(np.float32)
    ids = np.arange(900, dtype=np.int64) + 1000
    whole = exact_topk(q, x, ids, depth=21)
    parts = [exact_topk(q, x[i : i + 300], ids[i : i + 300], depth=21) for i in range(0, 900, 300)]
    merged = merge_topk(parts, depth=21)
    assert np.array_equal(merged[1], whole[1])
    np.testing.assert_allclose(merged[0], whole[0], rtol=1e-6)



def test_running_floor_keeps_the_exact_lists_with_ties():
    """Batches ranked only at or above the running list's last score merge to the same
    lists, also when the last place is shared by many duplicates."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2000, 16)).astype(np.float32)
    x[1000:1400] = x[999]  # 401 identical rows: ties across the floor
    q = np.vstack([rng.standard_normal((6, 16)), x[999] + 0.01]).astype(np.float32)
    ids = np.arange(2000, dtype=np.int64) + 5000
    whole = merge_topk([exact_topk(q, x, ids, depth=21)], depth=21)
    running = None
    for i in range(0, 2000, 250):
        floor = running[0][:, -1] if running is not None and running[0].shape[1] == 21 else None
        part = exact_topk(q, x[i : i + 250], ids[i : i + 250], depth=21, floor=floor)
        running = merge_topk([running, part] if running is not None else [part], depth=21)
    assert np.array_equal(running[0], whole[0])
    above = whole[0] > whole[0][:, -1:]  # which of the rows tied for last place is kept is free
    assert np.array_equal(running[1][above], whole[1][above])
    rescored = np.einsum("qd,qkd->qk", q, x[running[1] - 5000])  # a stand-in scores the same
    np.testing.assert_allclose(rescored, running[0], rtol=1e-5)
    assert all(len(set(row)) == 21 for row in running[1].tolist())

def test_merge_topk_pads_and_breaks_ties_by_id():
    a = (np.array([[0.9, 0.5]], np.float32), np.array([[7, 3]]))
    b = (np.array([[0.5, -np.inf]], np.float32), np.array([[2, -1]]))
    scores, ids = merge_topk([a, b], depth=4)
    assert ids.tolist() == [[7, 2, 3, -1]]


def _no_vectors(ids):
    raise AssertionError(f"ids {ids} should have been scored from the exact lists")


def _recall(k, approx, gt_scores, gt_ids, query_ids, vectors=_no_vectors, queries=None):
    approx = np.array(approx)
    queries = np.zeros((len(query_ids), 2), np.float32) if queries is None else queries
    scores = returned_scores(queries, approx, query_ids, gt_scores, gt_ids, vectors)
    return recall_at(k, approx, scores, gt_scores, gt_ids, query_ids)


def test_recall_is_leave_one_out_and_tie_tolerant():
    query_ids = np.array([100])
    gt_ids = np.array([[100, 1, 2, 3, 4]])
    gt_scores = np.array([[1.0, 0.9, 0.8, 0.8, 0.1]])
    assert _recall(1, [[1]], gt_scores, gt_ids, query_ids) == 1.0
    assert _recall(1, [[2]], gt_scores, gt_ids, query_ids) == 0.0
    # ids 2 and 3 tie for rank 2: either one is a correct answer
    assert _recall(2, [[1, 3]], gt_scores, gt_ids, query_ids) == 1.0
    assert _recall(3, [[1, 4, -1]], gt_scores, gt_ids, query_ids) == pytest.approx(1 / 3)


def test_an_id_beyond_a_tied_exact_list_is_scored_on_its_vector():
    """Five identical vectors tie with the query; the exact list kept only three of them.
    The index returned the other two: they are as good, not misses."""
    query = np.array([[1.0, 0.0]], np.float32)
    query_ids = np.array([0])
    gt_ids = np.array([[0, 1, 2, 3]])  # self + three of the five ties (list full)
    gt_scores = np.array([[1.0, 1.0, 1.0, 1.0]])
    stored = {4: [1.0, 0.0], 5: [1.0, 0.0], 6: [0.0, 1.0]}
    read = []

    def vectors(ids):
        read.extend(ids.tolist())
        return np.array([stored[i] for i in ids.tolist()], np.float32)

    assert _recall(2, [[4, 5]], gt_scores, gt_ids, query_ids, vectors, query) == 1.0
    assert _recall(2, [[1, 6]], gt_scores, gt_ids, query_ids, vectors, query) == 0.5
    assert sorted(read) == [4, 5, 6]


def test_an_id_beyond_an_untied_exact_list_is_a_miss_without_reading_vectors():
    query_ids = np.array([0])
    gt_ids = np.arange(13)[None, :]  # self + 12 neighbours: deeper than k = 10
    gt_scores = np.linspace(1.0, 0.4, 13)[None, :]  # the list ends below the 10th score
    assert _recall(2, [[1, 99]], gt_scores, gt_ids, query_ids) == 0.5
    assert _recall(10, [list(range(1, 10)) + [99]], gt_scores, gt_ids, query_ids) == 0.9


def test_nprobe_sweep():
    assert nprobe_sweep(1, 256, None) == [1]
    assert nprobe_sweep(512, 256, None) == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    assert nprobe_sweep(100, 256, None) == [1, 2, 4, 8, 16, 32, 64, 100]
    assert nprobe_sweep(512, 20, 12) == [1, 2, 4, 8, 12, 16, 20]


def _points(recalls):
    return [SweepPoint(1 << i, r, r, 1000.0 / (i + 1), 0.0) for i, r in enumerate(recalls)]


def test_choose_nprobe():
    points = _points([0.5, 0.9, 0.96, 0.99])
    assert choose_nprobe(points, 0.95, None)[0] == 4
    assert choose_nprobe(points, 0.995, None)[0] is None
    assert choose_nprobe(points, 0.95, 8)[0] == 8
    chosen, why = choose_nprobe(points, 0.95, 2)
    assert chosen is None and "override" in why

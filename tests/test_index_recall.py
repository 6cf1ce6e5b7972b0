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


def test_merge_topk_pads_and_breaks_ties_by_id():
    a = (np.array([[0.9, 0.5]], np.float32), np.array([[7, 3]]))
    b = (np.array([[0.5, -np.inf]], np.float32), np.array([[2, -1]]))
    scores, ids = merge_topk([a, b], depth=4)
    assert ids.tolist() == [[7, 2, 3, -1]]


def test_recall_is_leave_one_out_and_tie_tolerant():
    query_ids = np.array([100])
    gt_ids = np.array([[100, 1, 2, 3, 4]])
    gt_scores = np.array([[1.0, 0.9, 0.8, 0.8, 0.1]])
    assert recall_at(1, np.array([[1]]), gt_scores, gt_ids, query_ids) == 1.0
    assert recall_at(1, np.array([[2]]), gt_scores, gt_ids, query_ids) == 0.0
    # ids 2 and 3 tie for rank 2: either one is a correct answer
    assert recall_at(2, np.array([[1, 3]]), gt_scores, gt_ids, query_ids) == 1.0
    assert recall_at(3, np.array([[1, 4, -1]]), gt_scores, gt_ids, query_ids) == pytest.approx(
        1 / 3
    )


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

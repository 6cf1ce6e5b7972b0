"""The sample pass: each shard's training rows (streamed to their file batch by batch) and
held-out query rows are exactly the planned rows, in order, across batch and row-group
boundaries, when the two sets overlap, and when one is empty; a shard shorter than its
plan fails and leaves no sample file behind."""

import dataclasses
import os

import numpy as np
import pytest

from transforms.index import source
from transforms.index.layout import IndexLayout
from transforms.index.params import IndexConfig
from transforms.index.plan import plan_index
from transforms.index.source import ShardInfo, inspect_shard, number_shards
from transforms.index.stages import draw_sample
from transforms.index.synthetic import gaussian_mixture, write_shards

D = 16


@pytest.fixture()
def shard(tmp_path, monkeypatch):
    """One 1,000-row shard in row groups of 300, read in batches of 128 rows."""
    monkeypatch.setattr(source, "SAMPLE_BATCH_BYTES", 128 * D * 4)
    x = gaussian_mixture(1000, D, clusters=5, seed=1)
    (path,) = write_shards(str(tmp_path / "run"), x, 1, row_group_rows=300)
    info = inspect_shard(number_shards([path])[0])
    plan = plan_index([info], IndexConfig(holdout_queries=10))
    return x, info, plan, IndexLayout.of_run(str(tmp_path / "run"))


def _draw(info, plan, layout, train, queries):
    plan = dataclasses.replace(
        plan,
        train_rows={info.shard: np.asarray(train, np.int64)},
        query_rows={info.shard: np.asarray(queries, np.int64)},
    )
    return list(draw_sample(info, plan, layout))


@pytest.mark.parametrize(
    "train, queries",
    [
        (np.arange(0, 1000, 3), [5, 127, 128, 299, 300, 999]),  # every boundary
        (np.arange(100, 700), np.arange(650, 710)),  # overlapping sets (not held out)
        (np.arange(1000), []),  # every row trains, no queries
    ],
)
def test_sample_files_hold_exactly_the_planned_rows(shard, train, queries):
    x, info, plan, layout = shard
    (part,) = _draw(info, plan, layout, train, queries)

    assert np.array_equal(np.load(part.train_path), x[np.asarray(train)])
    assert part.queries.dtype == np.float32 and part.queries.shape == (len(queries), D)
    assert np.array_equal(part.queries, x[np.asarray(queries, np.int64)])


def test_queries_only_writes_no_sample_file(shard):
    x, info, plan, layout = shard
    (part,) = _draw(info, plan, layout, [], [3, 400])

    assert part.train_path is None and not os.path.exists(layout.sample_part(info.shard))
    assert np.array_equal(part.queries, x[[3, 400]])


def test_a_shard_shorter_than_its_plan_fails_and_leaves_no_sample(shard):
    _, info, plan, layout = shard
    longer = ShardInfo(info.shard, info.path, 1200, info.space)

    with pytest.raises(ValueError, match=r"shard shrank while sampling \(334 of 400 rows\)"):
        _draw(longer, plan, layout, np.arange(0, 1200, 3), [1])
    sample_dir = os.path.dirname(layout.sample_part(info.shard))
    assert not os.path.exists(sample_dir) or not os.listdir(sample_dir)

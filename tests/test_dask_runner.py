"""embedpipe's DaskRunner (``pipeline/dask_runner.py``): one test per defect of Beam 2.77's
DaskRunner listed in ``research/distributed-engines.md``, each pipeline run on a real
two-process ``dask.distributed`` cluster and compared with FnApiRunner.

Results leave the pipelines as files (one per bundle) in a shared temp folder: the
workers are other processes, so nothing can be collected in memory.
"""
from __future__ import annotations

import json
import os
import uuid
from collections import Counter

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms import userstate

from dask_cluster import dask_cluster  # noqa: F401 (session fixture)
from pipeline.dask_runner import UnsupportedOnDask

DASK = "pipeline.dask_runner.DaskRunner"


class Dump(beam.DoFn):
    """Write each bundle's elements to ``<dir>/<name>-<uuid>.json``, with the process id."""

    def __init__(self, directory: str, name: str):
        self.directory = directory
        self.name = name

    def start_bundle(self):
        self.seen = []

    def process(self, element):
        self.seen.append(element)

    def finish_bundle(self):
        if self.seen:
            path = os.path.join(self.directory, f"{self.name}-{uuid.uuid4().hex}.json")
            with open(path, "w") as fh:
                json.dump({"pid": os.getpid(), "elements": self.seen}, fh)


def dumped(directory, name: str) -> list[dict]:
    return [json.load(open(os.path.join(directory, f)))
            for f in sorted(os.listdir(directory)) if f.startswith(name + "-")]


def elements(directory, name: str) -> Counter:
    return Counter(json.dumps(e, sort_keys=True) for b in dumped(directory, name) for e in b["elements"])


def run_both(build, tmp_path, dask_cluster, *extra):  # noqa: F811
    """Run ``build(p, out_dir)`` on FnApiRunner and on Dask; returns (fnapi dir, dask dir, dask result)."""
    dirs = {}
    result = None
    for runner, args in (("FnApiRunner", []), (DASK, [*dask_cluster.args, *extra])):
        out = tmp_path / runner.rsplit(".", 1)[-1]
        out.mkdir()
        p = beam.Pipeline(options=PipelineOptions([f"--runner={runner}", *args]))
        build(p, str(out))
        result = p.run()
        result.wait_until_finish()
        dirs[runner] = out
    return dirs["FnApiRunner"], dirs[DASK], result


# 1. only the last leaf branch was computed ------------------------------------------
def test_every_leaf_branch_is_computed(tmp_path, dask_cluster):  # noqa: F811
    def build(p, out):
        numbers = p | beam.Create(range(30))
        numbers | "Squares" >> beam.Map(lambda x: x * x) | "Dump squares" >> beam.ParDo(Dump(out, "squares"))
        numbers | "Negatives" >> beam.Map(lambda x: -x) | "Dump negatives" >> beam.ParDo(Dump(out, "negatives"))
        numbers | "Dump numbers" >> beam.ParDo(Dump(out, "numbers"))

    fnapi, dask, _ = run_both(build, tmp_path, dask_cluster)
    for name in ("squares", "negatives", "numbers"):
        assert sum(elements(dask, name).values()) == 30, name
        assert elements(dask, name) == elements(fnapi, name), name


# 2. tagged outputs were not separated -------------------------------------------------
class SplitParity(beam.DoFn):
    def process(self, x):
        yield x if x % 2 == 0 else beam.pvalue.TaggedOutput("odd", x)
        if x % 5 == 0:
            yield beam.pvalue.TaggedOutput("fives", x)


def test_each_tagged_output_gets_only_its_elements(tmp_path, dask_cluster):  # noqa: F811
    def build(p, out):
        split = p | beam.Create(range(20)) | beam.ParDo(SplitParity()).with_outputs("odd", "fives", main="even")
        split.even | "Dump even" >> beam.ParDo(Dump(out, "even"))
        split.odd | "Dump odd" >> beam.ParDo(Dump(out, "odd"))
        split.fives | "Dump fives" >> beam.ParDo(Dump(out, "fives"))
        parts = p | "More" >> beam.Create(range(9)) | beam.Partition(lambda x, n: x % n, 3)
        for i, part in enumerate(parts):
            part | f"Dump part {i}" >> beam.ParDo(Dump(out, f"part{i}"))

    fnapi, dask, _ = run_both(build, tmp_path, dask_cluster)
    assert sorted(int(e) for e in elements(dask, "even")) == list(range(0, 20, 2))
    assert sorted(int(e) for e in elements(dask, "odd")) == list(range(1, 20, 2))
    assert sorted(int(e) for e in elements(dask, "fives")) == [0, 5, 10, 15]
    for name in ("even", "odd", "fives", "part0", "part1", "part2"):
        assert elements(dask, name) == elements(fnapi, name), name


# 3. finish_bundle output was dropped --------------------------------------------------
class BufferUntilFinish(beam.DoFn):
    def start_bundle(self):
        self.buffer = []

    def process(self, x):
        self.buffer.append(x)

    def finish_bundle(self):
        from apache_beam.transforms.window import GlobalWindow
        from apache_beam.utils.windowed_value import WindowedValue

        for x in self.buffer:
            yield WindowedValue(x * 10, 0, [GlobalWindow()])


def test_output_emitted_in_finish_bundle_is_kept(tmp_path, dask_cluster):  # noqa: F811
    def build(p, out):
        numbers = p | beam.Create(range(25))
        numbers | beam.ParDo(BufferUntilFinish()) | beam.ParDo(Dump(out, "tens"))
        (numbers | "Str" >> beam.Map(str)
         | beam.io.WriteToText(os.path.join(out, "text", "numbers"), file_name_suffix=".txt"))

    fnapi, dask, _ = run_both(build, tmp_path, dask_cluster)
    assert sorted(int(e) for e in elements(dask, "tens")) == [10 * i for i in range(25)]
    files = sorted(os.listdir(dask / "text"))
    assert all(f.startswith("numbers-") and f.endswith(".txt") for f in files), files  # no temp left
    lines = sorted(int(line) for f in files for line in open(dask / "text" / f))
    assert lines == list(range(25))  # WriteToText's files are no longer empty


# 4. side inputs were recomputed in every partition ------------------------------------
class CountedSide(beam.DoFn):
    """Produces the side input; leaves one marker file per call so calls can be counted."""

    def __init__(self, directory):
        self.directory = directory

    def process(self, x):
        open(os.path.join(self.directory, f"side-call-{uuid.uuid4().hex}"), "w").close()
        yield x


def test_a_side_input_is_computed_once(tmp_path, dask_cluster):  # noqa: F811
    def build(p, out):
        side = p | "Side" >> beam.Create([100, 200]) | "Count side calls" >> beam.ParDo(CountedSide(out))
        (p | "Main" >> beam.Create(range(40)) | beam.Reshuffle()
         | beam.Map(lambda x, s: x + sum(s), s=beam.pvalue.AsList(side))
         | "Dump sums" >> beam.ParDo(Dump(out, "sums")))
        # also read as a main input: still computed once
        total = beam.pvalue.AsSingleton(side | beam.CombineGlobally(sum))
        (side | "Side as main" >> beam.Map(lambda x, t: [x, t], t=total)
         | "Dump pairs" >> beam.ParDo(Dump(out, "pairs")))

    fnapi, dask, _ = run_both(build, tmp_path, dask_cluster)
    assert len(dumped(dask, "sums")) >= 2, "the main input should span several partitions"
    assert elements(dask, "sums") == elements(fnapi, "sums")
    assert elements(dask, "pairs") == elements(fnapi, "pairs")
    calls = [f for f in os.listdir(dask) if f.startswith("side-call-")]
    assert len(calls) == 2  # once per side element, not once per partition or consumer


# 5. Read (ReadFromText) had no translation --------------------------------------------
def test_read_from_text_reads_every_line(tmp_path, dask_cluster):  # noqa: F811
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        (src / f"f{i}.txt").write_text("".join(f"file {i} line {j}\n" for j in range(200)))

    def build(p, out):
        p | beam.io.ReadFromText(str(src / "*.txt")) | beam.ParDo(Dump(out, "lines"))

    fnapi, dask, _ = run_both(build, tmp_path, dask_cluster)
    assert sum(elements(dask, "lines").values()) == 600
    assert elements(dask, "lines") == elements(fnapi, "lines")


# 6. stateful DoFns failed deep inside Beam --------------------------------------------
class Stateful(beam.DoFn):
    COUNT = userstate.CombiningValueStateSpec("count", combine_fn=sum)

    def process(self, kv, count=beam.DoFn.StateParam(COUNT)):
        count.add(1)
        yield kv


def test_a_stateful_dofn_is_refused_by_name_before_anything_runs(tmp_path, dask_cluster):  # noqa: F811
    p = beam.Pipeline(options=PipelineOptions([f"--runner={DASK}", *dask_cluster.args]))
    _ = p | beam.Create([("a", 1)]) | "Count per key" >> beam.ParDo(Stateful()) | beam.ParDo(Dump(str(tmp_path), "x"))
    with pytest.raises(UnsupportedOnDask, match="Count per key.*state or timers"):
        p.run()
    assert os.listdir(tmp_path) == []


# 7. Reshuffle did not repartition -----------------------------------------------------
def test_reshuffle_repartitions_its_input(tmp_path, dask_cluster):  # noqa: F811
    """Everything comes out of one partition; after Reshuffle it is spread over at least
    twice as many partitions (bundles) as the cluster has worker threads, so the scheduler
    can hand them to different workers (which it does is dask's choice)."""
    def build(p, out):
        (p | beam.Create(["seed"]) | beam.FlatMap(lambda _: range(40))  # one partition
         | beam.Reshuffle() | beam.ParDo(Dump(out, "spread")))

    fnapi, dask, _ = run_both(build, tmp_path, dask_cluster)
    assert elements(dask, "spread") == elements(fnapi, "spread")
    assert len(dumped(dask, "spread")) >= 2 * 2  # two worker threads


# beyond the note: keys, errors, metrics ------------------------------------------------
def test_group_by_key_groups_string_keys_across_worker_processes(tmp_path, dask_cluster):  # noqa: F811
    def build(p, out):
        (p | beam.Create([(f"key-{i % 7}", i) for i in range(70)]) | beam.Reshuffle()
         | beam.GroupByKey() | beam.MapTuple(lambda k, vs: [k, sorted(vs)])
         | beam.ParDo(Dump(out, "groups")))

    fnapi, dask, _ = run_both(build, tmp_path, dask_cluster)
    groups = elements(dask, "groups")
    assert len(groups) == 7 and all(n == 1 for n in groups.values())  # one group per key
    assert groups == elements(fnapi, "groups")


def _fail_on_13(x):
    if x == 13:
        raise ValueError("element 13 is bad")
    return x


def test_a_worker_error_fails_the_pipeline(dask_cluster):  # noqa: F811
    p = beam.Pipeline(options=PipelineOptions([f"--runner={DASK}", *dask_cluster.args]))
    _ = p | beam.Create(range(20)) | beam.Map(_fail_on_13)
    with pytest.raises(ValueError, match="element 13 is bad"):
        p.run().wait_until_finish()


def _counted(x):
    beam.metrics.Metrics.counter("test", "seen").inc()
    beam.metrics.Metrics.distribution("test", "value").update(x)
    return x


def test_metrics_are_collected_from_the_workers(tmp_path, dask_cluster):  # noqa: F811
    def build(p, out):
        p | beam.Create(range(1, 51)) | beam.Reshuffle() | beam.Map(_counted)

    _, _, result = run_both(build, tmp_path, dask_cluster)
    metrics = result.metrics().query(MetricsFilter().with_namespace("test"))
    (seen,) = metrics["counters"]
    (value,) = metrics["distributions"]
    assert seen.committed == 50
    assert (value.committed.count, value.committed.sum, value.committed.min, value.committed.max) == (50, 1275, 1, 50)

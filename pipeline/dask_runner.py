"""Beam's DaskRunner (apache-beam 2.77), fixed so pipelines give the same results on a
``dask.distributed`` cluster as on FnApiRunner.

As shipped, Beam's DaskRunner silently returns wrong results (measured, see
``research/distributed-engines.md``); this subclass keeps its option parsing and Beam's
own overrides (Create, GroupByKey, Flatten, Reshuffle, Read become runner primitives) and
replaces the translation to dask bags. Each defect has a test in
``tests/test_dask_runner.py``:

1. Only the last leaf of the graph was computed (a pipeline with two sinks ran one):
   every leaf is computed, in one graph (shared steps run once), and waited for.
2. Tagged outputs were not separated (each consumer got every tag's elements): a ParDo's
   bag holds ``(tag, value)`` pairs and each output PCollection is the filter of its tag.
3. Output emitted in ``finish_bundle`` was dropped (collected before it ran): a bundle's
   output is taken after ``finish_bundle``.
4. Side inputs were recomputed in every partition using them: each side input is one
   dask task whose result every partition receives.
5. ``Read`` (``ReadFromText``…) had no translation (``'NoneType' object has no attribute
   'map'``): the source is split on the client and each split read in its own task.
6. Stateful DoFns failed with an ``AssertionError`` deep in Beam: refused before anything
   runs, with the step's name (state and timers are not supported here).
7. ``Reshuffle`` did not repartition: it spreads its input over at least twice as many
   partitions as the cluster has worker threads.

Also: GroupByKey buckets keys by a hash of their deterministic Beam encoding (not
Python's ``hash``, which differs between worker processes unless every worker pins
PYTHONHASHSEED); worker errors are re-raised on the client; Beam metrics (counters,
distributions) are collected from the workers; the client is closed when the pipeline ends.

It relies on Beam internals (the DoFn invoker, output handler, the dask overrides), so
setup.py pins Beam's minor version. Windowing: elements carry the global window between
steps, as in Beam's DaskRunner (embedpipe's pipelines are batch, globally windowed).
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import typing as t

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.coders import registry as coder_registry
from apache_beam.io import iobase
from apache_beam.metrics.execution import MetricsContainer
from apache_beam.pipeline import AppliedPTransform, PipelineVisitor
from apache_beam.runners.common import DoFnContext, DoFnInvoker, DoFnSignature, Receiver, _OutputHandler
from apache_beam.runners.dask import dask_runner as beam_dask
from apache_beam.runners.dask import overrides
from apache_beam.runners.dask.transform_evaluator import get_windowed_value
from apache_beam.runners.direct.direct_metrics import DirectMetrics
from apache_beam.runners.runner import PipelineResult, PipelineState
from apache_beam.runners.worker import statesampler
from apache_beam.transforms import userstate
from apache_beam.transforms.sideinputs import SideInputMap
from apache_beam.typehints import trivial_inference
from apache_beam.utils import counters

_LOG = logging.getLogger(__name__)
_METRICS = "__embedpipe_metrics__"  # the tag of a bundle's metric updates in a ParDo's bag
MIN_READ_BUNDLE_BYTES = 1 << 20


class UnsupportedOnDask(NotImplementedError):
    """A pipeline construction this runner cannot execute correctly."""


# -- what runs on the workers ----------------------------------------------------------
class _Collect(Receiver):
    """Receives one tag's outputs into the bundle's list of (tag, value) pairs."""

    def __init__(self, tag, out: list):
        self.tag = tag
        self.out = out

    def receive(self, windowed_value):
        self.out.append((self.tag, windowed_value.value))


class _TagReceivers(dict):
    def __init__(self, out: list):
        super().__init__()
        self.out = out

    def __missing__(self, tag):
        self[tag] = receiver = _Collect(tag, self.out)
        return receiver


@dataclasses.dataclass(frozen=True)
class _SideSpec:
    """How a bundle views one side input (an object, not a tuple: dask would take a
    tuple starting with a class for a task and call it)."""

    view_class: type
    view_options: dict


def run_bundle(items, fn, label, window_fn, args, kwargs, side_specs, *side_values):
    """Process one partition as one bundle: setup, start_bundle, process every element,
    finish_bundle, teardown. Returns (tag, value) pairs, taken after finish_bundle, plus one
    (_METRICS, updates) pair."""
    out: list = []
    receivers = _TagReceivers(out)
    side_inputs = [
        SideInputMap(spec.view_class, spec.view_options, [get_windowed_value(v, None) for v in values])
        for spec, values in zip(side_specs, side_values)
    ]
    handler = _OutputHandler(
        window_fn=window_fn, main_receivers=receivers[None], tagged_receivers=receivers,
        per_element_output_counter=None, output_batch_converter=None,
        process_yields_batches=False, process_batch_yields_elements=False,
    )
    invoker = DoFnInvoker.create_invoker(
        DoFnSignature(fn), handler, context=DoFnContext(label, state=None),
        side_inputs=side_inputs, input_args=args, input_kwargs=kwargs,
        user_state_context=None, bundle_finalizer_param=beam.DoFn.BundleFinalizerParam(),
    )
    container = MetricsContainer(label)
    sampler = statesampler.StateSampler(label, counters.CounterFactory())
    statesampler.set_current_tracker(sampler)
    try:
        with sampler.scoped_state(label, "process", metrics_container=container):
            invoker.invoke_setup()
            invoker.invoke_start_bundle()
            for item in items:
                invoker.invoke_process(get_windowed_value(item, window_fn))
            invoker.invoke_finish_bundle()
            invoker.invoke_teardown()
    finally:
        statesampler.set_current_tracker(None)
    out.append((_METRICS, container.get_cumulative()))
    return out


def _values_of(pairs, tag):
    return [value for pair_tag, value in pairs if pair_tag == tag]


def _metric_updates(pairs):
    return [value for tag, value in pairs if tag == _METRICS]


def _concat(parts):
    return [item for part in parts for item in part]


def _read_splits(bundles):
    out = []
    for bundle in bundles:
        tracker = bundle.source.get_range_tracker(bundle.start_position, bundle.stop_position)
        out.extend(bundle.source.read(tracker))
    return out


def key_bucket(encoded_key: bytes, buckets: int) -> int:
    """A bucket from the key's Beam encoding: the same in every worker process."""
    return int.from_bytes(hashlib.md5(encoded_key).digest()[:8], "big") % buckets


def _group_bucket(groups, coder):
    """(bucket, [(k, v), ...]) → (k, [v, ...]) per distinct key (by its encoding). The values
    stay as ReifyWindows made them (windowed): GroupAlsoByWindow unwraps them."""
    out = []
    for _bucket, items in groups:
        by_key: dict[bytes, tuple] = {}
        for key, value in items:
            entry = by_key.setdefault(coder.encode(key), (key, []))
            entry[1].append(value)
        out.extend(by_key.values())
    return out


# -- translation on the client ---------------------------------------------------------
class _Translate(PipelineVisitor):
    """Beam primitives → dask bags, one bag per PCollection."""

    def __init__(self, parallelism: int, bag_kwargs: dict):
        self.parallelism = parallelism
        self.bag_kwargs = bag_kwargs
        self.bags: dict[pvalue.PCollection, t.Any] = {}
        self.consumed: set[pvalue.PCollection] = set()
        self.metric_bags: list = []
        self.outputs: list[pvalue.PCollection] = []

    def leaves(self) -> list:
        """Bags of the PCollections nothing consumes: computing them computes the graph."""
        return [self.bags[pc] for pc in self.outputs if pc not in self.consumed]

    def visit_transform(self, node: AppliedPTransform) -> None:
        transform = node.transform
        inputs = [pc for pc in node.inputs if not isinstance(pc, pvalue.PBegin)]
        self.consumed.update(inputs)
        self.consumed.update(si.pvalue for si in node.side_inputs)
        bags = [self.bags[pc] for pc in inputs]
        if isinstance(transform, overrides._Create):  # noqa: SLF001
            out = self._create(list(transform.values))
        elif isinstance(transform, overrides._Read):  # noqa: SLF001
            out = self._read(transform.source)
        elif isinstance(transform, beam.ParDo):
            self._pardo(node, bags[0])
            return
        elif isinstance(transform, overrides._GroupByKeyOnly):  # noqa: SLF001
            out = self._group_by_key(node, bags[0])
        elif isinstance(transform, overrides._Flatten):  # noqa: SLF001
            out = self._flatten(bags)
        elif isinstance(transform, overrides._Reshuffle):  # noqa: SLF001
            out = self._reshuffle(bags[0])
        elif isinstance(transform, beam.Impulse):
            out = self._create([b""])
        else:
            raise UnsupportedOnDask(
                f"DaskRunner: no translation for step {node.full_label!r} "
                f"({type(transform).__name__}); run it on FnApiRunner or Dataflow"
            )
        self._set_outputs(node, lambda _tag: out)

    def _set_outputs(self, node, bag_of_tag) -> None:
        for tag, pc in node.outputs.items():
            self.bags[pc] = bag_of_tag(tag)
            self.outputs.append(pc)

    def _create(self, values: list):
        import dask.bag as db

        if not values:
            return db.from_sequence([], npartitions=1)
        npartitions = self.bag_kwargs.get("npartitions")
        size = self.bag_kwargs.get("partition_size")
        if not npartitions and not size:
            size = max(1, math.ceil(len(values) / self.parallelism))
        return db.from_sequence(values, npartitions=npartitions, partition_size=size)

    def _read(self, source):
        import dask.bag as db

        if not isinstance(source, iobase.BoundedSource):
            raise UnsupportedOnDask(f"DaskRunner: only bounded sources can be read ({source!r})")
        size = source.estimate_size() or 0
        desired = max(MIN_READ_BUNDLE_BYTES, size // (2 * self.parallelism) + 1)
        splits = list(source.split(desired_bundle_size=desired))
        return db.from_sequence(splits, npartitions=max(1, len(splits))).map_partitions(_read_splits)

    def _pardo(self, node: AppliedPTransform, bag) -> None:
        transform = node.transform
        if userstate.is_stateful_dofn(transform.fn):
            raise UnsupportedOnDask(
                f"DaskRunner: step {node.full_label!r} uses state or timers, which embedpipe's "
                "DaskRunner does not support (run it on FnApiRunner or Dataflow)"
            )
        main = next(iter(node.main_inputs.values()))
        window_fn = main.windowing.windowfn if hasattr(main, "windowing") else None
        args, kwargs = transform.raw_side_inputs
        import dask

        side_specs = [_SideSpec(type(si), si._view_options()) for si in node.side_inputs]  # noqa: SLF001
        # unoptimized: the side input's tasks keep the keys the main graph uses for the same
        # steps, so a PCollection read as a main and a side input is computed once
        side_values = [dask.delayed(_concat)(self.bags[si.pvalue].to_delayed(optimize_graph=False))
                       for si in node.side_inputs]
        pairs = bag.map_partitions(run_bundle, transform.fn, node.full_label, window_fn,
                                   list(args), dict(kwargs), side_specs, *side_values)
        self.metric_bags.append(pairs.map_partitions(_metric_updates))
        self._set_outputs(node, lambda tag: pairs.map_partitions(_values_of, tag))

    def _group_by_key(self, node: AppliedPTransform, bag):
        input_type = next(iter(node.main_inputs.values())).element_type
        key_type, _ = trivial_inference.key_value_types(input_type)
        coder = coder_registry.get_coder(key_type).as_deterministic_coder(node.full_label)
        buckets = max(bag.npartitions, 1)
        return (
            bag.groupby(lambda kv: key_bucket(coder.encode(kv[0]), buckets), npartitions=buckets)
            .map_partitions(_group_bucket, coder)
        )

    @staticmethod
    def _flatten(bags: list):
        import dask.bag as db

        return db.concat(bags) if bags else db.from_sequence([], npartitions=1)

    def _reshuffle(self, bag):
        target = 2 * self.parallelism
        return bag.repartition(npartitions=target) if bag.npartitions < target else bag


class DaskRunnerResult(PipelineResult):
    """Waits for every leaf, re-raises the first worker error, aggregates metrics."""

    def __init__(self, client, futures: list, leaves: int):
        super().__init__(PipelineState.RUNNING)
        self._client = client
        self._futures = futures  # the leaves' row counts, then each ParDo's metric updates
        self._leaves = leaves
        self._metrics = DirectMetrics()

    def wait_until_finish(self, duration=None):
        if PipelineState.is_terminal(self._state):
            return self._state
        from distributed import wait

        try:
            wait(self._futures, timeout=None if duration is None else duration / 1000)
            results = [future.result() for future in self._futures]  # raises a worker's error
            for bundle, updates in enumerate(u for r in results[self._leaves:] for u in r):
                self._metrics.commit_logical(bundle, updates)
            self._state = PipelineState.DONE
        except BaseException:
            self._state = PipelineState.FAILED
            raise
        finally:
            self._client.close()
        return self._state

    def cancel(self):
        self._client.cancel(self._futures)
        self._state = PipelineState.CANCELLED
        return self._state

    def metrics(self):
        return self._metrics


def _count(partition) -> int:
    return len(partition)


class DaskRunner(beam_dask.DaskRunner):
    """``--runner=pipeline.dask_runner.DaskRunner``; takes Beam's ``--dask_*`` options."""

    def run_pipeline(self, pipeline, options):
        from distributed import Client

        dask_options = options.view_as(beam_dask.DaskOptions).get_all_options(
            drop_default=True, current_only=True)
        bag_kwargs = beam_dask.DaskOptions._extract_bag_kwargs(dask_options)  # noqa: SLF001
        client = Client(**dask_options)
        try:
            pipeline.replace_all(overrides.dask_overrides())
            parallelism = max(1, sum(client.nthreads().values()))
            translate = _Translate(parallelism, bag_kwargs)
            pipeline.visit(translate)
            leaves = [leaf.map_partitions(_count) for leaf in translate.leaves()]
            # one graph, unfused: every step keeps one task key per partition, so a step
            # shared by several leaves or side inputs runs once (DoFns have side effects)
            futures = client.compute(leaves + translate.metric_bags, optimize_graph=False)
        except BaseException:
            client.close()
            raise
        _LOG.info("DaskRunner: %d leaves submitted to %s", len(leaves), client.scheduler.address)
        return DaskRunnerResult(client, futures, len(leaves))

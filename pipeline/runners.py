"""Which engine runs embedpipe's Beam pipelines, from the config's ``runner``.

- ``FnApiRunner`` (the default) and ``DataflowRunner``: as named.
- ``DirectRunner``: runs on **FnApiRunner**, always. Beam 2.77's DirectRunner first tries to
  download a Prism binary from GitHub (``urlopen`` with no timeout: a firewall that drops
  packets hangs it forever), then falls back to FnApiRunner for batch pipelines; embedpipe
  goes straight to the engine it would fall back to, so the run is the same offline, on a
  laptop with internet, and behind any firewall. Ask for Prism explicitly with
  ``runner: PrismRunner`` (and ``--prism_location`` for a binary you provide).
- ``DaskRunner``: embedpipe's fixed DaskRunner (``pipeline.dask_runner``) on the
  ``dask.distributed`` cluster at ``--dask_client_address``, or on a local cluster of
  ``dask.workers`` processes started for this command when no address is given.

The run log says which engine ran (``engine_note``), and the manifest records it.
"""
from __future__ import annotations

import atexit
import contextlib
import logging
import sys
import threading
from collections import Counter
from typing import Iterator

from pipeline.config import Settings

DASK_RUNNER = "pipeline.dask_runner.DaskRunner"
_LOG = logging.getLogger(__name__)

_local_clusters: dict[int, object] = {}
_clusters_lock = threading.Lock()
_announced: set[str] = set()


def _option_value(args: list[str], name: str) -> str | None:
    """The value of ``--name=value`` (or ``--name value``) in Beam-style args; None if absent."""
    for i, arg in enumerate(args):
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
        if arg == name and i + 1 < len(args):
            return args[i + 1]
    return None


def engine(settings: Settings, beam_args: list[str] = ()) -> dict:
    """What runs the pipelines: ``{"runner": as configured, "engine": what runs, ...}``."""
    runner = settings.config.runner
    info = {"runner": runner, "engine": runner}
    if runner == "DirectRunner":
        info.update(engine="FnApiRunner",
                    note="what Beam's DirectRunner runs batch pipelines on; its Prism download is never attempted")
    elif runner == "DaskRunner":
        address = _option_value(list(beam_args), "--dask_client_address")
        info["cluster"] = address or f"local, {settings.config.dask.workers} worker processes"
    return info


def runner_args(settings: Settings, beam_args: list[str]) -> list[str]:
    """The ``--runner`` (and cluster) options that make Beam run the configured engine."""
    runner = settings.config.runner
    if runner == "DirectRunner":
        return ["--runner=FnApiRunner"]
    if runner == "DaskRunner":
        args = [f"--runner={DASK_RUNNER}"]
        if _option_value(beam_args, "--dask_client_address") is None:
            args.append(f"--dask_client_address={local_cluster(settings.config.dask.workers)}")
        return args
    return [f"--runner={runner}"]


def announce(settings: Settings, beam_args: list[str] = ()) -> dict:
    """Say in the run log (stderr, once per process and engine) which engine runs the
    pipelines; returns it."""
    info = engine(settings, beam_args)
    text = f"engine: {info['engine']}"
    if "cluster" in info:
        text += f" on Dask cluster {info['cluster']}"
    if "note" in info:
        text += f" (runner: {info['runner']}, {info['note']})"
    if text not in _announced:
        _announced.add(text)
        print(f"[embedpipe] {text}", file=sys.stderr, flush=True)
    return info


@contextlib.contextmanager
def worker_tasks(settings: Settings, beam_args: list[str]) -> Iterator[dict]:
    """On Dask: the tasks each worker ran inside the block (``{worker address: count}``,
    filled on exit; from the scheduler's task stream, so it counts whatever the cluster ran
    meanwhile). Other engines: stays empty."""
    tally: dict = {}
    if settings.config.runner != "DaskRunner":
        yield tally
        return
    from distributed import Client, get_task_stream

    address = _option_value(beam_args, "--dask_client_address") or local_cluster(settings.config.dask.workers)
    with Client(address) as client, get_task_stream(client) as stream:
        yield tally
    tally.update(sorted(Counter(task["worker"] for task in stream.data).items()))


def local_cluster(workers: int) -> str:
    """Address of a local ``dask.distributed`` cluster of ``workers`` single-threaded worker
    processes, started once per process (every pipeline of the command shares it) and shut
    down when the process exits."""
    with _clusters_lock:
        cluster = _local_clusters.get(workers)
        if cluster is None:
            from distributed import LocalCluster

            _LOG.info("starting a local Dask cluster of %d worker processes", workers)
            cluster = LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True,
                host="127.0.0.1", dashboard_address=":0", silence_logs=logging.ERROR,
            )
            _local_clusters[workers] = cluster
            atexit.register(cluster.close)
            started = len(cluster.scheduler_info["workers"])
            print(f"[embedpipe] started a local Dask cluster of {started} worker processes at "
                  f"{cluster.scheduler_address}", file=sys.stderr, flush=True)
        return cluster.scheduler_address

"""A ``dask.distributed`` cluster for tests: two single-threaded worker processes on
127.0.0.1, started once per session (a cold start takes 10–30 s on a loaded 2-core machine)
from this venv, and closed at the end.

    from dask_cluster import dask_cluster  # noqa: F401 (session fixture)

    def test_x(dask_cluster):
        args = [f"--dask_client_address={dask_cluster.address}"]
        with dask_cluster.task_stream() as tasks: ...
        dask_cluster.tasks_per_worker(tasks)

Tasks are counted per worker from the scheduler's task stream (independent of the runner
under test), which is how the tests prove that both processes did work.
"""
from __future__ import annotations

import contextlib
import logging
from collections import Counter
from typing import Iterator

import pytest

WORKERS = 2


class DaskCluster:
    def __init__(self, cluster, client):
        self.cluster = cluster
        self.client = client

    @property
    def address(self) -> str:
        return self.cluster.scheduler_address

    @property
    def args(self) -> list[str]:
        """Beam options that point a pipeline (or ``embedpipe``) at this cluster."""
        return [f"--dask_client_address={self.address}"]

    @contextlib.contextmanager
    def task_stream(self) -> Iterator[list]:
        """Every task the scheduler ran inside the block (a list filled on exit)."""
        from distributed import get_task_stream

        tasks: list = []
        with get_task_stream(self.client) as stream:
            yield tasks
        tasks.extend(stream.data)

    @staticmethod
    def tasks_per_worker(tasks: list) -> Counter:
        return Counter(t["worker"] for t in tasks)


@pytest.fixture(scope="session")
def dask_cluster() -> Iterator[DaskCluster]:
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True,
                           host="127.0.0.1", dashboard_address=":0", silence_logs=logging.ERROR)
    client = Client(cluster)
    client.wait_for_workers(WORKERS, timeout=120)
    try:
        yield DaskCluster(cluster, client)
    finally:
        client.close()
        cluster.close()

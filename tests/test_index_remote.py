"""The index stage on a non-local filesystem (a gs://-like flat namespace) end to end.

``fakegcs://`` is a Beam FileSystem backed by a temp dir, with no directories, so every
remote branch (download for faiss, upload of results, searcher cache) runs as on GCS.
"""

import os
import shutil

import numpy as np
import pytest
from apache_beam.io.filesystem import BeamIOError, FileMetadata, FileSystem
from apache_beam.options.pipeline_options import PipelineOptions

from transforms.index import IndexConfig, IndexSearcher, build_index
from transforms.index.synthetic import chunk_id, gaussian_mixture, write_shards

pytestmark = pytest.mark.slow  # real pipelines, seconds each

ROOT = {"dir": None}


class FakeGcsFileSystem(FileSystem):
    @classmethod
    def scheme(cls):
        return "fakegcs"

    def _local(self, url):
        return os.path.join(ROOT["dir"], url[len("fakegcs://") :])

    def join(self, basepath, *paths):
        return "/".join([basepath.rstrip("/"), *[p.strip("/") for p in paths]])

    def split(self, path):
        head, _, tail = path.rpartition("/")
        return head, tail

    def mkdirs(self, path):
        pass

    def has_dirs(self):
        return False

    def _list(self, prefix):
        for dirpath, _, files in os.walk(ROOT["dir"]):
            for name in files:
                local = os.path.join(dirpath, name)
                url = "fakegcs://" + os.path.relpath(local, ROOT["dir"])
                if url.startswith(prefix):
                    yield FileMetadata(url, os.path.getsize(local), os.path.getmtime(local))

    def create(self, path, mime_type="application/octet-stream", compression_type=None):
        local = self._local(path)
        os.makedirs(os.path.dirname(local), exist_ok=True)
        return open(local, "wb")

    def open(self, path, mime_type="application/octet-stream", compression_type=None):
        return open(self._local(path), "rb")

    def copy(self, sources, destinations):
        for s, d in zip(sources, destinations):
            shutil.copyfile(self._local(s), self._local(d))

    def rename(self, sources, destinations):
        for s, d in zip(sources, destinations):
            os.replace(self._local(s), self._local(d))

    def exists(self, path):
        return os.path.isfile(self._local(path))

    def size(self, path):
        return os.path.getsize(self._local(path))

    def last_updated(self, path):
        return os.path.getmtime(self._local(path))

    def checksum(self, path):
        return str(self.size(path))

    def metadata(self, path):
        return FileMetadata(path, self.size(path), self.last_updated(path))

    def delete(self, paths):
        missing = {p: FileNotFoundError(p) for p in paths if not self.exists(p)}
        if missing:
            raise BeamIOError("Delete operation failed", missing)
        for p in paths:
            os.unlink(self._local(p))


@pytest.fixture()
def bucket(tmp_path):
    ROOT["dir"] = str(tmp_path)
    yield "fakegcs://bucket"
    ROOT["dir"] = None


@pytest.mark.parametrize(
    "config",
    [
        IndexConfig(nlist=32, merge="ondisk"),
        IndexConfig(nlist=32, memory_budget="300K", merge="shards", target_recall_at_10=0.8),
    ],
)
def test_build_and_search_on_a_remote_filesystem(bucket, tmp_path, config):
    run = f"{bucket}/runs/r1"
    x = gaussian_mixture(6000, 32, clusters=40, seed=11)
    write_shards(run, x, 3)
    report = build_index(run, config, PipelineOptions(["--runner=FnApiRunner"]))
    assert report["merge"]["mode"] == config.merge
    stored = sorted(
        os.path.relpath(os.path.join(d, f), tmp_path) for d, _, fs in os.walk(tmp_path) for f in fs
    )
    assert "bucket/runs/r1/index/report.json" in stored
    assert not [p for p in stored if "/sample/" in p or ".tmp" in p]
    searcher = IndexSearcher.open(f"{run}/index")
    rows = np.arange(7, 6000, 997)
    hits = searcher.search(x[rows], 3)
    assert [h[0].chunk_id for h in hits] == [chunk_id(r) for r in rows]
    with open(os.path.join(tmp_path, "bucket/runs/r1/index/recall_vs_nprobe.png"), "rb") as fh:
        assert fh.read(4) == b"\x89PNG"

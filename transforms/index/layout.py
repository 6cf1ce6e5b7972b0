"""Where the index stage puts its files under ``<run>/index/``, and faiss I/O for them.

faiss reads and writes local files only: remote (gs://) objects go through a local temp
copy. Names are deterministic so a retried bundle overwrites instead of duplicating.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Iterator

import faiss

from transforms import fs


@dataclass(frozen=True)
class IndexLayout:
    root: str  # <run>/index

    @classmethod
    def of_run(cls, run_dir: str) -> "IndexLayout":
        return cls(fs.join(run_dir, "index"))

    @property
    def trained(self) -> str:
        return fs.join(self.root, "trained.index")

    @property
    def merged(self) -> str:
        return fs.join(self.root, "merged.index")

    @property
    def report(self) -> str:
        return fs.join(self.root, "report.json")

    @property
    def plot(self) -> str:
        return fs.join(self.root, "recall_vs_nprobe.png")

    @property
    def eval_queries(self) -> str:
        """The user's gate queries, embedded by the launching process (which holds the key)."""
        return fs.join(self.root, "eval_queries.npy")

    def sample_part(self, shard: int) -> str:
        """Training rows drawn from one shard; deleted once the build is reported."""
        return fs.join(self.root, "sample", f"part-{shard:05d}.npy")

    def shard_index(self, shard: int) -> str:
        return fs.join(self.root, "shards", f"shard-{shard:05d}.index")

    def shard_ids(self, shard: int) -> str:
        return fs.join(self.root, "shards", f"shard-{shard:05d}.ids.parquet")

    def shard_refine(self, shard: int) -> str:
        return fs.join(self.root, "shards", f"shard-{shard:05d}.refine.npy")


@contextlib.contextmanager
def local_output(uri: str) -> Iterator[str]:
    """A local path to write; it becomes ``uri`` (atomically when local) on success."""
    if fs.is_remote(uri):
        tmp_dir = tempfile.mkdtemp(prefix="embedpipe-index-")
        tmp = os.path.join(tmp_dir, os.path.basename(uri))
        try:
            yield tmp
            with open(tmp, "rb") as src, fs.open_write(uri) as dst:
                shutil.copyfileobj(src, dst, length=8 << 20)
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)
        return
    directory = os.path.dirname(os.path.abspath(uri))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(uri))
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, uri)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_index(index: faiss.Index, uri: str) -> int:
    """Write an index; returns its size in bytes."""
    with local_output(uri) as path:
        faiss.write_index(index, path)
        return os.path.getsize(path)


def read_index(uri: str, flags: int = 0) -> faiss.Index:
    with fs.local_copy(uri, suffix=".index") as path:
        return faiss.read_index(path, flags)


def publish(local_dir: str, names: list[str], dest_dir: str) -> None:
    """Move finished files into ``dest_dir`` (upload when remote)."""
    for name in names:
        src = os.path.join(local_dir, name)
        if fs.is_remote(dest_dir):
            with open(src, "rb") as fh, fs.open_write(fs.join(dest_dir, name)) as out:
                shutil.copyfileobj(fh, out, length=8 << 20)
        else:
            os.makedirs(dest_dir, exist_ok=True)
            os.replace(src, os.path.join(dest_dir, name))


def download(uri: str, local_path: str) -> str:
    with fs.open_read(uri) as src, open(
        local_path, "wb"
    ) as dst:
        shutil.copyfileobj(src, dst, length=8 << 20)
    return local_path


def match_paths(pattern: str) -> list[str]:
    return [path for path, _ in fs.match(pattern)]


def delete(paths: list[str]) -> None:
    fs.delete_many([p for p in paths if fs.is_remote(p) or not os.path.isdir(p)])


def size_of(uri: str) -> int:
    matches = fs.match(uri)
    return matches[0][1] if matches else 0

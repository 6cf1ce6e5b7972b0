"""Combine shard indexes: in RAM, on disk, or not at all (served as shards).

All shards share one trained template (same centroids, same codec), so appending their
inverted lists in shard order reproduces a single-process build bit for bit (research §4f).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Sequence

import faiss
from faiss.contrib.ondisk import merge_ondisk as faiss_merge_ondisk

from transforms import fs
from transforms.index.layout import IndexLayout, download, publish, read_index, write_index

IVFDATA = "merged.ivfdata"


def merge_ram(layout: IndexLayout, shards: Sequence[int]) -> list[str]:
    """``merge_from`` every shard (in order) into a copy of the template → merged.index."""
    merged = read_index(layout.trained)
    for shard in shards:
        merged.merge_from(read_index(layout.shard_index(shard)), 0)
    write_index(merged, layout.merged)
    return [layout.merged]


def merge_ondisk(layout: IndexLayout, shards: Sequence[int]) -> list[str]:
    """faiss ``merge_ondisk``: lists stream into merged.ivfdata, memory-mapped when served.

    The .index records the .ivfdata path; readers use ``IO_FLAG_ONDISK_SAME_DIR``, so
    both files only need to stay side by side.
    """
    work = tempfile.mkdtemp(prefix="embedpipe-merge-")
    try:
        local_shards = []
        for shard in shards:
            uri = layout.shard_index(shard)
            if fs.is_remote(uri):
                uri = download(uri, os.path.join(work, os.path.basename(uri)))
            local_shards.append(uri)
        merged = read_index(layout.trained)
        faiss_merge_ondisk(merged, local_shards, os.path.join(work, IVFDATA))
        faiss.write_index(merged, os.path.join(work, "merged.index"))
        del merged  # closes the .ivfdata mapping before the file moves
        publish(work, [IVFDATA, "merged.index"], layout.root)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return [layout.merged, fs.join(layout.root, IVFDATA)]


def merge(mode: str, layout: IndexLayout, shards: Sequence[int]) -> list[str]:
    """Files the searcher serves, by merge mode."""
    if mode == "ram":
        return merge_ram(layout, shards)
    if mode == "ondisk":
        return merge_ondisk(layout, shards)
    return [layout.trained] + [layout.shard_index(s) for s in shards]

"""Stage 8, BuildIndex: a sharded FAISS IVF index over a run's embeddings, and its searcher.

Train once on a uniform sample → add every embeddings shard in parallel to a copy of
the trained template → merge (in RAM, on disk) or serve the shards together → gate on
measured recall → ``<run>/index/report.json``.
"""

from transforms.index.build import BuildIndex, build_index
from transforms.index.params import IndexConfig, IndexParams, choose_params, parse_size
from transforms.index.recall import RecallTargetUnreachable
from transforms.index.search import Hit, IndexSearcher, VectorSpaceMismatch

__all__ = [
    "BuildIndex",
    "Hit",
    "IndexConfig",
    "IndexParams",
    "IndexSearcher",
    "RecallTargetUnreachable",
    "VectorSpaceMismatch",
    "build_index",
    "choose_params",
    "parse_size",
]

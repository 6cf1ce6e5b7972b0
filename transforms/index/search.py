"""Query a built index: vectors in, ranked hits with their chunk metadata out.

The searcher serves whatever the build left (merged in RAM, merged on disk and
memory-mapped, or shards over one quantizer) behind one interface, refuses queries from
another vector space, and answers without a second lookup: the id → chunk map sits
beside each shard.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import weakref
from dataclasses import asdict, dataclass

import faiss
import numpy as np
import pyarrow.parquet as pq

from transforms import fs
from transforms.embeddings_schema import SchemaMismatchError
from transforms.index.layout import IndexLayout, download
from transforms.index.merge import IVFDATA
from transforms.index.plan import split_ids
from transforms.index.source import ID_MAP_COLUMNS, VectorSpace

QUERY_BATCH = 256


class VectorSpaceMismatch(SchemaMismatchError):
    """A query comes from another model or dimensionality than the index."""


@dataclass(frozen=True)
class Hit:
    score: float
    chunk_id: str
    source_uri: str
    modality: str
    unit: str
    start: float | None
    end: float | None


@dataclass(frozen=True)
class ServingInfo:
    """What a reader needs to open the index; stored as ``report.json["serving"]``."""

    mode: str  # ram | ondisk | shards
    shards: tuple[int, ...]
    nlist: int
    space: VectorSpace
    refine: str | None = None
    k_factor: int = 1
    nprobe: int | None = None

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "ServingInfo":
        return cls(**{**d, "shards": tuple(d["shards"]), "space": VectorSpace(**d["space"])})


def bound_space(index_dir: str) -> VectorSpace:
    """The vector space (model, dimensionality) an index is bound to, read from its report
    without loading the index: what a query must be embedded with."""
    report = json.loads(fs.read_bytes(IndexLayout(index_dir).report))
    return ServingInfo.from_json(report["serving"]).space


class IndexSearcher:
    """Loads an index once; ``search`` is safe to call repeatedly from one thread."""

    def __init__(self, root: str, serving: ServingInfo):
        self.layout = IndexLayout(root)
        self.serving = serving
        self.space = serving.space
        self._local = self._local_dir()
        self._keep: list = []  # faiss objects the index points into must outlive it
        self._shard_indexes: list = []
        self.index = self._load_index()
        self._ivfs = self._ivf_parts()
        self._refine = self._load_refine() if serving.refine else None
        self._ids: dict[int, object] = {}
        self.nprobe = 0
        if serving.nprobe is not None:
            self.set_nprobe(serving.nprobe)

    @classmethod
    def open(cls, index_dir: str) -> "IndexSearcher":
        """Open ``<run>/index`` as built; refuses an index that failed its recall gate."""
        report = json.loads(fs.read_bytes(IndexLayout(index_dir).report))
        serving = ServingInfo.from_json(report["serving"])
        if serving.nprobe is None:
            raise RuntimeError(
                f"{index_dir} failed its recall gate (see report.json 'recall'); rebuild it"
            )
        return cls(index_dir, serving)

    # -- loading ---------------------------------------------------------------------
    def _local_dir(self) -> str:
        if not fs.is_remote(self.layout.root):
            return self.layout.root
        tmp = tempfile.mkdtemp(prefix="embedpipe-searcher-")
        weakref.finalize(self, shutil.rmtree, tmp, True)
        return tmp

    def _fetch(self, uri: str) -> str:
        """Local path of an index file, downloading into the cache dir when remote."""
        if not fs.is_remote(uri):
            return uri
        rel = uri[len(self.layout.root) :].lstrip("/")
        local = os.path.join(self._local, rel)
        if not os.path.exists(local):
            os.makedirs(os.path.dirname(local), exist_ok=True)
            download(uri, local)
        return local

    def _load_index(self) -> faiss.Index:
        mode = self.serving.mode
        if mode == "ram":
            return faiss.read_index(self._fetch(self.layout.merged))
        if mode == "ondisk":
            self._fetch(fs.join(self.layout.root, IVFDATA))
            return faiss.read_index(self._fetch(self.layout.merged), faiss.IO_FLAG_ONDISK_SAME_DIR)
        trained = faiss.read_index(self._fetch(self.layout.trained))
        quantizer = faiss.extract_index_ivf(trained).quantizer
        shards = [
            faiss.read_index(self._fetch(self.layout.shard_index(s))) for s in self.serving.shards
        ]
        index = faiss.IndexShardsIVF(quantizer, self.serving.nlist, False, False)
        for shard in shards:
            index.add_shard(shard)
        self._keep.append(trained)
        self._shard_indexes = shards
        return index

    def _ivf_parts(self) -> list:
        parts = self._shard_indexes or [self.index]
        return [faiss.extract_index_ivf(p) for p in parts]

    def _load_refine(self) -> dict[int, np.ndarray]:
        return {
            s: np.load(self._fetch(self.layout.shard_refine(s)), mmap_mode="r")
            for s in self.serving.shards
        }

    def _id_map(self, shard: int):
        if shard not in self._ids:
            self._ids[shard] = pq.read_table(self._fetch(self.layout.shard_ids(shard)))
        return self._ids[shard]

    # -- querying --------------------------------------------------------------------
    def check_space(self, model: str, dimensionality: int) -> None:
        """Raise unless queries embedded by (model, dimensionality) live in this index's space."""
        if model != self.space.model or dimensionality != self.space.dimensionality:
            raise VectorSpaceMismatch(
                f"query space {model!r} d={dimensionality} differs from the index space "
                f"{self.space.model!r} d={self.space.dimensionality}: vector spaces must not mix"
            )

    def set_nprobe(self, nprobe: int) -> None:
        nprobe = min(nprobe, self.serving.nlist)
        for ivf in self._ivfs:
            ivf.nprobe = nprobe
        # IndexShardsIVF assigns with its own quantizer, a merged index with its IVF's
        owner = self.index if self._shard_indexes else self._ivfs[0]
        quantizer = faiss.downcast_index(owner.quantizer)
        if isinstance(quantizer, faiss.IndexHNSW):
            quantizer.hnsw.efSearch = max(2 * nprobe, 16)  # autofaiss' rule
        self.nprobe = nprobe

    def list_sizes(self) -> np.ndarray:
        sizes = np.zeros(self.serving.nlist, dtype=np.int64)
        for ivf in self._ivfs:
            sizes += [ivf.invlists.list_size(i) for i in range(ivf.nlist)]
        return sizes

    def _queries(self, vectors: np.ndarray) -> np.ndarray:
        x = np.array(vectors, dtype=np.float32, order="C", ndmin=2, copy=True)
        if x.shape[1] != self.space.dimensionality:
            raise VectorSpaceMismatch(
                f"query has {x.shape[1]} dimensions, the index {self.space.dimensionality}"
            )
        faiss.normalize_L2(x)  # cosine = inner product on unit vectors
        return x

    def search_ids(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), best first, each (nq, k); id -1 where fewer than k were found."""
        x = self._queries(vectors)
        if self._refine is None:
            return self.index.search(x, k)
        out = [self._rerank(x[i : i + QUERY_BATCH], k) for i in range(0, len(x), QUERY_BATCH)]
        return np.vstack([d for d, _ in out]), np.vstack([i for _, i in out])

    def _rerank(self, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """PQ shortlist of k·k_factor, re-scored exactly on the stored full vectors."""
        _, cand = self.index.search(x, k * self.serving.k_factor)
        flat = cand.ravel()
        vecs = np.zeros((flat.size, x.shape[1]), dtype=np.float32)
        shard_of, row_of = split_ids(flat)
        for s in np.unique(shard_of[flat >= 0]):
            sel = np.flatnonzero((shard_of == s) & (flat >= 0))
            vecs[sel] = self._refine[int(s)][row_of[sel]]
        scores = np.einsum("qkd,qd->qk", vecs.reshape(*cand.shape, -1), x)
        scores[cand < 0] = -np.inf
        order = np.lexsort((cand, -scores), axis=-1)[:, :k]
        ids = np.take_along_axis(cand, order, axis=1)
        best = np.take_along_axis(scores, order, axis=1).astype(np.float32)
        return best, ids

    def search(self, vectors: np.ndarray, k: int) -> list[list[Hit]]:
        """Top-k hits per query vector (a 1-D vector is one query)."""
        scores, ids = self.search_ids(vectors, k)
        shard_of, row_of = split_ids(ids)
        rows: dict[tuple[int, int], dict] = {}
        for s in np.unique(shard_of[ids >= 0]):
            wanted = np.unique(row_of[(shard_of == s) & (ids >= 0)])
            table = self._id_map(int(s)).take(wanted).to_pylist()
            rows.update({(int(s), int(r)): rec for r, rec in zip(wanted, table)})

        def hit(score: float, shard: int, row: int) -> Hit:
            rec = rows[(int(shard), int(row))]
            return Hit(float(score), *(rec[c] for c in ID_MAP_COLUMNS))

        return [
            [hit(sc, sh, r) for sc, i, sh, r in zip(*per_query) if i >= 0]
            for per_query in zip(scores, ids, shard_of, row_of)
        ]

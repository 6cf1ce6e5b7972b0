"""Index parameters from the corpus size, the dimensionality and a memory budget.

Every choice comes with a one-line reason that lands in ``report.json``, so a data
engineer can see why the index looks the way it does and which knob to turn.
Heuristics and measurements: shared research ``faiss-sharded-ivf.md`` §2.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

MERGE_MODES = ("ram", "ondisk", "shards")
MIN_POINTS_PER_LIST = 39  # faiss Clustering.h warns below this
MAX_POINTS_PER_LIST = 256  # faiss silently subsamples above this
SAMPLE_POINTS_PER_LIST = 64
HNSW_QUANTIZER_FROM_NLIST = 16384  # flat quantizer cost rivals list scans beyond this
ID_BYTES = 8
REFINE_K_FACTOR = 8  # research §4c: PQ fast-scan + fp16 re-rank reaches ≈0.98 at 8
MERGE_REASONS = {
    "ram": "ram: merge_from into one self-contained merged.index (the merging worker holds "
    "≈1.5× the index in RAM)",
    "ondisk": "ondisk: merge_ondisk into merged.index + merged.ivfdata, served memory-mapped "
    "(≈no merge RAM, 2× disk while merging)",
    "shards": "shards: no merge; shard files are served together over the shared quantizer "
    "(IndexShardsIVF), the deployment unit for multi-host serving",
}
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


@dataclass(frozen=True)
class IndexConfig:
    """What the user may decide; ``None`` means "derive it from the data"."""

    memory_budget: str = "8G"
    factory: str | None = None
    nlist: int | None = None
    nprobe: int | None = None
    target_recall_at_10: float = 0.95
    max_nprobe: int = 256
    train_sample_max: int | None = None
    holdout_queries: int = 200
    merge: str = "ram"  # ram | ondisk | shards
    seed: int = 0
    faiss_threads: int | None = None
    exact_below: int = 10_000  # corpora smaller than this get an exact index

    def __post_init__(self) -> None:
        if self.merge not in MERGE_MODES:
            raise ValueError(f"merge must be one of {MERGE_MODES}, got {self.merge!r}")
        parse_size(self.memory_budget)
        for name in ("nlist", "nprobe", "train_sample_max", "faiss_threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if self.max_nprobe < 1 or self.holdout_queries < 1:
            raise ValueError("max_nprobe and holdout_queries must be >= 1")


def parse_size(text: str | int) -> int:
    """Human size ("8G", "512MB", "1.5GiB", 1024) → bytes, powers of 1024 like autofaiss."""
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(?:I?B)?\s*", str(text).upper())
    if not m:
        raise ValueError(f"cannot read memory size {text!r}; use e.g. '8G', '512M'")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def human_size(n: int) -> str:
    for unit in ("T", "G", "M", "K"):
        if n >= _UNITS[unit]:
            return f"{n / _UNITS[unit]:.1f}{unit}"
    return f"{n}B"


@dataclass(frozen=True)
class IndexParams:
    """The index to build, decided once on the driver side and shipped to every stage.

    ``refine`` is the dtype of the re-rank store kept beside each shard ("float16" or
    "float32") when the codec is lossy PQ; faiss' own ``Refine`` cannot keep arbitrary
    ids, so re-ranking by id is done by the searcher.
    """

    factory: str
    exact: bool
    nlist: int
    codec: str
    code_bytes: int
    train_size: int
    merge: str
    refine: str | None = None
    k_factor: int = 1
    estimated_bytes: int = 0
    reasons: dict = field(default_factory=dict)


def default_nlist(n: int) -> tuple[int, str]:
    """nlist for a corpus of n vectors: ≈4·√N below 1M, 8·√N (HNSW quantizer from 16384
    lists) for 1M–10M, the faiss wiki sizes above; never fewer than 39 points per list.

    The wiki's IVF65536 for 1M–10M assumes GPU k-means: at N = 1M it would need 2.6M
    training points and hours on CPU, so the middle range grows with √N instead."""
    if n >= 100_000_000:
        nlist, reason = 1 << 20, f"N={n:,} ≥ 100M: faiss wiki guideline IVF1048576"
    elif n >= 10_000_000:
        nlist, reason = 1 << 18, f"N={n:,} in 10M–100M: faiss wiki guideline IVF262144"
    else:
        factor = 8 if n >= 1_000_000 else 4
        target = factor * math.sqrt(n)
        nlist = 1 << max(0, round(math.log2(target)))
        reason = f"power of two nearest {factor}·√N = {target:.0f}"
    while nlist > 1 and MIN_POINTS_PER_LIST * nlist > n:
        nlist //= 2
        reason += f", halved to {nlist} so that N ≥ {MIN_POINTS_PER_LIST}·nlist"
    return nlist, reason


def codec_bytes(codec: str, d: int) -> int:
    """Bytes per stored code, for the codecs this module chooses or parses."""
    if codec == "Flat":
        return 4 * d
    if codec == "SQfp16":
        return 2 * d
    if codec == "SQ8":
        return d
    m = re.fullmatch(r"PQ(\d+)(x4fs|x8)?", codec)
    if m:
        return int(m.group(1)) // 2 if m.group(2) == "x4fs" else int(m.group(1))
    raise ValueError(f"unknown codec {codec!r}")


def _quantizer_bytes(nlist: int, d: int, hnsw: bool) -> int:
    return nlist * d * 4 + (nlist * 64 * 4 if hnsw else 0)


def choose_codec(
    n: int, d: int, nlist: int, budget: int, merge: str, hnsw: bool
) -> tuple[str, int, str]:
    """Most accurate codec whose index fits the budget → (codec, estimated bytes, reason)."""
    fixed = _quantizer_bytes(nlist, d, hnsw)
    for codec, why in (
        ("Flat", "exact codes"),
        ("SQfp16", "same recall as Flat at half the bytes (research §4b)"),
        ("SQ8", "≈−0.007 recall@10 at a quarter of Flat (research §4b)"),
    ):
        need = n * (codec_bytes(codec, d) + ID_BYTES) + fixed
        if need <= budget:
            return (
                codec,
                need,
                f"{codec}: {why}; estimated {human_size(need)} ≤ budget {human_size(budget)}",
            )
    m = d // 4
    while m >= 8:
        if d % m == 0 and m % 2 == 0:
            codec = f"PQ{m}x4fs" if merge != "ondisk" else f"PQ{m // 2}"
            need = n * (codec_bytes(codec, d) + ID_BYTES) + fixed
            if need <= budget:
                reason = (
                    f"{codec}: SQ8 needs {human_size(n * (d + ID_BYTES) + fixed)} > budget "
                    f"{human_size(budget)}; PQ codes re-ranked on float16 vectors kept on disk "
                    f"(k_factor {REFINE_K_FACTOR})"
                )
                if merge == "ondisk":
                    reason += "; 8-bit PQ because on-disk lists cannot hold fast-scan blocks"
                return codec, need, reason
        m //= 2
    raise ValueError(
        f"memory budget {human_size(budget)} cannot hold {n:,} vectors of {d} dimensions "
        f"even as 4-bit PQ{max(8, d // 32)} codes; raise memory_budget"
    )


def train_size(nlist: int, n: int, cap: int | None) -> tuple[int, str]:
    """clamp(64·nlist, 39·nlist, 256·nlist), then at most N and the configured cap."""
    size = min(
        max(SAMPLE_POINTS_PER_LIST * nlist, MIN_POINTS_PER_LIST * nlist),
        MAX_POINTS_PER_LIST * nlist,
    )
    reason = f"{SAMPLE_POINTS_PER_LIST}·nlist = {size:,}"
    if cap is not None and cap < size:
        size, reason = cap, reason + f", capped by train_sample_max={cap:,}"
    if n < size:
        size, reason = n, reason + f", capped by N={n:,}"
    if size < MIN_POINTS_PER_LIST * nlist:
        reason += (
            f"; WARNING fewer than {MIN_POINTS_PER_LIST}·nlist points: lists will be "
            "unbalanced and recall lower (research §4i)"
        )
    return size, reason + "; drawn uniformly over all shards"


def _parse_factory(factory: str, d: int) -> tuple[int, str]:
    m = re.fullmatch(r"IVF(\d+)(?:_HNSW\d+)?,(\w+?)", factory)
    if not m:
        raise ValueError(
            f"factory {factory!r} is not supported: use 'IVF<nlist>[_HNSW32],<codec>' "
            "(Flat, SQfp16, SQ8, PQ<m>, PQ<m>x4fs), or 'Flat' for an exact index; "
            "pre-transforms (OPQ/PCA) and faiss Refine cannot be sharded by id"
        )
    codec_bytes(m.group(2), d)
    return int(m.group(1)), m.group(2)


def choose_params(n: int, d: int, config: IndexConfig) -> IndexParams:
    """Decide the index for N vectors of d dimensions; honour and record every override."""
    if n < 1:
        raise ValueError("no embeddings to index")
    budget = parse_size(config.memory_budget)
    reasons: dict[str, str] = {}
    if config.factory == "Flat" or (
        config.factory is None and config.nlist is None and n < config.exact_below
    ):
        why = (
            "factory override 'Flat'"
            if config.factory == "Flat"
            else f"N={n:,} < exact_below={config.exact_below:,}: too few vectors to train a "
            "useful IVF quantizer"
        )
        reasons["index_type"] = (
            f"exact: {why}; an inner-product scan stored as one inverted list (IVF1,Flat) "
            "so it shards, merges and maps ids exactly like the IVF path"
        )
        reasons["nlist"] = "1: one list scanned in full"
        reasons["codec"] = "Flat: exact scores need the full vectors"
        reasons["merge"] = MERGE_REASONS[config.merge]
        need = n * (4 * d + ID_BYTES)
        return IndexParams(
            factory="IVF1,Flat",
            exact=True,
            nlist=1,
            codec="Flat",
            code_bytes=4 * d,
            train_size=0,
            merge=config.merge,
            estimated_bytes=need,
            reasons=reasons,
        )
    reasons["index_type"] = f"IVF: N={n:,} ≥ exact_below={config.exact_below:,}"
    if config.factory is not None:
        nlist, codec = _parse_factory(config.factory, d)
        if config.nlist is not None and config.nlist != nlist:
            raise ValueError(f"nlist={config.nlist} contradicts factory {config.factory!r}")
        if "x4fs" in codec and config.merge == "ondisk":
            raise ValueError(f"merge=ondisk cannot hold fast-scan codes ({codec}); use PQ<m>")
        factory = config.factory
        hnsw = "_HNSW" in factory
        need = n * (codec_bytes(codec, d) + ID_BYTES) + _quantizer_bytes(nlist, d, hnsw)
        reasons["nlist"] = f"{nlist}: factory override"
        reasons["codec"] = f"{codec}: factory override (estimated {human_size(need)})"
    else:
        if config.nlist is not None:
            nlist, reasons["nlist"] = config.nlist, f"{config.nlist}: override"
        else:
            nlist, why = default_nlist(n)
            reasons["nlist"] = f"{nlist}: {why}"
        hnsw = nlist >= HNSW_QUANTIZER_FROM_NLIST
        codec, need, reasons["codec"] = choose_codec(n, d, nlist, budget, config.merge, hnsw)
        factory = f"IVF{nlist}{'_HNSW32' if hnsw else ''},{codec}"
    if nlist > n:
        raise ValueError(f"nlist={nlist} exceeds the corpus size N={n:,}")
    reasons["coarse_quantizer"] = (
        f"HNSW32: nlist {nlist} ≥ {HNSW_QUANTIZER_FROM_NLIST}, a flat scan of the centroids "
        "would dominate every query and every add"
        if hnsw
        else f"flat: nlist {nlist} centroids are cheap to scan exactly"
    )
    size, reasons["train_sample"] = train_size(nlist, n, config.train_sample_max)
    reasons["merge"] = MERGE_REASONS[config.merge]
    refine = "float16" if codec.startswith("PQ") else None
    return IndexParams(
        factory=factory,
        exact=False,
        nlist=nlist,
        codec=codec,
        code_bytes=codec_bytes(codec, d),
        train_size=size,
        merge=config.merge,
        refine=refine,
        k_factor=REFINE_K_FACTOR if refine else 1,
        estimated_bytes=need,
        reasons=reasons,
    )

"""``report.json`` and ``recall_vs_nprobe.png``: what was built, why, and how well it works.

Machine-readable like autofaiss' infos: the CLI and the run manifest read it, and the
searcher reads its ``serving`` section. ``peak_memory_bytes`` per phase is the peak RSS of
the process that ran the phase, so it is cumulative when phases share a process (as on
FnApiRunner); on Dataflow each phase reports its own worker.
"""

from __future__ import annotations

import io
import json
import resource
from dataclasses import asdict
from typing import TYPE_CHECKING

import faiss

from transforms import fs
from transforms.index.layout import IndexLayout, size_of
from transforms.index.params import IndexConfig, parse_size
from transforms.index.recall import K, PROXY_METHOD

if TYPE_CHECKING:
    from transforms.index.plan import IndexPlan
    from transforms.index.search import ServingInfo
    from transforms.index.stages import Measured, Trained

REPORT_SCHEMA = "embedpipe.index.report/1"


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def write_report(layout: IndexLayout, report: dict) -> None:
    fs.write_bytes(
        layout.report, json.dumps(report, indent=2, sort_keys=True, ensure_ascii=False).encode()
    )


def read_report(layout: IndexLayout) -> dict | None:
    return json.loads(fs.read_bytes(layout.report)) if fs.exists(layout.report) else None


def plot_recall(layout: IndexLayout, report: dict) -> None:
    """Recall@1/@10 and QPS against nprobe, with the target and the chosen nprobe marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recall = report["recall"]
    points = recall["sweep"]
    corpus = recall["corpus_leave_one_out"]["sweep"]
    nprobes = [p["nprobe"] for p in points]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    gate = f"{recall['gate_queries']} queries"
    ax.plot(nprobes, [p["recall_at_10"] for p in points], "o-", label=f"recall@10, {gate}")
    ax.plot(nprobes, [p["recall_at_1"] for p in points], "s--", label=f"recall@1, {gate}")
    ax.plot(nprobes, [p["recall_at_10"] for p in corpus], ".:", color="grey",
            label="recall@10, corpus vectors")
    ax.axhline(recall["target_recall_at_10"], color="grey", lw=0.8, ls=":", label="target")
    if report["chosen_nprobe"] is not None:
        ax.axvline(report["chosen_nprobe"], color="green", lw=0.8, label="chosen nprobe")
    ax.set_xscale("log", base=2)
    ax.set_xticks(nprobes, [str(n) for n in nprobes])
    ax.set_xlabel("nprobe")
    ax.set_ylabel("recall vs exact search")
    ax.set_ylim(0, 1.02)
    qps = ax.twinx()
    qps.plot(nprobes, [p["qps"] for p in points], "^-", color="tab:red", alpha=0.6, label="QPS")
    qps.set_yscale("log")
    qps.set_ylabel("queries/s (batched)")
    handles = ax.get_legend_handles_labels()[0] + qps.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="center right", fontsize=8)
    ax.set_title(f"{report['factory']}  N={report['n']:,}  d={report['d']}", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    fs.write_bytes(layout.plot, buf.getvalue())


def sweep_json(points) -> list[dict]:
    return [
        {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(p).items()}
        for p in points
    ]


def _relative(uri: str, layout: IndexLayout) -> str:
    return uri[len(layout.root) :].lstrip("/")


def assemble_report(
    measured: Measured,
    plan: IndexPlan,
    trained: Trained,
    layout: IndexLayout,
    config: IndexConfig,
    serving: ServingInfo,
) -> dict:
    """Everything the build decided and measured, with the reason for each choice."""
    params, merged = plan.params, measured.merged
    shards = merged.shards
    sizes = measured.list_sizes
    index_bytes = sum(size_of(f) for f in merged.files)
    refine_bytes = (
        sum(size_of(layout.shard_refine(r.shard)) for r in shards) if params.refine else 0
    )
    peaks = {
        "sample": trained.sample_peak_rss,
        "train": trained.peak_rss,
        "add": max(r.peak_rss for r in shards),
        "merge": merged.peak_rss,
        "recall": measured.peak_rss,
    }
    return {
        "schema": REPORT_SCHEMA,
        "faiss_version": faiss.__version__,
        "index_type": "exact" if params.exact else "ivf",
        "factory": params.factory,
        "metric": "inner_product",
        "nlist": params.nlist,
        "codec": params.codec,
        "coarse_quantizer": "hnsw32" if "_HNSW" in params.factory else "flat",
        "refine": (
            {"store": params.refine, "k_factor": params.k_factor, "bytes": refine_bytes}
            if params.refine
            else None
        ),
        "n": plan.n,
        "d": plan.space.dimensionality,
        "shards": len(shards),
        "space": {
            "model": plan.space.model,
            "dimensionality": plan.space.dimensionality,
            "normalized": plan.space.normalized,
        },
        "train_sample_size": trained.sample_size,
        "holdout_queries": len(trained.queries),
        "merge": {"mode": params.merge, "files": [_relative(f, layout) for f in merged.files]},
        "memory_budget": {
            "text": config.memory_budget,
            "bytes": parse_size(config.memory_budget),
            "estimated_index_bytes": params.estimated_bytes,
        },
        "index_bytes": index_bytes,
        "bytes_per_vector": round(index_bytes / plan.n, 1),
        "code_bytes_per_vector": params.code_bytes + 8,
        "imbalance_factor": round(
            float(params.nlist * (sizes**2).sum() / max(sizes.sum(), 1) ** 2), 3
        ),
        "max_list_size": int(sizes.max()),
        "timings_seconds": {
            "sample": round(trained.sample_seconds, 3),
            "train": round(trained.seconds, 3),
            "add": round(sum(r.seconds for r in shards), 3),
            "add_slowest_shard": round(max(r.seconds for r in shards), 3),
            "merge": round(merged.seconds, 3),
            "recall": round(measured.seconds, 3),
        },
        "peak_memory_bytes": {**peaks, "max": max(peaks.values())},
        "threads": {"train": trained.threads, "add": shards[0].threads, "recall": measured.threads},
        "recall": {
            "k": K,
            "gate_queries": "proxy" if trained.gate_method == PROXY_METHOD else "user",
            "queries": len(trained.gate_queries),
            "method": trained.gate_method,
            "target_recall_at_10": config.target_recall_at_10,
            "target_met": measured.chosen is not None,
            "sweep": sweep_json(measured.points),
            "corpus_leave_one_out": {
                "queries": len(trained.queries),
                "held_out": plan.held_out,
                "method": "held-out corpus vectors, each left out of its own answers, vs "
                "exact inner-product search; ties count (flattering: real queries are not "
                "corpus members)",
                "sweep": sweep_json(measured.corpus_points),
            },
        },
        "chosen_nprobe": measured.chosen,
        "reasons": {**params.reasons, "nprobe": measured.reason},
        "config": asdict(config),
        "serving": serving.to_json(),
    }

"""The A/B report's plots (matplotlib, Agg backend: no display needed on a server):

- ``scores.png``: the top-k score distribution of each side, with the threshold map's
  pairs marked (the same percentile on both sides);
- ``overlap.png``: how many queries share how much of their top k between the sides;
- ``recall.png``: recall@k, nDCG@k and MRR@k of each side on the labelled queries.
"""
from __future__ import annotations

import io

from transforms import fs

LEGACY_COLOUR, NEW_COLOUR = "tab:grey", "tab:blue"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, uri: str) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    _pyplot().close(fig)
    fs.write_bytes(uri, buf.getvalue())
    return uri


def _scores(plt, report: dict, per_query: list[dict], uri: str) -> str:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    old = [h["score"] for r in per_query for h in r["legacy"]]
    new = [h["score"] for r in per_query for h in r["new"]]
    ax.hist(old, bins=30, alpha=0.6, color=LEGACY_COLOUR, label=f"{report['legacy']['model']} (legacy)")
    ax.hist(new, bins=30, alpha=0.6, color=NEW_COLOUR, label=f"{report['new']['model']} (new)")
    for pair in report["threshold_map"]:
        ax.axvline(pair["old"], color=LEGACY_COLOUR, lw=0.6, ls=":")
        ax.axvline(pair["new"], color=NEW_COLOUR, lw=0.6, ls=":")
    ax.set_xlabel(f"cosine score of the top {report['k']} results")
    ax.set_ylabel("results")
    ax.set_title("Score distributions (dotted: threshold map, same percentile)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, uri)


def _overlap(plt, report: dict, per_query: list[dict], uri: str) -> str:
    k = report["k"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    values = [r["overlap_at_k"] for r in per_query]
    ax.hist(values, bins=[i / k - 0.5 / k for i in range(k + 2)], color=NEW_COLOUR, rwidth=0.85)
    ax.set_xlabel(f"overlap@{k} between legacy and new results")
    ax.set_ylabel("queries")
    ax.set_title(f"Agreement of the two indexes (mean {report['agreement']['overlap_at_k']})", fontsize=10)
    fig.tight_layout()
    return _save(fig, uri)


def _recall(plt, report: dict, uri: str) -> str:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    m = report["metrics"]
    k = report["k"]
    if m["legacy"] is None:
        ax.text(0.5, 0.5, "no labelled queries in scope:\nsee overlap.png", ha="center", va="center")
        ax.set_axis_off()
    else:
        names = [("recall_at_k", f"recall@{k}"), ("ndcg_at_k", f"nDCG@{k}"), ("mrr_at_k", f"MRR@{k}")]
        xs = range(len(names))
        ax.bar([x - 0.2 for x in xs], [m["legacy"][n] for n, _ in names], 0.4, color=LEGACY_COLOUR,
               label=report["legacy"]["model"])
        ax.bar([x + 0.2 for x in xs], [m["new"][n] for n, _ in names], 0.4, color=NEW_COLOUR,
               label=report["new"]["model"])
        ax.set_xticks(list(xs), [label for _, label in names])
        ax.set_ylim(0, 1.05)
        ax.set_title(f"{report['queries']['labelled']} labelled queries", fontsize=10)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, uri)


def write_plots(out_dir: str, report: dict, per_query: list[dict]) -> dict:
    plt = _pyplot()
    return {
        "scores": _scores(plt, report, per_query, fs.join(out_dir, "scores.png")),
        "overlap": _overlap(plt, report, per_query, fs.join(out_dir, "overlap.png")),
        "recall": _recall(plt, report, fs.join(out_dir, "recall.png")),
    }

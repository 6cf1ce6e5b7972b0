"""`make demo`: build a sample corpus, run the pipeline on the embedded default
(in-process Gemini API emulator, FnApiRunner), print the run summary and the top
results of example queries. Exits non-zero if an expected document is not ranked first.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "scripts"))

from sample_corpus import DEMO_QUERIES, write_corpus  # noqa: E402
from sample_media import write_media  # noqa: E402

OUT = os.path.join(REPO, "demo-out")


def embedpipe(*args: str) -> str:
    cmd = [sys.executable, "-m", "pipeline.cli", *args]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"embedpipe {args[0]} failed with exit code {done.returncode}")
    return done.stdout


def main() -> int:
    shutil.rmtree(OUT, ignore_errors=True)
    corpus = os.path.join(OUT, "corpus")
    output = os.path.join(OUT, "output")
    files = write_corpus(corpus) + write_media(corpus)
    print(f"sample corpus: {len(files)} objects (text, images, video, audio, PDF, records) in {corpus}")
    summary = json.loads(
        embedpipe("run", "--config", "configs/local.yaml", "--sources", corpus, "--output", output)
    )
    current = json.load(open(os.path.join(output, "current.json")))
    run_dir = os.path.join(output, "runs", current["run_id"])
    print("\n== run summary ==")
    print(json.dumps(summary, indent=2))
    print(f"embeddings: {os.path.join(run_dir, 'embeddings')}")
    print(f"index:      {os.path.join(run_dir, 'index')}  (report.json, recall_vs_nprobe.png)")
    print(f"manifest:   {os.path.join(run_dir, 'manifest.json')}")
    failures = 0
    queries = [((q,), q, expected) for q, expected in DEMO_QUERIES] + [
        (("--image", os.path.join(corpus, "media", "zebra.png")), "--image media/zebra.png", "zebra.png"),
        (("--file", os.path.join(corpus, "media", "tone.mp3")), "--file media/tone.mp3", "tone.mp3"),
    ]
    for args, label, expected in queries:
        hits = json.loads(embedpipe("query", "--output", output, *args, "-k", "3", "--json"))
        print(f"\n== query: {label!r} (expect {expected}) ==")
        for rank, hit in enumerate(hits, 1):
            name = os.path.basename(hit["source_uri"])
            print(f"  {rank}. {hit['score']:.4f}  {name}  [{hit['unit']} {hit['start']:g}-{hit['end']:g}]")
        if not hits or os.path.basename(hits[0]["source_uri"]) != expected:
            failures += 1
            print(f"  !! expected {expected} first")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

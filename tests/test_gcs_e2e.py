"""gs:// end to end: every command with sources AND output on GCS (fake-gcs-server),
through google-cloud-storage and Beam's own GCS filesystem, in subprocesses that get only
the emulator's environment variables (no test shim: the CLI itself must complete).

What is checked, beyond exit codes: the run leaves only deterministic object names (no
Beam temp files, nothing renamed), the same counts, chunks and tokens as the same corpus
run locally, checksums in the manifest that match the objects, an incremental rerun that
reads the previous run back from GCS, an index rebuilt in place and served from GCS,
split mode and redrive against a separately running Gemini emulator.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

import media_factory as mf
from gcs_emulator import gcs_emulator  # noqa: F401 (session fixture)
from gcs_run import GcsOutput
from pipeline.emulator import FaultConfig
from run_helpers import (
    LOCAL,
    REPO,
    cli_env,
    deadletters,
    embedpipe,
    embeddings,
    all_embeddings,
    gemini_args,
    ledger,
    only_run,
    planned_keys,
    read_json,
    standalone_emulator,
    start,
    token_sum,
    wait_then_collect,
    write_sample_corpus,
)

pytestmark = pytest.mark.slow

TOLERATE_LOCKED_PDF = ("--set", "deadletter_tolerance=0.1")
FAST = ("--set", "gemini.poll_interval_s=0.05", "--set", "gemini.max_poll_interval_s=0.2",
        "--set", "requests.max_lines_per_file=16")
DETERMINISTIC_NAME = re.compile(
    r"^runs/(active-[0-9a-f]{16}\.json|[0-9TZ]+-[0-9a-f]{6}/("
    r"run\.json|plan\.json|manifest\.json"
    r"|listing/(objects|tombstones)-\d{5}-of-\d{5}\.jsonl"
    r"|deadletters/(chunk|collect|carried)-\d{5}-of-\d{5}\.jsonl"
    r"|requests/(files\.json|req-\d{5}-\d{3}(-r\d+)?\.(jsonl|keys\.parquet|info\.json))"
    r"|ledger/req-\d{5}-\d{3}(-r\d+)?\.json"
    r"|results/req-\d{5}-\d{3}(-r\d+)?\.jsonl"
    r"|embeddings/(part|carried)-\d{5}-of-\d{5}\.parquet"
    r"|index/.+))$|^current\.json$"
)



@pytest.fixture(scope="module")
def local_corpus(tmp_path_factory) -> Path:
    """The 39 sample documents plus a PDF, an MP3, a PNG and a locked (dead-letter) PDF."""
    corpus = write_sample_corpus(tmp_path_factory.mktemp("gcs-corpus"))
    (corpus / "media").mkdir()
    mf.text_pdf(corpus / "media" / "manual.pdf", pages=8)
    mf.audio_file(corpus / "media" / "song.mp3", seconds=6)
    mf.save_image(corpus / "media" / "logo.png", mf.translucent(), "PNG")
    mf.encrypted_pdf(corpus / "media" / "locked.pdf", mf.text_pdf(corpus.parent / "small.pdf", pages=2),
                     user_password="secret", algorithm="AES-256")
    return corpus


@pytest.fixture(scope="module")
def bucket(gcs_emulator, local_corpus) -> GcsOutput:  # noqa: F811
    """One bucket for the module: the corpus under corpus/, runs under out/."""
    out = GcsOutput(gcs_emulator, gcs_emulator.create_bucket())
    out.upload_tree(local_corpus, "corpus")
    return out


def _env(bucket: GcsOutput, **kwargs) -> dict:
    return {**cli_env(**kwargs), **bucket.env}


@pytest.fixture(scope="module")
def gcs_run(bucket, local_corpus, tmp_path_factory):
    """``embedpipe run`` gs:// → gs://, and the same corpus run locally for comparison."""
    sources = f"gs://{bucket.bucket}/corpus/**"
    local_out = tmp_path_factory.mktemp("local") / "out"
    remote = start("run", "--config", LOCAL, "--sources", sources, "--output", bucket.uri,
                   *FAST, *TOLERATE_LOCKED_PDF, env=_env(bucket))
    local = start("run", "--config", LOCAL, "--sources", str(local_corpus), "--output", str(local_out),
                  *FAST, *TOLERATE_LOCKED_PDF, env=cli_env())
    res, local_res = remote.wait(), local.wait()
    assert res.returncode == 0, res.explain()
    assert local_res.returncode == 0, local_res.explain()
    mirror = bucket.mirror(tmp_path_factory.mktemp("mirror"))
    return res, only_run(mirror), only_run(local_out)


def test_run_on_gcs_completes_with_deterministic_objects_only(gcs_run, bucket):
    res, run_dir, _ = gcs_run
    names = sorted(bucket.blobs("out/"))
    stray = [n for n in names if not DETERMINISTIC_NAME.match(n[len("out/"):])]
    assert not stray, f"objects that are not embedpipe's deterministic outputs: {stray}"
    assert not any("beam-temp" in n or "/.tmp" in n for n in names)
    assert "out/current.json" in names
    manifest = read_json(run_dir / "manifest.json")
    for rel, digest in manifest["outputs"].items():  # the manifest's checksums are the objects'
        assert hashlib.sha256((run_dir / rel).read_bytes()).hexdigest() == digest, rel
    assert manifest["engines"]["prepare"]["engine"] == "FnApiRunner"
    assert set(manifest["phases"]) == {"list", "chunk", "plan", "submit", "wait", "collect", "write", "index"}


def test_run_on_gcs_embeds_what_the_same_local_run_embeds(gcs_run, bucket):
    _, run_dir, local_dir = gcs_run
    remote, local = read_json(run_dir / "manifest.json"), read_json(local_dir / "manifest.json")
    assert remote["counts"] == local["counts"]
    assert remote["counts"]["chunked_objects"] == 42 and remote["counts"]["dead_objects"] == 1
    assert remote["tokens"] == local["tokens"]
    table = embeddings(run_dir)
    assert sorted(table.column("chunk_id").to_pylist()) == sorted(planned_keys(run_dir))
    assert token_sum(table) == remote["tokens"]["billed"] > 0
    assert {u.split("/corpus/", 1)[1] for u in table.column("source_uri").to_pylist()} >= {
        "media/manual.pdf", "media/song.mp3", "media/logo.png"}
    assert all(u.startswith(f"gs://{bucket.bucket}/corpus/") for u in table.column("source_uri").to_pylist())
    (dead,) = deadletters(run_dir, "chunk-*.jsonl")
    assert dead["source_uri"].endswith("media/locked.pdf") and dead["error_class"] == "encrypted_pdf"


def test_query_serves_the_index_from_gcs(gcs_run, bucket):
    res = embedpipe("query", "--output", bucket.uri, "--json", "--file",
                    str(REPO / "scripts" / "sample_corpus.py"), env=_env(bucket))
    assert res.returncode == 0, res.explain()
    text_query = embedpipe("query", "--output", bucket.uri, "--json", "-k", "3",
                           "glaciers and ice sheets", env=_env(bucket))
    assert text_query.returncode == 0, text_query.explain()
    hits = json.loads(text_query.stdout)
    assert len(hits) == 3 and all(h["source_uri"].startswith(f"gs://{bucket.bucket}/corpus/") for h in hits)
    assert re.search(r"index: downloaded from gs://\S+/index to a local temp dir", text_query.stderr), text_query.stderr


def test_index_rebuild_replaces_the_index_in_place_on_gcs(gcs_run, bucket):
    _, run_dir, _ = gcs_run
    before = read_json(run_dir / "index" / "report.json")
    res = embedpipe("index", "--output", bucket.uri, env=_env(bucket))
    assert res.returncode == 0, res.explain()
    report = json.loads(res.stdout)
    assert report["n"] == before["n"] > 40 and report["serving"]["nprobe"] is not None
    # the rebuild first deleted the old build's objects (one request each: fake-gcs-server
    # cannot serve the batch delete Beam's FileSystems.delete sends) and left one build
    assert sorted(n for n in bucket.blobs("out/") if "/index/sample/" in n) == []


def test_incremental_rerun_reads_the_previous_run_from_gcs(gcs_run, bucket, tmp_path):
    _, first_dir, _ = gcs_run
    client_bucket = bucket.emulator.client().bucket(bucket.bucket)
    replacement = tmp_path / "logo.png"
    mf.save_image(replacement, mf.gradient(180, 90), "PNG")
    client_bucket.blob("corpus/media/logo.png").upload_from_filename(str(replacement))  # new generation
    client_bucket.blob("corpus/media/song.mp3").delete()
    res = embedpipe("run", "--config", LOCAL, "--sources", f"gs://{bucket.bucket}/corpus/**",
                    "--output", bucket.uri, *FAST, *TOLERATE_LOCKED_PDF, env=_env(bucket))
    assert res.returncode == 0, res.explain()
    mirror = bucket.mirror(tmp_path / "mirror")
    (second,) = [d for d in (mirror / "runs").iterdir() if d.is_dir() and d.name != first_dir.name]
    manifest = read_json(second / "manifest.json")
    c = manifest["counts"]
    assert manifest["previous_run"] == first_dir.name
    # unchanged: 39 documents and the PDF; re-chunked: the new logo and the locked PDF (a
    # dead object is tried again, never carried); the MP3 is a tombstone
    assert (c["unchanged"], c["chunked_objects"], c["dead_objects"], c["tombstoned"]) == (40, 1, 1, 1)
    assert c["carried_rows"] > 0 and c["carried_dead_chunks"] == 0
    table = all_embeddings(second)
    assert not any(u.endswith("song.mp3") for u in table.column("source_uri").to_pylist())
    new = embeddings(second, "part-*.parquet")
    assert [u.rsplit("/", 1)[1] for u in new.column("source_uri").to_pylist()] == ["logo.png"]
    assert manifest["tokens"]["billed"] == token_sum(new) > 0
    assert [d["source_uri"].rsplit("/", 1)[1] for d in deadletters(second, "chunk-*.jsonl")] == ["locked.pdf"]
    assert [p.name for p in (second / "listing").glob("tombstones-*")] == ["tombstones-00000-of-00001.jsonl"]
    assert len(table) == c["carried_rows"] + c["embedded_rows"] == len(set(table.column("chunk_id").to_pylist()))


def test_split_mode_and_redrive_on_gcs(bucket, tmp_path):
    """plan, submit, status, collect, redrive with gs:// in and out, against a Gemini
    emulator in another process (split mode's jobs must outlive the submitting process)."""
    out = f"gs://{bucket.bucket}/split"
    sources = f"gs://{bucket.bucket}/corpus/*.txt"
    plan = embedpipe("plan", "--config", LOCAL, "--sources", sources, "--output", out, env=_env(bucket))
    assert plan.returncode == 0, plan.explain()
    assert json.loads(plan.stdout)["objects"]["listed"] == 39
    keys = sorted(planned_keys(only_run(bucket.mirror(tmp_path / "m0", prefix="split"))))
    doomed = keys[:1]  # fails (retryably) on every attempt until the fault is lifted
    faults = FaultConfig(line_error_keys=doomed, line_error_code=14)
    with standalone_emulator(tmp_path / "emulator", faults=faults) as (server, url, key):
        env = _env(bucket, api_key=key)
        submit = embedpipe("submit", "--config", LOCAL, "--sources", sources, "--output", out, *FAST,
                           "--set", "max_attempts=1", *gemini_args(url), env=env)
        assert submit.returncode == 0, submit.explain()
        run_id = submit.stdout.strip().splitlines()[-1]
        polls, collect = wait_then_collect(out, env)
        print(f"split mode on gs://: {len(polls)} status call(s)")
        assert collect.returncode == 3, collect.explain()  # the doomed key is a dead letter
        run_dir = bucket.mirror(tmp_path / "m1", prefix="split") / "runs" / run_id
        assert [d["chunk_id"] for d in deadletters(run_dir, "collect-*.jsonl")] == doomed
        server.faults.update({"line_error_keys": []})
        again = embedpipe("redrive", "--output", out, "--run", run_id, env=env)
        assert again.returncode == 0, again.explain()
        stats = server.stats()
    run_dir = bucket.mirror(tmp_path / "m2", prefix="split") / "runs" / run_id
    assert deadletters(run_dir, "collect-*.jsonl") == []  # the earlier shard was cleared
    table = embeddings(run_dir)
    assert sorted(table.column("chunk_id").to_pylist()) == keys
    assert stats["billed_tokens"] == token_sum(table)
    assert all(r["state"] == "COLLECTED" for r in ledger(run_dir).values())
    assert json.loads(polls[-1].stdout)["pending"] is False

"""Every command is safe to hand to a newcomer: mistakes fail in seconds with exit 2 and a
message naming the key and the fix, before any listing, chunking or spending (issue 8,
items 4–13). All through the real ``embedpipe`` process.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from gcs_emulator import gcs_emulator  # noqa: F401 (pytest fixture)

from run_helpers import (
    LOCAL,
    REPO,
    cli_env,
    embedpipe,
    fast_forward_jobs,
    only_run,
    read_json,
    run_args,
    run_dirs,
    standalone_emulator,
    start,
)

TEXTS = {
    "glaciers.txt": "Glaciers move slowly downhill under their own weight, carving valleys.",
    "volcanoes.txt": "Volcanoes erupt molten rock, ash and gases from deep inside the earth.",
    "bees.txt": "Honey bees dance to tell their hive where the flowers with nectar are.",
}


@pytest.fixture()
def corpus(tmp_path) -> Path:
    root = tmp_path / "corpus"
    root.mkdir()
    for name, text in TEXTS.items():
        (root / name).write_text(text)
    return root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _in_process(argv: list[str], env: dict) -> tuple[int, bool, str]:
    """(exit code, whether apache_beam was imported, stderr) of ``main(argv)`` in a fresh
    interpreter: proves a mistake is reported before Beam (seconds of start-up) loads."""
    code = ("import sys, json; from pipeline.cli import main; rc = main(sys.argv[1:]); "
            "print(json.dumps([rc, 'apache_beam' in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", code, *argv], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    rc, beam = json.loads(done.stdout.strip().splitlines()[-1])
    return rc, beam, done.stderr


# -- 12. validate first, import late ---------------------------------------------------
@pytest.mark.parametrize("argv, key", [
    (["run", "--config", LOCAL, "--sources", "{corpus}", "--output", "{out}", "--set", "bogus=1"], "bogus"),
    (["run", "--config", LOCAL, "--sources", "{corpus}/nope", "--output", "{out}"], "sources"),
    (["run", "--config", LOCAL, "--sources", "{corpus}", "--output", "{out}",
      "--set", "gemini.base_url=localhost:8765"], "gemini.base_url"),
    (["status", "--output", "{out}/none"], "--output"),
])
def test_config_errors_exit_2_before_beam_is_imported(corpus, tmp_path, argv, key):
    argv = [a.format(corpus=corpus, out=tmp_path / "out") for a in argv]
    rc, beam_imported, stderr = _in_process(argv, cli_env())
    assert rc == 2, stderr
    assert f"embedpipe: {key}" in stderr
    assert not beam_imported, "a config error must not pay Beam's import time"


# -- 5. unknown flags --------------------------------------------------------------------
def test_misspelled_flag_is_refused_with_a_hint(corpus, tmp_path):
    res = embedpipe(*run_args("run", corpus, tmp_path / "out"), "--ouput=/x", env=cli_env())
    assert res.returncode == 2, res.explain()
    assert "--ouput" in res.stderr and "did you mean --output?" in res.stderr
    assert not run_dirs(tmp_path / "out") and not Path("/x").exists()


def test_beam_options_are_checked_in_config_too(corpus, tmp_path):
    res = embedpipe(*run_args("plan", corpus, tmp_path / "out"),
                    "--set", "beam_options=[--direct_num_workrs=2]", env=cli_env())
    assert res.returncode == 2 and "beam_options: unknown option --direct_num_workrs" in res.stderr
    assert "did you mean --direct_num_workers?" in res.stderr


# -- 4. the backend is checked before the prepare stage ----------------------------------
def test_backend_problems_fail_in_seconds_with_the_key_named(corpus, tmp_path):
    out = tmp_path / "out"
    from transforms.limits import DEFAULT_CONFIG_DIR, load_limits_dir

    only_2 = {"gemini-embedding-2": load_limits_dir(DEFAULT_CONFIG_DIR / "limits")["gemini-embedding-2"]}
    with standalone_emulator(tmp_path / "emu", limits_by_model=only_2) as (_server, url, key):
        cases = [
            ({}, ("--set", "backend=gemini", "--set", f"gemini.base_url={url}"),
             "gemini.api_key_env: no Gemini API key"),
            ({"api_key": "wrong-key"}, ("--set", "backend=gemini", "--set", f"gemini.base_url={url}"),
             "gemini.api_key_env: the key in $GEMINI_API_KEY was rejected"),
            ({"api_key": key}, ("--set", "backend=gemini", "--set",
                                f"gemini.base_url=http://127.0.0.1:{_free_port()}"),
             "gemini.base_url: cannot connect to http://127.0.0.1:"),
            ({"api_key": key}, ("--set", "backend=gemini", "--set", f"gemini.base_url={url}",
                                "--set", "model=gemini-embedding-001"),
             "model: gemini-embedding-001 is not served"),
        ]
        for env_kw, extra, message in cases:
            res = embedpipe(*run_args("run", corpus, out), *extra, env=cli_env(**env_kw))
            assert res.returncode == 2, res.explain()
            assert message in res.stderr, res.stderr
            assert "Traceback" not in res.stderr
            assert not run_dirs(out), "nothing may be listed or chunked before the check"
        assert _server.stats()["jobs_created"] == 0


# -- 13. secrets -------------------------------------------------------------------------
def test_a_key_given_as_the_env_var_name_is_refused_and_never_echoed(corpus, tmp_path):
    key = "AIzaSyEmbedpipeTestKey0123456789abcdef"
    res = embedpipe(*run_args("run", corpus, tmp_path / "out"),
                    "--set", f"gemini.api_key_env={key}", env=cli_env())
    assert res.returncode == 2 and "gemini.api_key_env" in res.stderr
    assert key not in res.stdout + res.stderr and key[:12] not in res.stderr
    assert not any(key in p.read_text(errors="ignore")
                   for p in tmp_path.rglob("*") if p.is_file() and p.name != "glaciers.txt")


# -- 10. output errors -------------------------------------------------------------------
def test_output_errors_name_output_and_leave_no_active_run(corpus, tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")
    for output, message in ((a_file, "is a file, not a directory"),
                            (a_file / "below", "cannot write to")):
        res = embedpipe(*run_args("run", corpus, output), env=cli_env())
        assert res.returncode == 2, res.explain()
        assert res.stderr.startswith("embedpipe: output: ") and f"{output} " in res.stderr
        assert message in res.stderr
    out = tmp_path / "out"
    bad = embedpipe(*run_args("run", corpus, out), "--set", "quota.enqueued_tokens=0", env=cli_env())
    assert bad.returncode == 2 and "quota.enqueued_tokens" in bad.stderr
    good = embedpipe(*run_args("run", corpus, out), env=cli_env())
    assert good.returncode == 0, good.explain()
    assert "resuming" not in good.stderr  # a refused validation held no run slot
    assert not list(out.glob("runs/active-*.json"))


def test_ctrl_c_says_how_to_resume_and_the_rerun_resumes(corpus, tmp_path):
    out = tmp_path / "out"
    env = cli_env()
    running = start(*run_args("run", corpus, out), "--set", "emulator.running_seconds=600", env=env)
    deadline = time.monotonic() + 120
    while not any(json.loads(p.read_text()).get("job_name")  # a job exists: under way
                  for p in out.glob("runs/*/ledger/*.json")):
        assert running.proc.poll() is None and time.monotonic() < deadline, running.wait().explain()
        time.sleep(0.1)
    running.proc.send_signal(signal.SIGINT)
    res = running.wait(60)
    assert res.returncode == 1, res.explain()
    run_id = only_run(out).name
    assert f"run {run_id} is resumable: rerun the same command" in res.stderr
    assert fast_forward_jobs(out / ".emulator") >= 1  # the batch service finished meanwhile
    again = embedpipe(*run_args("run", corpus, out), env=env)
    assert again.returncode == 0, again.explain()
    assert f"resuming unfinished run {run_id}" in again.stderr


# -- 6. --set on commands that read or build an existing run -----------------------------
def test_index_accepts_documented_overrides_and_refuses_identity_keys(corpus, tmp_path):
    out = tmp_path / "out"
    env = cli_env()
    assert embedpipe(*run_args("run", corpus, out), env=env).returncode == 0
    for form in (("--set", "index.nprobe=1"), ("--set=index.nprobe=1",)):
        res = embedpipe("index", "--output", str(out), *form, "--set", "index.exact_below=0",
                        "--set", "index.nlist=1", env=env)
        assert res.returncode == 0, res.explain()
        report = json.loads(res.stdout)
        assert report["nlist"] == 1 and report["serving"]["nprobe"] == 1
    res = embedpipe("index", "--output", str(out), "--set", "dimensionality=1536", env=env)
    assert res.returncode == 2 and "cannot change an existing run's dimensionality" in res.stderr


# -- 7. query arguments ------------------------------------------------------------------
def test_query_validates_every_argument(corpus, tmp_path):
    out = tmp_path / "out"
    env = cli_env()
    assert embedpipe(*run_args("run", corpus, out), "--set", "index.enabled=true", env=env).returncode == 0
    for args, message in (
        (("-k", "0", "glaciers"), "argument -k: must be at least 1"),
        (("-k", "-3", "glaciers"), "argument -k: must be at least 1"),
        (("-k", "many", "glaciers"), "argument -k: expected a whole number"),
        (("--image", str(corpus / "bees.txt")), "is text by its content, not an image"),
        (("--file", str(corpus / "missing.pdf")), "does not exist"),
        (("   ",), "TEXT is empty"),
        (("glaciers", "--image", str(corpus / "bees.txt")), "exactly one of"),
    ):
        res = embedpipe("query", "--output", str(out), *args, env=env)
        assert res.returncode == 2, res.explain()
        assert message in res.stderr and "Traceback" not in res.stderr
    hits = json.loads(embedpipe("query", "--output", str(out), "glaciers moving", "-k", "2", "--json",
                                env=env).stdout)
    assert len(hits) == 2 and hits[0]["source_uri"].endswith("glaciers.txt")


# -- 8. empty input ----------------------------------------------------------------------
def test_an_empty_corpus_is_a_valid_run_with_nothing_to_search(tmp_path):
    empty, out = tmp_path / "empty", tmp_path / "out"
    empty.mkdir()
    env = cli_env()
    strict = embedpipe(*run_args("run", f"{empty}/*.txt", out), "--strict", env=env)
    assert strict.returncode == 2 and "matches no objects (--strict)" in strict.stderr
    res = embedpipe(*run_args("run", empty, out), "--set", "index.enabled=true", env=env)
    assert res.returncode == 0, res.explain()
    assert "matches no objects" in res.stderr
    manifest = read_json(only_run(out) / "manifest.json")
    assert manifest["counts"]["embedded_rows"] == 0 and manifest["index"]["built"] is False
    assert read_json(out / "current.json")["run_id"] == only_run(out).name
    query = embedpipe("query", "--output", str(out), "anything", "--json", env=env)
    assert query.returncode == 0 and json.loads(query.stdout) == []
    assert "has no embeddings" in query.stderr and "nothing to search" in query.stderr


def test_after_every_source_is_deleted_query_serves_nothing(corpus, tmp_path):
    out = tmp_path / "out"
    env = cli_env()
    assert embedpipe(*run_args("run", corpus, out), "--set", "index.enabled=true", env=env).returncode == 0
    for path in corpus.iterdir():
        path.unlink()
    res = embedpipe(*run_args("run", corpus, out), "--set", "index.enabled=true", env=env)
    assert res.returncode == 0, res.explain()
    assert json.loads(res.stdout)["deleted_documents"] == len(TEXTS)
    query = embedpipe("query", "--output", str(out), "glaciers", "--json", env=env)
    assert query.returncode == 0 and json.loads(query.stdout) == []


# -- 9. paths and packaging --------------------------------------------------------------
def test_a_copied_config_resolves_its_paths_against_its_own_folder(corpus, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "corpus").symlink_to(corpus, target_is_directory=True)
    config = yaml.safe_load(Path(LOCAL).read_text())
    config.update(sources=["corpus"], output="out")
    (project / "embed.yaml").write_text(yaml.safe_dump(config))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run([*_cli(), "plan", "--config", str(project / "embed.yaml")],
                          cwd=elsewhere, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["objects"]["listed"] == len(TEXTS)
    assert (project / "out" / "runs").is_dir() and not (elsewhere / "out").exists()


def _cli() -> list[str]:
    return [str(Path(sys.executable).parent / "embedpipe")]


@pytest.mark.slow
def test_a_built_wheel_runs_without_the_repository(corpus, tmp_path):
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                    "-q", "-w", str(wheels), str(REPO)], check=True, timeout=600)
    wheel = next(wheels.glob("embedpipe-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(target), str(wheel)], check=True, timeout=600)
    assert (target / "transforms" / "configs" / "limits" / "gemini-embedding-2.yaml").is_file()
    assert (target / "transforms" / "configs" / "pricing.yaml").is_file()
    env = cli_env()
    env["PYTHONPATH"] = str(target)  # the wheel's copy wins over the editable checkout
    code = ("import sys, pipeline; assert pipeline.__file__.startswith(sys.argv[1]), pipeline.__file__;"
            "from pipeline.cli import main; sys.exit(main(sys.argv[2:]))")
    done = subprocess.run([sys.executable, "-c", code, str(target), "plan", "--sources", str(corpus),
                           "--output", str(tmp_path / "out")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "packaged embedded default" in done.stderr
    assert json.loads(done.stdout)["tokens_total"] > 0


# -- 11. GCS without a bucket or credentials ----------------------------------------------
@pytest.mark.slow
def test_gcs_problems_are_one_line_in_seconds(corpus, tmp_path, gcs_emulator):  # noqa: F811
    env = cli_env()
    env.update({k: os.environ[k] for k in ("STORAGE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT")})
    bucket = gcs_emulator.create_bucket()
    for args, message in (
        (run_args("run", corpus, "gs://no-such-bucket/out"), "output: bucket 'no-such-bucket' does not exist"),
        (run_args("run", "gs://no-such-bucket/corpus/**", f"gs://{bucket}/out"),
         "sources: bucket 'no-such-bucket' does not exist"),
        (("status", "--output", "gs://no-such-bucket/out"), "--output: bucket 'no-such-bucket' does not exist"),
    ):
        res = embedpipe(*args, env=env)
        assert res.returncode == 2, res.explain()
        assert res.stderr.strip().splitlines()[-1].startswith("embedpipe: ") and message in res.stderr
        assert "Traceback" not in res.stderr
    no_creds = {k: v for k, v in env.items() if k != "STORAGE_EMULATOR_HOST"}
    no_creds["GOOGLE_APPLICATION_CREDENTIALS"] = str(tmp_path / "missing.json")
    res = embedpipe("status", "--output", f"gs://{bucket}/out", env=no_creds)
    assert res.returncode == 2 and "--output: " in res.stderr and "Traceback" not in res.stderr



# -- an index that cannot be built never loses the billed embeddings ---------------------
def test_a_failed_index_keeps_the_run_and_says_how_to_rebuild(corpus, tmp_path):
    out, env = tmp_path / "out", cli_env()
    res = embedpipe(*run_args("run", corpus, out), "--set", "index.enabled=true",
                    "--set", "index.target_recall_at_10=1.5", env=env)  # unreachable
    assert res.returncode == 1, res.explain()
    run_id = only_run(out).name
    assert f"run {run_id}: the index was not built" in res.stderr and "embedpipe index" in res.stderr
    manifest = read_json(only_run(out) / "manifest.json")
    assert manifest["counts"]["embedded_rows"] == len(TEXTS)
    assert manifest["index"]["built"] is False and "RecallTargetUnreachable" in manifest["index"]["error"]
    assert read_json(out / "current.json")["run_id"] == run_id
    query = embedpipe("query", "--output", str(out), "glaciers", env=env)
    assert query.returncode == 2 and "failed its recall gate" in query.stderr
    assert "embedpipe index" in query.stderr
    rebuilt = embedpipe("index", "--output", str(out), "--set", "index.target_recall_at_10=0.9", env=env)
    assert rebuilt.returncode == 0, rebuilt.explain()
    manifest = read_json(only_run(out) / "manifest.json")  # describes the index now on disk
    assert manifest["index"]["built"] is True and manifest["index"]["ntotal"] == len(TEXTS)
    index_files = sorted(p.relative_to(only_run(out)).as_posix()
                         for p in (only_run(out) / "index").rglob("*") if p.is_file())
    assert sorted(k for k in manifest["outputs"] if k.startswith("index/")) == index_files
    for name in index_files:
        assert manifest["outputs"][name] == hashlib.sha256((only_run(out) / name).read_bytes()).hexdigest()
    again = embedpipe("query", "--output", str(out), "glaciers", "-k", "1", "--json", env=env)
    assert json.loads(again.stdout)[0]["source_uri"].endswith("glaciers.txt")
    failed = embedpipe("index", "--output", str(out), "--set", "index.target_recall_at_10=1.5", env=env)
    assert failed.returncode == 1, failed.explain()  # the manifest says so, as after a run
    manifest = read_json(only_run(out) / "manifest.json")
    assert manifest["index"]["built"] is False and "RecallTargetUnreachable" in manifest["index"]["error"]

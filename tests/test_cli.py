"""The ``embedpipe`` command line as a user (or Airflow) runs it: a real process, its exit
code, what it prints, and what it leaves on disk.

Every exit code the README documents (0, 1, 2, 3, 75); config errors that name the key;
``query`` through ``current.json`` and ``-k``; ``index``; ``embedpipe emulator`` as a
stand-alone server reached over HTTP; the run's money and lineage numbers recomputed from
their sources (``configs/pricing.yaml``, the files themselves); and a search of every
byte the commands wrote or printed for the API key.
"""
from __future__ import annotations

import hashlib
import json
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from google import genai
from google.genai import errors, types

from conftest import REPO
from pipeline.cli import main
from run_helpers import (
    LOCAL,
    EmulatorProcess,
    Result,
    cli_env,
    embedpipe,
    emulator_process,
    gemini_args,
    read_json,
    start,
)

pytestmark = pytest.mark.slow

# Shaped like a real Gemini key; random, so a hit can only be a leak.
LEAK_KEY = "AIzaLEAK" + secrets.token_hex(16)
FAST_POLL = ("--set", "gemini.poll_interval_s=0.05", "--set", "gemini.max_poll_interval_s=0.2")

TOPICS_A = {
    "volcanoes": "Volcanoes erupt when magma rises through the crust, releasing lava, ash and gas.",
    "bees": "Honeybee colonies rely on a queen, thousands of workers and drones that mate.",
    "chess": "The Sicilian Defence is a sharp chess opening that answers e4 with c5.",
    "tea": "Tea bushes grow on misty hillsides; leaves are withered, rolled and oxidised.",
    "glaciers": "Glaciers are rivers of ice that carve valleys as they creep downhill.",
    "bread": "Sourdough bread rises with wild yeast and lactobacilli in a fed starter.",
}
TOPICS_B = {
    "rockets": "Liquid-fuel rockets burn kerosene and oxygen in a combustion chamber.",
    "whales": "Humpback whales sing long songs and migrate to warm breeding waters.",
}


@dataclass
class World:
    """One stand-alone emulator (holding ``LEAK_KEY``) and everything the commands of
    this module printed, for the key scan."""

    root: Path
    emulator: EmulatorProcess
    env: dict
    corpus_a: Path
    corpus_b: Path
    out: Path
    printed: list[Result] = field(default_factory=list)

    def run(self, *args: str) -> Result:
        res = embedpipe(*args, env=self.env)
        self.printed.append(res)
        return res

    def backend(self) -> tuple:
        return (*gemini_args(self.emulator.base_url), *FAST_POLL)

    def output(self, name: str) -> Path:
        """A fresh output directory inside the scanned tree."""
        path = self.root / "outputs" / name
        assert not path.exists()
        return path


def _corpus(directory: Path, docs: dict[str, str]) -> Path:
    directory.mkdir(parents=True)
    for name, text in docs.items():
        (directory / f"{name}.txt").write_text(f"{text}\n\n{text.lower()}\n")
    return directory


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    corpus_b = _corpus(root / "corpus-b", TOPICS_B)
    (corpus_b / "binary.txt").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    with emulator_process(root / "emulator", "-v", "--api-key", LEAK_KEY,
                          "--state-dir", str(root / "emulator-state"), env=cli_env()) as emulator:
        yield World(root, emulator, cli_env(api_key=LEAK_KEY), _corpus(root / "corpus-a", TOPICS_A),
                    corpus_b, root / "out")


@pytest.fixture(scope="module")
def run_a(world) -> Path:
    """A complete run (exit 0): becomes current.json."""
    res = world.run("-v", "run", "--config", LOCAL, "--sources", str(world.corpus_a),
                    "--output", str(world.out), *world.backend())
    assert res.returncode == 0, res.explain()
    current = read_json(world.out / "current.json")
    return world.out / "runs" / current["run_id"]


@pytest.fixture(scope="module")
def run_b(world, run_a) -> tuple[Path, Result]:
    """A run whose dead letter exceeds the tolerance (exit 3), on its own output (a
    completed run becomes current whatever its dead-letter rate)."""
    out = world.output("exit-3")
    res = world.run("run", "--config", LOCAL, "--sources", str(world.corpus_b),
                    "--output", str(out), *world.backend())
    (run_dir,) = [d for d in (out / "runs").iterdir() if d.is_dir()]
    return run_dir, res


def _hits(res: Result) -> list[dict]:
    assert res.returncode == 0, res.explain()
    return json.loads(res.stdout)


def _name(hit: dict) -> str:
    return Path(hit["source_uri"]).stem


# -- exit codes ------------------------------------------------------------------------
def test_exit_0_writes_current_json_and_the_summary(run_a, world):
    assert read_json(world.out / "current.json")["run_id"] == run_a.name
    summary = json.loads(world.printed[0].stdout)
    assert summary["embedded"] == summary["chunks"] == len(TOPICS_A)
    assert summary["dead_letters"] == 0


def test_exit_3_when_dead_letters_exceed_the_tolerance(run_a, run_b, world):
    run_dir, res = run_b
    assert res.returncode == 3, res.explain()
    # a completed run is current whatever its dead-letter rate: the next run carries its rows
    assert read_json(run_dir.parents[1] / "current.json")["run_id"] == run_dir.name
    assert "exceed deadletter_tolerance" in res.stderr and str(run_dir / "deadletters") in res.stderr
    manifest = read_json(run_dir / "manifest.json")
    assert manifest["counts"]["dead_objects"] == 1
    dead = [json.loads(line) for p in (run_dir / "deadletters").glob("chunk*.jsonl") for line in open(p)]
    assert [Path(d["source_uri"]).name for d in dead] == ["binary.txt"]


def test_a_tolerance_above_the_dead_letter_rate_exits_0(world):
    res = world.run("run", "--config", LOCAL, "--sources", str(world.corpus_b), "--output",
                    str(world.output("tolerant")), "--set", "deadletter_tolerance=0.5", *world.backend())
    assert res.returncode == 0, res.explain()


def test_exit_1_when_the_index_misses_its_recall_target(world):
    out = world.output("recall")
    res = world.run("run", "--config", LOCAL, "--sources", str(world.corpus_a), "--output", str(out),
                    "--set", "index.target_recall_at_10=1.5", *world.backend())
    assert res.returncode == 1, res.explain()
    assert "the index was not built" in res.stderr and "best 1.000" in res.stderr
    assert "Traceback" not in res.stderr
    run_id = read_json(out / "current.json")["run_id"]  # the billed embeddings are kept
    assert read_json(out / "runs" / run_id / "manifest.json")["index"]["built"] is False


def test_exit_75_while_jobs_are_pending_then_0(world):
    out = world.output("split")
    world.emulator.admin("faults", {"hold_jobs": "RUNNING"})
    try:
        submit = world.run("submit", "--config", LOCAL, "--sources", str(world.corpus_a),
                           "--output", str(out), *world.backend())
        assert submit.returncode == 0, submit.explain()
        run_id = submit.stdout.strip().splitlines()[-1]
        status = world.run("status", "--output", str(out))
        assert status.returncode == 75, status.explain()
        assert json.loads(status.stdout)["pending"] is True
        collect = world.run("collect", "--output", str(out), "--run", run_id)
        assert collect.returncode == 75, collect.explain()
        assert world.emulator.admin("release", {"wait": True})["idle"] is True
    finally:
        world.emulator.admin("faults", {"hold_jobs": None})
    status = world.run("status", "--output", str(out), "--run", run_id)
    assert status.returncode == 0, status.explain()
    assert json.loads(status.stdout)["pending"] is False
    collect = world.run("collect", "--output", str(out))
    assert collect.returncode == 0, collect.explain()
    assert read_json(out / "current.json")["run_id"] == run_id


CONFIG_ERRORS = [
    (("--set", "dimensionality=5"), "dimensionality: 5 is outside 128..3072"),
    (("--set", "dimensionality=many"), "dimensionality:"),
    (("--set", "no_such_key=1"), "no_such_key: unknown key"),
    (("--set", "quota.enqueued_tokens=0"), "quota.enqueued_tokens:"),
    (("--set", "media.truncated_media=maybe"), "media.truncated_media:"),
    (("--set", "model=gemini-embedding-9"), "model: no limits profile for 'gemini-embedding-9'"),
    (("--set", "runner=SparkRunnr"), "runner: unknown runner"),
    (("--set", "text.overlap_chars=5000"), "text.overlap_chars:"),
    (("--set", "dimensionality"), "--set 'dimensionality': expected key=value"),
]


@pytest.mark.parametrize("override, names", CONFIG_ERRORS, ids=[c[1].split(":")[0] for c in CONFIG_ERRORS])
def test_exit_2_for_a_config_error_names_the_key(tmp_path, capsys, override, names):
    """In-process through ``cli.main`` (what the console script calls) to save each case
    the process's import time; the real process is checked below."""
    code = main(["plan", "--config", LOCAL, "--sources", str(tmp_path), "--output",
                 str(tmp_path / "out"), *override])
    err = capsys.readouterr().err
    assert code == 2, err
    assert names in err and err.startswith("embedpipe: ") and "Traceback" not in err, err
    assert not (tmp_path / "out" / "runs").exists()  # refused before anything was written


def test_exit_2_from_the_real_process_for_config_and_usage_errors(world):
    """The console script's own exit status, side by side (each process mostly imports)."""
    cases = [
        (("plan", "--config", LOCAL, "--sources", str(world.corpus_a), "--output",
          str(world.output("config-error")), "--set", "no_such_key=1"), "no_such_key: unknown key"),
        (("plan", "--config", "/nonexistent/embedpipe.yaml"), "--config"),
        (("status",), "--output"),
        (("status", "--output", "/nonexistent/out"), "--output: /nonexistent/out"),
    ]
    running = [(start(*args, env=world.env), args, names) for args, names in cases]
    for proc, args, names in running:
        res = proc.wait()
        world.printed.append(res)
        assert res.returncode == 2, res.explain()
        assert names in res.stderr and "Traceback" not in res.stderr, (args, res.stderr)
    assert not (world.root / "outputs" / "config-error" / "runs").exists()


# -- query, index --------------------------------------------------------------------------
def test_query_without_run_searches_the_run_current_json_points_to(world, run_a, run_b):
    planned = world.run("plan", "--config", LOCAL, "--sources", str(world.corpus_b),
                        "--output", str(world.out), *world.backend())
    assert planned.returncode == 0, planned.explain()
    newest = max(d for d in (world.out / "runs").iterdir() if d.is_dir())
    assert newest.name > run_a.name  # the newest run is a plan, yet A is current
    hits = _hits(world.run("query", "--output", str(world.out), "--json", TOPICS_B["whales"]))
    assert hits and all(_name(h) in TOPICS_A for h in hits)
    run_dir, _ = run_b
    hits = _hits(world.run("query", "--output", str(run_dir.parents[1]), "--run", run_dir.name,
                           "--json", TOPICS_B["whales"]))
    assert _name(hits[0]) == "whales"


def test_query_k_returns_exactly_k_ranked_hits(world, run_a):
    hits = _hits(world.run("query", "--output", str(world.out), "-k", "3", "--json", TOPICS_A["chess"]))
    assert len(hits) == 3 and _name(hits[0]) == "chess"
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True) and len({h["chunk_id"] for h in hits}) == 3
    res = world.run("query", "--output", str(world.out), "-k", "4", TOPICS_A["tea"])
    assert res.returncode == 0, res.explain()
    lines = res.stdout.strip().splitlines()
    assert [line.split(".")[0].strip() for line in lines] == ["1", "2", "3", "4"]
    assert "tea.txt" in lines[0]


def test_index_rebuilds_the_index_of_a_run(world, run_a):
    out = world.output("reindexed")  # a copy: run A's manifest must keep matching its files
    shutil.copytree(world.out, out)
    run = out / "runs" / run_a.name
    before = read_json(run / "index" / "report.json")
    shutil.rmtree(run / "index")
    res = world.run("index", "--output", str(out), "--run", run_a.name)
    assert res.returncode == 0, res.explain()
    printed = json.loads(res.stdout)
    assert printed == read_json(run / "index" / "report.json")
    assert printed["n"] == before["n"] == len(TOPICS_A)
    assert printed["space"] == before["space"]
    hits = _hits(world.run("query", "--output", str(out), "--run", run_a.name, "--json", TOPICS_A["bees"]))
    assert _name(hits[0]) == "bees"


# -- money and lineage, recomputed from their sources ----------------------------------
def test_cost_is_the_pricing_yaml_rate_times_the_tokens(world, run_a):
    prices = yaml.safe_load((REPO / "configs" / "pricing.yaml").read_text())["gemini-embedding-2"]
    plan = read_json(run_a / "plan.json")
    manifest = read_json(run_a / "manifest.json")

    def cost(tokens: dict) -> tuple[float, float]:
        batch = sum(n / 1e6 * prices[m]["batch"] for m, n in tokens.items())
        interactive = sum(n / 1e6 * prices[m]["interactive"] for m, n in tokens.items())
        return batch, interactive

    assert plan["tokens_by_modality"] == {"text": plan["tokens_total"]} and plan["tokens_total"] > 0
    batch, interactive = cost(plan["tokens_by_modality"])
    assert plan["estimated_cost"]["batch_usd"] == pytest.approx(batch, abs=1e-6)
    assert plan["estimated_cost"]["interactive_usd"] == pytest.approx(interactive, abs=1e-6)
    assert batch == pytest.approx(interactive / 2)  # the Batch API is half price
    billed = manifest["tokens"]["billed_by_modality"]
    emulator_billed = world.emulator.admin("stats")["jobs"]
    run_jobs = [j for j in emulator_billed if run_a.name in j["display_name"]]
    assert sum(billed.values()) == sum(j["billed_tokens"] for j in run_jobs)  # the service's count
    batch_billed, interactive_billed = cost(billed)
    assert manifest["cost"]["billed"]["batch_usd"] == pytest.approx(batch_billed, abs=1e-6)
    assert manifest["cost"]["billed"]["interactive_usd"] == pytest.approx(interactive_billed, abs=1e-6)
    summary = json.loads(world.printed[0].stdout)
    assert summary["cost_usd"]["batch"] == pytest.approx(batch, abs=1e-6)
    assert summary["cost_usd"]["interactive"] == pytest.approx(interactive, abs=1e-6)


def test_manifest_outputs_are_the_sha256_of_every_output_file(run_a):
    manifest = read_json(run_a / "manifest.json")
    on_disk = {
        str(p.relative_to(run_a)): hashlib.sha256(p.read_bytes()).hexdigest()
        for sub in ("requests", "embeddings", "deadletters", "listing", "index", "results")
        for p in sorted((run_a / sub).rglob("*")) if p.is_file()
    }
    assert any(name.startswith("embeddings/part-") for name in on_disk)
    assert any(name.startswith("index/") for name in on_disk)
    assert manifest["outputs"] == on_disk


# -- the emulator command ------------------------------------------------------------------
def test_emulator_command_serves_the_sdk_checks_the_key_and_keeps_state(tmp_path):
    state = tmp_path / "state"
    upload = tmp_path / "hello.jsonl"
    upload.write_text(json.dumps({"key": "a", "request": {"content": {"parts": [{"text": "hi"}]}}}) + "\n")

    def client(url: str, key: str) -> genai.Client:
        return genai.Client(api_key=key, http_options=types.HttpOptions(base_url=url, api_version="v1beta"))

    with emulator_process(tmp_path / "first", "--api-key", "key-one", "--state-dir", str(state),
                          env=cli_env()) as emulator:
        sdk, stranger = client(emulator.base_url, "key-one"), client(emulator.base_url, "wrong-key")
        vector = sdk.models.embed_content(model="gemini-embedding-2", contents="a glacier",
                                          config={"output_dimensionality": 256}).embeddings[0].values
        assert len(vector) == 256
        name = sdk.files.upload(file=str(upload), config={"mime_type": "jsonl"}).name
        with pytest.raises(errors.ClientError) as exc:
            stranger.models.embed_content(model="gemini-embedding-2", contents="x")
        assert exc.value.code == 400 and "API key not valid" in exc.value.message
        assert emulator.stop() == 0  # Ctrl-C stops it cleanly
    with emulator_process(tmp_path / "second", "--api-key", "key-one", "--state-dir", str(state),
                          env=cli_env()) as emulator:
        sdk = client(emulator.base_url, "key-one")
        assert name in {f.name for f in sdk.files.list()}
        again = sdk.models.embed_content(model="gemini-embedding-2", contents="a glacier",
                                         config={"output_dimensionality": 256})
        assert again.embeddings[0].values == vector  # deterministic across processes


# -- the key never leaks ---------------------------------------------------------------
def test_the_api_key_is_in_no_output_ledger_log_or_state(world, run_a, run_b):
    """Everything the commands above wrote (run outputs, ledgers, run.json, the
    emulator's state and logs) and printed (stdout, stderr with -v logging): neither the
    key nor its first half appears anywhere."""
    world.run("-v", "status", "--output", str(world.out), "--run", run_a.name)
    world.run("-v", "query", "--output", str(world.out), "--json", "volcano")
    needles = [LEAK_KEY.encode(), LEAK_KEY[: len(LEAK_KEY) // 2].encode()]
    files = [p for p in world.root.rglob("*") if p.is_file()]
    ledgers = [p for p in files if p.parent.name == "ledger"]
    assert ledgers and any(p.name == "run.json" for p in files) and len(files) > 50
    leaks = [str(p) for p in files for n in needles if n in p.read_bytes()]
    leaks += [f"output of embedpipe {' '.join(r.args[:2])}" for r in world.printed
              for n in needles if n.decode() in r.stdout + r.stderr]
    assert not leaks, f"the API key leaked into: {leaks}"
    assert len(world.printed) >= 5 and any("INFO" in r.stderr for r in world.printed)

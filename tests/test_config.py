"""Config loading: typed values, dotted overrides, and errors that name key and fix."""
from __future__ import annotations

import pytest

from pipeline.config import ConfigError, load_settings
from pathlib import Path

LOCAL = str(Path(__file__).resolve().parents[1] / "configs" / "local.yaml")


def test_local_config_is_the_embedded_default(tmp_path):
    s = load_settings(LOCAL, output=str(tmp_path))
    assert s.config.backend == "emulator"
    assert s.config.model == "gemini-embedding-2"
    assert s.config.dimensionality == 768
    assert s.config.runner == "FnApiRunner"
    assert s.limits.text_tokens == 8192


def test_set_overrides_use_dotted_names_and_yaml_scalars(tmp_path):
    s = load_settings(
        LOCAL, output=str(tmp_path),
        overrides=["dimensionality=1536", "text.target_chars=900", "max_cost_usd=2.5",
                   "gemini.base_url=http://127.0.0.1:9999"],
    )
    assert s.config.dimensionality == 1536
    assert s.config.text.target_chars == 900
    assert s.config.max_cost_usd == 2.5
    assert s.config.gemini.base_url == "http://127.0.0.1:9999"


@pytest.mark.parametrize(
    "override, key",
    [
        ("dimensionality=5000", "dimensionality"),
        ("text.targt_chars=5", "text.targt_chars"),
        ("backend=openai", "backend"),
        ("model=no-such-model", "model"),
        ("text.overlap_chars=5000", "text.overlap_chars"),
        ("runner=DataFlowRunner", "runner"),
        ("dask.workers=0", "dask.workers"),
        ("quota.enqueued_tokens=-1", "quota.enqueued_tokens"),
    ],
)
def test_bad_values_name_the_key(tmp_path, override, key):
    with pytest.raises(ConfigError) as err:
        load_settings(LOCAL, output=str(tmp_path), overrides=[override])
    assert str(err.value).startswith(key)


@pytest.mark.parametrize("runner", ["DirectRunner", "DaskRunner", "FnApiRunner", "DataflowRunner"])
def test_runners_embedpipe_runs_on_are_accepted(tmp_path, runner):
    s = load_settings(LOCAL, output=str(tmp_path), overrides=[f"runner={runner}"])
    assert s.config.runner == runner
    assert s.config.dask.workers == 2  # the local Dask cluster's size when no address is given


def test_missing_file_and_bad_yaml_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="--config"):
        load_settings(str(tmp_path / "nope.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("sources: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(str(bad))


def test_fingerprint_tracks_what_changes_vectors(tmp_path):
    base = load_settings(LOCAL, output=str(tmp_path)).fingerprint()
    assert load_settings(LOCAL, output=str(tmp_path / "x")).fingerprint() == base
    assert load_settings(LOCAL, output=str(tmp_path), overrides=["dimensionality=1536"]).fingerprint() != base
    assert load_settings(LOCAL, output=str(tmp_path), overrides=["text.target_chars=999"]).fingerprint() != base


def test_api_key_comes_only_from_the_named_env_var(tmp_path, monkeypatch):
    s = load_settings(LOCAL, output=str(tmp_path), overrides=["gemini.api_key_env=EMBEDPIPE_TEST_KEY"])
    monkeypatch.delenv("EMBEDPIPE_TEST_KEY", raising=False)
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    with pytest.raises(Exception) as err:
        s.api_key()
    assert "EMBEDPIPE_TEST_KEY" in str(err.value)
    monkeypatch.setenv("EMBEDPIPE_TEST_KEY", "k-123")
    assert s.api_key() == "k-123"

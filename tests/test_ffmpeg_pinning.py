"""The suite does not depend on which ffmpeg comes first on ``PATH``.

The test media are generated with the ``imageio-ffmpeg`` binary and ``conftest.py`` pins
the pipeline to that same binary (``EMBEDPIPE_FFMPEG``) for the tests and every process
they start. Here a fake, "too old" ``ffmpeg`` that fails is put first on ``PATH``:

- pinned, a whole ``embedpipe run`` over audio and video never calls it;
- unpinned, the README's resolution order (``media.ffmpeg_path`` / ``EMBEDPIPE_FFMPEG``,
  then ``PATH``, then the wheel) picks it, and its failure is a dead letter carrying its
  stderr while the run goes on.
"""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

import media_factory as mf
from conftest import PINNED_FFMPEG
from run_helpers import all_embeddings, cli_env, deadletters, embedpipe, only_run, run_args
from transforms.media.ffmpeg_tools import ENV_FFMPEG, resolve_ffmpeg

FAKE_STDERR = "ffmpeg version 2.8.22 (a fake, too old build on PATH)"


@pytest.fixture()
def fake_ffmpeg(tmp_path) -> tuple[Path, Path]:
    """(directory holding a failing ``ffmpeg``, the file it appends to when called)."""
    directory, calls = tmp_path / "old-bin", tmp_path / "fake-ffmpeg-calls.log"
    directory.mkdir()
    script = directory / "ffmpeg"
    script.write_text(f"#!/bin/sh\necho called >> '{calls}'\necho '{FAKE_STDERR}' >&2\nexit 1\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return directory, calls


def _env_with_path_first(directory: Path, pinned: bool) -> dict[str, str]:
    env = cli_env()
    env["PATH"] = f"{directory}{os.pathsep}{env.get('PATH', '')}"
    if not pinned:
        env.pop(ENV_FFMPEG, None)
    return env


def test_resolution_order_with_a_real_path_lookup(fake_ffmpeg, monkeypatch):
    directory, _calls = fake_ffmpeg
    monkeypatch.setenv("PATH", f"{directory}{os.pathsep}{os.environ['PATH']}")
    assert os.environ[ENV_FFMPEG] == PINNED_FFMPEG  # what conftest pins for every test
    assert resolve_ffmpeg() == PINNED_FFMPEG
    assert resolve_ffmpeg("/opt/explicit/ffmpeg") == "/opt/explicit/ffmpeg"  # media.ffmpeg_path
    monkeypatch.delenv(ENV_FFMPEG)
    assert resolve_ffmpeg() == str(directory / "ffmpeg")  # then PATH
    monkeypatch.setenv("PATH", str(directory.parent / "empty"))
    assert resolve_ffmpeg() == PINNED_FFMPEG  # then the wheel's binary


@pytest.fixture(scope="module")
def media_corpus(tmp_path_factory) -> Path:
    corpus = tmp_path_factory.mktemp("pinning") / "corpus"
    corpus.mkdir()
    mf.audio_file(corpus / "tone.flac", seconds=4)
    mf.h264_mp4(corpus / "clip.mp4", seconds=4)
    (corpus / "note.txt").write_text("Field notes about migrating geese and autumn wetlands.\n")
    return corpus


@pytest.mark.slow
def test_a_run_reads_media_with_the_pinned_ffmpeg_whatever_is_on_path(media_corpus, fake_ffmpeg, tmp_path):
    directory, calls = fake_ffmpeg
    out = tmp_path / "out"
    res = embedpipe(*run_args("run", media_corpus, out), env=_env_with_path_first(directory, pinned=True))
    assert res.returncode == 0, res.explain()
    modalities = set(all_embeddings(only_run(out)).column("modality").to_pylist())
    assert modalities == {"audio", "video", "text"}
    assert not calls.exists(), "the ffmpeg on PATH was called"


@pytest.mark.slow
def test_unpinned_the_path_ffmpeg_is_used_and_its_failure_is_a_dead_letter(media_corpus, fake_ffmpeg, tmp_path):
    directory, calls = fake_ffmpeg
    out = tmp_path / "out"
    res = embedpipe(*run_args("run", media_corpus, out), env=_env_with_path_first(directory, pinned=False))
    assert res.returncode == 3, res.explain()  # completed; two of three objects dead-lettered
    assert calls.exists()
    dead = {Path(d["source_uri"]).name: d for d in deadletters(only_run(out))}
    assert set(dead) == {"tone.flac", "clip.mp4"}
    for letter in dead.values():
        assert letter["stage"] == "chunk" and FAKE_STDERR in letter["message"], json.dumps(letter)
    assert all_embeddings(only_run(out)).column("modality").to_pylist() == ["text"]

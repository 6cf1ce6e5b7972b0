"""Shared fixtures: the repo's own limits profiles and chunk settings; one pinned ffmpeg.

The test media are generated with the ffmpeg of the ``imageio-ffmpeg`` wheel, so the
pipeline under test must read them with that same binary, not whatever ``ffmpeg`` comes
first on ``PATH`` (an older system build reads and names things differently). Setting
``EMBEDPIPE_FFMPEG`` here pins it for the tests and for every subprocess they start
(``tests/test_ffmpeg_pinning.py`` proves a different ffmpeg on ``PATH`` changes nothing).
"""
from __future__ import annotations

import importlib.util
import os
import signal
import tempfile
from pathlib import Path

import imageio_ffmpeg
import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"

EMULATOR_KEY = "sk-emulator-SECRET-4242"  # distinctive, so tests can prove it never leaks

PINNED_FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
os.environ["EMBEDPIPE_FFMPEG"] = PINNED_FFMPEG

# Tests stop embedpipe processes with Ctrl-C (SIGINT) as a user would. A CI that starts
# the suite in the background (a non-interactive shell's `&`, nohup) hands it SIGINT
# ignored, which every child would inherit and Python would keep: give the suite Python's
# own handler, so the children it starts get the default disposition at exec.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# Never let google-auth probe a metadata server from tests.
os.environ.setdefault("NO_GCE_CHECK", "true")

# tests/airflow_provider/ runs in the Airflow venv (`make test-airflow`); the base venv has
# no Airflow and must not try to import it. Where Airflow is installed, tests that import
# it in-process get a throwaway AIRFLOW_HOME instead of writing into ~/airflow.
if importlib.util.find_spec("airflow"):
    collect_ignore: list[str] = []
    os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="airflow-home-")
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
else:
    collect_ignore = ["airflow_provider"]


@pytest.fixture(scope="session")
def limits_by_model():
    from transforms.limits import load_limits_dir

    return load_limits_dir(str(CONFIGS / "limits"))


@pytest.fixture(scope="session")
def limits(limits_by_model):
    return limits_by_model["gemini-embedding-2"]


@pytest.fixture()
def chunk_settings(limits):
    from transforms.settings import ChunkSettings

    return ChunkSettings(limits=limits)


@pytest.fixture(scope="session")
def server():
    """One in-process Gemini API emulator for the SDK and client tests (reset per test)."""
    from pipeline.emulator import EmulatorServer

    with EmulatorServer(api_key=EMULATOR_KEY) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _fresh_emulator(request):
    if "server" in request.fixturenames:
        request.getfixturevalue("server").reset()

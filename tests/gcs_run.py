"""gs:// runs for end-to-end tests: a fake-gcs-server bucket, the environment a subprocess
needs to reach it, and a local mirror of what a run left there (so the same assertions as
for local outputs apply).

Usage in a test module::

    from gcs_emulator import gcs_emulator  # noqa: F401 (session fixture)
    from gcs_run import gcs_output  # noqa: F401

    def test_something(gcs_output, tmp_path):
        subprocess.run([..., "--output", gcs_output.uri], env={**os.environ, **gcs_output.env})
        run_dir = only_run(gcs_output.mirror(tmp_path / "mirror"))

``gcs_output.env`` holds exactly what a child process needs (``STORAGE_EMULATOR_HOST`` with
its scheme, ``NO_GCE_CHECK``, ``GOOGLE_CLOUD_PROJECT``, ``NO_PROXY``): embedpipe itself
makes Beam's GcsIO anonymous when ``STORAGE_EMULATOR_HOST`` is set, so nothing else (no
sitecustomize, no monkeypatch) is needed in the child.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from gcs_emulator import PROJECT, GcsEmulator

EMULATOR_ENV_VARS = ("STORAGE_EMULATOR_HOST", "NO_GCE_CHECK", "GOOGLE_CLOUD_PROJECT", "NO_PROXY", "no_proxy")


@dataclass(frozen=True)
class GcsOutput:
    """A fresh bucket on the session's fake-gcs-server, with ``uri`` = gs://<bucket>/out."""

    emulator: GcsEmulator
    bucket: str

    @property
    def uri(self) -> str:
        return f"gs://{self.bucket}/out"

    @property
    def env(self) -> dict[str, str]:
        """Environment variables a subprocess needs to use this emulator."""
        env = {k: os.environ[k] for k in EMULATOR_ENV_VARS if k in os.environ}
        env.setdefault("STORAGE_EMULATOR_HOST", self.emulator.url)
        env.setdefault("NO_GCE_CHECK", "true")
        env.setdefault("GOOGLE_CLOUD_PROJECT", PROJECT)
        return env

    def blobs(self, prefix: str = "") -> dict[str, object]:
        return {b.name: b for b in self.emulator.client().list_blobs(self.bucket, prefix=prefix)}

    def upload_tree(self, local_dir: Path, prefix: str) -> list[str]:
        """Upload every file under ``local_dir`` to gs://<bucket>/<prefix>/...; returns URIs."""
        bucket = self.emulator.client().bucket(self.bucket)
        uris = []
        for path in sorted(Path(local_dir).rglob("*")):
            if path.is_file():
                name = f"{prefix.strip('/')}/{path.relative_to(local_dir).as_posix()}"
                bucket.blob(name).upload_from_filename(str(path))
                uris.append(f"gs://{self.bucket}/{name}")
        return uris

    def mirror(self, local_dir: Path, prefix: str = "out") -> Path:
        """Download everything under gs://<bucket>/<prefix>/ into ``local_dir`` (same
        relative layout, replacing an earlier mirror) and return ``local_dir``."""
        local_dir = Path(local_dir)
        shutil.rmtree(local_dir, ignore_errors=True)
        for name, blob in self.blobs(prefix.strip("/") + "/").items():
            target = local_dir / name[len(prefix.strip("/")) + 1:]
            target.parent.mkdir(parents=True, exist_ok=True)
            blob.download_to_filename(str(target))
        return local_dir


@pytest.fixture()
def gcs_output(gcs_emulator) -> GcsOutput:
    """A fresh, empty bucket on the session's fake-gcs-server, for one test's run output."""
    return GcsOutput(gcs_emulator, gcs_emulator.create_bucket())

"""``runner: DirectRunner`` (or ``--runner=DirectRunner``, a Beam habit) is accepted and runs
on FnApiRunner at once, saying so in the run log; Beam's own DirectRunner would first try
to download Prism with no timeout, which hangs behind a firewall that drops packets. The
test puts such a black hole in the way of every download and checks nobody knocked."""
from __future__ import annotations

import socket
import threading
import urllib.request

import pytest

from run_helpers import LOCAL, cli_env, embedpipe, embeddings, only_run, planned_keys, read_json

pytestmark = pytest.mark.slow
PRISM_URL = "https://github.com/apache/beam/releases/download/v2.77.0/apache_beam-v2.77.0-prism-linux-amd64.zip"


class BlackHole:
    """A proxy that accepts connections and never answers (a packet-dropping firewall, as
    far as a client without a timeout can tell). Counts who connected."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections.append(conn)  # held open, never answered

    def close(self):
        self.sock.close()
        for conn in self.connections:
            conn.close()


@pytest.fixture()
def black_hole():
    hole = BlackHole()
    yield hole
    hole.close()


def test_the_black_hole_stalls_a_download_without_timeout(black_hole):
    """The hazard is real: through this proxy, a download only ends by its own timeout."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"https": black_hole.url}))
    with pytest.raises(OSError, match="timed out"):
        opener.open(PRISM_URL, timeout=2)
    assert len(black_hole.connections) == 1


def test_direct_runner_runs_on_fnapi_without_attempting_the_prism_download(black_hole, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(5):
        (docs / f"d{i}.txt").write_text(f"Document {i} about rivers, deltas and sediment. " * 20)
    env = {**cli_env(), "https_proxy": black_hole.url, "HTTPS_PROXY": black_hole.url,
           "http_proxy": black_hole.url, "HTTP_PROXY": black_hole.url,
           "no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost"}
    res = embedpipe("run", "--config", LOCAL, "--sources", str(docs), "--output", str(tmp_path / "out"),
                    "--runner=DirectRunner", "--set", "index.enabled=false", env=env, timeout=240)
    assert res.returncode == 0, res.explain()
    assert black_hole.connections == []  # no download was even attempted
    assert "engine: FnApiRunner (runner: DirectRunner" in res.stderr
    run_dir = only_run(tmp_path / "out")
    manifest = read_json(run_dir / "manifest.json")
    assert {e["runner"] for e in manifest["engines"].values()} == {"DirectRunner"}
    assert {e["engine"] for e in manifest["engines"].values()} == {"FnApiRunner"}
    assert sorted(embeddings(run_dir).column("chunk_id").to_pylist()) == sorted(planned_keys(run_dir))

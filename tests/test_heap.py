"""The launching process gives large freed buffers back to the system (glibc), so a local
prepare's peak memory is its largest stage's, not the sum of its stages'."""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# A 16 MiB buffer freed first (glibc's dynamic threshold rises to 16 MiB), then 64 buffers of
# 1 MiB, each followed by a small block that stays (live data above it), freed together: how
# many MiB go back to the system?
FREED_MIB = """
import sys
from pipeline.heap import return_freed_buffers

def anon():
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("RssAnon:"))

if sys.argv[1] == "fixed":
    assert return_freed_buffers()
big = bytearray(16 << 20)
del big
blocks, kept = [], []
for _ in range(64):
    blocks.append(bytearray(1 << 20))
    kept.append(bytearray(1024))
before = anon()
del blocks
print((before - anon()) >> 20)
"""


def _mib_given_back(mode: str) -> int:
    """In a child with glibc's defaults: a ``MALLOC_*_`` variable (Dask's nanny sets
    ``MALLOC_TRIM_THRESHOLD_``) already fixes the threshold."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", FREED_MIB, mode], cwd=REPO, env=env, check=True,
                         capture_output=True, text=True).stdout
    return int(out)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_freed_large_buffers_go_back_to_the_system_once_the_threshold_is_fixed():
    assert _mib_given_back("dynamic") < 8  # glibc's default keeps them in the heap
    assert _mib_given_back("fixed") >= 60

"""``python -m embedpipe_airflow.run_files URI...``: the JSON files of a run, printed as one
JSON array (see ``EmbedpipeHook.read_run_files``).

The operators read a run's plan and manifest through this child rather than in their own
process: it gets the environment and working directory of the ``embedpipe`` children, so it
reads the storage they wrote to (a ``STORAGE_EMULATOR_HOST`` given in ``env``, a relative
output under ``cwd``).
"""
from __future__ import annotations

import json
import sys


def read(uri: str):
    """A local file directly: importing Beam's filesystems (for anything else, through
    embedpipe's own reader) costs about a second of start-up."""
    if "://" not in uri:
        with open(uri, "rb") as fh:
            return json.load(fh)
    from pipeline.run_layout import read_json

    return read_json(uri)


def main(uris: list[str]) -> int:
    json.dump([read(uri) for uri in uris], sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

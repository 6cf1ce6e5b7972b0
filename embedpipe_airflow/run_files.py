"""``python -m embedpipe_airflow.run_files URI...``: the JSON files of a run, printed as one
JSON array (see ``EmbedpipeHook.read_run_files``).

The operators read a run's plan and manifest through this child rather than in their own
process: it gets the environment and working directory of the ``embedpipe`` children, so it
reads the storage they wrote to (a ``STORAGE_EMULATOR_HOST`` given in ``env``, a relative
output under ``cwd``), and Beam's GCS client stays out of Airflow's task process.
"""
from __future__ import annotations

import json
import sys

from pipeline.run_layout import read_json


def main(uris: list[str]) -> int:
    json.dump([read_json(uri) for uri in uris], sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

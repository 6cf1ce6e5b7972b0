"""Airflow 3 provider for embedpipe: operators, a deferrable wait and its trigger.

Installed with ``pip install 'embedpipe[airflow]'``; the base package never imports it.
Every step runs the ``embedpipe`` command line in a child process (see ``hooks``), so the
Gemini API key only ever exists in the environment of that child, on the worker or
triggerer that launches it, and Beam, ffmpeg and FAISS never run inside Airflow's own
task process.

This module must stay importable without Airflow: Airflow's provider discovery calls
``get_provider_info`` through the ``apache_airflow_provider`` entry point in setup.py.
"""


def get_provider_info() -> dict:
    return {
        "package-name": "embedpipe",
        "name": "embedpipe",
        "description": "Batch embedding with Gemini Embedding 2: submit, deferrable wait, collect.",
        "integrations": [{"integration-name": "embedpipe", "tags": ["software"]}],
        "operators": [
            {"integration-name": "embedpipe", "python-modules": ["embedpipe_airflow.operators"]}
        ],
        "sensors": [{"integration-name": "embedpipe", "python-modules": ["embedpipe_airflow.sensors"]}],
        "triggers": [
            {"integration-name": "embedpipe", "python-modules": ["embedpipe_airflow.triggers"]}
        ],
        "hooks": [{"integration-name": "embedpipe", "python-modules": ["embedpipe_airflow.hooks"]}],
        "connection-types": [
            {
                "connection-type": "embedpipe",
                "hook-class-name": "embedpipe_airflow.hooks.EmbedpipeHook",
                "hook-name": "embedpipe (Gemini API key)",
            }
        ],
    }

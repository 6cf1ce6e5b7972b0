"""Local emulator of the Gemini API (Files, embeddings, batch jobs) for the SDK to talk to.

The project's embedded default backend and the test double for everything: the pipeline
reaches it through the unmodified ``google-genai`` SDK with a ``base_url``.
"""
from pipeline.emulator.faults import FaultConfig, HttpFault
from pipeline.emulator.server import EmulatorServer, serve_forever

__all__ = ["EmulatorServer", "FaultConfig", "HttpFault", "serve_forever"]

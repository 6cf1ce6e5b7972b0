"""The one error type chunkers raise for bad input; the Chunk stage turns it into a dead letter."""
from __future__ import annotations


class ChunkingError(Exception):
    """Bad or unsupported input. ``error_class`` is a short machine-readable reason
    (e.g. ``corrupt_media``, ``undecodable_text``); ``message`` is for humans."""

    def __init__(self, error_class: str, message: str):
        super().__init__(f"{error_class}: {message}")
        self.error_class = error_class
        self.message = message

"""The one exception chunkers raise for input they refuse.

The Chunk DoFn turns a ``ChunkingError`` into a dead letter carrying ``error_class`` and
``message``; any other exception is a bug (or a broken worker) and should fail loudly.
"""

from __future__ import annotations

CORRUPT_MEDIA = "corrupt_media"
UNSUPPORTED_TYPE = "unsupported_type"
ENCRYPTED_PDF = "encrypted_pdf"
TRUNCATED_MEDIA = "truncated_media"
TOO_LARGE = "too_large"
MEDIA_TIMEOUT = "media_timeout"
MISSING_DEPENDENCY = "missing_dependency"


class ChunkingError(Exception):
    """Bad input: ``error_class`` is a stable dead-letter code, ``message`` is for humans."""

    def __init__(self, error_class: str, message: str):
        super().__init__(f"{error_class}: {message}")
        self.error_class = error_class
        self.message = message

    def __reduce__(self):
        # Beam may pickle exceptions between workers; keep both fields.
        return (ChunkingError, (self.error_class, self.message))

"""The one exception chunkers raise for input they refuse.

The Chunk DoFn turns a ``ChunkingError`` into a dead letter carrying ``error_class`` and
``message``; any other exception is a bug (or a broken worker) and should fail loudly.
"""

from __future__ import annotations

import errno

from google.api_core import exceptions as api_exceptions

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

# Listing and reference problems: the object is never opened (or could not be).
BROKEN_SYMLINK = "broken_symlink"
SYMLINK_LOOP = "symlink_loop"
PERMISSION_DENIED = "permission_denied"
NOT_FOUND = "not_found"
UNREADABLE = "unreadable"
OUTSIDE_SOURCES = "outside_sources"
UNDECODABLE_NAME = "undecodable_name"
BAD_REFERENCE = "bad_reference"
# Skip reasons (status ``skipped``, no dead letter): not a regular file, so never opened.
SPECIAL_FILE = "special_file"
DIRECTORY_SYMLINK = "directory_symlink"


# What reading one object may raise that concerns that object alone: an OS error locally;
# on gs://, the object deleted since the listing (404) or refused to this
# identity (403). A live bucket changes under a run, so these are dead letters, not crashes.
READ_ERRORS = (OSError, api_exceptions.NotFound, api_exceptions.Forbidden)


def read_error_class(exc: BaseException) -> str:
    """The dead-letter class of a ``READ_ERRORS`` error met while opening or reading an object."""
    if isinstance(exc, (PermissionError, api_exceptions.Forbidden)):
        return PERMISSION_DENIED
    if isinstance(exc, (FileNotFoundError, api_exceptions.NotFound)):
        return NOT_FOUND
    if getattr(exc, "errno", None) == errno.ELOOP:
        return SYMLINK_LOOP
    return UNREADABLE


def read_error_message(exc: BaseException) -> str:
    """What went wrong, in the OS's or the storage service's own words."""
    if isinstance(exc, api_exceptions.GoogleAPICallError):
        return f"{exc.code} {exc.message}"
    return exc.strerror or str(exc)

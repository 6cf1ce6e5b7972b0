"""PDF → chunks of at most ``limits.pdf_pages`` pages, written with pypdf.

Pages are read lazily from an open file (given a *path*, pypdf reads the whole file into
memory) and written one range at a time, so memory holds one chunk. A range over the byte
cap (scanned pages) is halved until it fits; a single page that does not fit is refused.
Chunks written from a decrypted reader are not encrypted.
"""

from __future__ import annotations

import io
from contextlib import contextmanager
from typing import Iterator

from pypdf import PasswordType, PdfReader, PdfWriter
from pypdf.errors import DependencyError, FileNotDecryptedError, PyPdfError

from transforms.chunk_errors import (
    CORRUPT_MEDIA,
    ENCRYPTED_PDF,
    MISSING_DEPENDENCY,
    TOO_LARGE,
    ChunkingError,
)
from transforms.media.chunk_builder import media_chunk
from transforms.types import Chunk, Locator, SourceObject

MIME = "application/pdf"
# pypdf repairs a damaged PDF by reading it whole: it searches backwards for a missing
# %%EOF marker and rebuilds a broken cross-reference table from the whole file in memory (a
# 1 GB damaged file peaked at 2.3 GB). Files up to this size get that second chance; a
# larger one must end with %%EOF (within EOF_SEARCH_BYTES) and have a usable table.
REPAIR_MAX_BYTES = 64 << 20
EOF_SEARCH_BYTES = 1 << 20


def _refuse_unbounded_repair(stream) -> None:
    size = stream.seek(0, 2)
    if size > REPAIR_MAX_BYTES:
        stream.seek(max(0, size - EOF_SEARCH_BYTES))
        if b"%%EOF" not in stream.read(EOF_SEARCH_BYTES):
            raise ChunkingError(
                CORRUPT_MEDIA,
                f"no %%EOF marker at the end of this {size}-byte file: it looks truncated "
                "(fix: download or export it again)",
            )
    stream.seek(0)


class _BoundedReader(PdfReader):
    def _rebuild_xref_table(self, stream) -> None:
        size = stream.seek(0, 2)
        if size > REPAIR_MAX_BYTES:
            raise ChunkingError(
                CORRUPT_MEDIA,
                f"the cross-reference table is broken and the file is {size} bytes: rebuilding "
                f"it would read it whole (limit {REPAIR_MAX_BYTES}; fix: repair it, e.g. qpdf)",
            )
        super()._rebuild_xref_table(stream)


@contextmanager
def _pdf_failures_as_chunking_errors():
    try:
        yield
    except ChunkingError:
        raise
    except FileNotDecryptedError as err:
        raise ChunkingError(ENCRYPTED_PDF, f"the PDF needs a password: {err}") from err
    except DependencyError as err:  # not a PyPdfError: AES without the cryptography package
        raise ChunkingError(MISSING_DEPENDENCY, f"{err} (install pypdf[crypto])") from err
    except PyPdfError as err:
        raise ChunkingError(CORRUPT_MEDIA, f"pypdf cannot read the PDF: {err}") from err
    except Exception as err:  # damaged files also raise KeyError, ValueError, RecursionError...
        raise ChunkingError(CORRUPT_MEDIA, f"pypdf failed: {type(err).__name__}: {err}") from err


def _open(stream) -> PdfReader:
    """Open, trying the empty user password that many 'protected' PDFs carry."""
    _refuse_unbounded_repair(stream)
    reader = _BoundedReader(stream)
    if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
        raise ChunkingError(
            ENCRYPTED_PDF, "the PDF is password-protected (a user password is required)"
        )
    return reader


def _write_pages(reader: PdfReader, first: int, last: int) -> bytes:
    writer = PdfWriter()
    for index in range(first, last):
        writer.add_page(reader.pages[index])
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def _fitting_ranges(reader: PdfReader, first: int, last: int, max_bytes: int):
    """``(first, last, bytes)`` of page ranges ``[first, last)`` each within ``max_bytes``."""
    data = _write_pages(reader, first, last)
    if len(data) <= max_bytes:
        yield first, last, data
        return
    if last - first == 1:
        raise ChunkingError(
            TOO_LARGE,
            f"page {first + 1} alone is {len(data)} bytes, over inline_max_bytes={max_bytes}",
        )
    middle = (first + last) // 2
    yield from _fitting_ranges(reader, first, middle, max_bytes)
    yield from _fitting_ranges(reader, middle, last, max_bytes)


def chunk_pdf(source: SourceObject, local_path: str, settings) -> Iterator[Chunk]:
    """Yield page-range chunks of ``source`` in page order."""
    with open(local_path, "rb") as stream, _pdf_failures_as_chunking_errors():
        reader = _open(stream)
        pages = len(reader.pages)
        if pages == 0:
            raise ChunkingError(CORRUPT_MEDIA, "the PDF has no pages")
        if pages > settings.pdf_max_pages:
            raise ChunkingError(
                TOO_LARGE, f"{pages} pages, over pdf_max_pages={settings.pdf_max_pages}"
            )
        step = settings.limits.pdf_pages
        for start in range(0, pages, step):
            ranges = _fitting_ranges(
                reader, start, min(start + step, pages), settings.inline_max_bytes
            )
            for first, last, data in ranges:
                locator = Locator(unit="pages", start=float(first + 1), end=float(last))
                yield media_chunk(source, settings, "pdf", MIME, locator, data)

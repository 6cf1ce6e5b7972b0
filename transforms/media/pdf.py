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
    reader = PdfReader(stream)
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

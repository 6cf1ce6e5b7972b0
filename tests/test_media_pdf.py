"""PDF chunking on generated documents; pages are counted without pypdf."""
from __future__ import annotations

import math
import os

import pytest

import media_factory as mf
from independent_probes import part_bytes, pdf_page_count
from transforms.chunk_errors import ChunkingError
from transforms.media.pdf import chunk_pdf
from transforms.types import SourceObject

PAGES = 50
PER_CHUNK = mf.SMALL_LIMITS.pdf_pages


def source_for(path: str, generation: str = "1") -> SourceObject:
    return SourceObject(
        uri=f"gs://bucket/{os.path.basename(path)}",
        size_bytes=os.path.getsize(path),
        generation=generation,
        detected_type="pdf",
    )


def chunks_of(path: str, **settings):
    return list(chunk_pdf(source_for(path), path, mf.small_settings(**settings)))


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("pdf")
    text = mf.text_pdf(d / "text50.pdf", PAGES)
    return {
        "text": text,
        "user_password": mf.encrypted_pdf(d / "secret.pdf", text, "secret", "AES-128"),
        "user_password_rc4": mf.encrypted_pdf(d / "secret_rc4.pdf", text, "secret", "RC4-128"),
        "empty_password": mf.encrypted_pdf(d / "open_aes.pdf", text, "", "AES-256"),
        "truncated": mf.truncated_copy(d / "truncated.pdf", text),
        "text_as_pdf": mf.text_file(d / "notes.pdf"),
        "header_only": mf.write_bytes(d / "header.pdf", b"%PDF-1.7\n%%EOF\n"),
        "zero": mf.write_bytes(d / "zero.pdf", b""),
        "scanned": mf.image_pdf(d / "scanned.pdf", pages=4),
    }


def assert_page_chunks(chunks, pages):
    assert len(chunks) == math.ceil(pages / PER_CHUNK)
    expected_start = 1
    for chunk in chunks:
        data = part_bytes(chunk)
        assert (chunk.modality, chunk.mime_type) == ("pdf", "application/pdf")
        assert chunk.locator.unit == "pages" and chunk.locator.start == expected_start
        count = int(chunk.locator.end - chunk.locator.start + 1)
        assert pdf_page_count(data) == count <= PER_CHUNK
        assert chunk.est_tokens == 258 * count
        assert len(data) <= mf.small_settings().inline_max_bytes
        assert b"/Encrypt" not in data
        expected_start = int(chunk.locator.end) + 1
    assert expected_start == pages + 1


def test_fifty_pages_become_six_page_chunks(media):
    chunks = chunks_of(media["text"])
    assert_page_chunks(chunks, PAGES)
    assert [(c.locator.start, c.locator.end) for c in chunks][-2:] == [(43.0, 48.0), (49.0, 50.0)]


def test_chunk_ids_are_stable(media):
    first = [c.chunk_id for c in chunks_of(media["text"])]
    assert first == [c.chunk_id for c in chunks_of(media["text"])]
    assert len(set(first)) == len(first)


def test_empty_user_password_opens_and_chunks_are_unencrypted(media):
    assert_page_chunks(chunks_of(media["empty_password"]), PAGES)


@pytest.mark.parametrize("name", ["user_password", "user_password_rc4"])
def test_password_protected_is_refused(media, name):
    with pytest.raises(ChunkingError) as caught:
        chunks_of(media[name])
    assert caught.value.error_class == "encrypted_pdf"
    assert "password" in caught.value.message


@pytest.mark.parametrize(
    "name, fragment",
    [
        ("truncated", "pypdf"),
        ("text_as_pdf", "pypdf"),
        ("header_only", "startxref"),
        ("zero", "empty"),
    ],
)
def test_corrupt_pdfs_carry_the_pypdf_reason(media, name, fragment):
    with pytest.raises(ChunkingError) as caught:
        chunks_of(media[name])
    assert caught.value.error_class == "corrupt_media"
    assert fragment in caught.value.message


def test_page_count_guard(media):
    with pytest.raises(ChunkingError) as caught:
        chunks_of(media["text"], pdf_max_pages=49)
    assert caught.value.error_class == "too_large" and "50 pages" in caught.value.message


def test_chunks_over_the_byte_cap_are_split_into_fewer_pages(media):
    page_bytes = os.path.getsize(media["scanned"]) / 4
    cap = int(page_bytes * 2.5)  # room for two scanned pages, not four
    chunks = chunks_of(media["scanned"], inline_max_bytes=cap)
    assert [(c.locator.start, c.locator.end) for c in chunks] == [(1.0, 2.0), (3.0, 4.0)]
    assert all(len(part_bytes(c)) <= cap and pdf_page_count(part_bytes(c)) == 2 for c in chunks)
    with pytest.raises(ChunkingError) as caught:
        chunks_of(media["scanned"], inline_max_bytes=int(page_bytes / 2))
    assert caught.value.error_class == "too_large" and "page 1 alone" in caught.value.message


def test_chunks_are_written_one_at_a_time(media, monkeypatch):
    from transforms.media import pdf

    written = []
    real = pdf._write_pages
    monkeypatch.setattr(pdf, "_write_pages", lambda r, a, b: written.append((a, b)) or real(r, a, b))
    generator = chunk_pdf(source_for(media["text"]), media["text"], mf.small_settings())
    first = next(generator)
    assert (first.locator.start, first.locator.end) == (1.0, 6.0)
    assert written == [(0, 6)]  # nothing beyond the chunk being handed out
    generator.close()

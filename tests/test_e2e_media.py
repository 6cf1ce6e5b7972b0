"""End to end with every modality: a mixed folder of generated media (nothing committed)
runs through the emulator; every chunk is embedded, every bad input is a dead letter,
and every inline media part of every request file is within the limits by an
independent probe."""
from __future__ import annotations

import base64
import dataclasses
import glob
import io
import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from pypdf import PdfReader

import media_factory as mf
from independent_probes import image_format_size, mp3_seconds, mp4_seconds, pdf_page_count, wav_seconds
from pipeline.cli import main
from pipeline.emulator.state import Store
from transforms.plan_requests import STAGED_SCHEME

REPO = Path(__file__).resolve().parents[1]
LOCAL = str(REPO / "configs" / "local.yaml")
LIMITS = mf.SMALL_LIMITS


def write_limits(directory: Path) -> str:
    directory.mkdir()
    for name in ("gemini-embedding-2", "gemini-embedding-001"):
        limits = LIMITS if name == "gemini-embedding-2" else mf.load_limits_file(
            mf.DEFAULT_CONFIG_DIR / "limits" / f"{name}.yaml")
        data = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(limits).items()}
        (directory / f"{name}.yaml").write_text(yaml.safe_dump(data))
    return str(directory)


def make_corpus(root: Path) -> Path:
    c = root / "corpus"
    (c / "photos").mkdir(parents=True)
    mf.h264_mp4(c / "clip_with_audio.mp4", seconds=22)
    mf.long_gop_mp4(c / "one_keyframe.mp4", seconds=16)
    mf.vp9_webm(c / "clip.webm", seconds=12)
    mf.mpeg4_avi(c / "old_codec.avi", seconds=10)
    mf.h264_mov(c / "camera.mov", seconds=8)
    mf.audio_file(c / "speech.flac", seconds=18)
    mf.audio_file(c / "song.mp3", seconds=6)
    mf.text_pdf(c / "manual.pdf", pages=50)
    small = mf.text_pdf(root / "small.pdf", pages=3)
    mf.encrypted_pdf(c / "encrypted_empty_password.pdf", small, user_password="", algorithm="AES-256")
    mf.encrypted_pdf(c / "locked.pdf", small, user_password="secret", algorithm="AES-256")
    mf.save_image(c / "photos" / "cmyk.jpg", mf.gradient(mode="CMYK"), "JPEG")
    mf.animated_gif(c / "photos" / "animated.gif")
    mf.save_image(c / "photos" / "logo.png", mf.translucent(), "PNG")
    mf.save_image(c / "photos" / "shoe.webp", mf.gradient(200, 120), "WEBP")
    (c / "notes.txt").write_text("Field notes about migrating geese and autumn wetlands.\n")
    rows = [
        {"id": "sku-1", "title": "Red shoe", "text": "A red running shoe.", "media": ["photos/shoe.webp"]},
        {"id": "sku-2", "text": "Catalogue logo", "media": ["photos/logo.png", "photos/cmyk.jpg"]},
        {"id": "sku-3", "text": "too many pictures", "media": ["photos/logo.png"] * 7},
        {"id": "sku-4", "text": "missing picture", "media": ["photos/nope.png"]},
    ]
    (c / "products.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    # bad inputs
    (c / "zero.mp4").write_bytes(b"")
    mf.truncated_mp4(c / "truncated.mp4", str(c / "clip_with_audio.mp4"))
    (c / "text_named.mp4").write_text("this is not a video\n" * 50)
    mf.truncated_copy(c / "corrupt.pdf", str(c / "manual.pdf"))
    mf.truncated_jpeg(c / "photos" / "truncated.jpg")
    return c


@pytest.fixture(scope="module")
def media_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("media")
    corpus = make_corpus(root)
    limits_dir = write_limits(root / "limits")
    output = root / "out"
    code = main(["run", "--config", LOCAL, "--sources", str(corpus), "--output", str(output),
                 "--set", f"limits_dir={limits_dir}",
                 "--set", "media.files_api_threshold_bytes=200000"])
    run_dir = next((output / "runs").iterdir())
    return corpus, output, run_dir, code


def _jsonl(pattern):
    return [json.loads(l) for p in glob.glob(pattern) for l in open(p) if l.strip()]


@pytest.mark.slow
def test_every_good_object_is_embedded_and_every_bad_one_dead_lettered(media_run):
    corpus, _output, run_dir, code = media_run
    assert code == 3
    table = pq.read_table(str(run_dir / "embeddings"))
    planned = sum(f["lines"] for f in json.loads((run_dir / "requests" / "files.json").read_text()))
    assert table.num_rows == planned == len(set(table.column("chunk_id").to_pylist()))
    sources = {os.path.relpath(u.split("#")[0], corpus) for u in table.column("source_uri").to_pylist()}
    assert sources == {
        "clip_with_audio.mp4", "one_keyframe.mp4", "clip.webm", "old_codec.avi", "camera.mov",
        "speech.flac", "song.mp3", "manual.pdf", "encrypted_empty_password.pdf",
        "photos/cmyk.jpg", "photos/animated.gif", "photos/logo.png", "photos/shoe.webp",
        "notes.txt", "products.jsonl",
    }
    assert set(table.column("modality").to_pylist()) == {"text", "pdf", "image", "audio", "video", "records"}
    rows = table.to_pylist()
    pdf_rows = sorted((r["start"], r["end"]) for r in rows if r["source_uri"].endswith("manual.pdf"))
    assert pdf_rows[0] == (1, 6) and pdf_rows[-1][1] == 50 and len(pdf_rows) == 9
    records = {r["source_uri"].split("#")[1] for r in rows if r["modality"] == "records"}
    assert records == {"sku-1", "sku-2"}

    dead = _jsonl(str(run_dir / "deadletters" / "chunk*.jsonl"))
    by_source = {os.path.relpath(d["source_uri"], corpus): d for d in dead}
    assert by_source["zero.mp4"]["error_class"] == "corrupt_media"
    assert by_source["truncated.mp4"]["error_class"] in {"truncated_media", "corrupt_media"}
    assert by_source["text_named.mp4"]["error_class"] == "content_mismatch"
    assert by_source["corrupt.pdf"]["error_class"] == "corrupt_media"
    assert by_source["locked.pdf"]["error_class"] == "encrypted_pdf"
    assert by_source["photos/truncated.jpg"]["error_class"] == "corrupt_media"
    record_errors = [d for d in dead if d["source_uri"].endswith("products.jsonl")]
    assert sorted(d["error_class"] for d in record_errors) == ["bad_reference", "record_too_large"]
    assert not _jsonl(str(run_dir / "deadletters" / "collect*.jsonl"))


def media_parts(run_dir: Path):
    """(key, mime, bytes, how) of every media part of every request line: inline parts
    decoded from base64, Files API parts read from the staged file the submitter uploads."""
    for path in glob.glob(str(run_dir / "requests" / "*.jsonl")):
        for line in open(path):
            request = json.loads(line)
            for part in request["request"]["content"]["parts"]:
                if "inline_data" in part:
                    blob = part["inline_data"]
                    yield request["key"], blob["mime_type"], base64.b64decode(blob["data"]), "inline"
                elif "file_data" in part:
                    ref = part["file_data"]
                    assert ref["file_uri"].startswith(STAGED_SCHEME), ref
                    staged = run_dir / "media" / ref["file_uri"][len(STAGED_SCHEME):]
                    yield request["key"], ref["mime_type"], staged.read_bytes(), "files_api"


@pytest.mark.slow
def test_every_media_part_inline_or_uploaded_is_within_the_limits_by_an_independent_probe(media_run):
    _corpus, _output, run_dir, _code = media_run
    checked = {"video": 0, "audio": 0, "pdf": 0, "image": 0}
    images: dict[str, int] = {}
    how: set[str] = set()
    for key, mime, data, via in media_parts(run_dir):
        how.add(via)
        assert len(data) <= 14_000_000
        if mime == "video/mp4":
            assert mp4_seconds(data) <= LIMITS.video_seconds
            checked["video"] += 1
        elif mime in ("audio/mp3", "audio/mpeg"):
            assert mp3_seconds(data) <= LIMITS.audio_seconds
            checked["audio"] += 1
        elif mime == "audio/wav":
            assert wav_seconds(data) <= LIMITS.audio_seconds
            checked["audio"] += 1
        elif mime == "application/pdf":
            assert pdf_page_count(data) <= LIMITS.pdf_pages
            checked["pdf"] += 1
        else:
            assert image_format_size(data)[0] in ("PNG", "JPEG")
            images[key] = images.get(key, 0) + 1
            checked["image"] += 1
    assert all(checked.values()), checked
    assert how == {"inline", "files_api"}, "both ways of sending media must have been probed"
    assert max(images.values()) <= LIMITS.images_per_request


@pytest.mark.slow
def test_pdf_parts_hold_the_pages_their_rows_say(media_run):
    corpus, _output, run_dir, _code = media_run
    source = [p.extract_text() for p in PdfReader(str(corpus / "manual.pdf")).pages]
    rows = {k["chunk_id"]: k for p in glob.glob(str(run_dir / "requests" / "*.keys.parquet"))
            for k in pq.read_table(p).to_pylist()}
    seen = 0
    for key, mime, data, _via in media_parts(run_dir):
        if mime == "application/pdf" and rows[key]["source_uri"].endswith("manual.pdf"):
            start, end = int(rows[key]["start"]), int(rows[key]["end"])
            assert [p.extract_text() for p in PdfReader(io.BytesIO(data)).pages] == source[start - 1:end]
            seen += end - start + 1
    assert seen == len(source) == 50


@pytest.mark.slow
def test_uploaded_media_are_deleted_once_their_job_is_collected(media_run):
    _corpus, output, run_dir, _code = media_run
    records = [json.load(open(p)) for p in glob.glob(str(run_dir / "ledger" / "*.json"))]
    uploaded = {name for r in records for _staged, name, _uri in r["media_files"]}
    assert uploaded and all(r["state"] == "COLLECTED" for r in records)
    remaining = Store(output / ".emulator").files  # the emulator's books, read from its state
    assert not uploaded & {f"files/{file_id}" for file_id in remaining}
    assert not [f for f in remaining.values() if f.source == "UPLOADED" and f.mime_type != "jsonl"]


@pytest.mark.slow
@pytest.mark.parametrize("flag, name", [("--image", "photos/cmyk.jpg"), ("--file", "manual.pdf"),
                                        ("--file", "song.mp3")])
def test_query_by_object_finds_it_first(media_run, capsys, flag, name):
    corpus, output, run_dir, _code = media_run
    capsys.readouterr()
    assert main(["query", "--output", str(output), "--run", run_dir.name, flag,
                 str(corpus / name), "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert os.path.relpath(hits[0]["source_uri"], corpus) == name

"""End to end with every modality: a mixed folder of generated media (nothing committed)
runs through the emulator; every chunk is embedded, every bad input is a dead letter,
and every inline media part of every request file is within the limits by an
independent probe."""
from __future__ import annotations

import base64
import dataclasses
import glob
import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

import media_factory as mf
from independent_probes import image_format_size, mp3_seconds, mp4_seconds, pdf_page_count, wav_seconds
from pipeline.cli import main

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


@pytest.mark.slow
def test_every_inline_part_is_within_the_limits_by_an_independent_probe(media_run):
    _corpus, _output, run_dir, _code = media_run
    checked = {"video": 0, "audio": 0, "pdf": 0, "image": 0}
    for path in glob.glob(str(run_dir / "requests" / "*.jsonl")):
        for line in open(path):
            parts = json.loads(line)["request"]["content"]["parts"]
            images = 0
            for part in parts:
                if "inline_data" not in part:
                    continue
                mime = part["inline_data"]["mime_type"]
                data = base64.b64decode(part["inline_data"]["data"])
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
                    images += 1
                    checked["image"] += 1
            assert images <= LIMITS.images_per_request
    assert all(checked.values()), checked


@pytest.mark.slow
def test_large_media_went_through_the_files_api(media_run):
    _corpus, _output, run_dir, _code = media_run
    staged = [l for p in glob.glob(str(run_dir / "requests" / "*.jsonl")) for l in open(p)
              if "embedpipe-staged:" in l]
    assert staged, "no part crossed the Files API threshold"
    records = [json.load(open(p)) for p in glob.glob(str(run_dir / "ledger" / "*.json"))]
    assert sum(len(r["media_files"]) for r in records) >= 1


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

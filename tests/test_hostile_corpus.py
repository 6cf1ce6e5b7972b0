"""The hostile corpus (issue 8): more than 40 kinds of broken, lying or odd input across
every modality, records and the file system, all in ONE folder as a user's messy bucket
would be, through the real ``embedpipe run`` in one run, as a process file permissions
apply to (root without CAP_DAC_OVERRIDE).

The run completes; every hostile object ends as a dead letter with its precise class, or
as a documented skip; the good objects beside them are embedded; the manifest adds up;
nothing outside the tree is read or sent; the run's peak memory stays under a fixed cap.
"""
from __future__ import annotations

import base64
import gzip
import json
import os
import secrets
import socket
import stat
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import media_factory as mf
from run_helpers import LOCAL, REPO, cli_env, deadletters, embeddings, only_run, read_json
from run_helpers import without_file_permission_override

pytestmark = pytest.mark.slow

MEMORY_CAP_BYTES = 1_000_000_000  # generous: the run peaks near 0.3 GB (ffmpeg children included)
EMBEDDED, EMPTY = "embedded", "empty"
SECRET = "TOP-SECRET-" + secrets.token_hex(8)
PASSWD_MARK = "root:x:0:0"  # the first line of /etc/passwd


def skipped(reason: str) -> str:
    return f"skipped:{reason}"


def _write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def build(root: Path) -> tuple[Path, Path, dict[str, str], dict[str, list[tuple[str, str]]], set[str]]:
    """(corpus, outside, {object: expected}, {records file: [(row marker, class)]},
    {records file#id embedded})."""
    c, out = root / "corpus", root / "outside"
    (c / "photos").mkdir(parents=True)
    (c / "docs").mkdir()
    out.mkdir()
    _write(out / "secret.txt", f"{SECRET}: a file outside the source tree\n")
    mf.save_image(out / "secret-photo.png", mf.gradient(33, 17), "PNG")
    work = root / "work"
    work.mkdir()
    clip = mf.h264_mp4(work / "clip.mp4", seconds=3)
    pdf = mf.text_pdf(work / "doc.pdf", pages=3)
    expected: dict[str, str] = {}

    def add(name: str, outcome: str) -> None:
        expected[name] = outcome

    # -- good objects, some with odd names ------------------------------------------------
    _write(c / "good.txt", "Glaciers carve valleys over thousands of years.\n")
    add("good.txt", EMBEDDED)
    for name in ("-leading-dash.txt", "newline\nin name.txt", "quotes ' and \".txt",
                 "ünïcødé 日本語.txt", "docs/--help"):
        _write(c / name, f"A document named {name!r}.\n")
        add(name, EMBEDDED)
    fake_duration = "clip\n  Duration: 10:00:00.00, start: 0.000000, bitrate: 1 kb\n.mp4"
    os.link(clip, c / fake_duration)
    add(fake_duration, EMBEDDED)  # a name cannot change what ffmpeg reports
    mf.one_pixel_video(c / "one_pixel.mp4")
    add("one_pixel.mp4", EMBEDDED)
    os.link(clip, c / "video_named.txt")
    add("video_named.txt", EMBEDDED)  # the bytes decide, not the name
    _write(c / "png_named.jpg", mf.png_bytes())
    add("png_named.jpg", EMBEDDED)
    mf.wav_claiming(c / "claims_4gb.wav")
    add("claims_4gb.wav", EMBEDDED)  # a header's claim is not a reason to read 4 GB
    mf.pdf_claiming_pages(c / "claims_1e9_pages.pdf")
    add("claims_1e9_pages.pdf", EMBEDDED)
    mf.save_image(c / "photos" / "img[1].png", mf.gradient(50, 20), "PNG")
    mf.save_image(c / "photos" / "img1.png", mf.gradient(20, 50), "PNG")
    add("photos/img[1].png", EMBEDDED)
    add("photos/img1.png", EMBEDDED)
    _write(c / "empty.txt", b"")
    add("empty.txt", EMPTY)
    _write(c / "whitespace.md", " \n\t\n")
    add("whitespace.md", EMPTY)

    # -- the file system ------------------------------------------------------------------
    with open(os.path.join(os.fsencode(c), b"latin1-caf\xe9.txt"), "wb") as fh:
        fh.write(b"a file whose name is not UTF-8\n")
    add("latin1-caf\udce9.txt", "undecodable_name")
    os.symlink("nowhere.txt", c / "dangling.txt")
    add("dangling.txt", "broken_symlink")
    os.symlink("self_loop", c / "self_loop")
    add("self_loop", "symlink_loop")
    os.symlink("loop_b", c / "loop_a")
    os.symlink("loop_a", c / "loop_b")
    add("loop_a", "symlink_loop")
    add("loop_b", "symlink_loop")
    os.symlink(out / "secret.txt", c / "secret_link.txt")
    add("secret_link.txt", "outside_sources")
    os.symlink(out / "ghost.txt", c / "ghost_link.txt")
    add("ghost_link.txt", "outside_sources")
    os.symlink("/etc/passwd", c / "passwd_link")
    add("passwd_link", "outside_sources")
    os.symlink("../../outside/secret.txt", c / "docs" / "relative_escape.txt")
    add("docs/relative_escape.txt", "outside_sources")
    os.symlink("/etc/passwd", c / "photos" / "evil_link.png")
    add("photos/evil_link.png", "outside_sources")
    os.symlink("docs", c / "folder_link")
    add("folder_link", skipped("directory_symlink"))
    _write(c / "unreadable.txt", "mode 000\n")
    add("unreadable.txt", "permission_denied")
    mf.save_image(c / "photos" / "unreadable.png", mf.gradient(10, 10), "PNG")
    add("photos/unreadable.png", "permission_denied")
    (c / "locked_folder").mkdir()
    _write(c / "locked_folder" / "inside.txt", "cannot be listed\n")
    add("locked_folder", "permission_denied")
    os.mkfifo(c / "fifo")
    add("fifo", skipped("special_file"))
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(c / "socket"))  # the socket file outlives the closed socket
    add("socket", skipped("special_file"))
    if os.geteuid() == 0:  # creating a device node needs CAP_MKNOD
        os.mknod(c / "null_device", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        add("null_device", skipped("special_file"))

    # -- text -----------------------------------------------------------------------------
    _write(c / "latin1.txt", "Crème brûlée à la carte\n".encode("latin-1") * 20)
    add("latin1.txt", "undecodable_text")
    _write(c / "utf16_no_bom.txt", "UTF-16 without its byte-order mark\n".encode("utf-16-le") * 20)
    add("utf16_no_bom.txt", "undecodable_text")
    _write(c / "archive_named.txt", b"PK\x03\x04\x14\x00\x00\x00" + bytes(300))
    add("archive_named.txt", "binary_content")
    _write(c / "nul_in_notes.md", b"# notes\nsome text\x00\x00 and NULs\n")
    add("nul_in_notes.md", "binary_content")
    _write(c / "zeros.txt.gz", gzip.compress(bytes(20_000_000)))  # a gzip bomb is never inflated
    add("zeros.txt.gz", "binary_content")
    mf.text_file(c / "text_named.mp4")
    add("text_named.mp4", "content_mismatch")
    with open(c / "huge_sparse.txt", "wb") as fh:  # 1 GB on paper, no disk: never read whole
        fh.truncate(1 << 30)
    add("huge_sparse.txt", "too_large")
    _write(c / "random.bin", secrets.token_bytes(3000))
    add("random.bin", "unsupported_type")

    # -- PDF ------------------------------------------------------------------------------
    mf.truncated_copy(c / "truncated.pdf", pdf)
    add("truncated.pdf", "corrupt_media")
    mf.encrypted_pdf(c / "locked.pdf", pdf, user_password="secret", algorithm="AES-256")
    add("locked.pdf", "encrypted_pdf")
    _write(c / "header_then_noise.pdf", b"%PDF-1.7\n" + secrets.token_bytes(3000))
    add("header_then_noise.pdf", "corrupt_media")
    with open(c / "damaged_1gb.pdf", "wb") as fh:  # no usable xref: pypdf would read it whole
        fh.write(b"%PDF-1.7\n")
        fh.truncate(1 << 30)
    add("damaged_1gb.pdf", "corrupt_media")
    with open(c / "bad_xref_1gb.pdf", "wb") as fh:  # ends well, but its xref points nowhere
        fh.write(b"%PDF-1.7\n")
        fh.truncate(1 << 30)
        fh.seek(0, 2)
        fh.write(b"\nstartxref\n12345\n%%EOF\n")
    add("bad_xref_1gb.pdf", "corrupt_media")
    _write(c / "zero.pdf", b"")
    add("zero.pdf", "corrupt_media")

    # -- images ---------------------------------------------------------------------------
    sparse_png = mf.png_bytes()
    at = sparse_png.index(b"IDAT")
    with open(c / "claims_1gb_chunk.png", "wb") as fh:  # 1 GB on paper, an IDAT claiming it all
        fh.write(sparse_png[: at - 4] + (1 << 30).to_bytes(4, "big") + b"IDAT")
        fh.truncate(1 << 30)
    add("claims_1gb_chunk.png", "too_large")
    mf.bomb_png(c / "bomb.png")
    add("bomb.png", "too_large")
    mf.huge_screen_gif(c / "huge_canvas.gif")
    add("huge_canvas.gif", "too_large")
    mf.bad_crc_png(c / "ihdr_crc.png", b"IHDR")
    add("ihdr_crc.png", "corrupt_media")
    mf.bad_crc_png(c / "idat_crc.png", b"IDAT")
    add("idat_crc.png", "corrupt_media")
    mf.truncated_jpeg(c / "truncated.jpg")
    add("truncated.jpg", "corrupt_media")
    _write(c / "photo.heic", b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + secrets.token_bytes(2000))
    add("photo.heic", "unsupported_type")

    # -- audio ----------------------------------------------------------------------------
    _write(c / "noise.mp3", b"ID3\x03\x00\x00\x00\x00\x00\x00" + secrets.token_bytes(4000))
    add("noise.mp3", "corrupt_media")
    mf.wav_header_only(c / "header_only.wav")
    add("header_only.wav", "corrupt_media")
    _write(c / "zero.mp3", b"")
    add("zero.mp3", "corrupt_media")

    # -- video ----------------------------------------------------------------------------
    mf.truncated_mp4(c / "truncated.mp4", clip)
    add("truncated.mp4", "truncated_media")
    mf.truncated_mp4(c / "lost_moov.mp4", clip, faststart=False)
    add("lost_moov.mp4", "corrupt_media")

    # -- records --------------------------------------------------------------------------
    deep = '{"id": "deep", "text": ' + "[" * 50_000 + "]" * 50_000 + "}"
    rows = [
        ({"id": 1, "text": "an integer id"}, None),
        ({"id": "text-int", "text": 42}, ("row 2:", "bad_record")),
        ({"id": "media-int", "media": 7}, ("row 3:", "bad_record")),
        ({"id": "title-list", "title": ["a"], "text": "x"}, ("row 4:", "bad_record")),
        ({"id": {"nested": True}, "text": "x"}, ("row 5:", "bad_record")),
        (deep, ("line 6 ", "bad_record")),
        ({"id": "after-deep", "text": "the row after the deep one"}, None),
        ({"id": "dotdot", "media": ["../outside/secret-photo.png"]}, ("record dotdot:", "outside_sources")),
        ({"id": "dotdot-ghost", "media": ["../outside/ghost.png"]}, ("record dotdot-ghost:", "outside_sources")),
        ({"id": "etc", "media": ["/etc/passwd"]}, ("record etc:", "outside_sources")),
        ({"id": "bucket", "media": ["gs://another-bucket/x.png"]}, ("record bucket:", "outside_sources")),
        ({"id": "via-link", "media": ["photos/evil_link.png"]}, ("record via-link:", "outside_sources")),
        ({"id": "glob", "media": ["photos/*.png"]}, ("record glob:", "bad_reference")),
        ({"id": "folder", "media": ["photos"]}, ("record folder:", "bad_reference")),
        ({"id": "missing", "media": ["photos/none.png"]}, ("record missing:", "bad_reference")),
        ({"id": "literal", "text": "brackets", "media": ["photos/img[1].png"]}, None),
        ({"id": "to-fifo", "media": ["fifo"]}, ("record to-fifo:", "special_file")),
        ({"id": "to-locked", "media": ["photos/unreadable.png"]}, ("record to-locked:", "permission_denied")),
        ({"id": "to-corrupt", "media": ["ihdr_crc.png"]}, ("record to-corrupt:", "corrupt_media")),
        ({"id": "seven", "media": ["photos/img1.png"] * 7}, ("record seven:", "record_too_large")),
        ({"id": "after-deep", "text": "again"}, ("duplicate record id", "bad_record")),
        ("[1, 2]", ("line 22 ", "bad_record")),
        ('{"id": "cut", "text": "the file ends mid-ro', ("line 23 ", "bad_record")),
    ]
    _write(c / "rows.jsonl", "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r, _ in rows)[:-1])
    _write(c / "deep_first_row.jsonl", '{"id": "d", "text": ' + "[" * 1500 + "]" * 1500 + '}\n'
           '{"id": "second", "text": "the row after a first row too deep to parse"}\n')
    pq.write_table(pa.table({"id": [10, 11, None], "text": ["ten", "eleven", "no id"]}), c / "int_ids.parquet")
    pq.write_table(pa.table({"id": ["a", "b"], "text": [1, 2]}), c / "int_text.parquet")
    _write(c / "corrupt.parquet", b"PAR1" + secrets.token_bytes(500) + b"PAR1")
    add("rows.jsonl", EMBEDDED)
    add("deep_first_row.jsonl", EMBEDDED)
    add("int_ids.parquet", EMBEDDED)
    add("int_text.parquet", "bad_record")
    add("corrupt.parquet", "corrupt_records")
    row_errors = {
        "rows.jsonl": [e for _, e in rows if e],
        "deep_first_row.jsonl": [("line 1 ", "bad_record")],
        "int_ids.parquet": [("row 3 has no 'id'", "bad_record")],
        "int_text.parquet": [("row 1:", "bad_record"), ("row 2:", "bad_record")],
    }
    embedded_rows = {"rows.jsonl#1", "rows.jsonl#after-deep", "rows.jsonl#literal", "deep_first_row.jsonl#second",
                     "int_ids.parquet#10", "int_ids.parquet#11"}

    os.chmod(c / "unreadable.txt", 0)
    os.chmod(c / "photos" / "unreadable.png", 0)
    os.chmod(c / "locked_folder", 0)
    return c, out, expected, row_errors, embedded_rows


def run_measured(argv: list[str], env: dict, logs: Path) -> tuple[int, str, str, int]:
    """(exit code, stdout, stderr, peak RSS in bytes) of one run; the RSS is the largest
    of the process and every child it waited for (ffmpeg included)."""
    with open(logs / "stdout", "w") as out, open(logs / "stderr", "w") as err:
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        watchdog = threading.Timer(600, proc.kill)
        watchdog.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            watchdog.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, (logs / "stdout").read_text(), (logs / "stderr").read_text(), usage.ru_maxrss * 1024


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    corpus, outside, expected, row_errors, embedded_rows = build(root)
    output = root / "out"
    argv = without_file_permission_override(
        [str(Path(sys.executable).parent / "embedpipe"), "run", "--config", LOCAL,
         "--sources", str(corpus), "--output", str(output), "--set", "index.enabled=false"])
    try:
        result = run_measured(argv, cli_env(), root)
    finally:
        os.chmod(corpus / "locked_folder", 0o755)
    return corpus, outside, output, expected, row_errors, embedded_rows, result


def _rel(corpus: Path, uri: str) -> str:
    return os.path.relpath(uri.split("#")[0], corpus) + ("#" + uri.split("#", 1)[1] if "#" in uri else "")


def _status(outcome: str) -> str:
    if outcome == EMBEDDED:
        return "chunked"
    if outcome.startswith("skipped:"):
        return "skipped"
    return EMPTY if outcome == EMPTY else "dead"


def test_the_run_completes_over_40_kinds_of_hostile_input(hostile_run):
    _corpus, _outside, output, expected, row_errors, _rows, (code, out, err, _peak) = hostile_run
    hostile = [v for v in expected.values() if v not in (EMBEDDED, EMPTY)]
    assert len(hostile) + sum(len(v) for v in row_errors.values()) >= 60
    # completed; the dead letters are far over the default tolerance of 0
    assert code == 3, f"exit {code}\n{err[-4000:]}"
    assert "Traceback" not in err
    summary = json.loads(out[: out.rindex("}") + 1])
    run_dir = only_run(output)
    lines = deadletters(run_dir)
    assert summary["dead_letters"] == len(lines)


def test_every_hostile_object_ends_with_its_precise_class_or_a_documented_skip(hostile_run):
    corpus, _outside, output, expected, row_errors, _rows, _result = hostile_run
    run_dir = only_run(output)
    by_object: dict[str, list[str]] = {}
    for letter in deadletters(run_dir):
        by_object.setdefault(_rel(corpus, letter["source_uri"]), []).append(letter["error_class"])
    listing = {_rel(corpus, row["uri"]): row for row in
               (json.loads(line) for p in (run_dir / "listing").glob("objects*.jsonl") for line in open(p))}
    assert sorted(listing) == sorted(expected)
    for name, outcome in expected.items():
        row = listing[name]
        assert row["status"] == _status(outcome), (name, row)
        if outcome.startswith("skipped:"):
            assert row["reason"] == outcome.split(":", 1)[1] and name not in by_object, (name, row)
        elif name not in row_errors and outcome not in (EMBEDDED, EMPTY):
            assert by_object.get(name) == [outcome], (name, by_object.get(name))
        elif outcome in (EMBEDDED, EMPTY) and name not in row_errors:
            assert name not in by_object, (name, by_object[name])


def test_every_bad_records_row_is_its_own_dead_letter_and_good_rows_go_on(hostile_run):
    corpus, _outside, output, _expected, row_errors, embedded_rows, _result = hostile_run
    run_dir = only_run(output)
    letters = [d for d in deadletters(run_dir) if _rel(corpus, d["source_uri"]) in row_errors]
    for name, wanted in row_errors.items():
        mine = [d for d in letters if _rel(corpus, d["source_uri"]) == name]
        assert len(mine) == len(wanted), (name, [d["message"] for d in mine])
        for marker, error_class in wanted:
            hits = [d for d in mine if marker in d["message"]]
            assert [d["error_class"] for d in hits] == [error_class], (name, marker, [d["message"] for d in mine])
    rows = {_rel(corpus, u) for u in embeddings(run_dir).column("source_uri").to_pylist() if "#" in u}
    assert rows == embedded_rows


def test_the_good_objects_beside_them_are_embedded_and_the_manifest_adds_up(hostile_run):
    corpus, _outside, output, expected, _row_errors, _rows, _result = hostile_run
    run_dir = only_run(output)
    table = embeddings(run_dir)
    embedded = {_rel(corpus, u).split("#")[0] for u in table.column("source_uri").to_pylist()}
    assert embedded == {name for name, outcome in expected.items() if outcome == EMBEDDED}
    counts = read_json(run_dir / "manifest.json")["counts"]
    statuses = Counter(_status(v) for v in expected.values())
    assert (counts["listed"], counts["chunked_objects"], counts["empty_objects"], counts["dead_objects"],
            counts["skipped_objects"], counts["unchanged"]) == (
        len(expected), statuses["chunked"], statuses["empty"], statuses["dead"], statuses["skipped"], 0)
    assert counts["listed"] == (counts["chunked_objects"] + counts["empty_objects"] + counts["dead_objects"]
                                + counts["skipped_objects"] + counts["unchanged"])
    assert counts["chunks"] == counts["embedded_rows"] + counts["dead_chunks"] == table.num_rows
    assert counts["prepare_dead_letters"] == len(deadletters(run_dir, "chunk*.jsonl"))


def test_nothing_outside_the_tree_is_read_or_sent(hostile_run):
    corpus, outside, output, _expected, _row_errors, _rows, _result = hostile_run
    photo = base64.b64encode((outside / "secret-photo.png").read_bytes())
    leaks = []
    for path in Path(output).rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            if SECRET.encode() in data or PASSWD_MARK.encode() in data or photo in data:
                leaks.append(str(path))
    assert leaks == [], f"outside content in {leaks}"
    sources = embeddings(only_run(output)).column("source_uri").to_pylist()
    assert all(u.startswith(str(corpus) + os.sep) for u in sources)


def test_peak_memory_stays_under_a_fixed_cap(hostile_run):
    *_, (_code, _out, _err, peak) = hostile_run
    assert 0 < peak < MEMORY_CAP_BYTES, f"peak RSS {peak / 1e6:.0f} MB"

"""One broken entry never stops a run, and nothing outside the tree is read (issue 8,
items 14-20): the listing and chunking path on hostile input, down to the error class.
The whole path in one CLI run over one messy folder is ``test_hostile_corpus.py``."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import media_factory as mf
from independent_probes import image_format_size, part_bytes
from run_helpers import LOCAL, REPO, cli_env, embedpipe, only_run, read_json, without_file_permission_override
from transforms.chunk import DEADLETTERS, OUTCOMES, ChunkDoFn
from transforms.list_sources import describe, expand_local
from transforms.roots import policy_roots
from transforms.settings import ChunkSettings
from transforms.types import SourceObject


def settings_for(*sources: str, allowed: tuple[str, ...] = ()) -> ChunkSettings:
    return ChunkSettings(limits=mf.PRODUCTION_LIMITS, source_roots=policy_roots(sources, allowed))


def listed(root, roots=None) -> dict[str, SourceObject]:
    roots = policy_roots([str(root)]) if roots is None else roots
    return {os.path.relpath(o.uri, root): describe(o) for o in expand_local(str(root), roots)}


def chunk(source: SourceObject, settings: ChunkSettings):
    """(chunks, dead letters, outcome) of one object through the Chunk DoFn."""
    chunks, letters, outcomes = [], [], []
    for item in ChunkDoFn(settings).process(source):
        tag = getattr(item, "tag", None)
        (letters if tag == DEADLETTERS else outcomes if tag == OUTCOMES else chunks).append(
            getattr(item, "value", item))
    (outcome,) = outcomes
    return chunks, letters, outcome


def chunk_file(path, settings: ChunkSettings):
    (listed_object,) = expand_local(str(path), settings.source_roots)
    return chunk(describe(listed_object), settings)


# -- 14, 20: symlinks, loops and special files are listed, never raised or opened ----------
def test_broken_links_loops_and_special_files_are_listed_with_their_class(tmp_path):
    c = tmp_path / "corpus"
    (c / "sub").mkdir(parents=True)
    (c / "good.txt").write_text("a good document\n")
    os.symlink("missing.txt", c / "dangling.txt")
    os.symlink("self_loop", c / "self_loop")
    os.symlink("loop_b", c / "loop_a")
    os.symlink("loop_a", c / "loop_b")
    os.symlink("good.txt", c / "inside_link.txt")
    os.symlink("sub", c / "sub_link")
    os.mkfifo(c / "fifo")
    with open(os.path.join(os.fsencode(c), b"caf\xe9.txt"), "wb") as fh:  # a Latin-1 name
        fh.write(b"the name is not UTF-8\n")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(c / "sock"))
    try:
        found = {name: (s.detected_type, s.problem) for name, s in listed(c).items()}
    finally:
        server.close()
    assert found == {
        "good.txt": ("text", None),
        "inside_link.txt": ("text", None),  # a link inside the tree is followed
        "dangling.txt": ("unreadable", "broken_symlink"),
        "self_loop": ("unreadable", "symlink_loop"),
        "loop_a": ("unreadable", "symlink_loop"),
        "loop_b": ("unreadable", "symlink_loop"),
        "sub_link": ("directory", "directory_symlink"),
        "fifo": ("special", "special_file"),
        "sock": ("special", "special_file"),
        "caf\udce9.txt": ("unreadable", "undecodable_name"),
    }


def test_a_fifo_is_skipped_with_its_reason_and_never_opened(tmp_path):
    """Opening a FIFO for reading blocks until a writer comes: listing and chunking it
    must finish without one, as a skip (not an empty object, not a dead letter)."""
    os.mkfifo(tmp_path / "fifo")
    settings = settings_for(str(tmp_path))
    result = {}
    worker = threading.Thread(target=lambda: result.update(out=chunk_file(tmp_path / "fifo", settings)),
                              daemon=True)
    worker.start()
    worker.join(timeout=20)
    assert not worker.is_alive(), "listing or chunking a FIFO blocked: it was opened"
    chunks, letters, outcome = result["out"]
    assert (chunks, letters) == ([], [])
    assert (outcome.status, outcome.reason, outcome.dead_letters) == ("skipped", "special_file", 0)


def test_listing_dead_letters_are_stage_list_and_counted_in_the_outcome(tmp_path):
    os.symlink("nowhere.pdf", tmp_path / "dangling.pdf")
    chunks, letters, outcome = chunk_file(tmp_path / "dangling.pdf", settings_for(str(tmp_path)))
    assert chunks == []
    assert [(d.stage, d.error_class) for d in letters] == [("list", "broken_symlink")]
    assert "dangling symlink" in letters[0].message
    assert (outcome.status, outcome.dead_letters) == ("dead", 1)


PERMISSION_SCRIPT = """
import json, os, sys
from transforms.chunk import ChunkDoFn
from transforms.list_sources import describe, expand_local
from transforms.limits import DEFAULT_CONFIG_DIR, load_limits_file
from transforms.roots import policy_roots
from transforms.settings import ChunkSettings
from transforms.types import SourceObject

root = sys.argv[1]
settings = ChunkSettings(limits=load_limits_file(DEFAULT_CONFIG_DIR / "limits" / "gemini-embedding-2.yaml"),
                         source_roots=policy_roots([root]))
listing = {os.path.relpath(o.uri, root): describe(o).problem
           for o in expand_local(root, settings.source_roots)}
# readable when it was listed, unreadable when it is chunked (the mode changed meanwhile)
late = SourceObject(os.path.join(root, "secret.txt"), 10, "g", "text", "text/plain")
chunk_stage = [o.value.error_class for o in ChunkDoFn(settings).process(late)
               if getattr(o, "tag", None) == "deadletters"]
print(json.dumps({"listing": listing, "chunk": chunk_stage}))
"""


def test_a_file_or_folder_the_process_cannot_read_is_a_permission_dead_letter(tmp_path):
    """Run as a user file permissions apply to (root without CAP_DAC_OVERRIDE): the
    listing and the Chunk stage both meet a real PermissionError."""
    c = tmp_path / "corpus"
    (c / "locked").mkdir(parents=True)
    (c / "ok.txt").write_text("readable\n")
    (c / "secret.txt").write_text("not for this process\n")
    (c / "locked" / "inside.txt").write_text("hidden by the folder's mode\n")
    os.chmod(c / "secret.txt", 0)
    os.chmod(c / "locked", 0)
    try:
        proc = subprocess.run(
            without_file_permission_override([sys.executable, "-c", PERMISSION_SCRIPT, str(c)]),
            cwd=REPO, capture_output=True, text=True, timeout=120,
        )
    finally:
        os.chmod(c / "locked", 0o755)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out["listing"] == {"ok.txt": None, "secret.txt": "permission_denied",
                              "locked": "permission_denied"}
    assert out["chunk"] == ["permission_denied"]


# -- 17: symlinks and references stay inside the roots; refusals leak nothing ---------------
@pytest.fixture()
def tree(tmp_path):
    """corpus/ (the source) beside outside/ (never to be read)."""
    c, out = tmp_path / "corpus", tmp_path / "outside"
    (c / "photos").mkdir(parents=True)
    out.mkdir()
    (out / "secret.txt").write_text("TOP-SECRET outside the tree\n")
    mf.save_image(out / "photo.png", mf.gradient(40, 30), "PNG")
    mf.save_image(c / "photos" / "img[1].png", mf.gradient(50, 20), "PNG")
    mf.save_image(c / "photos" / "img1.png", mf.gradient(20, 50), "PNG")
    return c, out


def test_symlinks_out_of_the_tree_are_refused_alike_whether_the_target_exists_or_not(tree):
    c, out = tree
    os.symlink(out / "secret.txt", c / "exists.txt")
    os.symlink(out / "never-there.txt", c / "missing.txt")
    os.symlink("/etc/passwd", c / "passwd.txt")
    os.symlink("../outside/secret.txt", c / "relative.txt")
    found = listed(c)
    refused = {name: found[name] for name in ("exists.txt", "missing.txt", "passwd.txt", "relative.txt")}
    assert {(s.detected_type, s.problem, s.problem_message, s.size_bytes) for s in refused.values()} == {
        ("unreadable", "outside_sources", refused["exists.txt"].problem_message, 0)}
    settings = settings_for(str(c))
    letters = [chunk(s, settings)[1] for s in refused.values()]
    texts = {(d.stage, d.error_class, d.message.split(": ", 1)[1]) for (d,) in letters}
    assert len(texts) == 1 and "allowed_roots" in texts.pop()[2]
    # allowed_roots widens the policy: the same links are followed
    widened = listed(c, policy_roots([str(c)], [str(out)]))
    assert (widened["exists.txt"].detected_type, widened["exists.txt"].problem) == ("text", None)
    assert widened["missing.txt"].problem == "broken_symlink"


def write_rows(path, rows) -> str:
    with open(path, "w") as fh:
        for row in rows:
            fh.write((row if isinstance(row, str) else json.dumps(row)) + "\n")
    return str(path)


def records_outcome(path, settings):
    """({record id: 'ok' | error class}, outcome); row errors are keyed by their row number."""
    chunks, letters, outcome = chunk_file(path, settings)
    result = {c.source_uri.rsplit("#", 1)[1]: "ok" for c in chunks}
    for d in letters:
        result[d.message.split(": ", 1)[1].split(":")[0]] = d.error_class
    return result, letters, chunks, outcome


def test_records_references_never_escape_the_tree(tree):
    c, out = tree
    os.symlink(out / "photo.png", c / "photos" / "linked.png")
    rows = [
        {"id": "dotdot", "media": ["../outside/photo.png"]},
        {"id": "dotdot-missing", "media": ["../outside/none.png"]},
        {"id": "absolute", "media": [str(out / "photo.png")]},
        {"id": "etc", "media": ["/etc/passwd"]},
        {"id": "link", "media": ["photos/linked.png"]},
        {"id": "bucket", "media": ["gs://another-bucket/photo.png"]},
        {"id": "inside", "text": "fine", "media": ["photos/img1.png"]},
    ]
    path = write_rows(c / "rows.jsonl", rows)
    result, letters, _chunks, outcome = records_outcome(path, settings_for(str(c)))
    assert result == {"inside": "ok"} | {
        f"record {r['id']}": "outside_sources" for r in rows if r["id"] != "inside"}
    after_the_reference = {d.message.split("': ", 1)[1] for d in letters}
    assert len(after_the_reference) == 1, f"refusals differ by target: {after_the_reference}"
    assert (outcome.status, outcome.chunks, outcome.dead_letters) == ("chunked", 1, 6)
    widened, _, _, _ = records_outcome(path, settings_for(str(c), allowed=(str(out),)))
    assert widened["dotdot"] == widened["absolute"] == widened["link"] == "ok"
    assert widened["record etc"] == "outside_sources"


# -- 18: a reference names one object ------------------------------------------------------
def test_a_reference_is_one_literal_object_never_a_glob_or_a_folder(tree):
    c, _out = tree
    rows = [
        {"id": "brackets", "media": ["photos/img[1].png"]},
        {"id": "star", "media": ["photos/*.png"]},
        {"id": "question", "media": ["photos/img?.png"]},
        {"id": "folder", "media": ["photos"]},
        {"id": "slash", "media": ["photos/"]},
        {"id": "missing", "media": ["photos/none.png"]},
        {"id": "blank", "media": [""]},
    ]
    path = write_rows(c / "rows.jsonl", rows)
    result, _letters, chunks, _ = records_outcome(path, settings_for(str(c)))
    assert result == {"brackets": "ok"} | {
        f"record {r['id']}": "bad_reference" for r in rows if r["id"] != "brackets"}
    (brackets,) = chunks  # img[1].png itself (50×20), not img1.png (20×50)
    assert image_format_size(part_bytes(brackets)) == ("PNG", 50, 20)


# -- 15, 19: row value types, deep nesting --------------------------------------------------
def test_rows_with_wrong_value_types_are_bad_records_naming_column_and_type(tmp_path):
    rows = [
        {"id": 7, "text": "an integer id is written in decimal"},
        {"id": "text-int", "text": 42},
        {"id": "media-int", "media": 7},
        {"id": "media-item", "media": ["a.png", 3]},
        {"id": "title-list", "title": ["a"], "text": "x"},
        {"id": {"nested": 1}, "text": "x"},
        {"id": 1.5, "text": "x"},
        {"id": True, "text": "x"},
        {"id": "nulls", "title": None, "text": "only text", "media": None},
        {"id": None, "text": "no id"},
        '["an", "array"]',
        "not json at all",
        {"id": "last", "text": "still read"},
    ]
    path = write_rows(tmp_path / "rows.jsonl", rows)
    _, letters, chunks, outcome = records_outcome(path, settings_for(str(tmp_path)))
    assert sorted(c.source_uri.rsplit("#", 1)[1] for c in chunks) == ["7", "last", "nulls"]
    assert [(d.error_class, d.message.split(": ", 1)[1]) for d in letters] == [
        ("bad_record", "row 2: column 'text' must be a string, got integer"),
        ("bad_record", "row 3: column 'media' must be a string or a list of strings, got integer"),
        ("bad_record", "row 4: column 'media[1]' must be a string, got integer"),
        ("bad_record", "row 5: column 'title' must be a string, got array"),
        ("bad_record", "row 6: column 'id' must be a string or an integer, got object"),
        ("bad_record", "row 7: column 'id' must be a string or an integer, got number"),
        ("bad_record", "row 8: column 'id' must be a string or an integer, got boolean"),
        ("bad_record", "row 10 has no 'id'"),
        ("bad_record", "line 11 is not a JSON object"),
        ("bad_record", "line 12 is not JSON: Expecting value: line 1 column 1 (char 0)"),
    ]
    assert (outcome.status, outcome.chunks, outcome.dead_letters) == ("chunked", 3, 10)


def test_parquet_rows_follow_the_same_type_rules_as_jsonl(tmp_path):
    pq.write_table(pa.table({"id": [7, 8, None], "text": ["a", "b", "c"]}), tmp_path / "ints.parquet")
    pq.write_table(pa.table({"id": ["x", "y"], "text": [10, 20]}), tmp_path / "int_text.parquet")
    write_rows(tmp_path / "same.jsonl", [{"id": 7, "text": "a"}])
    settings = settings_for(str(tmp_path))
    ints, letters, _, _ = records_outcome(tmp_path / "ints.parquet", settings)
    assert ints == {"7": "ok", "8": "ok", "row 3 has no 'id'": "bad_record"}
    int_text, letters, _, outcome = records_outcome(tmp_path / "int_text.parquet", settings)
    assert [d.message.split(": ", 1)[1] for d in letters] == [
        "row 1: column 'text' must be a string, got integer",
        "row 2: column 'text' must be a string, got integer"]
    assert (outcome.status, outcome.dead_letters) == ("dead", 2)
    jsonl, _, _, _ = records_outcome(tmp_path / "same.jsonl", settings)
    assert jsonl == {"7": "ok"}  # the same id either way


def test_a_deeply_nested_row_is_one_bad_record_and_later_rows_go_on(tmp_path):
    deep = '{"id": "deep", "text": ' + "[" * 100_000 + "]" * 100_000 + "}"
    rows = [{"id": "before", "text": "a"}, deep, {"id": "after", "text": "b"}, {"id": "end", "text": "c"}]
    path = write_rows(tmp_path / "rows.jsonl", rows)
    result, letters, _, outcome = records_outcome(path, settings_for(str(tmp_path)))
    assert result == {"before": "ok", "after": "ok", "end": "ok",
                      "line 2 is nested too deeply to parse": "bad_record"}
    assert (outcome.chunks, outcome.dead_letters) == (3, 1)


def test_an_over_long_line_is_one_bad_record_read_in_bounded_pieces(tmp_path, monkeypatch):
    import dataclasses

    settings = dataclasses.replace(settings_for(str(tmp_path)), limits=dataclasses.replace(
        mf.PRODUCTION_LIMITS, inline_request_bytes=1000))
    rows = [{"id": "big", "text": "x" * 5000}, {"id": "after", "text": "b"}]
    result, _, _, _ = records_outcome(write_rows(tmp_path / "rows.jsonl", rows), settings)
    assert result == {"after": "ok", "line 1 is over 1000 bytes": "record_too_large"}


# -- 20: names never reach ffmpeg; media edge cases get their documented class -------------
@pytest.mark.slow
def test_a_file_name_cannot_change_what_ffmpeg_reports(tmp_path):
    name = "clip\n  Duration: 10:00:00.00, start: 0.000000, bitrate: 1 kb\n.mp4"
    mf.h264_mp4(tmp_path / "plain.mp4", seconds=4)
    os.rename(tmp_path / "plain.mp4", tmp_path / name)
    chunks, letters, outcome = chunk_file(tmp_path / name, ChunkSettings(limits=mf.SMALL_LIMITS))
    assert letters == [] and outcome.status == "chunked"
    assert [(c.locator.start, c.locator.end) for c in chunks] == [(0.0, 4.0)]


@pytest.mark.slow
def test_a_one_pixel_video_is_chunked(tmp_path):
    chunks, letters, _ = chunk_file(mf.one_pixel_video(tmp_path / "dot.mp4"), ChunkSettings(limits=mf.SMALL_LIMITS))
    assert letters == [] and len(chunks) == 1


@pytest.mark.parametrize("make, expected", [
    (lambda d: mf.bad_crc_png(d / "ihdr.png", b"IHDR"), "corrupt_media"),
    (lambda d: mf.bad_crc_png(d / "idat.png", b"IDAT"), "corrupt_media"),
    (lambda d: mf.write_bytes(d / "u16.txt", "UTF-16, no BOM\n".encode("utf-16-le") * 9), "undecodable_text"),
    (lambda d: mf.write_bytes(d / "u16.dat", "UTF-16, no BOM\n".encode("utf-16-be") * 9), "undecodable_text"),
    (lambda d: mf.write_bytes(d / "latin1.txt", "Crème brûlée\n".encode("latin-1") * 9), "undecodable_text"),
    (lambda d: mf.write_bytes(d / "archive.txt", b"PK\x03\x04\x14\x00" + bytes(200)), "binary_content"),
    (lambda d: mf.huge_screen_gif(d / "canvas.gif"), "too_large"),
])
def test_damaged_media_and_undecodable_text_get_their_documented_class(tmp_path, make, expected):
    _, letters, outcome = chunk_file(make(tmp_path), ChunkSettings(limits=mf.PRODUCTION_LIMITS))
    assert [d.error_class for d in letters] == [expected] and outcome.status == "dead"


# -- 19: row-level dead letters count in the manifest, the summary and the exit code -------
@pytest.mark.slow
def test_row_dead_letters_count_toward_the_tolerance_and_the_summary(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "notes.txt").write_text("A plain note about rivers.\n")
    rows = [{"id": f"r{i}", "text": f"row {i}"} for i in range(9)] + [{"text": "a row without id"}]
    write_rows(corpus / "rows.jsonl", rows)
    env = cli_env()
    for tolerance, code in ((0.05, 3), (0.2, 0)):
        output = tmp_path / f"out-{tolerance}"
        res = embedpipe("run", "--config", LOCAL, "--sources", str(corpus), "--output", str(output),
                        "--set", "index.enabled=false", "--set", f"deadletter_tolerance={tolerance}", env=env)
        assert res.returncode == code, res.explain()
        counts = read_json(only_run(output) / "manifest.json")["counts"]
        # 11 inputs: the text file and 10 rows; 1 failed
        assert (counts["inputs"], counts["failed_inputs"], counts["prepare_dead_letters"]) == (11, 1, 1)
        assert json.loads(res.stdout[: res.stdout.rindex("}") + 1])["dead_letters"] == 1

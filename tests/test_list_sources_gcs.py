"""Source listing: expand_gcs against fake-gcs-server, expand_local on a temp tree."""
from __future__ import annotations

import base64
import os

import google_crc32c
import media_factory as mf
import pytest
from google.api_core import exceptions as api_exceptions

from gcs_emulator import gcs_bucket, gcs_emulator  # noqa: F401 (pytest fixtures)
from test_hostile_inputs import chunk
from transforms.chunk_errors import ChunkingError
from transforms.list_sources import (
    ListedObject,
    describe,
    describe_reference,
    expand_gcs,
    expand_local,
    expand_pattern,
    read_failure,
)
from transforms.settings import ChunkSettings

OBJECTS = {
    "corpus/a.txt": b"alpha text\n",
    "corpus/b.md": b"# beta\n\nsome markdown\n",
    "corpus/sub/c.txt": b"gamma " * 100,
    "corpus/sub/deeper/d.txt": b"delta\n",
    "corpus/sub/deeper/e.json": b'{"k": 1}\n',
    "corpus/name with space \u00fc.txt": b"unicode name\n",
    "other/z.txt": b"outside the prefix\n",
}
PLACEHOLDERS = ["corpus/", "corpus/sub/", "corpus/empty-dir/"]  # console-style "folders"


def _crc32c_b64(data: bytes) -> str:
    return base64.b64encode(google_crc32c.Checksum(data).digest()).decode()


@pytest.fixture()
def populated(gcs_emulator, gcs_bucket):  # noqa: F811
    """A bucket holding OBJECTS plus zero-byte placeholder objects; returns (bucket, generations)."""
    bucket = gcs_emulator.client().bucket(gcs_bucket)
    generations = {}
    for name, data in OBJECTS.items():
        blob = bucket.blob(name)
        blob.upload_from_string(data)
        generations[name] = blob.generation
    for name in PLACEHOLDERS:
        bucket.blob(name).upload_from_string(b"")
    return gcs_bucket, generations


def _names(listed: list[ListedObject], bucket: str) -> list[str]:
    prefix = f"gs://{bucket}/"
    assert all(o.uri.startswith(prefix) for o in listed)
    return [o.uri[len(prefix):] for o in listed]


# ---------------------------------------------------------------- expand_gcs


def test_gcs_prefix_lists_everything_under_it(populated):
    bucket, _ = populated
    listed = list(expand_gcs(f"gs://{bucket}/corpus/"))
    assert sorted(_names(listed, bucket)) == sorted(n for n in OBJECTS if n.startswith("corpus/"))


def test_gcs_whole_bucket(populated):
    bucket, _ = populated
    for pattern in (f"gs://{bucket}", f"gs://{bucket}/"):
        assert sorted(_names(list(expand_gcs(pattern)), bucket)) == sorted(OBJECTS)


def test_gcs_skips_directory_placeholders(populated):
    bucket, _ = populated
    names = _names(list(expand_gcs(f"gs://{bucket}/")), bucket)
    assert not any(n.endswith("/") for n in names)
    assert not set(PLACEHOLDERS) & set(names)


def test_gcs_double_star_glob(populated):
    bucket, _ = populated
    names = _names(list(expand_gcs(f"gs://{bucket}/corpus/**.txt")), bucket)
    assert sorted(names) == sorted(
        n for n in OBJECTS if n.startswith("corpus/") and n.endswith(".txt")
    )
    names = _names(list(expand_gcs(f"gs://{bucket}/corpus/sub/**/*.json")), bucket)
    assert names == ["corpus/sub/deeper/e.json"]
    names = _names(list(expand_gcs(f"gs://{bucket}/**/*.md")), bucket)
    assert names == ["corpus/b.md"]


def test_gcs_glob_with_no_match_is_empty(populated):
    bucket, _ = populated
    assert list(expand_gcs(f"gs://{bucket}/corpus/**.pdf")) == []


def test_gcs_returns_size_generation_and_crc32c(populated):
    bucket, generations = populated
    listed = {o.uri: o for o in expand_gcs(f"gs://{bucket}/corpus/")}
    assert listed
    for name, data in OBJECTS.items():
        if not name.startswith("corpus/"):
            continue
        obj = listed[f"gs://{bucket}/{name}"]
        assert obj.size_bytes == len(data)
        assert obj.generation == str(generations[name]) and obj.generation.isdigit()
        assert obj.content_hash == f"crc32c:{_crc32c_b64(data)}"


def test_gcs_generation_changes_on_overwrite(populated, gcs_emulator):  # noqa: F811
    bucket, generations = populated
    uri = f"gs://{bucket}/corpus/a.txt"
    before = {o.uri: o for o in expand_gcs(uri)}[uri]
    new_data = b"changed\n"
    gcs_emulator.client().bucket(bucket).blob("corpus/a.txt").upload_from_string(new_data)
    after = {o.uri: o for o in expand_gcs(uri)}[uri]
    assert after.generation != before.generation
    assert after.content_hash == f"crc32c:{_crc32c_b64(new_data)}"
    assert after.content_hash != before.content_hash


def test_expand_pattern_routes_and_describe_reads_gcs(populated):
    bucket, _ = populated
    listed = list(expand_pattern(f"gs://{bucket}/corpus/sub/deeper/d.txt"))
    assert _names(listed, bucket) == ["corpus/sub/deeper/d.txt"]
    # describe() opens the object through Beam's GcsIO (anonymous client on the emulator).
    source = describe(listed[0])
    assert (source.uri, source.size_bytes, source.generation, source.content_hash) == (
        listed[0].uri, listed[0].size_bytes, listed[0].generation, listed[0].content_hash,
    )
    assert source.detected_type == "text"


def test_an_object_deleted_after_the_listing_is_a_not_found_dead_letter(gcs_emulator, gcs_bucket):  # noqa: F811
    """A live bucket changes under a run: an object gone before its first bytes are read, or
    before it is chunked, is a dead letter of that object; the run does not stop."""
    bucket = gcs_emulator.client().bucket(gcs_bucket)
    for name in ("live/kept.txt", "live/gone-early.txt", "live/gone-late.txt"):
        bucket.blob(name).upload_from_string(b"some text to embed\n")
    listed = {o.uri.rsplit("/", 1)[1]: o for o in expand_pattern(f"gs://{gcs_bucket}/live/")}
    bucket.blob("live/gone-early.txt").delete()
    early = describe(listed["gone-early.txt"])
    assert (early.detected_type, early.problem) == ("unreadable", "not_found")
    assert "deleted after it was listed" in early.problem_message
    late = describe(listed["gone-late.txt"])
    bucket.blob("live/gone-late.txt").delete()
    settings = ChunkSettings(limits=mf.PRODUCTION_LIMITS)
    for source, stage in ((early, "list"), (late, "chunk")):
        chunks, letters, outcome = chunk(source, settings)
        assert chunks == [] and outcome.status == "dead"
        assert [(d.error_class, d.stage) for d in letters] == [("not_found", stage)]
        assert "deleted after it was listed" in letters[0].message
    kept_chunks, kept_letters, _ = chunk(describe(listed["kept.txt"]), settings)
    assert len(kept_chunks) == 1 and kept_letters == []


def test_a_gcs_object_this_identity_may_not_read_is_a_permission_dead_letter():
    """fake-gcs-server has no IAM: the 403 is the storage client's own exception class."""
    problem, message = read_failure("gs://b/o.txt", api_exceptions.Forbidden("caller lacks storage.objects.get"))
    assert problem == "permission_denied" and "roles/storage.objectViewer" in message
    assert read_failure("/data/o.txt", PermissionError(13, "Permission denied"))[0] == "permission_denied"
    problem, message = read_failure("gs://b/o.txt", api_exceptions.NotFound("no such object"))
    assert problem == "not_found"


def test_a_gcs_reference_names_one_object_inside_the_roots(gcs_emulator, gcs_bucket):  # noqa: F811
    bucket = gcs_emulator.client().bucket(gcs_bucket)
    for name in ("data/photos/img[1].png", "data/photos/img1.png", "private/key.txt"):
        bucket.blob(name).upload_from_string(b"x")
    roots = (f"gs://{gcs_bucket}/data",)
    base = f"gs://{gcs_bucket}/data/photos/"
    assert describe_reference(base + "img[1].png", roots).uri == base + "img[1].png"
    assert describe_reference(base + "../photos/img1.png", roots).uri == base + "img1.png"
    for ref, error_class in [
        (base + "*.png", "bad_reference"),  # a glob is a name like any other: none such
        (base, "bad_reference"),  # a prefix
        (base.rstrip("/"), "bad_reference"),  # a "folder" without an object of that name
        (base + "../../private/key.txt", "outside_sources"),
        (base + "../../../../escape", "outside_sources"),
        (f"gs://{gcs_bucket}/data-private/key.txt", "outside_sources"),
        ("gs://another-bucket/data/photos/img1.png", "outside_sources"),
    ]:
        with pytest.raises(ChunkingError) as refused:
            describe_reference(ref, roots)
        assert refused.value.error_class == error_class, ref


def test_expand_pattern_rejects_other_schemes():
    with pytest.raises(ValueError):
        list(expand_pattern("s3://bucket/key"))


# ---------------------------------------------------------------- expand_local


@pytest.fixture()
def tree(tmp_path):
    files = {
        "a.txt": b"a",
        "b.md": b"bb",
        "sub/c.txt": b"ccc",
        "sub/deeper/d.txt": b"dddd",
        "sub/deeper/e.json": b"{}",
        ".hidden.txt": b"h",
        "sub/.hidden-too.txt": b"h",
        ".git/config": b"h",
        "sub/.cache/x.txt": b"h",
    }
    for rel, data in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (tmp_path / "empty-dir").mkdir()
    return tmp_path


VISIBLE = ["a.txt", "b.md", "sub/c.txt", "sub/deeper/d.txt", "sub/deeper/e.json"]


def _rel(listed: list[ListedObject], root) -> list[str]:
    return [os.path.relpath(o.uri, root) for o in listed]


def test_local_directory_is_recursive_and_skips_hidden(tree):
    listed = list(expand_local(str(tree)))
    assert sorted(_rel(listed, tree)) == VISIBLE
    for obj in listed:
        assert os.path.isabs(obj.uri)
        st = os.stat(obj.uri)
        assert obj.size_bytes == st.st_size
        assert obj.generation == f"{st.st_mtime_ns}-{st.st_size}"
        assert obj.content_hash is None


def test_local_directory_with_trailing_slash_and_relative_path(tree, monkeypatch):
    monkeypatch.chdir(tree.parent)
    listed = list(expand_local(tree.name + os.sep))
    assert sorted(_rel(listed, tree)) == VISIBLE
    assert all(os.path.isabs(o.uri) for o in listed)


def test_local_glob(tree):
    assert _rel(expand_local(str(tree / "*.txt")), tree) == ["a.txt"]
    assert sorted(_rel(expand_local(str(tree / "**" / "*.txt")), tree)) == [
        "a.txt", "sub/c.txt", "sub/deeper/d.txt",
    ]
    assert _rel(expand_local(str(tree / "sub" / "**" / "*.json")), tree) == ["sub/deeper/e.json"]
    assert list(expand_local(str(tree / "**" / "*.pdf"))) == []


def test_local_single_file(tree):
    listed = list(expand_local(str(tree / "sub" / "c.txt")))
    assert _rel(listed, tree) == ["sub/c.txt"]
    assert listed[0].size_bytes == 3


def test_local_generation_changes_when_file_changes(tree):
    path = tree / "a.txt"
    before = next(expand_local(str(path))).generation
    path.write_bytes(b"a longer content")
    assert next(expand_local(str(path))).generation != before


def test_local_missing_path_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        list(expand_local(str(tmp_path / "does-not-exist")))
    with pytest.raises(FileNotFoundError):
        list(expand_pattern(str(tmp_path / "does-not-exist")))


def test_gcs_folder_without_slash_does_not_match_siblings(gcs_emulator, gcs_bucket):  # noqa: F811
    bucket = gcs_emulator.client().bucket(gcs_bucket)
    for name in ("docs/a.txt", "docs/sub/b.txt", "docs-old/c.txt", "docs"):
        bucket.blob(name).upload_from_string(b"x")
    listed = _names(list(expand_gcs(f"gs://{gcs_bucket}/docs")), gcs_bucket)
    assert sorted(listed) == ["docs", "docs/a.txt", "docs/sub/b.txt"]


def test_gcs_single_star_stays_within_one_folder(gcs_emulator, gcs_bucket):  # noqa: F811
    bucket = gcs_emulator.client().bucket(gcs_bucket)
    for name in ("docs/a.txt", "docs/sub/b.txt", "docs/c.md"):
        bucket.blob(name).upload_from_string(b"x")
    assert _names(list(expand_gcs(f"gs://{gcs_bucket}/docs/*.txt")), gcs_bucket) == ["docs/a.txt"]
    assert sorted(_names(list(expand_gcs(f"gs://{gcs_bucket}/docs/**/*.txt")), gcs_bucket)) == [
        "docs/a.txt", "docs/sub/b.txt"]

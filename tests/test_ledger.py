"""The create-only job ledger, on a local directory and on gs:// (fake-gcs-server).

fake-gcs-server enforces ``if_generation_match`` preconditions, so the gs:// cases
exercise the real create-only / compare-and-set semantics the ledger relies on.
"""
from __future__ import annotations

import dataclasses
import multiprocessing
import queue
import threading

import pytest

from pipeline.ledger import Ledger, LedgerConflict, LedgerRecord
from gcs_emulator import gcs_bucket, gcs_emulator  # noqa: F401 (pytest fixtures)

RACERS = 6


@pytest.fixture(params=["local", "gcs"])
def ledger_dir(request, tmp_path) -> str:
    """A ledger directory: a local path, or a prefix in a fresh bucket on the emulator."""
    if request.param == "local":
        return str(tmp_path / "run" / "ledger")
    bucket = request.getfixturevalue("gcs_bucket")  # the emulator starts only for gcs cases
    return f"gs://{bucket}/runs/run-1/ledger"


@pytest.fixture()
def gcs_ledger_dir(gcs_bucket) -> str:  # noqa: F811
    return f"gs://{gcs_bucket}/runs/run-1/ledger"


def _record(name: str = "req-00001", owner: str = "owner-a", **kw) -> LedgerRecord:
    return LedgerRecord(request_name=name, display_name=f"run-1/{name}/1", owner=owner, **kw)


# ---------------------------------------------------------------- create-only


def test_create_once_then_false_and_first_writer_kept(ledger_dir):
    ledger = Ledger(ledger_dir)
    assert ledger.get("req-00001") is None
    assert ledger.create(_record(owner="owner-a", est_tokens=10)) is True
    assert ledger.create(_record(owner="owner-b", est_tokens=99)) is False
    # A different Ledger instance (another process, a rerun) is refused too.
    assert Ledger(ledger_dir).create(_record(owner="owner-c")) is False

    stored = Ledger(ledger_dir).get("req-00001")
    assert stored.owner == "owner-a"
    assert stored.est_tokens == 10
    assert stored.state == "CLAIMED"
    assert stored.updated_at  # create stamps the record


def test_create_of_other_names_is_independent(ledger_dir):
    ledger = Ledger(ledger_dir)
    assert ledger.create(_record("req-00001"))
    assert ledger.create(_record("req-00002"))
    assert not ledger.create(_record("req-00002"))
    assert {r.request_name for r in ledger.all()} == {"req-00001", "req-00002"}


def test_threads_racing_to_create_exactly_one_wins(ledger_dir):
    for round_no in range(8):
        name = f"req-race-{round_no}"
        barrier = threading.Barrier(RACERS)
        results: dict[int, bool] = {}
        errors: list[BaseException] = []
        seen_by_losers: list[LedgerRecord | None] = []

        def racer(i: int) -> None:
            try:
                ledger = Ledger(ledger_dir)  # each racer is its own client, as in separate drivers
                barrier.wait(timeout=30)
                results[i] = ledger.create(_record(name, owner=f"thread-{i}"))
                if not results[i]:
                    # A loser reads the winner's record at once: never empty or half written.
                    seen_by_losers.append(ledger.get(name))
            except BaseException as exc:  # noqa: BLE001 (reported below)
                errors.append(exc)

        threads = [threading.Thread(target=racer, args=(i,)) for i in range(RACERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in threads), "a racer hung"
        assert not errors, errors
        winners = [i for i, won in results.items() if won]
        assert len(results) == RACERS and len(winners) == 1, results
        stored = Ledger(ledger_dir).get(name)
        assert stored.owner == f"thread-{winners[0]}"
        assert len(seen_by_losers) == RACERS - 1
        assert all(r is not None and r.owner == stored.owner for r in seen_by_losers)


def _process_racer(ledger_dir, name, i, barrier, out) -> None:
    try:
        ledger = Ledger(ledger_dir)
        barrier.wait(timeout=90)
        won = ledger.create(_record(name, owner=f"process-{i}"))
        seen = ledger.get(name)
        out.put((i, won, seen.owner if seen else None, None))
    except BaseException as exc:  # noqa: BLE001
        out.put((i, None, None, repr(exc)))


def test_processes_racing_to_create_exactly_one_wins(ledger_dir):
    # spawn, not fork: the test process runs threads (the session's Dask cluster, storage
    # clients), and a fork taken while one holds a lock can hang its child. Each child
    # imports afresh (a few seconds), inherits the environment (STORAGE_EMULATOR_HOST, ...)
    # and builds its own storage client.
    ctx = multiprocessing.get_context("spawn")
    name = "req-process-race"
    n = 4
    barrier = ctx.Barrier(n)
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_process_racer, args=(ledger_dir, name, i, barrier, out))
        for i in range(n)
    ]
    for p in procs:
        p.start()
    try:
        results = [out.get(timeout=120) for _ in range(n)]
    except queue.Empty:
        pytest.fail("a racing process did not report within 120 s")
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
                p.join(timeout=5)
    assert [r[3] for r in results] == [None] * n, results
    winners = [i for i, won, _, _ in results if won]
    assert len(winners) == 1, results
    # Every process, winner or loser, reads back the winner's record.
    assert {owner for _, _, owner, _ in results} == {f"process-{winners[0]}"}
    assert Ledger(ledger_dir).get(name).owner == f"process-{winners[0]}"


# ---------------------------------------------------------------- update


def test_update_after_get(ledger_dir):
    assert Ledger(ledger_dir).create(_record())
    ledger = Ledger(ledger_dir)
    record = ledger.get("req-00001")
    uploaded = ledger.update(record, state="UPLOADED", file_name="files/abc")
    assert uploaded.state == "UPLOADED" and uploaded.file_name == "files/abc"
    assert uploaded.owner == "owner-a"
    # Chained updates from the same instance keep working (the generation is tracked).
    created = ledger.update(uploaded, state="PENDING", job_name="batches/1", attempts=1)
    fresh = Ledger(ledger_dir).get("req-00001")
    assert fresh == created
    assert (fresh.state, fresh.file_name, fresh.job_name, fresh.attempts) == (
        "PENDING", "files/abc", "batches/1", 1,
    )


def test_update_right_after_create(ledger_dir):
    # The driver's path: create, then update without reading back.
    ledger = Ledger(ledger_dir)
    record = _record()
    assert ledger.create(record)
    ledger.update(record, state="UPLOADED", file_name="files/x")
    assert Ledger(ledger_dir).get("req-00001").state == "UPLOADED"


def test_stale_update_raises_conflict_on_gcs(gcs_ledger_dir):
    assert Ledger(gcs_ledger_dir).create(_record())
    a, b = Ledger(gcs_ledger_dir), Ledger(gcs_ledger_dir)
    rec_a, rec_b = a.get("req-00001"), b.get("req-00001")

    a.update(rec_a, state="UPLOADED", file_name="files/from-a")
    with pytest.raises(LedgerConflict):
        b.update(rec_b, state="UPLOADED", file_name="files/from-b")
    assert Ledger(gcs_ledger_dir).get("req-00001").file_name == "files/from-a"

    # After re-reading, b's compare-and-set succeeds.
    b.update(b.get("req-00001"), state="PENDING", job_name="batches/b")
    final = Ledger(gcs_ledger_dir).get("req-00001")
    assert (final.state, final.file_name, final.job_name) == ("PENDING", "files/from-a", "batches/b")
    # ...and now a's generation is the stale one.
    with pytest.raises(LedgerConflict):
        a.update(rec_a, state="FAILED")


def test_update_after_someone_else_created_conflicts_on_gcs(gcs_ledger_dir):
    """A loser of the create race that tries to update with its own record is refused."""
    winner, loser = Ledger(gcs_ledger_dir), Ledger(gcs_ledger_dir)
    assert winner.create(_record(owner="winner"))
    stale = loser.get("req-00001")
    winner.update(stale, state="UPLOADED")
    with pytest.raises(LedgerConflict):
        loser.update(stale, owner="loser")
    assert Ledger(gcs_ledger_dir).get("req-00001").owner == "winner"


# ---------------------------------------------------------------- all() and records


def test_all_lists_records(ledger_dir):
    ledger = Ledger(ledger_dir)
    assert ledger.all() == []
    for i in (3, 1, 2):
        assert ledger.create(_record(f"req-{i:05d}", est_tokens=i))
    ledger.update(ledger.get("req-00002"), state="RUNNING")

    records = Ledger(ledger_dir).all()
    assert [r.request_name for r in records] == ["req-00001", "req-00002", "req-00003"]
    assert [r.est_tokens for r in records] == [1, 2, 3]
    assert records[1].state == "RUNNING"


def test_all_ignores_non_record_objects(ledger_dir):
    from transforms import fs

    ledger = Ledger(ledger_dir)
    assert ledger.create(_record("req-00001"))
    fs.write_bytes(fs.join(ledger_dir, "notes.txt"), b"not a record")
    fs.write_bytes(fs.join(ledger_dir, "sub", "req-nested.json"), _record("req-nested").to_bytes())
    assert [r.request_name for r in ledger.all()] == ["req-00001"]


def _full_record() -> LedgerRecord:
    """A record with every field set to a non-default value (new fields get one too)."""
    rec = _record(
        "req-00042",
        owner="host:1234",
        state="SUCCEEDED",
        file_name="files/abc",
        job_name="batches/xyz",
        output_file="files/out",
        attempts=2,
        error="quota: retry later",
        est_tokens=12345,
        history=(("CLAIMED", "2026-01-01T00:00:00+00:00"), ("RUNNING", "2026-01-01T00:05:00+00:00")),
        media_files=(("0123abcd.mp4", "files/media1", "https://example/files/media1"),),
        updated_at="2026-01-01T00:10:00+00:00",
    )
    defaults = _record()
    for f in dataclasses.fields(LedgerRecord):
        if getattr(rec, f.name) == getattr(defaults, f.name) and f.name not in ("history", "media_files"):
            value = getattr(defaults, f.name)
            new = f"set-{f.name}" if value is None or isinstance(value, str) else value + 7
            rec = dataclasses.replace(rec, **{f.name: new})
    return rec


def test_record_round_trips_through_bytes():
    rec = _full_record()
    data = rec.to_bytes()
    assert LedgerRecord.from_bytes(data) == rec
    assert isinstance(LedgerRecord.from_bytes(data).history[0], tuple)
    assert rec.to_bytes() == data  # deterministic (sorted keys)
    assert LedgerRecord.from_bytes(_record().to_bytes()) == _record()


def test_record_round_trips_through_ledger(ledger_dir):
    rec = _full_record()
    ledger = Ledger(ledger_dir)
    assert ledger.create(rec)
    stored = Ledger(ledger_dir).get(rec.request_name)
    assert dataclasses.replace(stored, updated_at=rec.updated_at) == rec
    assert stored.history == rec.history


def test_each_record_version_is_taken_over_by_exactly_one_contender(ledger_dir):
    """A FAILED job and, a moment later, an EXPIRED resubmission of the same file are two
    record versions: each can be taken over once, even within the same second."""
    ledger = Ledger(ledger_dir)
    assert ledger.create(_record())
    first = ledger.get("req-00001")
    taken = ledger.take_over(first, "owner-b")
    with pytest.raises(LedgerConflict):
        Ledger(ledger_dir).take_over(first, "owner-c")  # same version: the loser
    failed_again = ledger.update(taken, state="EXPIRED")
    again = ledger.take_over(failed_again, "owner-b")  # a later version: allowed
    assert again.owner == "owner-b" and again.version == failed_again.version + 1

"""transforms.gemini_client against the emulator: the production path, every fault path."""
from __future__ import annotations

import base64
import io
import json
import logging
import pickle

import httpx
import numpy as np
import pytest
from PIL import Image

from pipeline.emulator import EmulatorServer
from transforms.gemini_client import (
    ApiCallError, ApiKeyMissing, BatchClient, JobInfo, JobWaitTimeout, QuotaExhausted,
    api_key_from_env, classify_error, make_client, parse_result_line,
)

pytestmark = pytest.mark.filterwarnings("ignore:batches.create_embeddings")

from conftest import EMULATOR_KEY as KEY  # noqa: E402
MODEL = "gemini-embedding-2"
HTTP = httpx.Client(timeout=10)
SAFETY_S = 120  # waits for jobs that end on their own; a safety net, not a race




def connect(base_url: str, key: str = KEY, **kw) -> BatchClient:
    kw = {"retry_attempts": 4, "initial_delay_s": 0.01, "max_delay_s": 0.02, "timeout_s": 10, **kw}
    return BatchClient.connect(base_url, key, **kw)


@pytest.fixture(scope="module")
def bc(server) -> BatchClient:
    return connect(server.base_url)


def faults(server, **settings) -> None:
    r = HTTP.post(server.base_url + "/_emulator/faults", json=settings)
    assert r.status_code == 200, r.text


def request_file(tmp_path, texts: dict[str, str], dims: int | None = 256, name: str = "req.jsonl") -> str:
    path = tmp_path / name
    with path.open("w") as fh:
        for key, text in texts.items():
            request = {"content": {"parts": [{"text": text}]}}
            if dims:
                request["outputDimensionality"] = dims
            fh.write(json.dumps({"key": key, "request": request}) + "\n")
    return str(path)


def run_job(bc: BatchClient, tmp_path, texts: dict[str, str], display_name: str = "run-1/req-0", **kw):
    file_name = bc.upload_jsonl(request_file(tmp_path, texts, **kw), display_name)
    job = bc.create_embeddings_job(MODEL, file_name, display_name)
    return bc.wait_for_job(job.name, poll_s=0.01, max_poll_s=0.05, deadline_s=SAFETY_S)


def results(bc: BatchClient, info: JobInfo) -> dict:
    return {r.key: r for r in map(parse_result_line, bc.download_lines(info.output_file))}


TEXTS = {f"k{i}": f"document number {i} about topic {i % 3}" for i in range(12)}


# -- setup and secrets ----------------------------------------------------------------------
def test_make_client_pins_v1beta_and_leaves_retries_to_batch_client():
    client = make_client("http://127.0.0.1:9", "k", timeout_s=5)
    options = client._api_client._http_options
    assert options.api_version == "v1beta" and options.timeout == 5000
    assert options.retry_options.attempts == 1  # one retry layer, not the SDK's inside ours


def test_an_unreachable_endpoint_is_retried_a_bounded_number_of_times_naming_url_and_cause(caplog):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: connections are refused
    url = f"http://127.0.0.1:{port}"
    sleeps: list[float] = []
    client = BatchClient(make_client(url, "k", timeout_s=5), retry_attempts=4,
                         initial_delay_s=0.01, max_delay_s=0.02, sleep=sleeps.append)
    caplog.set_level(logging.WARNING)
    with pytest.raises(ApiCallError) as exc:
        client.get_job("batches/abc")
    assert exc.value.retryable and "ConnectError" in str(exc.value)
    assert len(sleeps) == 3  # 4 attempts in all: nothing nested inside the SDK
    retries = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retries) == 3
    assert all(url in line and "ConnectError" in line for line in retries), retries


def test_api_key_from_env(monkeypatch):
    for name in ("MY_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ApiKeyMissing, match="MY_KEY"):
        api_key_from_env("MY_KEY")
    monkeypatch.setenv("GOOGLE_API_KEY", "g")
    assert api_key_from_env("MY_KEY") == "g"
    monkeypatch.setenv("GEMINI_API_KEY", "m")
    assert api_key_from_env("MY_KEY") == "m"
    monkeypatch.setenv("MY_KEY", "  mine ")
    assert api_key_from_env("MY_KEY") == "mine"


def test_api_key_never_in_repr_logs_errors_or_pickles(server, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    client = connect(server.base_url)
    info = run_job(client, tmp_path, {"a": "hello"})
    lines = list(client.download_lines(info.output_file))
    assert KEY not in repr(client) and KEY not in repr(info) and KEY not in repr(parse_result_line(lines[0]))
    with pytest.raises(TypeError):
        pickle.dumps(client)
    wrong = connect(server.base_url, key="sk-WRONG-key-777")
    with pytest.raises(ApiCallError) as exc:
        wrong.get_job(info.name)
    assert exc.value.code == 400 and not exc.value.retryable
    assert "sk-WRONG-key-777" not in str(exc.value) and "sk-WRONG-key-777" not in repr(exc.value)
    faults(server, http_errors=[{"count": 1, "code": 503, "path": "batches/"}])
    client.get_job(info.name)  # a retried failure is logged by the SDK's retry machinery
    assert KEY not in caplog.text and "sk-WRONG-key-777" not in caplog.text
    assert caplog.records  # something was logged, so the check above means something


# -- the main flow --------------------------------------------------------------------------
def test_upload_create_wait_download_parse(bc, server, tmp_path):
    info = run_job(bc, tmp_path, TEXTS)
    assert info.state == "SUCCEEDED" and info.done and info.display_name == "run-1/req-0"
    assert info.stats == {"request_count": 12, "successful_request_count": 12,
                          "failed_request_count": 0, "pending_request_count": 0}
    assert info.output_file.startswith("files/batch-") and info.create_time and info.end_time
    by_key = results(bc, info)
    assert set(by_key) == set(TEXTS)
    assert all(r.ok and r.values.shape == (256,) and r.values.dtype == np.float32 for r in by_key.values())
    assert all(r.token_count and r.token_count > 0 for r in by_key.values())
    stats = server.stats()
    assert stats["jobs_created"] == 1
    assert stats["billed_tokens"] == sum(r.token_count for r in by_key.values())
    bc.delete_file(info.output_file)
    bc.delete_file(info.output_file)  # already gone: fine
    assert server.stats()["files"] == 1


def test_batch_vectors_equal_sync_vectors(bc, tmp_path):
    info = run_job(bc, tmp_path, {"x": "the quick brown fox"})
    batch = results(bc, info)["x"].values
    sync = bc.embed_sync(MODEL, [[{"text": "the quick brown fox"}]], 256)
    np.testing.assert_allclose(sync[0], batch, atol=1e-7)


def test_embed_sync_chunks_and_returns_one_vector_per_item(bc, server):
    contents = [[{"text": f"query {i}"}] for i in range(150)]
    vectors = bc.embed_sync(MODEL, contents, 128)
    assert vectors.shape == (150, 128) and vectors.dtype == np.float32
    assert server.stats()["requests"]["models.batchEmbedContents"] == 2
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (0, 128, 255)).save(buf, format="PNG")
    image = {"inline_data": {"mime_type": "image/png", "data": base64.b64encode(buf.getvalue()).decode()}}
    mixed = bc.embed_sync(MODEL, [[{"text": "a blue square"}, image], [image]])
    assert mixed.shape == (2, 3072)
    assert not np.allclose(mixed[0], mixed[1])
    assert bc.embed_sync(MODEL, [], 128).shape == (0, 128)


def test_embed_sync_permanent_error_is_typed(bc):
    with pytest.raises(ApiCallError) as exc:
        bc.embed_sync("gemini-embedding-001", [[{"inline_data": {"mime_type": "image/png", "data": "AAAA"}}]])
    assert exc.value.code == 400 and exc.value.status == "INVALID_ARGUMENT" and not exc.value.retryable


def test_upload_media_waits_until_active_and_is_referencable(tmp_path):
    with EmulatorServer(api_key=KEY, file_processing_seconds=0.1) as srv:
        bc = connect(srv.base_url)
        video = tmp_path / "clip.mp4"
        import media_factory as mf  # the emulator decodes video: it must be a real clip

        mf.h264_mp4(video, seconds=1, size="64x36")
        ref = bc.upload_media(video, "video/mp4", "clip", poll_s=0.02)
        assert ref.name.startswith("files/") and ref.uri.endswith(ref.name) and ref.mime_type == "video/mp4"
        assert srv.stats()["requests"]["files.get"] >= 1
        vec = bc.embed_sync(MODEL, [[{"file_data": {"file_uri": ref.uri, "mime_type": "video/mp4"}}]], 128)
        assert vec.shape == (1, 128)


# -- fault paths ----------------------------------------------------------------------------
def test_429_burst_is_recovered_by_sdk_retries(bc, server, tmp_path):
    info = run_job(bc, tmp_path, {"a": "x"})
    before = server.stats()["requests"]["batches.get"]
    faults(server, http_errors=[{"count": 3, "code": 429, "method": "GET", "path": "^/v1beta/batches/"}])
    assert bc.get_job(info.name).state == "SUCCEEDED"
    assert server.stats()["requests"]["batches.get"] == before + 4


def test_5xx_after_create_finds_the_job_instead_of_duplicating(bc, server, tmp_path):
    faults(server, http_errors=[{"count": 1, "code": 503, "path": "asyncBatchEmbedContent", "after": True}])
    file_name = bc.upload_jsonl(request_file(tmp_path, {"a": "x"}), "run-7/req-3")
    job = bc.create_embeddings_job(MODEL, file_name, "run-7/req-3")
    stats = server.stats()
    assert stats["jobs_created"] == 1 and stats["jobs"][0]["name"] == job.name
    assert stats["requests"]["models.asyncBatchEmbedContent"] == 1  # no second create
    assert stats["requests"]["batches.list"] >= 1
    assert bc.wait_for_job(job.name, poll_s=0.01, deadline_s=SAFETY_S).state == "SUCCEEDED"


def test_5xx_before_create_creates_once(bc, server, tmp_path):
    faults(server, http_errors=[{"count": 1, "code": 500, "path": "asyncBatchEmbedContent"}])
    file_name = bc.upload_jsonl(request_file(tmp_path, {"a": "x"}), "run-8")
    job = bc.create_embeddings_job(MODEL, file_name, "run-8")
    stats = server.stats()
    assert stats["jobs_created"] == 1 and stats["jobs"][0]["name"] == job.name
    assert stats["requests"]["models.asyncBatchEmbedContent"] == 2


def test_429_on_create_is_quota_exhausted_not_retried(bc, server, tmp_path):
    faults(server, http_errors=[{"count": 1, "code": 429, "path": "asyncBatchEmbedContent", "retry_delay_s": 12}])
    file_name = bc.upload_jsonl(request_file(tmp_path, {"a": "x"}), "run-9")
    with pytest.raises(QuotaExhausted) as exc:
        bc.create_embeddings_job(MODEL, file_name, "run-9")
    assert exc.value.retry_after_s == 12 and exc.value.retryable
    assert server.stats()["requests"]["models.asyncBatchEmbedContent"] == 1


def test_enqueued_token_quota(tmp_path):
    with EmulatorServer(api_key=KEY, faults={"hold_jobs": "PENDING"}, quota_tokens=100) as srv:
        bc = connect(srv.base_url)
        file_name = bc.upload_jsonl(request_file(tmp_path, {"a": "word " * 60}), "q")
        bc.create_embeddings_job(MODEL, file_name, "q-1")
        with pytest.raises(QuotaExhausted) as exc:
            bc.create_embeddings_job(MODEL, file_name, "q-2")
        assert exc.value.retry_after_s == 30
        assert srv.stats()["jobs_created"] == 1


def test_failed_job_error_is_surfaced(bc, server, tmp_path):
    faults(server, fail_next_jobs=1, job_error_message="Quota project suspended (injected).")
    info = run_job(bc, tmp_path, {"a": "x"})
    assert info.state == "FAILED" and info.output_file is None
    assert info.error == "Quota project suspended (injected)." and info.error_code == 13


def test_expired_job_has_no_output(bc, server, tmp_path):
    faults(server, expire_next_jobs=1)
    info = run_job(bc, tmp_path, {"a": "x"})
    assert info.state == "EXPIRED" and info.output_file is None and info.error is None


def test_per_line_errors_by_key_and_by_fraction(bc, server, tmp_path):
    faults(server, line_error_keys=["k3"], line_error_fraction=0.25, seed=7)
    info = run_job(bc, tmp_path, TEXTS)
    by_key = results(bc, info)
    failed = {k for k, r in by_key.items() if not r.ok}
    assert "k3" in failed and 1 < len(failed) < len(TEXTS)
    assert all(by_key[k].error_code == 13 and by_key[k].retryable for k in failed)
    assert info.stats["failed_request_count"] == len(failed)
    again = results(bc, run_job(bc, tmp_path, TEXTS, display_name="again"))
    assert {k for k, r in again.items() if not r.ok} == failed  # deterministic by key


def test_shuffled_output_is_joined_by_key(bc, server, tmp_path):
    faults(server, shuffle_output=True)
    info = run_job(bc, tmp_path, TEXTS)
    lines = list(bc.download_lines(info.output_file))
    order = [json.loads(line)["key"] for line in lines]
    assert order != list(TEXTS) and sorted(order) == sorted(TEXTS)
    by_key = results(bc, info)
    expected = bc.embed_sync(MODEL, [[{"text": t}] for t in TEXTS.values()], 256)
    for i, key in enumerate(TEXTS):
        np.testing.assert_allclose(by_key[key].values, expected[i], atol=1e-7)


def test_slow_job_times_out_then_finishes(bc, server, tmp_path):
    server.hold_jobs("RUNNING")  # slow for as long as the test wants, on any machine
    file_name = bc.upload_jsonl(request_file(tmp_path, {"a": "x"}), "slow")
    job = bc.create_embeddings_job(MODEL, file_name, "slow")
    with pytest.raises(JobWaitTimeout) as exc:
        bc.wait_for_job(job.name, poll_s=0.01, deadline_s=0.05)
    assert exc.value.state == "RUNNING"
    server.release_jobs()
    assert bc.wait_for_job(job.name, poll_s=0.02, max_poll_s=0.05, deadline_s=SAFETY_S).state == "SUCCEEDED"


def test_download_retries_transient_errors(bc, server, tmp_path):
    info = run_job(bc, tmp_path, {"a": "x"})
    faults(server, http_errors=[{"count": 2, "code": 503, "path": ":download$"}])
    assert [json.loads(line)["key"] for line in bc.download_lines(info.output_file)] == ["a"]
    assert server.stats()["requests"]["files.download"] == 3


def test_cancel_job(tmp_path):
    with EmulatorServer(api_key=KEY, faults={"hold_jobs": "PENDING"}) as srv:
        bc = connect(srv.base_url)
        job = bc.create_embeddings_job(MODEL, bc.upload_jsonl(request_file(tmp_path, {"a": "x"}), "c"), "c")
        assert job.state == "PENDING"
        bc.cancel_job(job.name)
        assert bc.wait_for_job(job.name, poll_s=0.01, deadline_s=SAFETY_S).state == "CANCELLED"


def test_restart_with_state_dir_keeps_jobs_for_the_client(tmp_path):
    state = tmp_path / "state"
    with EmulatorServer(api_key=KEY, state_dir=state, faults={"hold_jobs": "PENDING"}) as first:
        bc = connect(first.base_url)
        job = bc.create_embeddings_job(MODEL, bc.upload_jsonl(request_file(tmp_path, {"a": "x"}), "r"), "r")
    with EmulatorServer(api_key=KEY, state_dir=state) as second:
        bc = connect(second.base_url)
        assert bc.find_job_by_display_name("r").name == job.name
        assert bc.get_job(job.name).state == "PENDING"
        second.release_jobs()
        info = bc.wait_for_job(job.name, poll_s=0.01, deadline_s=SAFETY_S)
        assert info.state == "SUCCEEDED" and results(bc, info)["a"].ok


def test_get_job_rejects_bad_names(bc):
    with pytest.raises(ValueError):
        bc.get_job("files/abc")


# -- parsing ---------------------------------------------------------------------------------
def test_parse_result_line_variants():
    ok = parse_result_line('{"response":{"tokenCount":"7","embedding":{"values":[0.5,-0.5]}},"key":"a"}')
    assert ok.ok and ok.key == "a" and ok.token_count == 7 and ok.values.tolist() == [0.5, -0.5]
    usage = parse_result_line(json.dumps({"key": "b", "response": {
        "embedding": {"values": [1]}, "usageMetadata": {"promptTokenCount": 9}}}))
    assert usage.token_count == 9
    grpc = parse_result_line('{"key":"c","error":{"code":3,"message":"too long"}}')
    assert not grpc.ok and grpc.error_code == 3 and grpc.error_message == "too long" and not grpc.retryable
    nested = parse_result_line('{"key":"d","response":{"error":{"code":503,"message":"busy"}}}')
    assert nested.error_code == 503 and nested.retryable
    status_only = parse_result_line('{"key":"e","error":{"status":"RESOURCE_EXHAUSTED"}}')
    assert status_only.retryable and status_only.error_message == "RESOURCE_EXHAUSTED"
    for bad in ("not json", "[1,2]", '{"key":"f"}', '{"key":"g","response":{"embedding":{"values":"x"}}}',
                '{"key":"h","response":{"embedding":{"values":[NaN]}}}', b"\xff\xfe", ""):
        result = parse_result_line(bad)
        assert not result.ok and result.error_message and result.retryable
    assert parse_result_line('{"key":"f"}').key == "f"


@pytest.mark.parametrize("code,status,retryable", [
    (429, None, True), (500, None, True), (503, None, True), (504, None, True), (408, None, True),
    (400, None, False), (403, None, False), (404, None, False), (501, None, False),
    (8, None, True), (13, None, True), (14, None, True), (4, None, True),
    (3, None, False), (7, None, False), (5, None, False), (16, None, False),
    (None, "RESOURCE_EXHAUSTED", True), (None, "UNAVAILABLE", True), (None, "INTERNAL", True),
    (None, "DEADLINE_EXCEEDED", True), (400, "INVALID_ARGUMENT", False), (403, "PERMISSION_DENIED", False),
    (None, None, True), ("13", None, True),
])
def test_classify_error(code, status, retryable):
    assert classify_error(code, status) is retryable


def test_job_info_from_operation_handles_stale_state_and_aliases():
    op = {"name": "batches/x", "done": True, "metadata": {"state": "BATCH_STATE_RUNNING"},
          "response": {"responsesFile": "files/batch-x"}}
    info = JobInfo.from_operation(op)
    assert info.state == "SUCCEEDED" and info.output_file == "files/batch-x"
    failed = JobInfo.from_operation({"name": "batches/y", "done": True, "metadata": {"state": "JOB_STATE_RUNNING"},
                                     "error": {"code": 13, "message": "boom"}})
    assert failed.state == "FAILED" and failed.error == "boom"
    assert JobInfo.from_operation({"name": "batches/z", "metadata": {}}).state == "PENDING"
    assert JobInfo.from_operation({"name": "batches/z", "metadata": {"state": "BATCH_STATE_WEIRD"}}).state == "RUNNING"

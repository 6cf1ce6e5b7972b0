"""The Gemini API emulator, driven through the unmodified google-genai SDK.

Raw HTTP (httpx) is used only where the SDK hides something: batchStats, error bodies,
headers, admin endpoints.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import time

import httpx
import numpy as np
import pytest
from google import genai
from google.genai import errors, types
from PIL import Image

from pipeline.emulator import EmulatorServer

pytestmark = pytest.mark.filterwarnings("ignore:batches.create_embeddings")

from conftest import EMULATOR_KEY as KEY  # noqa: E402
HTTP = httpx.Client(timeout=10)  # one client: building one per call costs ~70 ms




def sdk(base_url: str, version: str = "v1beta", key: str = KEY) -> genai.Client:
    return genai.Client(api_key=key, http_options=types.HttpOptions(base_url=base_url, api_version=version))


@pytest.fixture(scope="module")
def client(server):
    return sdk(server.base_url)


def raw(server, method: str, path: str, **kw) -> httpx.Response:
    headers = {"x-goog-api-key": KEY, **kw.pop("headers", {})}
    return HTTP.request(method, server.base_url + path, headers=headers, **kw)


def text_line(key: str, text: str, dims: int | None = None, **extra) -> dict:
    request = {"content": {"parts": [{"text": text}]}, **extra}
    if dims:
        request["output_dimensionality"] = dims
    return {"key": key, "request": request}


def write_jsonl(path, lines) -> str:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return str(path)


def png_bytes(color=(200, 30, 30), size=(32, 32)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def wait_done(client: genai.Client, name: str, timeout: float = 120.0) -> types.BatchJob:
    """Poll until the job ends. The timeout is a safety net for a broken emulator, never
    a race: every job here ends on its own (no latency) or by an explicit release."""
    deadline = time.monotonic() + timeout
    while True:
        job = client.batches.get(name=name)
        if job.done or time.monotonic() > deadline:
            return job
        time.sleep(0.01)


def run_file_job(client, tmp_path, lines, model="gemini-embedding-2", display_name="job"):
    up = client.files.upload(file=write_jsonl(tmp_path / f"{display_name}.jsonl", lines),
                             config={"mime_type": "jsonl", "display_name": display_name})
    job = client.batches.create_embeddings(model=model, src={"file_name": up.name},
                                           config={"display_name": display_name})
    job = wait_done(client, job.name)
    assert job.state == types.JobState.JOB_STATE_SUCCEEDED, job.state
    out = client.files.download(file=job.dest.file_name).decode().splitlines()
    return job, {json.loads(line)["key"]: json.loads(line) for line in out}


# -- the main flow ------------------------------------------------------------------------
def test_upload_create_poll_download_parse(client, server, tmp_path):
    lines = [text_line("a", "The cat sat on the mat."), text_line("b", "Stocks fell sharply.", dims=768),
             text_line("c", "title: Plants | text: Photosynthesis turns light into sugar.", dims=128)]
    job, by_key = run_file_job(client, tmp_path, lines)
    assert job.name.startswith("batches/") and len(job.name.split("/")[1]) == 36
    assert job.name.split("/")[1].isalnum() and job.name.split("/")[1] == job.name.split("/")[1].lower()
    assert job.dest.file_name == f"files/batch-{job.name.split('/')[1]}"
    assert set(by_key) == {"a", "b", "c"}
    a = np.array(by_key["a"]["response"]["embedding"]["values"])
    assert a.shape == (3072,) and abs(np.linalg.norm(a) - 1) < 1e-5
    assert len(by_key["b"]["response"]["embedding"]["values"]) == 768
    assert len(by_key["c"]["response"]["embedding"]["values"]) == 128
    assert isinstance(by_key["a"]["response"]["tokenCount"], str) and int(by_key["a"]["response"]["tokenCount"]) > 0
    op = raw(server, "GET", f"/v1beta/{job.name}").json()
    assert op["done"] is True
    assert op["metadata"]["state"] == "BATCH_STATE_SUCCEEDED"
    assert op["metadata"]["batchStats"] == {"requestCount": "3", "successfulRequestCount": "3",
                                            "failedRequestCount": "0", "pendingRequestCount": "0"}
    assert op["metadata"]["output"] == {"responsesFile": job.dest.file_name}
    assert op["response"]["responsesFile"] == job.dest.file_name
    out_file = client.files.get(name=job.dest.file_name)
    assert out_file.source == types.FileSource.GENERATED and out_file.download_uri
    stats = raw(server, "GET", "/_emulator/stats").json()
    assert stats["jobs_created"] == 1
    assert stats["jobs"][0]["line_count"] == 3 and stats["jobs"][0]["display_name"] == "job"
    assert stats["billed_tokens"] == sum(int(v["response"]["tokenCount"]) for v in by_key.values())


def test_job_moves_pending_running_succeeded_as_released(tmp_path):
    """Each state is held until the test moves it on: no clock, no race."""
    with EmulatorServer(api_key=KEY) as srv:
        client = sdk(srv.base_url)
        up = client.files.upload(file=write_jsonl(tmp_path / "x.jsonl", [text_line("k", "hi")]),
                                 config={"mime_type": "jsonl"})
        srv.hold_jobs("PENDING")
        job = client.batches.create_embeddings(model="gemini-embedding-2", src={"file_name": up.name})
        assert job.state == types.JobState.JOB_STATE_PENDING
        assert client.batches.get(name=job.name).state == types.JobState.JOB_STATE_PENDING
        assert srv.release_jobs(hold="RUNNING") == [job.name]
        assert srv.wait_idle()
        assert client.batches.get(name=job.name).state == types.JobState.JOB_STATE_RUNNING
        assert srv.stats()["jobs"][0]["held"] == "RUNNING"
        assert srv.release_jobs() == [job.name]
        assert srv.wait_idle()
        done = client.batches.get(name=job.name)
        assert done.state == types.JobState.JOB_STATE_SUCCEEDED
        assert json.loads(client.files.download(file=done.dest.file_name))["key"] == "k"


def test_job_states_follow_the_clock():
    """The wall-clock life of a job, evaluated at chosen instants (``JobRecord.state`` is a
    pure function of the time, so nothing here waits)."""
    from pipeline.emulator.state import JobRecord

    def job(**kw) -> JobRecord:
        fields = dict(id="x", model="models/m", display_name="", input_file=None, request_count=1,
                      estimated_tokens=1, create_time=0.0, pending_until=1.0, ends_at=2.0,
                      outcome="SUCCEEDED", processed_at=1.5)
        return JobRecord(**{**fields, **kw})

    states = [job().state(t) for t in (0.0, 0.99, 1.0, 1.99, 2.0, 100.0)]
    assert states == ["PENDING", "PENDING", "RUNNING", "RUNNING", "SUCCEEDED", "SUCCEEDED"]
    assert job(processed_at=None).state(100.0) == "RUNNING"  # no output yet: still running
    assert job(processed_at=5.0).end_time(6.0) == 5.0  # ended when its output was ready
    assert [job(outcome="FAILED").state(t) for t in (0.5, 1.5, 2.5)] == ["PENDING", "RUNNING", "FAILED"]
    assert job(outcome="EXPIRED", processed_at=None).state(2.0) == "EXPIRED"
    assert job(cancelled_at=0.5).state(0.6) == "CANCELLED"
    assert job(held="PENDING").state(100.0) == "PENDING" and job(held="RUNNING").state(0.0) == "RUNNING"
    released = job(held="PENDING")
    released.release(now=50.0)  # as if created at 50: its 1 s pending and 1 s running follow
    assert [released.state(t) for t in (50.5, 51.5, 52.5)] == ["PENDING", "RUNNING", "SUCCEEDED"]


def test_inline_requests_create(client):
    job = client.batches.create_embeddings(
        model="gemini-embedding-2",
        src={"inlined_requests": {"contents": [{"parts": [{"text": "one"}]}, {"parts": [{"text": "two"}]}],
                                  "config": {"output_dimensionality": 256}}},
        config={"display_name": "inline"})
    job = wait_done(client, job.name)
    responses = job.dest.inlined_embed_content_responses
    assert len(responses) == 2
    assert all(len(r.response.embedding.values) == 256 for r in responses)
    sync = client.models.embed_content(model="gemini-embedding-2", contents=[types.Content(parts=[types.Part(text="two")])],
                                       config={"output_dimensionality": 256})
    np.testing.assert_allclose(responses[1].response.embedding.values, sync.embeddings[0].values, atol=1e-7)


def test_camel_case_fields_and_file_name_spelling(server, client, tmp_path):
    img = base64.b64encode(png_bytes()).decode()
    snake = {"content": {"parts": [{"text": "red square"}, {"inline_data": {"mime_type": "image/png", "data": img}}]},
             "output_dimensionality": 256, "task_type": "RETRIEVAL_DOCUMENT"}
    camel = {"content": {"parts": [{"text": "red square"}, {"inlineData": {"mimeType": "image/png", "data": img}}]},
             "outputDimensionality": 256, "taskType": "RETRIEVAL_DOCUMENT"}
    a = raw(server, "POST", "/v1beta/models/gemini-embedding-2:batchEmbedContents", json={"requests": [snake, camel]})
    assert a.status_code == 200, a.text
    first, second = (e["values"] for e in a.json()["embeddings"])
    assert first == second and len(first) == 256
    up = client.files.upload(file=write_jsonl(tmp_path / "c.jsonl", [{"key": "k", "request": camel}]),
                             config={"mime_type": "jsonl"})
    created = raw(server, "POST", "/v1beta/models/gemini-embedding-2:asyncBatchEmbedContent",
                  json={"batch": {"displayName": "camel", "inputConfig": {"fileName": up.name}}})
    assert created.status_code == 200, created.text
    job = wait_done(client, created.json()["name"])
    line = json.loads(client.files.download(file=job.dest.file_name))
    assert line["response"]["embedding"]["values"] == first


# -- files -------------------------------------------------------------------------------
def test_resumable_upload_protocol_and_file_resource(server):
    data = b'{"key": "a"}\n'
    start = raw(server, "POST", "/upload/v1beta/files",
                headers={"X-Goog-Upload-Protocol": "resumable", "X-Goog-Upload-Command": "start",
                         "X-Goog-Upload-Header-Content-Length": str(len(data)),
                         "X-Goog-Upload-Header-Content-Type": "jsonl"},
                json={"file": {"display_name": "raw-upload"}})
    assert start.status_code == 200
    assert start.headers["x-goog-upload-status"] == "active"
    url = start.headers["x-goog-upload-url"]
    assert url.startswith(server.base_url + "/upload/v1beta/files?upload_id=")
    first = HTTP.post(url, content=data[:5], headers={"X-Goog-Upload-Command": "upload", "X-Goog-Upload-Offset": "0"})
    assert first.status_code == 200 and first.headers["x-goog-upload-status"] == "active"
    final = HTTP.post(url, content=data[5:],  # no API key on the session URL
                       headers={"X-Goog-Upload-Command": "upload, finalize", "X-Goog-Upload-Offset": "5"})
    assert final.status_code == 200 and final.headers["x-goog-upload-status"] == "final"
    file = final.json()["file"]
    assert file["sizeBytes"] == str(len(data)) and file["mimeType"] == "jsonl"
    assert file["displayName"] == "raw-upload" and file["state"] == "ACTIVE" and file["source"] == "UPLOADED"
    assert base64.b64decode(file["sha256Hash"]).decode() == hashlib.sha256(data).hexdigest()
    assert file["uri"].endswith("/v1beta/" + file["name"]) and "downloadUri" not in file
    assert {"createTime", "updateTime", "expirationTime"} <= set(file)
    got = raw(server, "GET", f"/v1beta/{file['name']}").json()
    assert got == file


def test_files_list_paging_get_delete(client, tmp_path):
    names = []
    for i in range(5):
        p = tmp_path / f"f{i}.jsonl"
        p.write_text("{}\n")
        names.append(client.files.upload(file=str(p), config={"mime_type": "jsonl"}).name)
    pager = client.files.list(config={"page_size": 2})
    assert len(pager.page) == 2
    assert sorted(f.name for f in pager) == sorted(names)
    client.files.delete(name=names[0])
    with pytest.raises(errors.ClientError) as exc:
        client.files.get(name=names[0])
    assert exc.value.code == 403 and exc.value.status == "PERMISSION_DENIED"
    assert len(list(client.files.list(config={"page_size": 3}))) == 4


def test_download_of_uploaded_file_is_refused(client, tmp_path, server):
    p = tmp_path / "x.jsonl"
    p.write_text("{}\n")
    up = client.files.upload(file=str(p), config={"mime_type": "jsonl"})
    with pytest.raises(errors.ClientError) as exc:
        client.files.download(file=up.name)
    assert exc.value.code == 400
    assert raw(server, "GET", f"/download/v1beta/{up.name}:download?alt=media").status_code == 400


def test_both_download_paths_serve_generated_files(client, server, tmp_path):
    job, _ = run_file_job(client, tmp_path, [text_line("k", "hello")])
    name = job.dest.file_name
    a = raw(server, "GET", f"/v1beta/{name}:download?alt=media")
    b = raw(server, "GET", f"/download/v1beta/{name}:download?alt=media")
    assert a.status_code == b.status_code == 200 and a.content == b.content
    assert json.loads(a.content)["key"] == "k"


def test_v1_and_v1beta_prefixes(server, tmp_path):
    v1 = sdk(server.base_url, version="v1")
    emb = v1.models.embed_content(model="gemini-embedding-001", contents=["hello"], config={"output_dimensionality": 128})
    assert len(emb.embeddings[0].values) == 128
    job, by_key = run_file_job(v1, tmp_path, [text_line("k", "hi")])
    assert by_key["k"]["response"]["embedding"]["values"]
    assert raw(server, "GET", "/v1/batches").status_code == 200
    assert raw(server, "GET", "/v1alpha/files").status_code == 200
    assert raw(server, "GET", "/v2/files").status_code == 404


# -- auth and errors -----------------------------------------------------------------------
def test_missing_api_key_is_403(server):
    r = HTTP.get(server.base_url + "/v1beta/batches")
    assert r.status_code == 403
    assert r.json()["error"]["status"] == "PERMISSION_DENIED"


def test_wrong_api_key_is_400_api_key_invalid(server):
    wrong = sdk(server.base_url, key="wrong")
    with pytest.raises(errors.ClientError) as exc:
        wrong.models.embed_content(model="gemini-embedding-001", contents=["x"])
    assert exc.value.code == 400 and exc.value.status == "INVALID_ARGUMENT"
    assert "API key not valid" in exc.value.message
    details = exc.value.details["error"]["details"]
    assert details[0]["reason"] == "API_KEY_INVALID"


def test_any_key_accepted_when_emulator_has_none(tmp_path):
    with EmulatorServer() as srv:
        client = sdk(srv.base_url, key="anything")
        emb = client.models.embed_content(model="gemini-embedding-2", contents=["x"])
        assert len(emb.embeddings[0].values) == 3072


def test_more_than_100_sync_requests_is_the_verbatim_400(client):
    with pytest.raises(errors.ClientError) as exc:
        client.models.embed_content(model="gemini-embedding-001", contents=[f"t{i}" for i in range(101)])
    assert exc.value.code == 400
    assert exc.value.message == "* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch\n"


def test_sync_responses_in_order_and_embedding_2_folds_parts(client):
    texts = ["alpha beta", "gamma delta", "epsilon"]
    per_text = client.models.embed_content(model="gemini-embedding-001", contents=texts)
    assert len(per_text.embeddings) == 3
    singles = [client.models.embed_content(model="gemini-embedding-001", contents=[t]).embeddings[0].values
               for t in texts]
    assert [e.values for e in per_text.embeddings] == singles
    folded = client.models.embed_content(model="gemini-embedding-2", contents=texts)
    assert len(folded.embeddings) == 1
    items = client.models.embed_content(model="gemini-embedding-2",
                                        contents=[types.Content(parts=[types.Part(text=t)]) for t in texts])
    assert len(items.embeddings) == 3


def test_request_model_must_match_url_model(server):
    body = {"requests": [{"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "x"}]}}]}
    r = raw(server, "POST", "/v1beta/models/gemini-embedding-2:batchEmbedContents", json=body)
    assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_embedding_001_rejects_media_parts(client):
    image = types.Part(inline_data=types.Blob(mime_type="image/png", data=png_bytes()))
    with pytest.raises(errors.ClientError) as exc:
        client.models.embed_content(model="gemini-embedding-001", contents=[types.Content(parts=[image])])
    assert exc.value.code == 400 and exc.value.status == "INVALID_ARGUMENT"


def test_unknown_model_404_and_bad_dimensionality_400(client):
    with pytest.raises(errors.ClientError) as exc:
        client.models.embed_content(model="gemini-embedding-999", contents=["x"])
    assert exc.value.code == 404 and exc.value.status == "NOT_FOUND"
    for dims in (64, 4096):
        with pytest.raises(errors.ClientError) as exc:
            client.models.embed_content(model="gemini-embedding-2", contents=["x"],
                                        config={"output_dimensionality": dims})
        assert exc.value.code == 400


def test_over_limit_inputs_become_per_line_errors(client, server, tmp_path):
    img = {"inline_data": {"mime_type": "image/png", "data": base64.b64encode(png_bytes()).decode()}}
    lines = [
        text_line("ok", "a normal sentence"),
        text_line("long", "0" * 9000),  # digits: one token each, over 8,192
        {"key": "images", "request": {"content": {"parts": [img] * 7}}},
        {"key": "six", "request": {"content": {"parts": [img] * 6}}},
        {"key": "webp", "request": {"content": {"parts": [
            {"inline_data": {"mime_type": "image/webp", "data": img["inline_data"]["data"]}}]}}},
        {"key": "missing-file", "request": {"content": {"parts": [
            {"file_data": {"file_uri": "files/doesnotexist", "mime_type": "image/png"}}]}}},
    ]
    job, by_key = run_file_job(client, tmp_path, lines)
    assert "response" in by_key["ok"] and "response" in by_key["six"]
    assert int(by_key["six"]["response"]["tokenCount"]) == 6 * 258
    for key in ("long", "images", "webp", "missing-file"):
        assert by_key[key]["error"]["code"] == 3, key
    assert "token count" in by_key["long"]["error"]["message"]
    stats = raw(server, "GET", f"/v1beta/{job.name}").json()["metadata"]["batchStats"]
    assert stats["successfulRequestCount"] == "2" and stats["failedRequestCount"] == "4"
    with pytest.raises(errors.ClientError):
        client.models.embed_content(model="gemini-embedding-2", contents=[types.Content(parts=[types.Part(text="0" * 9000)])])


def test_embedding_001_image_line_is_a_per_line_error(client, tmp_path):
    img = {"inline_data": {"mime_type": "image/png", "data": base64.b64encode(png_bytes()).decode()}}
    _, by_key = run_file_job(client, tmp_path, [{"key": "img", "request": {"content": {"parts": [img]}}},
                                               text_line("t", "text is fine")], model="gemini-embedding-001")
    assert by_key["img"]["error"]["code"] == 3 and "response" in by_key["t"]


def test_file_data_part_references_an_uploaded_file(client, tmp_path):
    p = tmp_path / "img.png"
    p.write_bytes(png_bytes())
    up = client.files.upload(file=str(p), config={"mime_type": "image/png"})
    by_ref = client.models.embed_content(model="gemini-embedding-2", contents=[types.Content(parts=[
        types.Part(file_data=types.FileData(file_uri=up.uri, mime_type="image/png"))])])
    inline = client.models.embed_content(model="gemini-embedding-2", contents=[types.Content(parts=[
        types.Part(inline_data=types.Blob(mime_type="image/png", data=png_bytes()))])])
    assert by_ref.embeddings[0].values == inline.embeddings[0].values
    with pytest.raises(errors.ClientError) as exc:
        client.models.embed_content(model="gemini-embedding-2", contents=[types.Content(parts=[
            types.Part(file_data=types.FileData(file_uri="files/nope", mime_type="image/png"))])])
    assert exc.value.code == 400


def _pdf(pages: int, text: str) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    for i in range(pages):
        pdf.add_page()
        pdf.multi_cell(0, 10, f"{text} page {i}")
    return bytes(pdf.output())


def test_pdf_parts_pages_limit_and_one_heavy_part(client, tmp_path):
    def part(data: bytes) -> types.Part:
        return types.Part(inline_data=types.Blob(mime_type="application/pdf", data=data))

    doc = _pdf(2, "Photosynthesis converts sunlight into chemical energy in plants")
    emb = client.models.embed_content(model="gemini-embedding-2", contents=[types.Content(parts=[part(doc)])])
    query = client.models.embed_content(model="gemini-embedding-2", contents=[
        types.Content(parts=[types.Part(text="task: search result | query: photosynthesis sunlight plants")]),
        types.Content(parts=[types.Part(text="task: search result | query: football championship")])])
    vec = np.array(emb.embeddings[0].values)
    near, far = (np.array(e.values) @ vec for e in query.embeddings)
    assert near > far
    with pytest.raises(errors.ClientError) as exc:
        client.models.embed_content(model="gemini-embedding-2", contents=[types.Content(parts=[part(_pdf(7, "x"))])])
    assert exc.value.code == 400 and "pages" in exc.value.message
    with pytest.raises(errors.ClientError) as exc:
        client.models.embed_content(model="gemini-embedding-2", contents=[types.Content(parts=[part(doc), part(doc)])])
    assert exc.value.code == 400
    import media_factory as mf  # audio/video are decoded: the parts must be real media

    with open(mf.audio_file(tmp_path / "a.mp3", seconds=1), "rb") as fh:
        audio = types.Part(inline_data=types.Blob(mime_type="audio/mpeg", data=fh.read()))
    with open(mf.h264_mp4(tmp_path / "v.mp4", seconds=1, size="64x36"), "rb") as fh:
        video = types.Part(inline_data=types.Blob(mime_type="video/mp4", data=fh.read()))
    with pytest.raises(errors.ClientError):
        client.models.embed_content(model="gemini-embedding-2", contents=[types.Content(parts=[audio, video])])
    ok = client.models.embed_content(model="gemini-embedding-2",
                                     contents=[types.Content(parts=[audio]), types.Content(parts=[video])])
    assert len(ok.embeddings) == 2


# -- batches: list, cancel, delete, failures, quota -----------------------------------------
def test_batches_list_paging(client, server, tmp_path):
    up = client.files.upload(file=write_jsonl(tmp_path / "l.jsonl", [text_line("k", "x")]), config={"mime_type": "jsonl"})
    names = {client.batches.create_embeddings(model="gemini-embedding-2", src={"file_name": up.name},
                                              config={"display_name": f"j{i}"}).name for i in range(3)}
    pager = client.batches.list(config={"page_size": 2})
    assert len(pager.page) == 2
    assert {j.name for j in pager} == names
    first = raw(server, "GET", "/v1beta/batches?pageSize=2").json()
    assert len(first["operations"]) == 2 and first["nextPageToken"]
    assert all("output" not in op["metadata"] and "response" not in op for op in first["operations"])
    rest = raw(server, "GET", f"/v1beta/batches?pageSize=2&pageToken={first['nextPageToken']}").json()
    assert len(rest["operations"]) == 1 and "nextPageToken" not in rest


def test_cancel_and_delete(tmp_path):
    with EmulatorServer(api_key=KEY, faults={"hold_jobs": "PENDING"}) as srv:
        client = sdk(srv.base_url)
        up = client.files.upload(file=write_jsonl(tmp_path / "c.jsonl", [text_line("k", "x")]),
                                 config={"mime_type": "jsonl"})
        job = client.batches.create_embeddings(model="gemini-embedding-2", src={"file_name": up.name})
        client.batches.cancel(name=job.name)
        got = client.batches.get(name=job.name)
        assert got.state == types.JobState.JOB_STATE_CANCELLED and got.done and got.dest is None
        r = raw(srv, "POST", f"/v1beta/{job.name}:cancel")
        assert r.status_code == 200 and r.json() == {}
        client.batches.delete(name=job.name)
        with pytest.raises(errors.ClientError) as exc:
            client.batches.get(name=job.name)
        assert exc.value.code == 404
        assert list(client.batches.list()) == []


def test_failed_job_has_top_level_error_and_expired_has_no_output(server, client, tmp_path):
    HTTP.post(server.base_url + "/_emulator/faults", json={"fail_next_jobs": 1, "expire_next_jobs": 1})
    up = client.files.upload(file=write_jsonl(tmp_path / "f.jsonl", [text_line("k", "x")]), config={"mime_type": "jsonl"})
    failed = client.batches.create_embeddings(model="gemini-embedding-2", src={"file_name": up.name})
    expired = client.batches.create_embeddings(model="gemini-embedding-2", src={"file_name": up.name})
    assert wait_done(client, failed.name).state == types.JobState.JOB_STATE_FAILED
    op = raw(server, "GET", f"/v1beta/{failed.name}").json()
    assert op["done"] and op["error"]["code"] == 13 and "injected" in op["error"]["message"]
    assert "output" not in op["metadata"]
    job = wait_done(client, expired.name)
    assert job.state == types.JobState.JOB_STATE_EXPIRED and job.dest is None
    assert raw(server, "GET", "/_emulator/stats").json()["billed_tokens"] == 0


def test_enqueued_token_quota_429_with_retry_info(tmp_path):
    with EmulatorServer(api_key=KEY, faults={"hold_jobs": "PENDING"}, quota_tokens=30) as srv:
        client = sdk(srv.base_url)
        up = client.files.upload(file=write_jsonl(tmp_path / "q.jsonl", [text_line("k", "word " * 20)]),
                                 config={"mime_type": "jsonl"})
        client.batches.create_embeddings(model="gemini-embedding-2", src={"file_name": up.name})
        with pytest.raises(errors.ClientError) as exc:
            client.batches.create_embeddings(model="gemini-embedding-2", src={"file_name": up.name})
        assert exc.value.code == 429 and exc.value.status == "RESOURCE_EXHAUSTED"
        assert exc.value.details["error"]["details"] == [
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "30s"}]
        assert srv.stats()["jobs_created"] == 1


def test_http_fault_injection_and_admin_endpoints(server, client):
    r = HTTP.post(server.base_url + "/_emulator/faults",
                   json={"http_errors": [{"count": 1, "code": 503, "path": "batchEmbedContents"},
                                         {"count": 1, "code": 429, "retry_delay_s": 7}]})
    assert r.status_code == 200 and len(r.json()["http_errors"]) == 2
    with pytest.raises(errors.ServerError) as exc:
        client.models.embed_content(model="gemini-embedding-2", contents=["x"])
    assert exc.value.code == 503
    with pytest.raises(errors.ClientError) as exc:
        client.models.embed_content(model="gemini-embedding-2", contents=["x"])
    assert exc.value.code == 429
    assert exc.value.details["error"]["details"][0]["retryDelay"] == "7s"
    assert client.models.embed_content(model="gemini-embedding-2", contents=["x"]).embeddings
    stats = HTTP.get(server.base_url + "/_emulator/stats").json()
    assert stats["requests"]["models.batchEmbedContents"] == 3
    bad = HTTP.post(server.base_url + "/_emulator/faults", json={"no_such_fault": 1})
    assert bad.status_code == 400
    assert HTTP.post(server.base_url + "/_emulator/reset").json() == {}
    assert HTTP.get(server.base_url + "/_emulator/stats").json()["requests"] == {"admin.stats": 1}


def test_state_dir_restart_keeps_files_and_jobs(tmp_path):
    state = tmp_path / "state"
    with EmulatorServer(api_key=KEY, state_dir=state) as first:
        client = sdk(first.base_url)
        job, by_key = run_file_job(client, tmp_path, [text_line("k", "persist me")])
        files = {f.name for f in client.files.list()}
        assert job.dest.file_name in files
    with EmulatorServer(api_key=KEY, state_dir=state) as second:
        client = sdk(second.base_url)
        assert {f.name for f in client.files.list()} == files
        again = client.batches.get(name=job.name)
        assert again.state == types.JobState.JOB_STATE_SUCCEEDED
        line = json.loads(client.files.download(file=again.dest.file_name))
        assert line == by_key["k"]


def test_state_dir_restart_finishes_jobs_a_previous_life_left_unprocessed(tmp_path):
    state = tmp_path / "state"
    with EmulatorServer(api_key=KEY, state_dir=state, faults={"hold_jobs": "PENDING"}) as first:
        client = sdk(first.base_url)
        up = client.files.upload(file=write_jsonl(tmp_path / "r.jsonl", [text_line("k", "x")]),
                                 config={"mime_type": "jsonl"})
        job = client.batches.create_embeddings(model="gemini-embedding-2", src={"file_name": up.name})
    assert job.state == types.JobState.JOB_STATE_PENDING  # stopped before it ran
    with EmulatorServer(api_key=KEY, state_dir=state) as second:
        client = sdk(second.base_url)
        assert client.batches.get(name=job.name).state == types.JobState.JOB_STATE_PENDING  # still held
        second.release_jobs()
        done = wait_done(client, job.name)
        assert done.state == types.JobState.JOB_STATE_SUCCEEDED
        assert json.loads(client.files.download(file=done.dest.file_name))["key"] == "k"


def test_release_endpoint_and_hold_validation(tmp_path):
    with EmulatorServer(api_key=KEY, faults={"hold_jobs": "RUNNING"}) as srv:
        client = sdk(srv.base_url)
        up = client.files.upload(file=write_jsonl(tmp_path / "h.jsonl", [text_line("k", "x")]),
                                 config={"mime_type": "jsonl"})
        names = [client.batches.create_embeddings(model="gemini-embedding-2",
                                                  src={"file_name": up.name}).name for _ in range(2)]
        assert all(client.batches.get(name=n).state == types.JobState.JOB_STATE_RUNNING for n in names)
        one = HTTP.post(srv.base_url + "/_emulator/release", json={"jobs": names[:1], "wait": True}).json()
        assert one == {"released": names[:1], "idle": True}
        assert client.batches.get(name=names[0]).state == types.JobState.JOB_STATE_SUCCEEDED
        assert client.batches.get(name=names[1]).state == types.JobState.JOB_STATE_RUNNING
        assert HTTP.post(srv.base_url + "/_emulator/release", json={"jobs": "all"}).status_code == 400
        assert HTTP.post(srv.base_url + "/_emulator/release", json={"hold": "DONE"}).status_code == 400
        assert HTTP.post(srv.base_url + "/_emulator/faults", json={"hold_jobs": "DONE"}).status_code == 400
        assert HTTP.post(srv.base_url + "/_emulator/release", json={}).json()["released"] == names[1:]


def test_limits_passed_in_as_dicts_are_enforced():
    import dataclasses

    from transforms.limits import DEFAULT_CONFIG_DIR, load_limits_dir

    base = dataclasses.asdict(load_limits_dir(DEFAULT_CONFIG_DIR / "limits")["gemini-embedding-2"])
    custom = {**base, "model": "tiny-embedder", "text_tokens": 5, "dimensionality_min": 256}
    with EmulatorServer(limits_by_model={"tiny-embedder": custom}) as srv:
        client = sdk(srv.base_url)
        assert len(client.models.embed_content(model="tiny-embedder", contents=["short"],
                                               config={"output_dimensionality": 256}).embeddings[0].values) == 256
        for contents, dims in ((["one two three four five six seven"], 256), (["short"], 128)):
            with pytest.raises(errors.ClientError) as exc:
                client.models.embed_content(model="tiny-embedder", contents=contents,
                                            config={"output_dimensionality": dims})
            assert exc.value.code == 400
        with pytest.raises(errors.ClientError) as exc:
            client.models.embed_content(model="gemini-embedding-2", contents=["x"])
        assert exc.value.code == 404

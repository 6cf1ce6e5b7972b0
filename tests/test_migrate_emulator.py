"""The emulator's gemini-embedding-001: its own vector space, ``taskType`` and ``title`` on
every embedding surface like the real API, text only, and measurably weaker retrieval than
the Embedding 2 emulation; Embedding 2 ignores ``taskType``."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from google.genai import errors as genai_errors
from google.genai import types

from pipeline.emulator.embedder import Embedder
from transforms.gemini_client import BatchClient, make_client
from transforms.limits import DEFAULT_CONFIG_DIR, load_limits_dir, load_tokens_per_unit

from conftest import EMULATOR_KEY

REPO = Path(__file__).resolve().parents[1]
EMBEDDER = Embedder(load_limits_dir(DEFAULT_CONFIG_DIR / "limits"),
                    load_tokens_per_unit(DEFAULT_CONFIG_DIR / "pricing.yaml"), None)


def _scripts(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def embed(model: str, text: str, task: str | None = None, title: str | None = None, dims: int = 768):
    request = {"content": {"parts": [{"text": text}]}, "outputDimensionality": dims}
    if task:
        request["taskType"] = task
    if title:
        request["title"] = title
    vec = EMBEDDER.embed(model, request).values
    return vec / np.linalg.norm(vec)


@pytest.fixture()
def sdk(server):
    return make_client(server.base_url, EMULATOR_KEY)


def test_001_has_its_own_vector_space():
    text = "Glaciers carve valleys as the ice slowly moves downhill."
    old, new = embed("gemini-embedding-001", text), embed("gemini-embedding-2", text)
    assert abs(float(old @ new)) < 0.1  # same text, unrelated directions: the spaces never line up
    related = embed("gemini-embedding-001", "The glacier ice moves downhill and carves a valley.")
    unrelated = embed("gemini-embedding-001", "Sourdough starters need flour and water.")
    assert float(old @ related) > 0.4 > float(old @ unrelated)  # 001 works, in its own space


def test_001_task_type_moves_the_vector_and_title_counts_only_for_documents():
    text = "How do bees make honey?"
    as_query = embed("gemini-embedding-001", text, "RETRIEVAL_QUERY")
    as_cluster = embed("gemini-embedding-001", text, "CLUSTERING")
    assert 0.8 < float(as_query @ as_cluster) < 0.99
    np.testing.assert_array_equal(embed("gemini-embedding-001", text, "RETRIEVAL_QUERY"), as_query)
    titled = embed("gemini-embedding-001", text, "RETRIEVAL_DOCUMENT", title="Apiculture")
    untitled = embed("gemini-embedding-001", text, "RETRIEVAL_DOCUMENT")
    assert float(titled @ untitled) < 0.99
    np.testing.assert_array_equal(embed("gemini-embedding-001", text, "CLUSTERING", title="Apiculture"),
                                  as_cluster)


def test_embedding_2_ignores_task_type_and_title():
    text = "title: Bees | text: How do bees make honey?"
    plain = embed("gemini-embedding-2", text)
    for task in ("RETRIEVAL_QUERY", "CLASSIFICATION"):
        np.testing.assert_array_equal(embed("gemini-embedding-2", text, task, title="Other"), plain)


def test_task_type_and_title_through_the_sdk_sync_call(sdk):
    config = types.EmbedContentConfig(task_type="RETRIEVAL_DOCUMENT", title="Bees", output_dimensionality=768)
    got = sdk.models.embed_content(model="gemini-embedding-001", contents=["Bees make honey."], config=config)
    want = embed("gemini-embedding-001", "Bees make honey.", "RETRIEVAL_DOCUMENT", "Bees")
    values = np.asarray(got.embeddings[0].values)
    np.testing.assert_allclose(values / np.linalg.norm(values), want, atol=1e-6)
    with pytest.raises(genai_errors.ClientError) as bad:
        sdk.models.embed_content(model="gemini-embedding-001", contents=["x"],
                                 config=types.EmbedContentConfig(task_type="RETRIEVAL_QUESTION"))
    assert bad.value.code == 400 and "task_type" in bad.value.message


def test_embed_content_rest_takes_task_type_and_refuses_images_on_001(server):
    url = f"{server.base_url}/v1beta/models/gemini-embedding-001:embedContent"
    headers = {"x-goog-api-key": EMULATOR_KEY}
    ok = httpx.post(url, headers=headers, json={
        "content": {"parts": [{"text": "Bees make honey."}]}, "taskType": "CLASSIFICATION"})
    assert ok.status_code == 200
    values = np.asarray(ok.json()["embedding"]["values"])
    np.testing.assert_allclose(values / np.linalg.norm(values),
                               embed("gemini-embedding-001", "Bees make honey.", "CLASSIFICATION", dims=3072),
                               atol=1e-6)
    image = httpx.post(url, headers=headers, json={"content": {"parts": [
        {"inline_data": {"mime_type": "image/png", "data": "iVBORw0KGgo="}}]}})
    assert image.status_code == 400 and "does not support image" in image.json()["error"]["message"]


def test_batch_file_lines_carry_task_type_and_title(server, tmp_path):
    client = BatchClient.connect(server.base_url, EMULATOR_KEY, retry_attempts=1)
    lines = [
        {"key": "doc", "request": {"content": {"parts": [{"text": "Bees make honey."}]},
                                   "taskType": "RETRIEVAL_DOCUMENT", "title": "Bees",
                                   "outputDimensionality": 768}},
        {"key": "bad", "request": {"content": {"parts": [{"text": "x"}]}, "task_type": "NOT_A_TASK"}},
    ]
    path = tmp_path / "req.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    job = client.create_embeddings_job("gemini-embedding-001", client.upload_jsonl(path, "t"), "t")
    done = client.wait_for_job(job.name, poll_s=0.05, max_poll_s=0.1, deadline_s=30)
    out = {json.loads(line)["key"]: json.loads(line) for line in client.download_lines(done.output_file)}
    values = np.asarray(out["doc"]["response"]["embedding"]["values"])
    np.testing.assert_allclose(values / np.linalg.norm(values),
                               embed("gemini-embedding-001", "Bees make honey.", "RETRIEVAL_DOCUMENT", "Bees"),
                               atol=1e-6)
    assert out["bad"]["error"]["code"] == 3 and "task_type" in out["bad"]["error"]["message"]


def _retrieval(model: str, rows: list[dict], queries: list[tuple[str, str]]) -> tuple[float, float]:
    """(recall@10, MRR) of the labelled queries, each model with its own conventions."""
    if model == "gemini-embedding-001":
        docs = np.array([embed(model, r["text"], "RETRIEVAL_DOCUMENT", r["title"]) for r in rows])
        qs = np.array([embed(model, q, "RETRIEVAL_QUERY") for q, _ in queries])
    else:
        docs = np.array([embed(model, f"title: {r['title']} | text: {r['text']}") for r in rows])
        qs = np.array([embed(model, f"task: search result | query: {q}") for q, _ in queries])
    recall, rr = [], []
    for scores, (_, topic) in zip(qs @ docs.T, queries):
        top = [rows[i]["topic"] == topic for i in np.argsort(-scores)[:10]]
        recall.append(sum(top) / sum(r["topic"] == topic for r in rows))
        rr.append(1.0 / (top.index(True) + 1) if True in top else 0.0)
    return float(np.mean(recall)), float(np.mean(rr))


def test_001_retrieves_measurably_worse_than_embedding_2_on_the_labelled_queries():
    corpus = _scripts("legacy_corpus")
    rows, queries = corpus.legacy_rows(), corpus.LABELLED_QUERIES
    old_recall, old_mrr = _retrieval("gemini-embedding-001", rows, queries)
    new_recall, new_mrr = _retrieval("gemini-embedding-2", rows, queries)
    assert new_recall - old_recall >= 0.05 and new_mrr - old_mrr >= 0.05, (
        old_recall, new_recall, old_mrr, new_mrr)
    assert old_recall > 0.5  # weaker, not broken: 001 still finds most documents

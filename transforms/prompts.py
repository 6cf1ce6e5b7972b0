"""Gemini Embedding 2 task prompts: the task and title are inlined in the text.

Embedding 2 expects ``title: {t} | text: {x}`` for documents and
``task: search result | query: {q}`` for queries (Vertex AI embeddings docs, research
gemini-batch-api.md §3) instead of a ``taskType`` field.
"""
from __future__ import annotations

MAX_TITLE_CHARS = 100


def clean_title(title: str | None) -> str:
    """One line, bounded length, ``none`` when absent (the documented placeholder)."""
    if not title:
        return "none"
    flat = " ".join(title.replace("|", " ").split())
    return flat[:MAX_TITLE_CHARS] or "none"


def document_prefix(title: str | None) -> str:
    return f"title: {clean_title(title)} | text: "


def query_text(query: str) -> str:
    return f"task: search result | query: {query}"

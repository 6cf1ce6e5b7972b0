"""Task prompts: Gemini Embedding 2 inlines the task and title in the text.

Embedding 2 expects ``title: {t} | text: {x}`` for documents and
``task: search result | query: {q}`` for queries (Vertex AI embeddings docs, research
gemini-batch-api.md §3) instead of a ``taskType`` field. gemini-embedding-001 took the
task as a ``taskType`` field (one of ``TASK_TYPES``) and the text as is; the translation
of every 001 task type into a prompt is ``configs/task_types.yaml``.
"""
from __future__ import annotations

from dataclasses import dataclass

MAX_TITLE_CHARS = 100
CONTENT = "{content}"
QUERY_PROMPT = "task: search result | query: {content}"
DOCUMENT_PROMPT = "title: {title} | text: {content}"

TASK_TYPES = (
    "TASK_TYPE_UNSPECIFIED", "RETRIEVAL_QUERY", "RETRIEVAL_DOCUMENT", "SEMANTIC_SIMILARITY",
    "CLASSIFICATION", "CLUSTERING", "QUESTION_ANSWERING", "FACT_VERIFICATION",
    "CODE_RETRIEVAL_QUERY",
)
"""The Gemini API ``TaskType`` enum gemini-embedding-001 takes (research gemini-batch-api.md §3)."""

TASK_TYPE_MODELS = frozenset({"gemini-embedding-001"})
"""Models that take the task as a ``taskType`` field, not as a prompt in the text."""


def clean_title(title: str | None) -> str:
    """One line, bounded length, ``none`` when absent (the documented placeholder)."""
    if not title:
        return "none"
    flat = " ".join(title.replace("|", " ").split())
    return flat[:MAX_TITLE_CHARS] or "none"


def prompt_prefix(template: str, title: str | None = None) -> str:
    """The part of a prompt template before ``{content}``, with ``{title}`` filled in."""
    if not template.endswith(CONTENT) or template.count(CONTENT) != 1:
        raise ValueError(f"prompt template {template!r} must end with {CONTENT} (once)")
    return template[: -len(CONTENT)].replace("{title}", clean_title(title))


def document_prefix(title: str | None) -> str:
    return prompt_prefix(DOCUMENT_PROMPT, title)


def render_prompt(template: str, content: str, title: str | None = None) -> str:
    return prompt_prefix(template, title) + content


@dataclass(frozen=True)
class QueryConvention:
    """How a text query is embedded for one model: a ``taskType`` field for 001, the task
    inlined as a prompt for Embedding 2. Queries must follow the convention the indexed
    documents were embedded with, or their scores mean little."""

    prompt: str = QUERY_PROMPT
    task_type: str | None = None

    @classmethod
    def for_model(cls, model: str, *, task_type: str = "RETRIEVAL_QUERY",
                  prompt: str = QUERY_PROMPT) -> "QueryConvention":
        if model in TASK_TYPE_MODELS:
            return cls(prompt=CONTENT, task_type=task_type)
        return cls(prompt=prompt)

    def text(self, query: str) -> str:
        return render_prompt(self.prompt, query)

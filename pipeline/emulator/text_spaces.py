"""One text vector space per model, and the ``taskType`` / ``title`` request fields.

gemini-embedding-001 and Gemini Embedding 2 are different models: a 001 vector and an
Embedding 2 vector of the same text have nothing in common, so the emulator gives 001 its
own space (another hash key) and its own, weaker features, so an A/B comparison of the
two shows a real difference:

- **Embedding 2** (``vectors.text_vector``): word unigrams, bigrams and character
  3/4-grams, so inflections and compounds still match ("volcano" ~ "volcanoes"); the
  task and title travel *in the text* (``task: … | query: …``, ``title: … | text: …``).
  ``taskType`` and ``title`` fields are accepted and ignored: third-party gateways that
  mirror Google's embeddings guide say Embedding 2 "does not accept a task_type field,
  prefix the task instruction into the text" (docs.znapai.com/gemini-embedding,
  docs.aihubmax.com), Vertex AI says Embedding 2 "expects the task type and title to be
  inlined within the prompt", and LlamaIndex drops the field for it (research
  gemini-batch-api.md §3: whether the real service ignores or rejects it is
  unverified; ignoring keeps old clients working).
- **gemini-embedding-001** (:func:`legacy_text_vector`): word unigrams only, read as is
  (no prompt-prefix parsing: 001 has no such convention), so an inflected query word
  misses its document. ``taskType`` moves the vector (a fixed direction per task type,
  so the same text embedded as RETRIEVAL_QUERY and as CLUSTERING differ, but a query
  still ranks documents by content); ``title`` is added to the text only with
  RETRIEVAL_DOCUMENT, the one task type the API documents it for.

An unknown ``taskType`` value is a 400 on every model, as proto-JSON parsing of the enum
is (``Invalid value at 'task_type'``).
"""
from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from pipeline.emulator.errors import invalid_argument
from pipeline.emulator.vectors import DIM, WORD, hashed_vector, text_vector, word_weight
from transforms.prompts import TASK_TYPES

LEGACY_MODEL = "gemini-embedding-001"
_LEGACY_KEY = b"embedpipe-emulator-001"
_TASK_WEIGHT = 0.3

TextSpace = Callable[[str, "str | None", "str | None"], np.ndarray]
"""(text, task type, title) -> raw text features of one request."""


def task_fields(request: Mapping) -> tuple[str | None, str | None]:
    """(taskType, title) of an EmbedContentRequest, validated like the service parses them."""
    raw_task = request.get("task_type", request.get("taskType"))
    task: str | None = None
    if raw_task is not None:
        if isinstance(raw_task, int) and not isinstance(raw_task, bool) and 0 <= raw_task < len(TASK_TYPES):
            task = TASK_TYPES[raw_task]  # proto-JSON also accepts the enum number
        elif isinstance(raw_task, str) and raw_task in TASK_TYPES:
            task = raw_task
        else:
            raise invalid_argument(
                "Invalid value at 'task_type' "
                f"(type.googleapis.com/google.ai.generativelanguage.v1beta.TaskType), {raw_task!r}"
            )
    title = request.get("title")
    if title is not None and not isinstance(title, str):
        raise invalid_argument(f"Invalid value at 'title' (TYPE_STRING), {title!r}")
    return (None if task == "TASK_TYPE_UNSPECIFIED" else task), title


def _task_direction(task: str) -> np.ndarray:
    """A fixed unit direction per task type in the 001 space."""
    vec = hashed_vector([("task:" + task, 1.0)], _LEGACY_KEY)
    return vec / np.linalg.norm(vec)


def legacy_text_vector(text: str, task: str | None, title: str | None) -> np.ndarray:
    """gemini-embedding-001's space: weighted word unigrams under their own key."""
    if task == "RETRIEVAL_DOCUMENT" and title:
        text = f"{title}\n{text}"
    words = WORD.findall(text.lower())
    stripped = text.strip()
    if words:
        vec = hashed_vector((("u:" + w, word_weight(w)) for w in words), _LEGACY_KEY)
    elif stripped:
        vec = hashed_vector([("raw:" + stripped, 1.0)], _LEGACY_KEY)
    else:
        return np.zeros(DIM)
    vec = vec / np.linalg.norm(vec)
    return vec + _TASK_WEIGHT * _task_direction(task) if task else vec


def _embedding_2_text(text: str, task: str | None, title: str | None) -> np.ndarray:
    return text_vector(text)  # taskType and title are not Embedding 2 inputs


def text_space(model: str) -> TextSpace:
    """The featuriser of ``model``'s text space (Embedding 2's for every other model)."""
    return legacy_text_vector if model == LEGACY_MODEL else _embedding_2_text

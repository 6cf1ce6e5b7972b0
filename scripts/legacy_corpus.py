#!/usr/bin/env python3
"""A generated gemini-embedding-001 legacy store and a labelled query set, for the
migration demo, tests and benchmark.

The store is what a team that built search on gemini-embedding-001 would export: the
sample corpus (``sample_corpus.py``) cut into one row per paragraph (the 2,048-token era's
chunks), each with ``id``, ``title``, ``text``, ``task_type`` = RETRIEVAL_DOCUMENT and the
``embedding`` gemini-embedding-001 returned for it — here from the emulator's 001 model,
called the way such code called the real API: ``embed_content`` with ``task_type`` and
``title`` through the google-genai SDK. Written as Parquet, JSON Lines (BigQuery's JSON
export) or Avro.

``LABELLED_QUERIES`` are questions a user would type, worded differently from the
documents (plurals, other verb forms): labelled with every paragraph of the topic they ask
about. ``scaled_rows`` repeats the corpus with fresh ids for a benchmark-sized store.

Usage:  python3 scripts/legacy_corpus.py OUT_DIR [--format parquet|jsonl|avro] [--dims 768]
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from sample_corpus import CORPUS  # noqa: E402

LEGACY_MODEL = "gemini-embedding-001"

# (query, topic it asks about)
LABELLED_QUERIES: list[tuple[str, str]] = [
    ("how do plants convert sunlight into sugars", "photosynthesis"),
    ("erupting volcanoes spewing molten lava", "volcano_eruptions"),
    ("ancient engineers piping water into roman towns", "roman_aqueducts"),
    ("feeding a starter for naturally leavened loaves", "sourdough_baking"),
    ("light cannot escape the gravity of collapsed stars", "black_holes"),
    ("worker bees and queens in a beehive", "honeybee_colonies"),
    ("revolutionaries storming the bastille in paris", "french_revolution"),
    ("improvising solos over chord changes", "jazz_improvisation"),
    ("bleaching of reef-building corals", "coral_reefs"),
    ("best first moves in a chess game", "chess_openings"),
    ("antibodies fighting infections", "human_immune_system"),
    ("colliding continental plates and earthquakes", "plate_tectonics"),
    ("gutenberg's movable type printing", "printing_press"),
    ("weekly long runs before race day", "marathon_training"),
    ("moving ice sheets carving valleys", "glaciers"),
    ("entangled particles and measurements", "quantum_entanglement"),
    ("folding paper cranes", "origami"),
    ("growing and harvesting tea leaves", "tea_cultivation"),
    ("caravans trading silk between china and rome", "silk_road"),
    ("photovoltaic cells generating electricity", "solar_panels"),
    ("humpback whales migrating to breeding grounds", "whale_migration"),
    ("stone keeps, moats and castle walls", "medieval_castles"),
    ("immunization with vaccinations", "vaccines"),
    ("astronauts walking on the moon", "apollo_moon_landing"),
    ("pruning miniature trees in pots", "bonsai"),
    ("encrypting messages with secret keys", "cryptography"),
    ("tropical cyclones and storm surges", "hurricanes"),
    ("emperor penguins huddling in antarctica", "penguins"),
    ("fermenting grapes into wines", "wine_fermentation"),
    ("fortifications along china's northern border", "great_wall_of_china"),
    ("amplifiers and pickups for guitars", "electric_guitars"),
    ("deforestation of tropical forests", "rainforests"),
    ("climbers summiting the highest mountain", "mount_everest_climbing"),
    ("pharaohs buried in pyramid tombs", "egyptian_pyramids"),
    ("curdling milk to make cheeses", "cheese_making"),
    ("high and low tides caused by the moon", "tides"),
]


def legacy_rows() -> list[dict]:
    """One row per paragraph: id ``<topic>-<n>``, the topic as title, RETRIEVAL_DOCUMENT."""
    rows = []
    for topic, text in CORPUS.items():
        for n, paragraph in enumerate(text.strip().split("\n\n")):
            rows.append({"id": f"{topic}-{n}", "title": topic.replace("_", " ").title(),
                         "text": paragraph, "task_type": "RETRIEVAL_DOCUMENT", "topic": topic})
    return rows


def scaled_rows(copies: int) -> list[dict]:
    """The corpus ``copies`` times with distinct ids (benchmark-sized stores)."""
    base = legacy_rows()
    return [{**row, "id": f"{row['id']}~{c}"} for c in range(copies) for row in base]


def query_lines(labelled: bool = True) -> list[dict]:
    """The query set as the JSONL rows ``migrate evaluate --queries`` reads."""
    by_topic: dict[str, list[str]] = {}
    for row in legacy_rows():
        by_topic.setdefault(row["topic"], []).append(row["id"])
    return [{"query": q, **({"relevant_ids": by_topic[topic]} if labelled else {})}
            for q, topic in LABELLED_QUERIES]


def write_queries(path: str, labelled: bool = True) -> str:
    with open(path, "w", encoding="utf-8") as fh:
        for line in query_lines(labelled):
            fh.write(json.dumps(line) + "\n")
    return path


def embed_001(rows: list[dict], base_url: str, api_key: str, dims: int) -> list[list[float]]:
    """001 vectors as a 001-era client made them: task_type and title per request."""
    from google.genai import types

    from transforms.gemini_client import make_client

    client = make_client(base_url, api_key)
    vectors: list[list[float]] = []
    for row in rows:
        config = types.EmbedContentConfig(task_type=row["task_type"], title=row.get("title"),
                                          output_dimensionality=dims)
        response = client.models.embed_content(model=LEGACY_MODEL, contents=[row["text"]], config=config)
        vectors.append(list(response.embeddings[0].values))
    return vectors


def write_store(path: str, rows: list[dict], vectors: list, fmt: str = "parquet") -> str:
    """Write rows + vectors with the columns ``migrate import`` reads without a mapping."""
    records = [{"id": r["id"], "text": r["text"], "title": r.get("title"),
                "task_type": r.get("task_type"), "embedding": [float(x) for x in v]}
               for r, v in zip(rows, vectors)]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(records), path)
    elif fmt == "jsonl":
        with open(path, "w", encoding="utf-8") as fh:
            for rec in records:
                fh.write(json.dumps(rec) + "\n")
    elif fmt == "avro":
        import fastavro

        schema = {"type": "record", "name": "LegacyRow", "fields": [
            {"name": "id", "type": "string"},
            {"name": "text", "type": ["null", "string"]},
            {"name": "title", "type": ["null", "string"]},
            {"name": "task_type", "type": ["null", "string"]},
            {"name": "embedding", "type": {"type": "array", "items": "double"}},
        ]}
        with open(path, "wb") as fh:
            fastavro.writer(fh, fastavro.parse_schema(schema), records)
    else:
        raise ValueError(f"unknown format {fmt!r}")
    return path


def generate(path: str, fmt: str = "parquet", dims: int = 768, rows: list[dict] | None = None) -> str:
    """Embed ``rows`` (default: the corpus) with the emulator's 001 model and write the store."""
    import secrets

    from pipeline.emulator import EmulatorServer

    rows = rows if rows is not None else legacy_rows()
    key = secrets.token_urlsafe(16)
    with EmulatorServer(api_key=key) as server:
        vectors = embed_001(rows, server.base_url, key, dims)
    return write_store(path, rows, vectors, fmt)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a generated gemini-embedding-001 legacy store.")
    parser.add_argument("out_dir")
    parser.add_argument("--format", choices=("parquet", "jsonl", "avro"), default="parquet")
    parser.add_argument("--dims", type=int, default=768)
    args = parser.parse_args(argv)
    store = generate(os.path.join(args.out_dir, f"legacy.{args.format}"), args.format, args.dims)
    queries = write_queries(os.path.join(args.out_dir, "queries.jsonl"))
    print(f"wrote {store} ({len(legacy_rows())} rows) and {queries} ({len(LABELLED_QUERIES)} queries)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``embedpipe redrive``: give dead-lettered chunks of a finished run another try.

Collect-stage dead letters whose cause may have gone (quota, 5xx, missing results,
failed or expired jobs) are resubmitted as one more follow-up request file per family;
chunk-stage dead letters are input problems (fix the input and rerun) and invalid
requests would fail again, so neither is resubmitted.
"""
from __future__ import annotations

import io
import re

import pyarrow.parquet as pq

from pipeline.jobs import family_of, followup_name, key_attempts
from pipeline.ledger import Ledger
from pipeline.run import RunContext, request_files
from pipeline.run_layout import read_jsonl_glob, write_json
from transforms import fs
from transforms.gemini_client import classify_error
from transforms.plan_requests import select_lines

_API_ERROR = re.compile(r"api_error_(-?\d+)$")
PERMANENT = {"wrong_dimensionality", "invalid_vector"}


def may_succeed_now(dead: dict) -> bool:
    if dead.get("stage") != "collect" or dead["error_class"] in PERMANENT:
        return False
    match = _API_ERROR.match(dead["error_class"])
    return classify_error(int(match.group(1)), None) if match else True


def redrive(ctx: RunContext) -> int:
    """Write follow-up request files for redrivable dead letters; returns how many keys."""
    wanted = {
        d["chunk_id"]
        for d in read_jsonl_glob(fs.join(ctx.paths.deadletters, "collect*.jsonl"))
        if d.get("chunk_id") and may_succeed_now(d)
    }
    if not wanted:
        return 0
    families: dict[str, list[str]] = {}
    for record in Ledger(ctx.paths.ledger).all():
        families.setdefault(family_of(record.request_name), []).append(record.request_name)
    total = 0
    for info in request_files(ctx.paths):
        keys = set(pq.read_table(io.BytesIO(fs.read_bytes(info.keys_path)),
                                 columns=["chunk_id"]).column("chunk_id").to_pylist())
        mine = keys & wanted
        if not mine:
            continue
        last = max(families.get(info.name, [info.name]), key=key_attempts)
        name = followup_name(last)
        child = select_lines(info, mine, ctx.paths.requests, name)
        write_json(fs.join(ctx.paths.requests, f"{name}.info.json"), child.to_json())
        total += child.lines
    return total

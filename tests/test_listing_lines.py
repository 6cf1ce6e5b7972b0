"""The listing sink is fed outcome rows (compact while the sink waits for its shard count)
and writes each row's line: the text must be what the outcome's own JSON line was, also
for a file name that is not UTF-8, which Beam's string coder cannot carry as it is."""
from __future__ import annotations

import json
import os

import pytest

from pipeline import graph
from pipeline.config import load_settings
from pipeline.run_layout import RunPaths
from run_helpers import LOCAL
from transforms import fs
from transforms.types import ObjectOutcome
from transforms.write_once import shard_glob

OUTCOMES = [
    ObjectOutcome("/corpus/a.txt", "1700000000000000000-12", "text", "chunked", 3, 12),
    ObjectOutcome("/corpus/b.mp4", "17-0", "special", "skipped", reason="special_file"),
    ObjectOutcome("gs://b/dossier/é\u2028\"q\"\\.pdf", "1234", "pdf", "dead", 0, 9, dead_letters=2),
    ObjectOutcome("/corpus/latin1-caf\udce9.txt", "5-5", "unreadable", "dead", 0, 5, dead_letters=1),
    ObjectOutcome("/corpus/pair-\ud83d\ude00.txt", "5-5", "text", "unchanged", 7, 5),
]


@pytest.mark.parametrize("outcome", OUTCOMES, ids=lambda o: o.uri.rsplit("/", 1)[1][:8])
def test_an_outcome_row_makes_the_outcome_line(outcome):
    row = graph._outcome_row(outcome)
    assert row.isascii()  # what Beam's UTF-8 string coder takes whatever the name holds
    assert graph._outcome_line(row) == graph._to_json_line(outcome)


def test_an_undecodable_file_name_goes_through_the_listing_sink_on_the_pinned_runner(tmp_path):
    """FnApiRunner encodes the rows between the count and the keying: a name with lone
    surrogates (a file name that is not UTF-8) must reach the listing as its escaped line."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "plain.txt").write_text("a plain text file\n")
    with open(os.path.join(os.fsencode(corpus), b"latin1-caf\xe9.txt"), "wb") as fh:
        fh.write(b"a file whose name is not UTF-8\n")
    out = tmp_path / "out"
    settings = load_settings(LOCAL, sources=[str(corpus)], output=str(out))
    paths = RunPaths(str(out), "run")
    graph.run_prepare(settings, paths)

    (shard, _), = fs.match(shard_glob(graph.listing(paths), ".jsonl"))
    lines = fs.read_bytes(shard).decode("ascii").splitlines()
    by_uri = {json.loads(line)["uri"]: line for line in lines}
    undecodable = str(corpus / "latin1-caf\udce9.txt")
    assert sorted(by_uri) == sorted([str(corpus / "plain.txt"), undecodable])
    assert '/latin1-caf\\udce9.txt"' in by_uri[undecodable]
    outcome = ObjectOutcome(**json.loads(by_uri[undecodable]))
    assert outcome.status == "dead"
    assert by_uri[undecodable] == graph._to_json_line(outcome)

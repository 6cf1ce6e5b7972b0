"""Where the migration keeps its files: everything under ``<output>/migration/``, except
the serving pointer ``<output>/serving.json`` that ``embedpipe query`` reads.

```
<output>/serving.json                 which index `embedpipe query --output` serves (serving.py)
<output>/migration/
  state.json                          pinned config, task-type mapping, legacy import, runs, history
  legacy/runs/<import id>/            the legacy store as a run: run.json, embeddings/ (schema v1,
                                      bound to gemini-embedding-001), rows/, deadletters/, index/
  source/rows-<sha>.jsonl             legacy text rows to re-embed, as records (create-only)
  shadow/                             output root of the re-embedding runs (runs/, current.json)
  legacy_ids/<run id>.parquet         chunk_id → legacy_id map of each shadow run
  plan.json                           the last `migrate plan`
  evaluation/<run id>/                report.json and plots per evaluated shadow run
  evaluation/legacy-subset/           legacy index restricted to a subset's rows (A/B on equal terms)
  evaluation/query-cache/             query vectors already paid for
  report.json                         the latest evaluation (what `cutover` gates on)
  deadletters/                        rows a re-embedding pass could not use (e.g. missing sources)
```
"""
from __future__ import annotations

from dataclasses import dataclass

from transforms import fs


@dataclass(frozen=True)
class MigrationPaths:
    output: str

    @property
    def root(self) -> str:
        return fs.join(self.output, "migration")

    def _sub(self, *parts: str) -> str:
        return fs.join(self.root, *parts)

    @property
    def state(self) -> str:
        return self._sub("state.json")

    @property
    def legacy_output(self) -> str:
        return self._sub("legacy")

    @property
    def source(self) -> str:
        return self._sub("source")

    @property
    def shadow_output(self) -> str:
        return self._sub("shadow")

    def legacy_ids(self, run_id: str) -> str:
        return self._sub("legacy_ids", f"{run_id}.parquet")

    @property
    def plan(self) -> str:
        return self._sub("plan.json")

    def evaluation(self, run_id: str) -> str:
        return self._sub("evaluation", run_id)

    @property
    def legacy_subset_output(self) -> str:
        return self._sub("evaluation", "legacy-subset")

    @property
    def query_cache(self) -> str:
        return self._sub("evaluation", "query-cache")

    @property
    def report(self) -> str:
        return self._sub("report.json")

    @property
    def deadletters(self) -> str:
        return self._sub("deadletters")

"""``embedpipe migrate``: move a corpus from gemini-embedding-001 to Gemini Embedding 2.

legacy store → ``import`` (validated 001 vectors, legacy index) → ``plan`` (cost before
spend) → ``run --fraction F`` (a stratified subset, then everything, through the normal
exactly-once Batch path: the shadow index) → ``evaluate`` (A/B report on the user's
queries) → ``cutover`` (gated move of the serving pointer) → ``rollback``.

One module per step; each command is idempotent and keeps its state, reports and plots
under ``<output>/migration/``. The two vector spaces never mix: every index is bound to
(model, dimensionality) and queries are embedded with the model of the index they search.
"""

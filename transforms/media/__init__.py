"""Media chunkers: one module per modality, each a pure generator of ``Chunk``s.

``chunk_<modality>(source, local_path, settings)`` reads a local file and yields chunks that
fit the model's per-request limits, or raises ``ChunkingError`` for input it refuses.
"""

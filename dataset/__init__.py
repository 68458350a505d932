"""The session dataset: what the assembler writes and the trainer reads, in one place that imports
neither of them.

Per session, in object storage (schemas.layout): WebDataset tar shards of samples (shards), each
shard's index record, and a manifest (manifest); what the generator's input maps show
(representation); which slot each person holds and how many visitors a session has (people).

read_manifest(settings, session) -> dict | None
iter_session_samples(settings, session) -> SessionSample, ... (shards in order, read lazily)
load_session_samples(settings, session) -> [(frame_rgb, posemap_rgb, pose [17, 3]), ...]
"""

from dataset.reader import (
    SessionSample,
    iter_session_samples,
    load_session_samples,
    read_manifest,
    shard_samples,
)

__all__ = [
    "SessionSample",
    "iter_session_samples",
    "load_session_samples",
    "read_manifest",
    "shard_samples",
]

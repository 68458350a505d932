"""Dataset assembly: frames + smoothed poses -> per-session WebDataset shards in object storage.

Assembler(settings, shard_size=32, resolution=256).run(stop_event=None, idle_exit=None)
Assembler(settings, representation="parts")  # part maps (BodyPix) instead of stick figures
load_session_samples(settings, session) -> [(frame_rgb, posemap_rgb, pose[17, 3]), ...]
"""

from trainer.assembler.consumer import Assembler, AssemblerConfig, Summary
from trainer.assembler.reader import (
    SessionSample,
    iter_session_samples,
    load_session_samples,
    read_manifest,
    shard_samples,
)

__all__ = [
    "Assembler",
    "AssemblerConfig",
    "SessionSample",
    "Summary",
    "iter_session_samples",
    "load_session_samples",
    "read_manifest",
    "shard_samples",
]

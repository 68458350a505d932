"""The people of a session's dataset: which slot each tracked person holds, how many visitors a
session has, and each sample's people as the shards store them.

Slots. Every tracked person of a camera holds a slot (0 .. vision.posemap.MAX_SLOTS - 1), the
index of their palette in the pose maps and of the visitor they are in the rendition. A track
keeps its slot for as long as it lives. A new track takes the lowest slot that no track has held
in the last `release_frames` frames; people new in the same frame are placed left to right, so at
the start of a session the slots read left to right. Someone who leaves for longer than the
tracker's re-identification window comes back as a new track and, the slot being free again,
usually in their old slot; a slot may pass to somebody else only after it has been free for
`release_frames`. People beyond the palettes, and people without a track, are left out of the
maps and counted. The book is fed poses in seq order (one camera's poses travel in one partition)
and its state is stored with every shard's index record, so a restarted assembler goes on with
the same slots.

A session has several people when more than one slot appears in at least MAIN_SHARE of its
samples (a passer-by for a few frames does not turn a one-visitor session into a group). How the
trainer uses them is trainer.group.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from schemas.keypoints import NUM_KEYPOINTS
from vision.posemap import DEFAULT_SCORE_THRESHOLD, MAX_SLOTS

DEFAULT_RELEASE_FRAMES = 10  # a slot stays with a person hidden this long (a third of a second at 30 fps)
MAIN_SHARE = 0.25  # a slot counts as a visitor when it is in at least this share of the samples


def mean_x(pose: np.ndarray, score_threshold: float = DEFAULT_SCORE_THRESHOLD) -> float:
    """Where a person stands across the picture: the mean x of their confident keypoints (nan
    without any)."""
    pose = np.asarray(pose, np.float32).reshape(NUM_KEYPOINTS, 3)
    ok = np.isfinite(pose).all(axis=1) & (pose[:, 2] >= score_threshold)
    return float(pose[ok, 0].mean()) if ok.any() else float("nan")


@dataclass
class SlotBook:
    """Track -> slot for one camera (the rules are in the module docstring)."""

    release_frames: int = DEFAULT_RELEASE_FRAMES
    slots: dict[int, int] = field(default_factory=dict)  # live track -> slot
    last_seen: dict[int, int] = field(default_factory=dict)  # slot -> last seq it was drawn
    holder: dict[int, int] = field(default_factory=dict)  # slot -> track that holds it
    left_out: int = 0  # people not drawn: no track, or no free palette
    multi: bool = False  # ever more than one slot in use

    def assign(self, seq: int, tracks: Sequence[int | None], poses: Sequence[np.ndarray]) -> list[int | None]:
        """The slot of each person of frame `seq` (None: left out, counted in left_out)."""
        out: list[int | None] = [None] * len(tracks)
        new = []
        for i, track in enumerate(tracks):
            if track is None:
                self.left_out += 1
                continue
            slot = self.slots.get(track)
            if slot is not None and self.holder.get(slot) == track:
                out[i] = slot
            else:
                new.append(i)
        taken = {s for s in out if s is not None}
        for i in sorted(new, key=lambda i: (np.nan_to_num(mean_x(poses[i]), nan=np.inf), i)):
            free = [
                s
                for s in range(MAX_SLOTS)
                if s not in taken and (s not in self.last_seen or seq - self.last_seen[s] > self.release_frames)
            ]
            track = int(tracks[i])  # type: ignore[arg-type]
            if not free:
                self.left_out += 1
                continue
            slot = free[0]
            old = self.holder.get(slot)
            if old is not None:
                self.slots.pop(old, None)
            self.slots[track], self.holder[slot] = slot, track
            out[i] = slot
            taken.add(slot)
        for s in taken:
            self.last_seen[s] = seq
        self.multi = self.multi or len(taken) > 1 or any(s > 0 for s in taken)
        return out

    def to_state(self) -> dict:
        return {
            "release_frames": self.release_frames,
            "holder": {str(s): t for s, t in sorted(self.holder.items())},
            "last_seen": {str(s): q for s, q in sorted(self.last_seen.items())},
            "left_out": self.left_out,
        }

    @classmethod
    def from_state(cls, state: dict) -> SlotBook:
        book = cls(int(state.get("release_frames", DEFAULT_RELEASE_FRAMES)))
        book.holder = {int(s): int(t) for s, t in state.get("holder", {}).items()}
        book.slots = {t: s for s, t in book.holder.items()}
        book.last_seen = {int(s): int(q) for s, q in state.get("last_seen", {}).items()}
        book.left_out = int(state.get("left_out", 0))
        book.multi = True  # only multi-person books are stored
        return book


def restore_books(done: dict[tuple[str, int], dict]) -> dict[str, SlotBook]:
    """Each camera's book as its newest stored shard left it (shards without one: one-person)."""
    newest: dict[str, tuple[int, dict]] = {}
    for (camera, index), record in done.items():
        state = record.get("slots")
        if state is not None and index >= newest.get(camera, (-1, {}))[0]:
            newest[camera] = (index, state)
    return {camera: SlotBook.from_state(state) for camera, (_, state) in newest.items()}


# --- the session ---------------------------------------------------------------------------------
def session_people(per_slot: dict, samples: int) -> int:
    """How many visitors a session has: the slots present in at least MAIN_SHARE of its samples
    (at least one)."""
    if samples <= 0:
        return 1
    return max(1, sum(1 for n in per_slot.values() if n >= MAIN_SHARE * samples))


def is_group(manifest: dict) -> bool:
    """Whether a session is trained as a group (several visitors; see the module docstring)."""
    return int(manifest.get("people", 1)) > 1


def people_of(record: dict) -> tuple[np.ndarray, np.ndarray]:
    """(people [P, 17, 3], slots [P]) of a sample's pose.json record; one-person records give
    their one pose in slot 0."""
    people = record.get("people")
    if not people:
        kp = np.asarray(record["keypoints"], np.float32).reshape(1, NUM_KEYPOINTS, 3)
        return kp, np.zeros(1, np.int64)
    poses = np.asarray([p["keypoints"] for p in people], np.float32).reshape(-1, NUM_KEYPOINTS, 3)
    return poses, np.asarray([int(p["slot"]) for p in people], np.int64)

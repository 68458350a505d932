"""Joining Frames with their SmoothedPoses per (session, camera, seq), shard by shard.

Pure state, no I/O: the assembler feeds messages in and takes out shards that are complete.
Shard k of a camera holds seqs [k*N, (k+1)*N). One camera's frames and poses each travel in one
partition (keyed session/camera), so they arrive in seq order: once both streams have reached the
shard's last seq, nothing more can come for it and it is complete. Poses may lag frames by any
amount; the shard simply waits. At the session's end every open shard is flushed as it stands.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from assembler.offsets import Held
from dataset.people import SlotBook, restore_books
from dataset.representation import DEFAULT_REPRESENTATION, main_person_parts, needs_parts
from dataset.shards import Sample, decode_rgb, encode_sample, image_problem
from schemas import Frame, SessionEvent, SmoothedPose, layout
from schemas.keypoints import NUM_KEYPOINTS

# Rejection reasons: the label values of booth_assembler_rejected_total and the manifest's keys.
NO_PERSON = "no_person"  # the pose stage found nobody in the frame
NO_PARTS = "no_parts"  # the part segmenter found none of the person's parts
NO_POSE = "no_pose"  # the frame's pose never came
NO_FRAME = "no_frame"  # a pose whose frame never came
UNDECODABLE = "undecodable"  # the frame's image does not decode (also dead-lettered)
INVALID = "invalid"  # not a valid message, or an unsafe id (dead-lettered)
UNKNOWN_SESSION = "unknown_session"  # a session that never started (dead-lettered)
LATE = "late"  # arrived after its shard or session was closed
NOT_RECEIVED = "not_received"  # announced by its camera's end marker, never read before the give-up
REASONS = (NO_PERSON, NO_PARTS, NO_POSE, NO_FRAME, UNDECODABLE, INVALID, UNKNOWN_SESSION, LATE, NOT_RECEIVED)


def join_sample(
    frame: Frame,
    pose: SmoothedPose,
    resolution: int,
    representation: str = DEFAULT_REPRESENTATION,
    segment: Callable[[np.ndarray], object] | None = None,
    slots: list[int | None] | None = None,
) -> Sample | str:
    """The training sample of a frame and its pose, or the reason there is none.

    segment: image_rgb -> vision.parts.PartsResult, for representations drawn from part maps.
    slots: the slot of each person (pose.persons + pose.others, dataset.people), for a camera
    with several people; without it (or with the main person alone in slot 0) the sample is a
    one-person sample, byte for byte as before.
    """
    if not pose.persons:
        return NO_PERSON

    def in_frame(person) -> np.ndarray:
        kp = person.array()
        if (pose.width, pose.height) != (frame.width, frame.height):
            # The pose was estimated on a resized copy: bring it to the stored frame's pixels.
            kp = kp.copy()
            kp[:, 0] *= frame.width / pose.width
            kp[:, 1] *= frame.height / pose.height
        return kp

    keypoints = in_frame(pose.persons[0])
    people = None
    if slots is not None and (len(slots) > 1 or slots[0] not in (0, None)):
        everyone = list(pose.persons) + list(pose.others)
        people = [
            {
                "track": p.track,
                "slot": k,
                "keypoints": in_frame(p),
                "flags": list(p.flags) if p.flags else (list(pose.flags) if i == 0 else []),
            }
            for i, (p, k) in enumerate(zip(everyone, slots))
            if k is not None
        ]
    part_ids = None
    if needs_parts(representation):
        if segment is None:
            raise ValueError(f"the {representation!r} representation needs a part segmenter")
        part_ids = main_person_parts(segment(decode_rgb(frame.image, "frame")), keypoints)
        if not part_ids.any():
            return NO_PARTS
    return encode_sample(
        key=layout.sample_key(frame.camera, frame.seq),
        seq=frame.seq,
        camera=frame.camera,
        session=frame.session,
        image=frame.image,
        encoding=frame.encoding,
        width=frame.width,
        height=frame.height,
        pose=keypoints,
        flags=list(pose.flags),
        backend=pose.backend,
        person_score=pose.persons[0].score,
        capture_ns=frame.capture_ns,
        wall_time=frame.wall_time,
        resolution=resolution,
        representation=representation,
        part_ids=part_ids,
        people=people,
    )


@dataclass
class ShardBuffer:
    """The samples of one shard being gathered, and the messages that must stay uncommitted."""

    camera: str
    index: int
    frames: dict[int, Frame] = field(default_factory=dict)
    poses: dict[int, SmoothedPose] = field(default_factory=dict)
    samples: dict[int, Sample] = field(default_factory=dict)
    rejected: dict[int, str] = field(default_factory=dict)
    backends: set[str] = field(default_factory=set)
    held: list[Held] = field(default_factory=list)
    slots: dict[int, list[int | None]] = field(default_factory=dict)  # seq -> each person's slot
    book_state: dict | None = None  # the camera's SlotBook after this shard's last pose (several people)
    per_slot: dict[int, int] = field(default_factory=dict)  # slot -> samples showing that person

    def settled(self, seq: int) -> bool:
        return seq in self.samples or seq in self.rejected

    def close(self) -> None:
        """Nothing more will come: unmatched frames and poses become rejections."""
        for seq in self.frames:
            self.rejected.setdefault(seq, NO_POSE)
        for seq in self.poses:
            self.rejected.setdefault(seq, NO_FRAME)
        self.frames.clear()
        self.poses.clear()

    def record(self, session: str, tar_bytes: int, representation: str = DEFAULT_REPRESENTATION) -> dict:
        """The shard's index entry: what it holds and what was rejected (JSON-ready, reproducible).

        The representation is named only when it is not the default, so pose-only records keep
        their bytes."""
        has_samples = bool(self.samples)
        record = {
            "camera": self.camera,
            "index": self.index,
            "shard_key": layout.shard_key(session, self.camera, self.index) if has_samples else None,
            "samples": sorted(self.samples),
            "rejected": {str(seq): reason for seq, reason in sorted(self.rejected.items())},
            "imputed": sum(s.imputed for s in self.samples.values()),
            "keypoints": NUM_KEYPOINTS * len(self.samples),
            "backends": sorted(self.backends),
            "bytes": tar_bytes,
        }
        if representation != DEFAULT_REPRESENTATION:
            record["representation"] = representation
        if self.book_state is not None:  # named only with several people: one-person records keep their bytes
            record["slots"] = self.book_state
            record["people"] = {str(k): n for k, n in sorted(self.per_slot.items())}
        return record


def record_bytes(record: dict) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":")).encode()


@dataclass
class CameraStream:
    camera: str
    max_frame_seq: int = -1
    max_pose_seq: int = -1
    shards: dict[int, ShardBuffer] = field(default_factory=dict)
    book: SlotBook = field(default_factory=SlotBook)

    def shard(self, index: int) -> ShardBuffer:
        buf = self.shards.get(index)
        if buf is None:
            buf = self.shards[index] = ShardBuffer(self.camera, index)
        return buf

    def pop_complete(self, shard_size: int) -> list[ShardBuffer]:
        """Shards whose last seq both streams have reached, closed and removed, oldest first."""
        reached = min(self.max_frame_seq, self.max_pose_seq)
        done = sorted(k for k in self.shards if (k + 1) * shard_size - 1 <= reached)
        out = [self.shards.pop(k) for k in done]
        for buf in out:
            buf.close()
        return out

    def pop_all(self) -> list[ShardBuffer]:
        out = [self.shards.pop(k) for k in sorted(self.shards)]
        for buf in out:
            buf.close()
        return out


@dataclass
class Outcome:
    """What adding one message did: joined a sample, rejected a frame (reason; problem text for a
    dead letter), or dropped it as a replay/duplicate of something already settled."""

    sample: Sample | None = None
    rejected: str | None = None
    problem: str | None = None
    replay: bool = False


class SessionState:
    """One started session: its camera streams and shards, and the shards already persisted."""

    def __init__(
        self,
        start: SessionEvent,
        *,
        shard_size: int,
        resolution: int,
        now: float,
        done: dict[tuple[str, int], dict] | None = None,
        representation: str = DEFAULT_REPRESENTATION,
        segment: Callable[[np.ndarray], object] | None = None,
    ) -> None:
        if needs_parts(representation) and segment is None:
            raise ValueError(f"the {representation!r} representation needs a part segmenter")
        self.session = start.session
        self.start = start
        self.shard_size = shard_size
        self.resolution = resolution
        self.representation = representation
        self.segment = segment
        self.started_at = now
        self.last_activity = now
        self.end: SessionEvent | None = None
        self.ended_at: float | None = None
        self.held: list[Held] = []  # its session events: committed only once it is finalized
        # camera -> seq of its last acknowledged frame, from the cameras' end markers (camera-end)
        self.last_seq: dict[str, int] = {}
        self.streams: dict[str, CameraStream] = {}
        # Shards already written (index records), from this run or found in the store on start.
        self.done: dict[tuple[str, int], dict] = dict(done or {})
        self.joined = 0
        for camera, book in restore_books(self.done).items():
            self.stream(camera).book = book

    def stream(self, camera: str) -> CameraStream:
        s = self.streams.get(camera)
        if s is None:
            s = self.streams[camera] = CameraStream(camera)
        return s

    def _shard_for(self, camera: str, seq: int) -> ShardBuffer | None:
        index = seq // self.shard_size
        if (camera, index) in self.done:
            return None
        return self.stream(camera).shard(index)

    def add_frame(self, frame: Frame, held: Held, now: float) -> Outcome:
        self.last_activity = now
        stream = self.stream(frame.camera)
        stream.max_frame_seq = max(stream.max_frame_seq, frame.seq)
        buf = self._shard_for(frame.camera, frame.seq)
        if buf is None:
            return Outcome(replay=True)
        seq = frame.seq
        if buf.settled(seq) or seq in buf.frames:
            return Outcome(replay=True)  # a duplicate: the first copy is held
        buf.held.append(held)
        problem = image_problem(frame.image, frame.encoding, frame.width, frame.height)
        if problem:
            buf.rejected[seq] = UNDECODABLE
            buf.poses.pop(seq, None)
            return Outcome(rejected=UNDECODABLE, problem=problem)
        pose = buf.poses.pop(seq, None)
        if pose is None:
            buf.frames[seq] = frame
            return Outcome()
        return self._join(buf, frame, pose)

    def add_pose(self, pose: SmoothedPose, held: Held, now: float) -> Outcome:
        self.last_activity = now
        stream = self.stream(pose.camera)
        stream.max_pose_seq = max(stream.max_pose_seq, pose.seq)
        buf = self._shard_for(pose.camera, pose.seq)
        if buf is None:
            return Outcome(replay=True)
        seq = pose.seq
        if buf.settled(seq) or seq in buf.poses:
            return Outcome(replay=True)
        buf.held.append(held)
        people = list(pose.persons) + list(pose.others)
        if people:
            slots = stream.book.assign(seq, [p.track for p in people], [p.array() for p in people])
            if stream.book.multi:
                buf.slots[seq] = slots
                buf.book_state = stream.book.to_state()
        frame = buf.frames.pop(seq, None)
        if frame is None:
            buf.poses[seq] = pose
            return Outcome()
        return self._join(buf, frame, pose)

    def _join(self, buf: ShardBuffer, frame: Frame, pose: SmoothedPose) -> Outcome:
        try:
            slots = buf.slots.pop(frame.seq, None)
            result = join_sample(frame, pose, self.resolution, self.representation, self.segment, slots)
        except Exception as exc:  # noqa: BLE001 - one bad pair must not stop the session (or loop forever)
            buf.rejected[frame.seq] = INVALID
            return Outcome(rejected=INVALID, problem=f"no sample could be built: {type(exc).__name__}: {exc}")
        if isinstance(result, str):
            buf.rejected[frame.seq] = result
            return Outcome(rejected=result)
        buf.samples[frame.seq] = result
        for k in slots or ([0] if buf.book_state is not None else []):
            if k is not None:
                buf.per_slot[k] = buf.per_slot.get(k, 0) + 1
        buf.backends.add(pose.backend)
        self.joined += 1
        return Outcome(sample=result)

    def announce(self, last_seq: dict[str, int]) -> None:
        """A camera run's end marker: the last frame of each of its cameras."""
        for camera, seq in last_seq.items():
            self.last_seq[camera] = max(seq, self.last_seq.get(camera, -1))

    def reached(self, camera: str) -> tuple[int, int]:
        """(frames, poses): the highest seq of the camera read on each stream, counting shards
        already written (complete only once both streams passed their last seq)."""
        s = self.streams.get(camera)
        written = max((k + 1) * self.shard_size - 1 for c, k in self.done if c == camera) if self.done else -1
        frames, poses = (s.max_frame_seq, s.max_pose_seq) if s else (-1, -1)
        return max(frames, written), max(poses, written)

    def waiting_for(self) -> dict[str, dict[str, int]]:
        """Announced cameras whose last frame or its pose has not been read yet, with how far each
        stream got."""
        out = {}
        for camera, last in sorted(self.last_seq.items()):
            frames, poses = self.reached(camera)
            if min(frames, poses) < last:
                out[camera] = {"last_seq": last, "frames_to": frames, "poses_to": poses}
        return out

    def unannounced(self) -> list[str]:
        """Cameras with messages here but no end marker (an older camera, a run that was killed)."""
        return sorted(set(self.streams) - set(self.last_seq))

    def complete_shards(self) -> list[ShardBuffer]:
        return [b for s in self.streams.values() for b in s.pop_complete(self.shard_size)]

    def all_shards(self) -> list[ShardBuffer]:
        return [b for s in self.streams.values() for b in s.pop_all()]

    def open_held(self) -> list[Held]:
        """Every message still held by this session (open shards and its events)."""
        return self.held + [h for s in self.streams.values() for b in s.shards.values() for h in b.held]

    def pending(self) -> int:
        """Frames and poses waiting for their partner."""
        return sum(len(b.frames) + len(b.poses) for s in self.streams.values() for b in s.shards.values())

"""Synthetic sessions with known content, for tests and the benchmark: real JPEGs of distinct
images, a moving stick figure, and the exact messages the cameras and processors would send."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from infra import kafka
from infra.settings import Settings
from schemas import Frame, Person, SessionEvent, SmoothedPose, frame_key
from schemas.keypoints import IMPUTED, NUM_KEYPOINTS, OBSERVED, SMOOTHED

# A standing figure in unit coordinates (x right, y down), COCO-17 order.
_FIGURE = np.array(
    [
        [0.50, 0.12],
        [0.48, 0.10],
        [0.52, 0.10],
        [0.46, 0.11],
        [0.54, 0.11],
        [0.42, 0.25],
        [0.58, 0.25],
        [0.38, 0.40],
        [0.62, 0.40],
        [0.36, 0.54],
        [0.64, 0.54],
        [0.45, 0.55],
        [0.55, 0.55],
        [0.44, 0.72],
        [0.56, 0.72],
        [0.44, 0.90],
        [0.56, 0.90],
    ],
    np.float32,
)


def synthetic_image(seq: int, camera: str, size: tuple[int, int]) -> np.ndarray:
    """A distinct RGB image per (camera, seq): seeded noise blocks over a gradient."""
    w, h = size
    rng = np.random.default_rng([seq, sum(camera.encode())])
    blocks = rng.integers(0, 256, size=(max(1, h // 8), max(1, w // 8), 3), dtype=np.uint8)
    img = cv2.resize(blocks, (w, h), interpolation=cv2.INTER_NEAREST)
    ramp = np.linspace(0, 60, w, dtype=np.float32)[None, :, None]
    return np.clip(img.astype(np.float32) * 0.75 + ramp, 0, 255).astype(np.uint8)


def jpeg(rgb: np.ndarray, quality: int = 85) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def synthetic_pose(seq: int, size: tuple[int, int], scale: float = 1.0, drift: float = 0.0) -> np.ndarray:
    """[17, 3] figure swaying with seq, in pixels of a frame of `size`; scale > 1 makes it larger
    than the frame (cut off below), drift moves it right by that share of the width per frame.
    Keypoints outside the frame score 0, as an estimator reports what it cannot see."""
    w, h = size
    fig = (_FIGURE - 0.5) * np.float32(scale) + 0.5
    fig[:, 1] += np.float32(0.5 * (scale - 1))  # grow downwards from the head
    xy = fig * np.array([w, h], np.float32)
    xy[:, 0] += np.float32(0.1 * w * np.sin(seq / 5.0) + drift * w * seq)
    scores = np.full((NUM_KEYPOINTS, 1), 0.9, np.float32)
    outside = (xy[:, 0] < 0) | (xy[:, 0] > w) | (xy[:, 1] < 0) | (xy[:, 1] > h)
    scores[outside] = 0.0
    return np.concatenate([xy, scores], axis=1)


def synthetic_flags(seq: int) -> list[int]:
    """Every keypoint observed, except the nose imputed on even seqs (a known imputed share)."""
    flags = [OBSERVED | SMOOTHED] * NUM_KEYPOINTS
    if seq % 2 == 0:
        flags[0] = IMPUTED | SMOOTHED
    return flags


@dataclass
class SyntheticSession:
    session: str
    cameras: tuple[str, ...] = ("cam0", "cam1")
    frames: int = 20
    size: tuple[int, int] = (96, 72)
    no_person: set[tuple[str, int]] = field(default_factory=set)  # a pose with nobody in it
    no_pose: set[tuple[str, int]] = field(default_factory=set)  # the pose never comes
    start_wall: float = 1_700_000_000.0
    consent: bool = True  # nobody's real data: kept like a consenting visitor's unless a test says not
    scale: float = 1.0  # the figure's size (> 1: cut off by the frame's bottom edge)
    drift: float = 0.0  # share of the width the figure walks right per frame (it may leave)
    people: int = 1  # > 1: that many figures side by side, tracked (track k+1 the k-th from the left);
    #                  the main person is the rightmost, so slots (left to right) differ from tracks

    def start(self) -> SessionEvent:
        return SessionEvent(
            session=self.session,
            kind="start",
            wall_time=self.start_wall,
            cameras=list(self.cameras),
            consent=self.consent,
        )

    def end(self, kind: str = "end") -> SessionEvent:
        return SessionEvent(session=self.session, kind=kind, wall_time=self.start_wall + self.frames / 30 + 1)

    def frame(self, camera: str, seq: int) -> Frame:
        w, h = self.size
        return Frame(
            session=self.session,
            camera=camera,
            seq=seq,
            capture_ns=seq * 33_333_333,
            wall_time=self.start_wall + seq / 30,
            width=w,
            height=h,
            image=jpeg(synthetic_image(seq, camera, self.size)),
        )

    def pose(self, camera: str, seq: int) -> SmoothedPose:
        w, h = self.size
        pose = synthetic_pose(seq, self.size, self.scale, self.drift)
        persons = [] if (camera, seq) in self.no_person else [Person.from_array(pose, 0.9)]
        others: list[Person] = []
        if self.people > 1 and persons:
            n, flags = self.people, synthetic_flags(seq)
            figures = []
            for k in range(n):
                p = pose.copy()
                p[:, 0] = p[:, 0] / n + w * k / n
                figures.append(Person.from_array(p, 0.9, track=k + 1, flags=flags))
            persons, others = [figures[-1]], figures[:-1]
        return SmoothedPose(
            session=self.session,
            camera=camera,
            seq=seq,
            capture_ns=seq * 33_333_333,
            wall_time=self.start_wall + seq / 30,
            width=w,
            height=h,
            backend="synthetic",
            persons=persons,
            flags=synthetic_flags(seq) if persons else [],
            others=others,
            mode="online",
        )

    def expected_samples(self, seqs: range | None = None) -> set[tuple[str, int]]:
        seqs = range(self.frames) if seqs is None else seqs
        return {
            (c, s) for c in self.cameras for s in seqs if (c, s) not in self.no_person and (c, s) not in self.no_pose
        }

    def stream_messages(self, settings: Settings, seqs: range | None = None) -> list[tuple[str, bytes, bytes]]:
        """(topic, key, value) of the frames and poses of `seqs` (default: all), frames first."""
        seqs = range(self.frames) if seqs is None else seqs
        out = []
        for seq in seqs:
            for camera in self.cameras:
                out.append((settings.topic_frames, frame_key(self.session, camera), self.frame(camera, seq).encode()))
        for seq in seqs:  # poses lag frames, as they do behind the pose stage
            for camera in self.cameras:
                if (camera, seq) not in self.no_pose:
                    out.append(
                        (settings.topic_smoothed, frame_key(self.session, camera), self.pose(camera, seq).encode())
                    )
        return out

    def event_message(self, settings: Settings, event: SessionEvent) -> tuple[str, bytes, bytes]:
        return settings.topic_sessions, self.session.encode(), event.encode()


def produce(settings: Settings, messages: list[tuple[str, bytes | None, bytes]], producer=None) -> None:
    """Send (topic, key, value) messages and wait until the broker has them all."""
    p = producer or kafka.producer(settings)
    try:
        for topic, key, value in messages:
            p.send(topic, key=key, value=value)
        p.flush(timeout=60)
    finally:
        if producer is None:
            p.close()

"""Benchmark sessions: one person's frames, poses and camera size, from real footage, shared photos
and synthetic persons.

* `footage_session`: a pedestrian of a fixed-camera video (../shared/data/videos/vtest.avi: people
  walking, 768x576, 10 fps, from OpenCV's sample data). The scene without people is the median of
  the frames; moving blobs against it are upscaled and searched with BlazePose's person detector
  (walkers are 60-120 px tall: too small for the detector on the whole frame); each detection is
  then followed frame by frame with BlazePose's landmark model, its region taken from the last
  frame's keypoints, until the person is lost, leaves the frame or the track jumps (someone else
  crossed). The longest such track is the session.
* `photo_session`: the person of a shared photo cut out with BlazePose's mask and moved over the
  photo's own (inpainted) backdrop by vision.pose.synthetic.moving_person_clip, at a 16:9 camera
  size; the poses are the photo's keypoints carried by each frame's affine (exact).
* `synthetic_session`: trainer.pix2pix.synthetic's cartoon person, its pose morphing smoothly
  between random poses, over its backdrop.

Extraction is cached under the benchmark's folder (the footage's tracks take a minute).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from schemas.keypoints import NUM_KEYPOINTS
from vision.crop import body_box

DETECT_SIDE = 256  # blob crops are upscaled to this for the detector
MIN_BLOB_HEIGHT = 35


@dataclass
class Session:
    name: str
    frames: np.ndarray  # uint8 [T, H, W, 3] RGB at the camera's size
    poses: np.ndarray  # [T, 17, 3] in the frames' pixels
    fps: float
    source: str

    @property
    def size(self) -> tuple[int, int]:
        return int(self.frames.shape[2]), int(self.frames.shape[1])


def read_video(path: Path, first: int = 0, count: int | None = None) -> tuple[np.ndarray, float]:
    import av

    frames = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or 10)
        for i, frame in enumerate(container.decode(video=0)):
            if i < first:
                continue
            if count is not None and len(frames) >= count:
                break
            frames.append(frame.to_ndarray(format="rgb24"))
    if not frames:
        raise ValueError(f"{path} has no frames from {first}")
    return np.stack(frames), fps


def _blobs(frame: np.ndarray, scene: np.ndarray) -> list[tuple[int, int, int, int]]:
    diff = np.abs(frame.astype(np.int16) - scene.astype(np.int16)).max(axis=2)
    fg = (diff > 35).astype(np.uint8)
    fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    fg = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, np.ones((9, 5), np.uint8))
    _n, _labels, stats, _c = cv2.connectedComponentsWithStats(fg)
    return [(int(x), int(y), int(w), int(h)) for x, y, w, h, area in stats[1:] if h >= MIN_BLOB_HEIGHT and area >= 300]


def _detections(estimator, frame: np.ndarray, blob: tuple[int, int, int, int]) -> list:
    """Landmark results (vision Person) for the people the detector finds in an upscaled blob."""
    from vision.pose.blazepose import Roi

    x, y, w, h = blob
    side = max(96.0, 1.6 * max(w, h))
    cx, cy = x + w / 2, y + h / 2
    k = side / DETECT_SIDE
    crop_to_frame = np.array([[k, 0, cx - side / 2], [0, k, cy - side / 2]])
    crop = cv2.warpAffine(
        frame, cv2.invertAffineTransform(crop_to_frame), (DETECT_SIDE, DETECT_SIDE), flags=cv2.INTER_CUBIC
    )
    people = []
    for det in estimator.detect(crop):
        pts = det.keypoints @ crop_to_frame[:, :2].T + crop_to_frame[:, 2]
        person = estimator.estimate_at(frame, Roi.from_alignment(pts[0], pts[1]))
        if person is not None:
            people.append(person)
    return people


def _follow(estimator, frames: np.ndarray, start: int, pose: np.ndarray) -> np.ndarray:
    """Keypoints [n, 17, 3] of one person from frame `start` on, until lost, gone or jumped."""
    from vision.pose.blazepose import Roi

    h, w = frames.shape[1:3]
    out = [pose]
    for t in range(start + 1, len(frames)):
        roi = Roi.from_keypoints(out[-1])
        person = estimator.estimate_at(frames[t], roi) if roi is not None else None
        if person is None:
            break
        kp = person.keypoints
        box, last = body_box(kp), body_box(out[-1])
        if box is None or last is None or box[0] < 1 or box[1] < 1 or box[2] > w - 1 or box[3] > h - 1:
            break
        height = last[3] - last[1]
        if np.hypot(*((box[:2] + box[2:]) / 2 - (last[:2] + last[2:]) / 2)) > 0.25 * height:
            break  # a jump: the model moved to someone else
        if not 0.6 < (box[3] - box[1]) / height < 1.6:
            break
        out.append(kp)
    return np.stack(out)


def footage_session(
    video: Path, models_dir: Path | None, cache: Path, *, window: int = 300, max_len: int = 160, starts: int = 6
) -> Session:
    """The longest clean pedestrian track of the video's first `window` frames (see the module
    docstring), at most max_len frames."""
    key = hashlib.sha1(f"{video.resolve()}:{video.stat().st_size}:{window}:{max_len}:{starts}".encode()).hexdigest()[
        :12
    ]
    cached = cache / f"footage-{key}.npz"
    frames, fps = read_video(video, 0, window)
    if cached.exists():
        z = np.load(cached)
        first, poses = int(z["first"]), z["poses"]
        return Session(
            "footage",
            frames[first : first + len(poses)],
            poses,
            fps,
            f"{video.name} frames {first}-{first + len(poses) - 1}",
        )
    from vision.pose import load_estimator

    estimator = load_estimator("blazepose", models_dir, 2, track=False, with_mask=False, min_presence=0.5)
    scene = np.median(frames[::5], axis=0).astype(np.uint8)
    best = (0, np.zeros((0, NUM_KEYPOINTS, 3), np.float32))
    for f0 in np.linspace(0, max(0, len(frames) - 100), starts).astype(int):
        for blob in _blobs(frames[f0], scene):
            for person in _detections(estimator, frames[f0], blob):
                track = _follow(estimator, frames[: f0 + max_len], int(f0), person.keypoints)
                if len(track) > len(best[1]):
                    best = (int(f0), track)
    first, poses = best
    if len(poses) < 40:
        raise RuntimeError(f"no pedestrian could be followed for 40 frames in {video} (best: {len(poses)})")
    cache.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(cached, first=first, poses=poses)
    return Session(
        "footage",
        frames[first : first + len(poses)],
        poses.astype(np.float32),
        fps,
        f"{video.name} frames {first}-{first + len(poses) - 1}",
    )


def photo_session(photo_path: Path, models_dir: Path | None, n: int = 120, size=(640, 360), seed: int = 1) -> Session:
    from vision.pose import load_estimator
    from vision.pose.synthetic import apply_affine, moving_person_clip

    photo = cv2.cvtColor(cv2.imread(str(photo_path)), cv2.COLOR_BGR2RGB)
    persons = load_estimator("blazepose", models_dir, 2, track=False, with_mask=True).estimate(photo)
    if not persons or persons[0].mask is None:
        raise RuntimeError(f"BlazePose finds no person in {photo_path}")
    person = persons[0]
    clip = moving_person_clip(photo, person.mask, n_frames=n, size=size, seed=seed)
    poses = []
    for _frame, affine in clip:
        p = person.keypoints.copy()
        p[:, :2] = apply_affine(affine, p[:, :2])
        poses.append(p)
    return Session(
        photo_path.stem, np.stack([f for f, _ in clip]), np.stack(poses).astype(np.float32), 30.0, photo_path.name
    )


def synthetic_session(n: int = 120, size=(640, 360), seed: int = 0, keyframe_every: int = 12) -> Session:
    from trainer.pix2pix.synthetic import PERSON_A, random_poses

    keys = random_poses(n // keyframe_every + 2, size, seed=seed)
    t = np.arange(n) / keyframe_every
    i, f = t.astype(int), (t % 1.0)[:, None, None]
    poses = (keys[i] * (1 - f) + keys[i + 1] * f).astype(np.float32)
    frames = np.stack([PERSON_A.render(p, size, size) for p in poses])
    return Session("synthetic", frames, poses, 30.0, "trainer.pix2pix.synthetic PERSON_A")


def describe(session: Session) -> dict:
    return {"name": session.name, "frames": len(session.frames), "size": list(session.size), "source": session.source}


def dumps(sessions: list[Session]) -> str:
    return json.dumps([describe(s) for s in sessions])


def _same_person(a: tuple[int, np.ndarray], b: tuple[int, np.ndarray]) -> bool:
    """Whether two tracks (first frame, poses) follow one person: on some frame they share, their
    body boxes' centres lie within half a body height of each other."""
    (fa, pa), (fb, pb) = a, b
    for t in range(max(fa, fb), min(fa + len(pa), fb + len(pb))):
        ba, bb = body_box(pa[t - fa]), body_box(pb[t - fb])
        if ba is None or bb is None:
            continue
        near = np.hypot(*((ba[:2] + ba[2:]) / 2 - (bb[:2] + bb[2:]) / 2)) < 0.5 * (ba[3] - ba[1])
        if near:
            return True
    return False


def footage_people(
    video: Path,
    models_dir: Path | None,
    cache: Path,
    *,
    count: int = 5,
    window: int = 480,
    min_len: int = 60,
    max_len: int = 140,
    starts: int = 10,
) -> list[Session]:
    """Up to `count` different pedestrians of the video's first `window` frames (one scene, one
    camera), each followed as in footage_session for min_len..max_len frames, longest first. Two
    tracks that ever lie on one body are one person: only the longer is kept."""
    key = hashlib.sha1(
        f"people:{video.resolve()}:{video.stat().st_size}:{count}:{window}:{min_len}:{max_len}:{starts}".encode()
    ).hexdigest()[:12]
    cached = cache / f"footage-people-{key}.npz"
    frames, fps = read_video(video, 0, window)
    if cached.exists():
        z = np.load(cached)
        tracks = [(int(f), z[f"poses{i}"]) for i, f in enumerate(z["firsts"])]
    else:
        from vision.pose import load_estimator

        estimator = load_estimator("blazepose", models_dir, 2, track=False, with_mask=False, min_presence=0.5)
        scene = np.median(frames[::5], axis=0).astype(np.uint8)
        found: list[tuple[int, np.ndarray]] = []
        for f0 in np.linspace(0, max(0, len(frames) - min_len), starts).astype(int):
            for blob in _blobs(frames[f0], scene):
                for person in _detections(estimator, frames[f0], blob):
                    track = _follow(estimator, frames[: f0 + max_len], int(f0), person.keypoints)
                    if len(track) >= min_len:
                        found.append((int(f0), track))
        tracks = []
        for track in sorted(found, key=lambda t: -len(t[1])):
            if len(tracks) < count and not any(_same_person(track, kept) for kept in tracks):
                tracks.append(track)
        if not tracks:
            raise RuntimeError(f"no pedestrian could be followed for {min_len} frames in {video}")
        cache.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            cached, firsts=np.array([f for f, _ in tracks]), **{f"poses{i}": p for i, (_, p) in enumerate(tracks)}
        )
    return [
        Session(
            f"pedestrian{i + 1}",
            frames[first : first + len(poses)],
            poses.astype(np.float32),
            fps,
            f"{video.name} frames {first}-{first + len(poses) - 1}",
        )
        for i, (first, poses) in enumerate(tracks)
    ]

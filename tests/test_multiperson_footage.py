"""Several people on real footage through the pose, tracking and smoothing stages (PoseNet on the
CPU): more people than the limit, people crossing, a person leaving and coming back, empty frames.

vtest.avi is a fixed camera over a campus path with several pedestrians; two_people_walking.png a
couple walking hand in hand. bench/data/vtest_identities.json says where one person is in which
frame (see bench/bench_multiperson.py)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from prometheus_client import REGISTRY

from processors.app import SmoothStage, TrackStage, tracking_params
from processors.estimate import PoseStage
from schemas import Frame, frame_key
from schemas.images import decode_bgr
from vision.pose import load_estimator
from vision.smoothing import SmoothingParams

from helpers import video_frames

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
TRUTH = Path(__file__).resolve().parents[1] / "bench" / "data" / "vtest_identities.json"
pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared folder absent: {SHARED}")


@pytest.fixture(scope="module")
def posenet(tmp_path_factory):
    return load_estimator(
        "posenet", SHARED / "models", decoder_lib="", device="cpu", cache_dir=tmp_path_factory.mktemp("m")
    )


class Pipeline:
    """The worker's three steps, in order, with their per-camera state."""

    def __init__(self, estimator, settings, max_people: int = 8):
        self.pose = PoseStage(estimator, max_people)
        self.track = TrackStage(tracking_params(settings, SmoothingParams()))
        self.smooth = SmoothStage(SmoothingParams())
        self.track_state = self.smooth_state = None

    def __call__(self, frame: Frame):
        estimate = self.pose(frame_key(frame.session, frame.camera), frame.encode())
        state, tracked = self.track(self.track_state, estimate)
        self.track_state = state if state is not None else self.track_state
        self.smooth_state, smoothed = self.smooth(self.smooth_state, tracked)
        return tracked, smoothed


def image_frame(rgb: np.ndarray, seq: int) -> Frame:
    ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
    assert ok
    h, w = rgb.shape[:2]
    return Frame(
        session="couple", camera="cam0", seq=seq, capture_ns=seq * 100_000_000, wall_time=1.0, width=w, height=h,
        image=jpg.tobytes(),
    )  # fmt: skip


def dropped_so_far() -> float:
    return REGISTRY.get_sample_value("booth_pose_people_dropped_total", {"backend": "posenet"}) or 0.0


def test_more_people_than_the_limit_keeps_the_strongest_and_counts_the_rest(posenet, settings, shared_dir):
    frames = video_frames(shared_dir, "crowd", "cam0", 660, 3)
    before = dropped_so_far()
    pipeline = Pipeline(posenet, settings, max_people=3)
    dropped = 0
    for frame in frames:
        everyone = posenet.estimate(cv2.cvtColor(decode_bgr(frame), cv2.COLOR_BGR2RGB))
        assert len(everyone) >= 5  # a busy moment of the clip
        tracked, smoothed = pipeline(frame)
        assert [p.score for p in tracked.persons] == [p.score for p in everyone[:3]]  # the strongest, in order
        assert tracked.dropped == len(everyone) - 3
        assert all(p.track is not None for p in tracked.persons)
        assert len(smoothed.persons) + len(smoothed.others) <= 3
        dropped += tracked.dropped
    assert dropped_so_far() - before == dropped


def test_people_crossing_keep_their_ids(posenet, settings, shared_dir):
    # Frames 440-474: the woman in the red jacket walks up the path and a man in black walks down
    # through her; for eight frames the estimator sees one merged figure. She keeps her id.
    truth = {p["name"]: p for p in json.loads(TRUTH.read_text())["people"]}["woman"]["points"]
    where = {f: (x, y, h) for f, x, y, h in truth if 440 <= f < 475}
    assert min(where) < 457 and max(where) > 464  # seen before and after the crossing
    pipeline = Pipeline(posenet, settings)
    ids, smoothed_tracks = {}, set()
    for frame in video_frames(shared_dir, "cross", "cam0", 440, 35):
        tracked, smoothed = pipeline(frame)
        smoothed_tracks |= {p.track for p in smoothed.persons + smoothed.others}
        if frame.seq in where:
            x, y, h = where[frame.seq]
            centres = [np.median(p.array()[p.array()[:, 2] >= 0.3, :2], axis=0) for p in tracked.persons]
            nearest = int(np.argmin([np.hypot(cx - x, cy - y) for cx, cy in centres]))
            assert np.hypot(*(centres[nearest] - (x, y))) < 0.3 * h
            ids[frame.seq] = tracked.persons[nearest].track
    assert len(set(ids.values())) == 1, ids
    assert set(ids.values()) <= smoothed_tracks  # and she was smoothed under that id


def test_a_person_leaving_and_coming_back_and_empty_frames(posenet, settings, shared_dir):
    photo = cv2.cvtColor(cv2.imread(str(shared_dir / "data" / "images" / "two_people_walking.png")), cv2.COLOR_BGR2RGB)
    alone = photo.copy()
    alone[:, 312:] = alone[20:60, 600:630].mean(axis=(0, 1)).astype(np.uint8)  # the woman walks out: snow
    empty = np.full_like(photo, 235)
    # 10 fps: both (0.5 s), he alone (0.4 s, she is back in time), both, nobody for 0.3 s, both,
    # nobody for 1.5 s (longer than track_max_lost_s), both.
    script = [photo] * 5 + [alone] * 4 + [photo] * 3 + [empty] * 3 + [photo] * 3 + [empty] * 15 + [photo] * 3
    pipeline = Pipeline(posenet, settings)
    out = [pipeline(image_frame(rgb, seq)) for seq, rgb in enumerate(script[:33])]
    assert pipeline.smooth_state["tracks"] == {}  # the ended tracks are closed in the smoother too
    out += [pipeline(image_frame(rgb, seq)) for seq, rgb in enumerate(script[33:], start=33)]
    tracks = [sorted(p.track for p in t.persons) for t, _ in out]
    assert tracks[:5] == [[1, 2]] * 5
    man = next(p.track for p in out[0][0].persons if p.array()[:, 0].mean() < 305)
    assert tracks[5:9] == [[man]] * 4
    assert tracks[9:12] == [[1, 2]] * 3  # she got her id back
    assert tracks[12:15] == [[]] * 3 and all(not s.persons and not s.others for _, s in out[12:15])
    assert tracks[15:18] == [[1, 2]] * 3  # both back within track_max_lost_s
    ended = [(seq, t.ended_tracks) for seq, (t, _) in enumerate(out) if t.ended_tracks]
    assert ended == [(28, [1, 2])]  # last seen at seq 17, gone more than 1 s at seq 28: ended once
    assert tracks[33:] == [[3, 4]] * 3  # back after that: new people
    _, last = out[-1]
    assert last.persons and last.persons[0].track in (3, 4) and len(last.others) == 1
    # The main person was the same one all along until their track ended.
    mains = {s.persons[0].track for _, s in out[:18] if s.persons}
    assert len(mains) == 1

"""The live mirror's rules, without a broker: the newest pose wins, stale poses are dropped and
counted, the visitor is normalized onto the dancer, the tracked visitor is followed, a visitor
who leaves is held then idles, and a reference without a generator shows the skeleton."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from schemas import Person, SmoothedPose
from trainer.mirror import Mirror, main_person
from trainer.references.store import Reference
from vision.smoothing.synthetic import stick_figure


class Clock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def _reference(n: int = 60) -> Reference:
    poses, times = stick_figure(n, seed=4)  # about x 320, 640 x 480, ~250 px tall
    return Reference(
        "solo",
        1,
        poses.astype(np.float32),
        np.zeros((n, 17), np.uint8),
        times,
        (640, 480),
        np.ones(n, bool),
        {},
    )


def _visitor(dx: float = 0.0, scale: float = 0.4, seed: int = 9, frame: int = 0) -> np.ndarray:
    """A visitor pose: another stick figure, smaller, at the left of their own camera."""
    poses, _ = stick_figure(frame + 1, seed=seed)
    pose = poses[frame].astype(np.float32)
    pose[:, :2] = pose[:, :2] * scale + np.array([20.0 + dx, 40.0])
    return pose


def _decode(jpeg: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)


def _drawn_centre_x(image: np.ndarray) -> float:
    ys, xs = np.nonzero(image.max(axis=2) > 60)
    return float(xs.mean())


def test_without_a_generator_the_skeleton_is_shown_at_the_dancers_place_and_says_why():
    clock = Clock()
    mirror = Mirror("cam0", _reference(), None, why_no_dancer="no generator of solo yet", clock=clock, width=320)
    mirror.offer(_visitor(), clock.t - 0.05, seq=1)
    frame = mirror.step(timeout=0)
    assert frame is not None and frame.mode == "skeleton" and frame.number == 1
    image = _decode(frame.jpeg)
    assert image.shape == (240, 320, 3)  # the reference's 640 x 480, at the asked width
    # The visitor stood at the left of their picture (x ~ 150 of 640); normalized onto the dancer,
    # the figure stands where the dancer does (x ~ 320 of 640 -> 160 of 320), not where the visitor was.
    assert abs(_drawn_centre_x(image[40:]) - 160) < 40
    # The frame keeps the pose it drew, in its own pixels (what bench_mirror_quality judges against).
    seen = frame.pose[:, 2] >= 0.3
    assert frame.pose.shape == (17, 3) and abs(float(np.median(frame.pose[seen, 0])) - _drawn_centre_x(image[40:])) < 25
    state = mirror.state()
    assert state["generator"] is False and state["message"] == "no generator of solo yet"
    assert state["mode"] == "skeleton" and state["delay_ms_p50"] == pytest.approx(50, abs=1)


def test_the_newest_pose_wins_and_older_or_stale_ones_are_dropped_and_counted():
    clock = Clock()
    mirror = Mirror("cam0", _reference(), None, clock=clock, max_age_s=0.5)
    for k in range(5):
        mirror.offer(_visitor(dx=10 * k), clock.t - 0.01 * (5 - k), seq=k)
    frame = mirror.step(timeout=0)
    assert frame.number == 1 and frame.capture_wall == pytest.approx(clock.t - 0.01)  # the fifth
    assert mirror.counts["superseded"] == 4 and mirror.counts["rendered"] == 1
    mirror.offer(_visitor(), clock.t - 0.8, seq=9)  # the machine fell behind: too old to show
    assert mirror.step(timeout=0) is None and mirror.counts["stale"] == 1
    assert mirror.latest().number == 1
    assert mirror.step(timeout=0) is None  # nothing offered: nothing rendered, nothing counted
    assert mirror.counts["offered"] == 6 and mirror.counts["rendered"] == 1


def test_the_tracked_visitor_is_followed_not_the_other_person_in_the_picture():
    tracked, other = _visitor(), _visitor(dx=300, seed=3)

    def person(pose, track):
        return Person(score=0.9, keypoints=[tuple(map(float, k)) for k in pose], track=track)

    message = SmoothedPose(
        session="s1",
        camera="cam0",
        seq=4,
        capture_ns=4,
        wall_time=999.9,
        width=640,
        height=480,
        backend="test",
        persons=[person(tracked, 2)],
        others=[person(other, 1)],
    )
    np.testing.assert_allclose(main_person(message), tracked, atol=1e-4)
    clock = Clock()
    mirror = Mirror("cam0", _reference(), None, clock=clock)
    mirror.offer_message(message.encode())
    mirror.offer_message(message.model_copy(update={"camera": "cam1"}).encode())  # another camera's: ignored
    mirror.offer_message(b"\x00 not a message")
    assert mirror.counts["invalid"] == 1 and mirror.counts["offered"] == 1
    mirror.step(timeout=0)
    np.testing.assert_allclose(mirror._last_pose, tracked, atol=1e-4)


def test_a_visitor_who_leaves_is_held_then_the_dancer_idles():
    clock = Clock()
    mirror = Mirror("cam0", _reference(), None, clock=clock, hold_s=2.0)
    assert mirror.state()["mode"] == "idle" and mirror.latest() is None
    mirror.offer(_visitor(), clock.t, seq=1)
    shown = mirror.step(timeout=0)
    clock.t += 1.0
    mirror.offer(None, clock.t, seq=2)  # nobody in the frame
    assert mirror.step(timeout=0) is None and mirror.latest() is shown and mirror.state()["mode"] == "holding"
    clock.t += 1.5  # past hold_s without a person (and without poses at all)
    idle = mirror.step(timeout=0)
    assert idle is not None and idle.mode == "idle" and idle.delay_s is None and mirror.state()["mode"] == "idle"
    # Idle is the dancer at rest (their median pose in the reference), not the visitor's last pose.
    np.testing.assert_allclose(idle.pose[:, :2], mirror.rest[:, :2] * mirror.k, atol=1e-3)
    assert np.abs(idle.pose[:, :2] - shown.pose[:, :2]).max() > 5
    assert mirror.step(timeout=0) is None  # idle is drawn once, not re-rendered
    mirror.offer(_visitor(frame=3), clock.t, seq=3)  # back
    assert mirror.step(timeout=0).mode == "skeleton" and mirror.state()["mode"] == "skeleton"
    assert mirror.counts["no_person"] == 1


def test_with_a_generator_the_dancer_is_rendered_by_it():
    import torch

    from trainer.pix2pix.networks import NetConfig, build_networks
    from trainer.references.generator import DancerGenerator

    torch.manual_seed(0)
    generator, _ = build_networks(NetConfig.fast(32))
    ref = _reference()
    dancer = DancerGenerator("solo", 1, generator.eval(), None, {"size": 32, "posemap_style": None}, ref)
    clock = Clock()
    mirror = Mirror("cam0", ref, dancer, clock=clock, width=160)
    mirror.offer(_visitor(), clock.t - 0.02, seq=1)
    frame = mirror.step(timeout=0)
    assert frame.mode == "dancer" and _decode(frame.jpeg).shape == (120, 160, 3)
    # An untrained generator's picture is not the skeleton's: the generator drew it.
    skeleton = Mirror("cam0", ref, None, clock=clock, width=160)
    skeleton.offer(_visitor(), clock.t - 0.02, seq=1)
    diff = np.abs(_decode(frame.jpeg).astype(int) - _decode(skeleton.step(timeout=0).jpeg).astype(int))
    assert diff.mean() > 10
    assert mirror.state()["generator"] is True and mirror.state()["message"] == ""


def test_a_recorded_dance_replays_through_the_mirror_at_its_own_pace():
    from trainer.mirror import replay

    mirror = Mirror("cam0", _reference(), None, width=160)
    walls = [100.0 + k / 10 for k in range(30)]  # 3 s of poses at 10 a second
    poses = [_visitor(dx=k, frame=k) for k in range(29)] + [None]
    started = time.monotonic()
    frames = replay(mirror, poses, walls, seconds=1.0)
    took = time.monotonic() - started
    assert 0.9 <= took < 2.5  # paced: about a second of the recording, not all 3 s, not at once
    assert 5 <= len(frames) <= 12 and [f.number for f in frames] == sorted({f.number for f in frames})
    assert all(f.mode == "skeleton" and f.delay_s is not None and f.delay_s < 0.5 for f in frames)
    assert replay(mirror, [], [], 1.0) == []

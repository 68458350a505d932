"""Identity tracking: people keep their ids through crossings and short occlusions, new people get
new ids, ended tracks are reported once, and the state survives a JSON round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vision.tracking import PoseTracker, TrackingParams

# An upright person about 160 px tall, (x, y) relative to the hip centre, COCO-17 order.
BODY = np.array(
    [
        (0, -120),
        (5, -126),
        (-5, -126),
        (12, -122),
        (-12, -122),
        (22, -95),
        (-22, -95),
        (28, -50),
        (-28, -50),
        (30, -10),
        (-30, -10),
        (12, 0),
        (-12, 0),
        (13, 40),
        (-13, 40),
        (14, 80),
        (-14, 80),
    ],
    np.float64,
)
FPS = 10.0


def person(x: float, y: float = 300.0, score: float = 0.9, rng: np.random.Generator | None = None) -> np.ndarray:
    xy = BODY + (x, y)
    if rng is not None:
        xy = xy + rng.normal(0, 2.0, xy.shape)  # keypoint jitter of a real estimator
    return np.column_stack([xy, np.full(17, score)])


def run(frames: list[list[np.ndarray]], params: TrackingParams | None = None):
    tracker = PoseTracker(params or TrackingParams())
    out = [tracker.update(people, i / FPS) for i, people in enumerate(frames)]
    return tracker, out


def test_two_people_crossing_keep_their_ids():
    # A walks right, B walks left, 4 px apart vertically: they pass through each other at x = 320.
    rng = np.random.default_rng(1)
    frames = [[person(200 + 8 * i, 300, rng=rng), person(440 - 8 * i, 304, rng=rng)] for i in range(31)]
    _, out = run(frames)
    ids = np.array([a.tracks for a in out])
    assert (ids[:, 0] == 1).all() and (ids[:, 1] == 2).all()
    assert all(not a.ended for a in out)


def test_a_short_occlusion_keeps_the_id_and_a_long_absence_ends_the_track():
    p = TrackingParams(max_lost_s=1.0)
    walk = [person(100 + 10 * i) for i in range(40)]
    # Hidden for 5 frames (0.5 s) while still walking: the same id when seen again.
    frames = [[w] for w in walk[:10]] + [[] for _ in range(5)] + [[w] for w in walk[15:25]]
    tracker, out = run(frames, p)
    assert {a.tracks[0] for a in out if a.tracks} == {1}
    assert not any(a.ended for a in out)
    # Gone for 1.5 s: the track ends once, in the frame it has been gone longer than max_lost_s;
    # back, the person is someone new.
    frames = [[w] for w in walk[:10]] + [[] for _ in range(15)] + [[w] for w in walk[25:30]]
    tracker, out = run(frames, p)
    ended = [(i, a.ended) for i, a in enumerate(out) if a.ended]
    assert ended == [(20, [1])]  # last seen at frame 9 (0.9 s); 2.0 s - 0.9 s > 1.0 s
    assert [a.tracks for a in out[25:]] == [[2]] * 5
    assert tracker.live == [2]


def test_new_people_get_new_ids_that_are_never_reused():
    frames = [[person(100)], [person(100), person(400)], [person(400)]] + [[]] * 12 + [[person(100)]]
    tracker, out = run(frames)
    assert [a.tracks for a in out[:3]] == [[1], [1, 2], [2]]
    assert out[-1].tracks == [3] and tracker.live == [3]
    assert sorted(i for a in out for i in a.ended) == [1, 2]


def test_what_is_not_a_person_gets_no_track_and_empty_frames_are_fine():
    weak = person(300, score=0.1)  # no keypoint scores 0.3 or more
    legs_only = person(500)
    legs_only[:13, 2] = 0.0  # four confident keypoints, none on the torso
    tracker, out = run([[weak, legs_only, person(100)], [person(100)], [person(100)], [], []])
    assert out[0].tracks == [None, None, 1]
    assert out[3].tracks == [] and out[4].tracks == []
    assert tracker.live == [1]  # lost, not ended yet


def test_a_flash_of_a_detection_is_not_kept_to_steal_an_id():
    # A one-frame ghost next to A, then A hidden for three frames and back where the ghost was
    # predicted to be: the ghost ended when first missed, so A gets A's id back.
    frames = [[person(100)] for _ in range(5)]
    frames += [[person(100), person(140, score=0.5)]] + [[] for _ in range(3)] + [[person(100)]]
    tracker, out = run(frames)
    assert out[5].tracks == [1, 2] and out[6].ended == [2]
    assert out[-1].tracks == [1]


def test_the_optimal_assignment_beats_greedy_matching():
    # Tracks at x = 100 and 160; then people at 135 and 190. The closest pair (track 2 with the
    # person at 135, 25 px) would leave track 1 nobody within reach; the assignment that is best
    # for the frame as a whole moves both tracks right (35 and 30 px).
    tracker = PoseTracker()
    tracker.update([person(100), person(160)], 0.0)
    sim = tracker.similarity(np.stack([person(135), person(190)]), 0.1)
    assert sim[1, 0] > sim[0, 0] and sim[1, 0] > sim[1, 1]  # greedy would take track 2 -> person 0
    assert tracker.update([person(190), person(135)], 0.1).tracks == [2, 1]


def test_state_round_trips_through_json_and_the_restored_tracker_agrees():
    rng = np.random.default_rng(7)
    frames = [[person(200 + 6 * i, rng=rng), person(420 - 6 * i, 306, rng=rng)] for i in range(20)]
    frames[12] = frames[12][:1]  # one of them missed a frame
    whole, out = run(frames)
    tracker = PoseTracker()
    for i, people in enumerate(frames[:10]):
        tracker.update(people, i / FPS)
    restored = PoseTracker.from_state(json.loads(json.dumps(tracker.to_state())))
    rest = [restored.update(people, (10 + i) / FPS) for i, people in enumerate(frames[10:])]
    assert [a.tracks for a in rest] == [a.tracks for a in out[10:]]
    assert restored.to_state() == whole.to_state()


def test_assign_reads_without_changing_anything():
    tracker = PoseTracker()
    tracker.update([person(100)], 0.0)
    before = tracker.to_state()
    assert tracker.assign([person(105), person(400)], 0.1) == [1, None]  # the stranger gets no new id
    assert tracker.to_state() == before


def test_bad_state_and_params_are_named():
    with pytest.raises(ValueError, match="version"):
        PoseTracker.from_state({"version": 99})
    with pytest.raises(ValueError, match="malformed"):
        PoseTracker.from_state({"version": 1, "next_id": 1, "t_last": None, "tracks": [{"id": 1}]})
    with pytest.raises(ValueError, match="min_similarity"):
        TrackingParams(min_similarity=1.5)
    with pytest.raises(ValueError, match="shape"):
        PoseTracker().update(np.zeros((2, 17, 2)), 0.0)

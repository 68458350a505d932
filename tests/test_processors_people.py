"""The pose agent's tracking and the smoothing agent's per-track state, without a broker: each
track is smoothed as one person alone, a track that ends is closed, the main person
stays main while their track lives, and redeliveries change nothing."""

from __future__ import annotations

import numpy as np
import pytest

from processors.app import SmoothStage, TrackStage
from processors.estimate import Rejected
from schemas import Person, PoseEstimate
from vision.smoothing import OnlineSmoother, SmoothingParams
from vision.smoothing.synthetic import corrupt, stick_figure
from vision.tracking import TrackingParams

FPS = 30.0


def estimate(seq: int, people: list[tuple[np.ndarray, float, int | None]], ended: list[int] = ()) -> PoseEstimate:
    return PoseEstimate(
        session="s",
        camera="c",
        seq=seq,
        capture_ns=round(seq * 1e9 / FPS),
        wall_time=1.0,
        width=1280,
        height=480,
        backend="test",
        persons=[Person.from_array(kp, score, track=track) for kp, score, track in people],
        ended_tracks=list(ended),
    )


def two_dancers(n: int, noisy: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Two different dancers side by side (the second 600 px to the right), with an estimator's
    jitter, dropped keypoints and outliers unless noisy is False."""
    a, _ = stick_figure(n, FPS, seed=1)
    b, _ = stick_figure(n, FPS, seed=2)
    b[..., 0] += 600
    if not noisy:
        return a, b
    return corrupt(a, seed=3).poses, corrupt(b, seed=4).poses


def test_each_track_is_smoothed_as_if_it_were_alone():
    """... so one visitor is smoothed as before several people were tracked."""
    a, b = two_dancers(60)
    params = SmoothingParams()
    stage, state = SmoothStage(params), None
    alone = {1: OnlineSmoother(params), 2: OnlineSmoother(params)}
    for i in range(60):
        hidden = i % 17 == 16  # track 1 hidden now and then
        people = [(b[i], 0.8, 2)] if hidden else [(a[i], 0.9, 1), (b[i], 0.8, 2)]
        state, out = stage(state, estimate(i, people))
        got = {p.track: p for p in out.persons + out.others}
        for track, kp in ((1, a[i]), (2, b[i])):
            observed = np.zeros((17, 3), np.float32) if track == 1 and hidden else kp
            want, flags, present = alone[track].update(observed, i / FPS)
            assert present == (track in got), (i, track)
            if present:
                np.testing.assert_allclose(got[track].array(), want, atol=1e-3)
                assert got[track].flags == flags.tolist()
        # Track 1 was the strongest at the start: the main person, absent while hidden.
        assert [p.track for p in out.persons] == ([] if hidden or 1 not in got else [1])
        assert out.flags == (out.persons[0].flags if out.persons else [])
    assert sorted(state["tracks"]) == ["1", "2"] and state["main"] == 1


def test_the_main_person_stays_main_while_the_track_lives_and_an_ended_track_is_closed():
    a, b = two_dancers(12)
    stage, state = SmoothStage(SmoothingParams()), None
    state, out = stage(state, estimate(0, [(a[0], 0.6, 1)]))
    assert out.persons[0].track == 1 and out.others == []
    # A stronger person arrives: the main person does not change.
    state, out = stage(state, estimate(1, [(b[1], 0.95, 2), (a[1], 0.6, 1)]))
    assert out.persons[0].track == 1 and [p.track for p in out.others] == [2]
    # The main person hidden: no main person in the frame, and no one else takes the place.
    for i in (2, 3):
        state, out = stage(state, estimate(i, [(b[i], 0.95, 2)]))
        assert out.persons == [] and out.flags == [] and [p.track for p in out.others] == [2]
    # Their track ends: closed, and the strongest person present becomes main.
    state, out = stage(state, estimate(4, [(b[4], 0.95, 2)], ended=[1]))
    assert out.persons[0].track == 2 and out.others == [] and list(state["tracks"]) == ["2"]
    assert state["main"] == 2


def test_untracked_people_are_not_smoothed_and_lone_tracks_are_dropped_after_a_minute():
    a, _ = two_dancers(3)
    stage = SmoothStage(SmoothingParams())
    state, out = stage(None, estimate(0, [(a[0], 0.9, None)]))
    assert out.persons == [] and out.others == [] and state["tracks"] == {}
    state, out = stage(state, estimate(1, [(a[1], 0.9, 5)]))
    assert list(state["tracks"]) == ["5"]
    # Never announced as ended, unseen for over a minute: dropped all the same.
    state, out = stage(state, estimate(int(61 * FPS), []))
    assert state["tracks"] == {} and state["main"] is None


def test_redeliveries_are_skipped_and_time_going_backwards_is_rejected():
    a, _ = two_dancers(3)
    stage = SmoothStage(SmoothingParams())
    state, _ = stage(None, estimate(2, [(a[0], 0.9, 1)]))
    assert stage(state, estimate(2, [(a[1], 0.9, 1)])) == (state, None)
    backwards = estimate(3, [(a[1], 0.9, 1)]).model_copy(update={"capture_ns": 1})
    with pytest.raises(Rejected, match="frames must arrive in capture order"):
        stage(state, backwards)
    # The same order check without anyone in the frame.
    with pytest.raises(Rejected, match="capture order"):
        stage(state, backwards.model_copy(update={"persons": []}))


def test_a_single_person_state_from_before_tracking_starts_the_camera_afresh():
    a, _ = two_dancers(2)
    old = OnlineSmoother(SmoothingParams())
    old.update(a[0], 0.0)
    state = {**old.to_state(), "last_seq": 0}
    new_state, out = SmoothStage(SmoothingParams())(state, estimate(1, [(a[1], 0.9, 1)]))
    assert out.persons[0].track == 1 and list(new_state["tracks"]) == ["1"] and new_state["last_seq"] == 1


def test_tracking_stage_gives_ids_and_a_redelivered_frame_changes_nothing():
    a, b = two_dancers(6, noisy=False)
    track, state = TrackStage(TrackingParams()), None
    for i in range(4):
        state, out = track(state, estimate(i, [(a[i], 0.9, None), (b[i], 0.8, None)]))
        assert [p.track for p in out.persons] == [1, 2] and out.ended_tracks == []
    assert state["last_seq"] == 3
    # Seq 2 again (a redelivery after a restart): the same ids, no new state; a stranger gets none.
    stranger = a[2].copy()
    stranger[:, 0] += 300
    again_state, again = track(state, estimate(2, [(b[2], 0.8, None), (stranger, 0.7, None)]))
    assert again_state is None and [p.track for p in again.persons] == [2, None]
    # Later frames carry on from the stored state; person 1 gone long enough ends their track.
    for i in range(4, 40):
        state, out = track(state, estimate(i, [(b[i % 6], 0.8, None)]))
        if out.ended_tracks:
            assert out.ended_tracks == [1] and i == 3 + int(TrackingParams().max_lost_s * FPS) + 1
    assert [p.track for p in out.persons] == [2]

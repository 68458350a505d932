"""The trainer's held-out frames: the poses least like the rest of the session, or a block at the
end of each camera, with a gap around them."""

import numpy as np
import pytest
from test_fidelity import standing

from schemas.keypoints import INDEX
from trainer.coverage import match, training_relevance
from trainer.training_set import holdout_split, novel_split


def test_each_camera_holds_out_its_end_with_a_gap_before_it():
    cameras = np.array(["a"] * 100 + ["b"] * 60)
    seqs = np.concatenate([np.arange(100), np.arange(60)])
    order = np.random.default_rng(0).permutation(len(seqs))  # the split does not depend on the order given
    split = holdout_split(cameras[order], seqs[order], fraction=0.2, gap=10)
    train, test = np.zeros(160, bool), np.zeros(160, bool)
    train[order], test[order] = split.train, split.test
    for cam, n in (("a", 100), ("b", 60)):
        sel = cameras == cam
        held = np.sort(seqs[sel & test])
        trained = seqs[sel & train]
        assert list(held) == list(range(n - round(0.2 * n), n))  # contiguous, at the end
        assert held.min() - trained.max() == 11  # ten frames between them are used for neither
        assert not (train & test).any()
    assert split.gap == 10 and split.note == ""


def test_small_sessions_keep_training_frames_and_say_so():
    split = holdout_split(np.array(["a"] * 24), np.arange(24), fraction=0.15, gap=15, min_train=8)
    assert (split.train.sum(), split.test.sum(), split.gap) == (8, 4, 12)
    assert "a gap of 12 frames, not 15" in split.note
    tiny = holdout_split(np.array(["a"] * 9), np.arange(9))
    assert tiny.train.all() and not tiny.test.any() and "none held out" in tiny.note
    with pytest.raises(ValueError, match="between 0 and 1"):
        holdout_split(np.array(["a"]), np.arange(1), fraction=1.0)


def walking(n: int, rng) -> np.ndarray:
    """n frames of one standing pose with a little jitter: nothing novel."""
    poses = np.stack([standing() for _ in range(n)]).astype(np.float32)
    poses[:, :, :2] += rng.normal(0, 1.0, (n, 17, 2))
    return poses


def test_pose_novel_frames_are_held_out_with_a_gap_around_each_stretch():
    rng = np.random.default_rng(1)
    poses = walking(200, rng)
    poses[120:130, INDEX["left_wrist"], 1] -= 90  # an arm raised once: poses seen nowhere else
    poses[40:48] = standing(front=False, face=False)  # the back, once
    poses[70:75, :, 2] = 0.0  # nobody readable: never chosen for its pose
    cameras, seqs = np.array(["a"] * 200), np.arange(200)
    split = novel_split(cameras, seqs, poses, fraction=0.15, gap=10)
    held = set(np.flatnonzero(split.test))
    assert len(held) == 30 and split.note == ""
    assert set(range(120, 130)) <= held and set(range(40, 48)) <= held  # the novel poses
    assert not held & set(range(70, 75))
    assert not (split.train & split.test).any()
    # No training frame within the gap of a held-out one.
    trained = np.flatnonzero(split.train)
    assert min(abs(int(t) - int(h)) for t in trained for h in held) == 11
    # Not the last seconds: the tail split holds out other frames.
    assert holdout_split(cameras, seqs, 0.15, 10, poses=poses).test.tolist() == split.test.tolist()
    assert not set(np.flatnonzero(holdout_split(cameras, seqs, 0.15, 10).test)) & set(range(120, 130))


def test_pose_novel_split_falls_back_to_the_end_where_it_cannot_hold_out_stretches():
    rng = np.random.default_rng(2)
    small = novel_split(np.array(["a"] * 24), np.arange(24), walking(24, rng), 0.15, 15)
    assert (small.train.sum(), small.test.sum()) == (8, 4) and "last frames held out" in small.note
    blind = walking(120, rng)
    blind[:, :, 2] = 0.0  # no pose has a torso
    split = novel_split(np.array(["a"] * 120), np.arange(120), blind, 0.15, 10)
    assert split.test[-18:].all() and "no readable torso" in split.note
    with pytest.raises(ValueError, match="poses for"):
        novel_split(np.array(["a"] * 3), np.arange(3), blind[:2])


def test_a_dance_keeps_the_frames_that_show_its_rare_poses_in_training():
    # A visitor who followed the dance: mostly facing the camera, the dance's back view briefly,
    # and once an arm raised that the dance never asks for.
    rng = np.random.default_rng(3)
    poses = walking(200, rng)
    poses[40:48] = standing(front=False, face=False)
    poses[120:130, INDEX["left_wrist"], 1] -= 90
    cameras, seqs = np.array(["a"] * 200), np.arange(200)
    dance = np.stack([standing()] * 20 + [standing(front=False, face=False)] * 10)
    dance[:, :, :2] = dance[:, :, :2] * 1.5 + (300, 40)  # the dancer elsewhere in a bigger picture
    back = set(range(40, 48))

    today = novel_split(cameras, seqs, poses, fraction=0.15, gap=10)
    assert back <= set(np.flatnonzero(today.test))  # the back view is the most novel stretch: held out
    _, lost = training_relevance(dance, poses, cameras, np.flatnonzero(today.train))
    assert lost["uncovered_frames"] == 10  # so training never sees the dance's back

    split = novel_split(cameras, seqs, poses, fraction=0.15, gap=10, dance=dance)
    held = set(np.flatnonzero(split.test))
    assert not back & held and back & set(np.flatnonzero(split.train))
    _, kept = training_relevance(dance, poses, cameras, np.flatnonzero(split.train))
    assert kept["share"] == 1.0 and match(dance, poses).share == 1.0  # as much as the capture shows
    assert set(range(120, 130)) <= held  # still pose-novel where the dance does not ask
    assert not (split.train & split.test).any()
    trained = np.flatnonzero(split.train)
    assert min(abs(int(t) - int(h)) for t in trained for h in held) == 11  # the gaps are kept
    assert len(held) == 30 and split.note == ""  # room enough: the share asked
    same = holdout_split(cameras, seqs, 0.15, 10, poses=poses, dance=dance)
    assert same.test.tolist() == split.test.tolist()


def test_where_the_dance_frames_leave_no_room_fewer_are_held_out_and_the_note_says_so():
    # Every second or so another of the dance's back views (the arm higher each time): a full
    # stretch with its gaps would take one of them wherever it stood.
    rng = np.random.default_rng(4)
    poses = walking(200, rng)
    dance = [standing()]
    for j, start in enumerate(range(5, 200, 25)):
        back = standing(front=False, face=False)
        back[INDEX["right_wrist"], 1] -= 30 * j
        poses[start : start + 3] = back
        dance.append(back)
    dance = np.stack(dance)
    cameras, seqs = np.array(["a"] * 200), np.arange(200)
    full = novel_split(cameras, seqs, poses, fraction=0.15, gap=10)
    split = novel_split(cameras, seqs, poses, fraction=0.15, gap=10, dance=dance)
    _, kept = training_relevance(dance, poses, cameras, np.flatnonzero(split.train))
    assert kept["share"] == 1.0
    assert 2 <= split.test.sum() < 30 and "frames held out, not 30" in split.note
    # Never more frames lost to training than the asked stretches would have cost.
    assert (~split.train).sum() <= (~full.train).sum()

"""The trainer's held-out frames: a contiguous block at the end of each camera, a gap before it."""

import numpy as np
import pytest

from trainer.dataset import holdout_split


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

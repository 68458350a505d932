"""The guided-capture benchmark's pieces on tiny inputs: the dance placed where the guided visitor
follows it, and a few frames of each step of the trained comparison (film, train, judge)."""

from __future__ import annotations

import numpy as np

from bench import bench_guided as bg


def test_the_placed_dance_is_where_the_guided_visitor_dances():
    rng = np.random.default_rng(3)
    steps = bg.dance(rng)
    visitor = np.stack(bg.guided(steps, rng))
    loop = bg.placed(steps)
    start, lag = int(bg.COUNTDOWN * bg.FPS), int(0.4 * bg.FPS)
    errors = []
    for f in range(start + lag, len(visitor)):
        i = (f - start - lag) % len(loop)
        errors.append(float(np.sqrt(np.mean((visitor[f, :, :2] - loop[i, :, :2]) ** 2))))
    # Followed moves differ only by the wobble (0.06 torso lengths of 77 px: ~5 px); missed ones by far more.
    followed = np.array(errors) < 10.0
    assert 0.6 < followed.mean() < 1.0
    assert np.median(np.array(errors)[~followed]) > 20.0


def test_a_tiny_session_is_filmed_trained_and_judged_on_the_dance(shared_dir, tmp_path):
    from vision.warp import PartWarper, SourceView

    models = shared_dir / "models"
    photo, mask, keypoints, where = bg.photo_person(shared_dir, models)
    assert "two_people_walking" in where
    # The left person: the man, whose hips are left of the picture's middle.
    assert keypoints[11, 0] < photo.shape[1] / 2
    rng = np.random.default_rng(0)
    steps = bg.dance(rng)
    poses = bg.guided(steps, rng)[::15]  # 30 frames, one a second
    warper = PartWarper([SourceView.build(photo, mask, keypoints)])
    backdrop = np.full((bg.CANVAS[1], bg.CANVAS[0], 3), 200, np.uint8)
    session = bg.filmed("guided", poses, warper, backdrop, where)
    assert session.frames.shape == (30, 480, 640, 3)
    # The person is drawn where the pose says: pixels differ from the backdrop at the hips, not in a corner.
    hips = poses[10][[11, 12], :2].mean(axis=0).astype(int)
    assert np.abs(session.frames[10, hips[1], hips[0]].astype(int) - 200).max() > 0
    assert (session.frames[:, :20, :20] == 200).all()

    loop = bg.placed(steps)
    p, framing, trainer, relevance = bg.train_arm(session, loop, models)
    assert 0.0 < relevance["share"] <= 1.0
    trainer.run(max_steps=1, export=False)
    assert trainer.step == 1
    dance = loop[:: len(loop) // 4][:4]
    figures = bg.judged("guided", dance, framing, trainer.G, tmp_path, models)
    assert (tmp_path / "dance-guided.png").stat().st_size > 0
    assert (tmp_path / "dance-guided.mp4").stat().st_size > 0
    assert {"dance_limb_error", "dance_facing_agreement", "dance_person_found"} <= figures.keys()
    assert 0.0 <= figures["dance_person_found"] <= 1.0

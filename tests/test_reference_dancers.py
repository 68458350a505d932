"""Which people of a multi-person reference clip are its dancers: the ones who dance (large,
moving, central over the clip), not whoever is most present or leftmost."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.references.dancers import dancer_score, dancer_scores, track_dancers
from vision.smoothing.synthetic import stick_figure

# vtest.avi frames 540-574, checked by eye: a man in a red and navy jacket and a fair-haired
# woman walk side by side across the lawn, large and near the middle of the picture (x 150-330,
# feet at y 450-560 of 768x576); a small walker in red crosses the path at the left edge
# (x 130-180, y ~200) and further small people walk or stand on the path at the right.
CLIP = (540, 575)
PAIR_BOX = (120.0, 360.0, 330.0, 600.0)  # x0, x1, y0, y1 where the pair's body centres lie


@pytest.fixture(scope="module")
def crowd_clip(shared_dir, tmp_path_factory):
    import cv2

    from trainer.references.video import write_mp4

    cap = cv2.VideoCapture(str(shared_dir / "data" / "videos" / "vtest.avi"))
    frames = []
    try:
        for i in range(CLIP[1]):
            ok, bgr = cap.read()
            assert ok, f"vtest.avi has no frame {i}"
            if i >= CLIP[0]:
                frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    finally:
        cap.release()
    path = tmp_path_factory.mktemp("crowd") / "crowd.mp4"
    write_mp4(path, frames, 10)
    return path


def test_the_two_people_dancing_in_the_middle_are_chosen_not_the_walkers_at_the_edges(crowd_clip):
    from vision.pose import load_estimator

    estimator = load_estimator("posenet", None, num_threads=1, max_detections=8)
    raw, times, size, info = track_dancers(crowd_clip, estimator, 2)
    assert size == (768, 576) and raw.shape[:2] == (CLIP[1] - CLIP[0], 2)
    assert info["tracks_found"] > 4  # a crowd, not just the pair
    x0, x1, y0, y1 = PAIR_BOX
    centres = []
    for d in range(2):
        ok = raw[:, d, :, 2] >= 0.3
        seen = ok.sum(axis=1) >= 5
        assert seen.sum() >= 15, f"dancer {d} is seen in {seen.sum()} frames"
        xy = np.array([raw[t, d, ok[t], :2].mean(axis=0) for t in np.flatnonzero(seen)])
        heights = np.array([np.ptp(raw[t, d, ok[t], 1]) for t in np.flatnonzero(seen)])
        cx, cy = np.median(xy, axis=0)
        assert x0 <= cx <= x1 and y0 <= cy <= y1, f"dancer {d} is at ({cx:.0f}, {cy:.0f}), not one of the pair"
        assert np.median(heights) > 90, f"dancer {d} is {np.median(heights):.0f} px tall: a small passer-by"
        centres.append(np.median(xy, axis=0))
    # Two people, not one person's track twice: the pair walk side by side, some 40-90 px apart.
    assert np.linalg.norm(centres[0] - centres[1]) > 25
    # The reasons are kept with the reference, and the pair scored clearly above everyone else.
    scores = [s["score"] for s in info["scores"]]
    assert min(scores) > info["best_left_out"]


def _still(pose: np.ndarray, n: int) -> np.ndarray:
    return np.repeat(pose[None], n, axis=0)


def test_a_dancer_outscores_a_bystander_a_passer_by_and_a_flicker():
    n = 60
    dance, times = stick_figure(n, fps=30.0, seed=1)  # centred near x 320 of 640 x 480, ~250 px tall
    bystander = _still(dance[0].copy(), n)  # as large, always there, but still
    bystander[..., 0] += 150
    passer = dance.copy()  # moves just as much, but small and at the edge
    passer[..., :2] = passer[..., :2] * 0.3 + np.array([5.0, 10.0])
    tracks = {
        1: list(zip(dance, times)),
        2: list(zip(bystander, times)),
        3: list(zip(passer, times)),
        4: list(zip(dance[:6], times[:6])),  # a dancer-like detection seen for a tenth of the clip
    }
    scores = dancer_scores(tracks, (640, 480), n)
    assert scores[1]["motion"] > 5 * scores[2]["motion"]
    assert scores[3]["height"] < 0.5 * scores[1]["height"] and scores[3]["offcentre"] > scores[1]["offcentre"]
    ranked = sorted(scores, key=lambda i: -scores[i]["score"])
    assert ranked[0] == 1 and set(ranked[1:]) == {2, 3, 4}
    assert scores[4]["presence"] == pytest.approx(0.1)
    # Nobody confident enough to measure scores nothing.
    empty = dancer_scores({5: [(np.zeros((17, 3), np.float32), 0.0)]}, (640, 480), n)[5]
    assert empty["score"] == 0.0 == dancer_score({**empty, "presence": 0.0})

"""Colour-perturbed part masks mapped back to part ids (k-means on the palette, border refinement)."""

from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from tools.parts import parts
from vision.parts.colours import PALETTE, colourize
from vision.parts.from_pose import parts_from_pose
from vision.parts.repair import repair_folder, repair_ids, repair_image

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
# Two standing people facing the camera, keypoints (x, y) in a 200 x 300 frame.
FRONT = np.array(
    [
        (100, 40),
        (106, 35),
        (94, 35),
        (112, 38),
        (88, 38),
        (125, 75),
        (75, 75),
        (140, 115),
        (60, 115),
        (150, 150),
        (50, 150),
        (115, 150),
        (85, 150),
        (118, 210),
        (82, 210),
        (120, 265),
        (80, 265),
    ],
    np.float32,
)


def synthetic_parts(size=(480, 360)) -> np.ndarray:
    """A part-id map of two people: person masks as thick limbs, parts from the poses."""
    ids = np.zeros((size[1], size[0]), np.uint8)
    for dx, scale in ((20, 1.1), (250, 1.0)):
        kps = np.column_stack([FRONT * scale + (dx, 10), np.ones(17)]).astype(np.float32)
        mask = np.zeros_like(ids)
        pts = np.round(kps[:, :2]).astype(int).tolist()
        for a, b in ((5, 7), (7, 9), (6, 8), (8, 10), (11, 13), (13, 15), (12, 14), (14, 16), (0, 5), (0, 6)):
            cv2.line(mask, pts[a], pts[b], 1, 14)
        cv2.fillPoly(mask, [np.array([pts[5], pts[6], pts[12], pts[11]])], 1)
        cv2.circle(mask, pts[0], 20, 1, -1)
        ids = np.maximum(ids, parts_from_pose(kps, mask.astype(bool)))
    return ids


def perturb(rgb: np.ndarray, sigma: float = 8.0, quality: int = 80, seed: int = 0) -> np.ndarray:
    """Gaussian noise, then a JPEG round trip (4:2:0 chroma, as browsers encode)."""
    noisy = np.clip(rgb + np.random.default_rng(seed).normal(0, sigma, rgb.shape), 0, 255).astype(np.uint8)
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(noisy, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def accuracy(got: np.ndarray, want: np.ndarray) -> tuple[float, float]:
    """(all pixels, part pixels) restored to the right id."""
    right = got == want
    return float(right.mean()), float(right[want > 0].mean())


def test_exact_palette_colours_come_back_unchanged():
    ids = synthetic_parts()
    assert len(np.unique(ids)) > 12
    np.testing.assert_array_equal(repair_ids(colourize(ids)), ids)
    np.testing.assert_array_equal(repair_image(colourize(ids)), colourize(ids))


def test_noise_and_jpeg_are_repaired():
    ids = synthetic_parts()
    noisy = perturb(colourize(ids))
    assert (noisy == colourize(ids)).all(axis=2).mean() < 0.2  # hardly a pixel kept its colour
    overall, on_parts = accuracy(repair_ids(noisy), ids)
    assert overall > 0.99 and on_parts > 0.96, (overall, on_parts)  # measured 99.7%, 97.7%
    # The border refinement is what gets part pixels right: colour clustering alone misses
    # many pixels next to borders.
    plain_overall, plain_parts = accuracy(repair_ids(noisy, refine=False), ids)
    assert on_parts > plain_parts + 0.03, (on_parts, plain_parts)


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared folder absent: {SHARED}")
def test_bodypix_mask_of_two_people_is_repaired(tmp_path):
    from vision.parts.bodypix import BodyPixSegmenter

    image = cv2.cvtColor(cv2.imread(str(SHARED / "data/images/two_people_walking.png")), cv2.COLOR_BGR2RGB)
    ids = BodyPixSegmenter(SHARED / "models", 1, device="cpu", cache_dir=tmp_path).segment(image).part_ids
    overall, on_parts = accuracy(repair_ids(perturb(colourize(ids))), ids)
    # BodyPix's small parts make borders a large share of part pixels (measured: 99.5%, 95.9%).
    assert overall > 0.99 and on_parts > 0.94, (overall, on_parts)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="uint8 RGB"):
        repair_ids(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="palette"):
        repair_ids(np.zeros((4, 4, 3), np.uint8), palette=np.zeros((3, 4)))


def test_folder_repair_writes_copies(tmp_path):
    ids = synthetic_parts()
    src = tmp_path / "masks"
    src.mkdir()
    for i in range(2):
        cv2.imwrite(
            str(src / f"m{i}.jpg"),
            cv2.cvtColor(perturb(colourize(ids), seed=i), cv2.COLOR_RGB2BGR),
            [cv2.IMWRITE_JPEG_QUALITY, 85],
        )
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    result = CliRunner().invoke(parts, ["repair", str(src)])
    assert result.exit_code == 0, result.output
    assert "m0.jpg" in result.output and "m1.jpg" in result.output
    assert {p.name: p.read_bytes() for p in src.iterdir() if p.is_file()} == before  # inputs kept
    for i in range(2):
        out = cv2.cvtColor(cv2.imread(str(src / "repaired" / f"m{i}.png")), cv2.COLOR_BGR2RGB)
        colours = np.unique(out.reshape(-1, 3), axis=0)
        assert all((PALETTE == c).all(axis=1).any() for c in colours)  # palette colours only
        assert accuracy(repair_ids(out), ids)[0] > 0.99
    assert [r.target.name for r in repair_folder(src, tmp_path / "elsewhere")] == ["m0.png", "m1.png"]


def test_folder_repair_refuses_bad_folders(tmp_path):
    runner = CliRunner()
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(parts, ["repair", str(empty)])
    assert result.exit_code != 0 and "no images" in result.output
    cv2.imwrite(str(empty / "a.png"), np.zeros((4, 4, 3), np.uint8))
    result = runner.invoke(parts, ["repair", str(empty), "--out", str(empty)])
    assert result.exit_code != 0 and "must differ" in result.output
    cv2.imwrite(str(empty / "a.jpg"), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="share the name"):
        repair_folder(empty)

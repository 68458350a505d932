import numpy as np
import pytest
import torch

from trainer.pix2pix.evaluate import image_metrics, pose_consistency, reconstruction_metrics
from trainer.pix2pix.inference import generate
from trainer.pix2pix.networks import NetConfig, UNetGenerator
from trainer.pix2pix.samples import loss_curves, png_bytes, sample_grid
from trainer.pix2pix.synthetic import PERSON_A, make_pairs, random_poses
from vision.posemap import Letterbox

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def generator():
    torch.manual_seed(0)
    return UNetGenerator(NetConfig(size=32, ngf=8, ndf=8, n_layers_d=2)).eval()


def test_image_metrics():
    rng = np.random.default_rng(0)
    ramp = np.linspace(40, 210, 32)
    img = np.stack([ramp[None, :].repeat(32, 0), ramp[:, None].repeat(32, 1), np.full((32, 32), 128.0)], -1)
    img = img.astype(np.uint8)
    assert image_metrics(img, img) == (pytest.approx(1.0), 100.0)
    noisy = np.clip(img + rng.normal(0, 20, img.shape), 0, 255).astype(np.uint8)
    ssim, psnr = image_metrics(img, noisy)
    assert 0 < ssim < 0.9 and 18 < psnr < 30  # sigma 20 noise is about 22 dB
    with pytest.raises(ValueError, match="one shape"):
        image_metrics(img, img[:16])


def test_reconstruction_metrics_average_the_per_frame_scores(generator):
    pairs = make_pairs(PERSON_A, random_poses(3, 64, seed=1), 64, 32)
    result = reconstruction_metrics(generator, pairs)
    fakes = generate(generator, np.stack([pairs[i][0] for i in range(3)]))
    expected = np.mean([image_metrics(pairs[i][1], fakes[i]) for i in range(3)], axis=0)
    assert result["n"] == 3
    assert result["ssim"] == pytest.approx(expected[0]) and result["psnr"] == pytest.approx(expected[1])


def test_pose_consistency_normalizes_by_body_size(generator):
    poses = random_poses(4, (64, 48), seed=2)
    poses[:, 9, 2] = 0.1  # an unconfident wrist is never compared
    box = Letterbox.fit((64, 48), 32)
    seen = []

    def estimate(frame):  # an "estimator" that finds the rendered pose, 1.5 px to the right
        assert frame.shape == (32, 32, 3)
        p = box.pose_to_output(poses[len(seen)])
        seen.append(frame)
        p[:, 0] += 1.5
        return p

    result = pose_consistency(generator, poses, (64, 48), estimate)
    sizes = []
    for p in poses:
        q = box.pose_to_output(p)[p[:, 2] >= 0.3, :2]
        sizes.append(np.hypot(*(q.max(0) - q.min(0))))
    assert result["mean_error"] == pytest.approx(np.mean(1.5 / np.array(sizes)), rel=1e-4)
    assert np.isnan(result["per_keypoint"][9]) and result["keypoints"] == 4 * 16
    assert result["frames"] == 4 and len(seen) == 4


def test_sample_grid_holds_the_images():
    rng = np.random.default_rng(3)
    a, b, c = (rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8) for _ in range(3))
    grid = sample_grid(a, b, c, max_rows=2, min_cell=64)
    assert grid.shape == (24 + 2 * 68, 3 * 68 + 4, 3)
    cell = grid[24 + 68 : 24 + 68 + 64, 4 + 68 * 2 : 4 + 68 * 2 + 64]  # row 1, "generated"
    assert np.array_equal(cell[::2, ::2], c[1])
    assert png_bytes(grid)[:8] == b"\x89PNG\r\n\x1a\n"


def test_loss_curves_draw_every_series():
    history = [{"step": i, "g_l1": 1 / (i + 1), "g_gan": 0.5 + 0.1 * np.sin(i), "d": 0.25} for i in range(1, 200)]
    img = loss_curves(history, panel_height=150)
    assert img.shape == (450, 720, 3)
    for panel, colour in enumerate([(40, 110, 220), (220, 90, 40), (40, 160, 70)]):
        part = img[panel * 150 : (panel + 1) * 150]
        assert (part == colour).all(axis=2).sum() > 100, f"panel {panel} has its curve"
    with pytest.raises(ValueError, match="history"):
        loss_curves([])

"""Background plates: the per-pixel median of the frames where the person is absent."""

import numpy as np
import pytest

from vision.plate import estimate_plate, median_image


def _scene(n=12, size=(80, 60), seed=0):
    """A textured backdrop with a square 'person' walking across it, and the person's masks."""
    w, h = size
    rng = np.random.default_rng(seed)
    backdrop = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    frames, masks = [], []
    for t in range(n):
        frame = backdrop.copy()
        mask = np.zeros((h, w), np.float32)
        x = 5 + t * 5
        frame[20:50, x : x + 12] = (250, 20, 20)
        mask[20:50, x : x + 12] = 1.0
        noise = rng.integers(-3, 4, frame.shape)
        frames.append(np.clip(frame.astype(int) + noise, 0, 255).astype(np.uint8))
        masks.append(mask)
    return backdrop, frames, masks


def test_the_plate_is_the_backdrop_where_the_person_moved_away():
    backdrop, frames, masks = _scene()
    plate = estimate_plate(frames, masks, dilate_px=1)
    assert plate.filled == 0 and plate.frames == len(frames)
    err = np.abs(plate.image.astype(int) - backdrop).mean()
    assert err < 2.0, err  # noise only: the red square left no trace
    assert np.abs(plate.image[20:50].astype(int) - backdrop[20:50]).mean() < 2.0  # where it walked too
    # A pixel the person covered in some frames was free in fewer of them.
    assert plate.coverage[35, 30] < plate.coverage[5, 5] == 1.0


def test_a_spot_the_person_never_left_is_filled_and_reported():
    backdrop, frames, masks = _scene()
    for f, m in zip(frames, masks):
        f[5:15, 60:70] = (0, 255, 0)  # someone who stands still
        m[5:15, 60:70] = 1.0
    plate = estimate_plate(frames, masks, dilate_px=0)
    assert plate.filled == pytest.approx(100 / (80 * 60))
    assert (plate.coverage[5:15, 60:70] == 0).all()
    # Inpainted from around it, not the still person's green.
    assert plate.image[10, 65, 1] < 200


def test_without_any_free_pixel_the_plain_median_is_used_and_inputs_are_checked():
    _backdrop, frames, masks = _scene(n=3)
    plate = estimate_plate(frames, [np.ones_like(m) for m in masks])
    assert plate.filled == 1.0
    np.testing.assert_array_equal(plate.image, median_image(frames))
    with pytest.raises(ValueError, match="one mask per frame"):
        estimate_plate(frames, masks[:2])
    with pytest.raises(ValueError, match="mask 0 is"):
        estimate_plate(frames, [m[:10] for m in masks])


def test_uint8_masks_mean_the_same_as_float_ones():
    _backdrop, frames, masks = _scene(n=6)
    as_float = estimate_plate(frames, masks, dilate_px=1)
    as_bytes = estimate_plate(frames, [np.round(m * 255).astype(np.uint8) for m in masks], dilate_px=1)
    np.testing.assert_array_equal(as_float.image, as_bytes.image)
    np.testing.assert_array_equal(as_float.coverage, as_bytes.coverage)

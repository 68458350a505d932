"""Generators with an alpha matte: the person layer composited over the background plate."""

import numpy as np
import pytest
import torch

from trainer.pix2pix.checkpoint import LocalCheckpointStore, load_generator
from trainer.pix2pix.inference import generate, generate_layers
from trainer.pix2pix.networks import NetConfig
from trainer.pix2pix.synthetic import PERSON_A, random_poses
from trainer.pix2pix.train import TrainConfig, Trainer
from vision.posemap import render_pose_map

torch.set_num_threads(1)

MATTE = NetConfig(size=32, ngf=8, ndf=8, n_layers_d=2, n_dropout=1, matte=True)


def _layered(n=8, seed=0):
    """(map, frame, plate, mask) samples of a synthetic person whose plate and mask are exact."""
    out = []
    for pose in random_poses(n, 64, seed=seed):
        frame, plate, mask = PERSON_A.layers(pose, 64, 32)
        out.append((render_pose_map(pose, 64, 32), frame, plate, mask))
    return out


def _errors(generator, samples):
    maps = np.stack([s[0] for s in samples])
    rgb, alpha = generate_layers(generator, maps)
    masks = np.stack([s[3] for s in samples])
    frames, plates = np.stack([s[1] for s in samples]), np.stack([s[2] for s in samples])
    comp = alpha[..., None] * rgb + (1 - alpha[..., None]) * plates
    return float(np.abs(alpha - masks).mean()), float(np.abs(comp - frames).mean())


def test_the_matte_learns_the_person_and_the_composite_the_frame():
    samples = _layered()
    trainer = Trainer(samples, TrainConfig(net=MATTE, batch_size=4, lr=1e-3, checkpoint_every_s=None))
    alpha0, comp0 = _errors(trainer.G, samples)
    losses = [trainer.train_step() for _ in range(60)]
    alpha1, comp1 = _errors(trainer.G, samples)
    assert {"d", "g_gan", "g_l1", "g_alpha", "g_fg"} <= set(losses[-1])
    assert alpha1 < 0.5 * alpha0 and comp1 < 0.5 * comp0, (alpha0, alpha1, comp0, comp1)
    # Outside the person the plate shows through: the matte there is near 0.
    _, alpha = generate_layers(trainer.G, np.stack([s[0] for s in samples]))
    background = np.stack([s[3] for s in samples]) == 0
    assert alpha[background].mean() < 0.25


def test_resume_of_a_matte_generator_takes_exactly_the_same_next_step(tmp_path):
    samples = _layered(n=5)
    cfg = TrainConfig(net=MATTE, batch_size=2, jitter=2, seed=3, checkpoint_every_s=None, data={"framing": "person"})
    store = LocalCheckpointStore(tmp_path)
    first = Trainer(samples, cfg)
    for _ in range(3):
        first.train_step()
    first.save(store)
    losses1 = first.train_step()
    second = Trainer(samples, cfg)
    second.restore(store)
    assert second.train_step() == losses1
    for a, b in zip(first.G.parameters(), second.G.parameters()):
        assert torch.equal(a, b)
    # The export keeps the matte, and the recorded inputs travel with the checkpoint.
    first.save(store, export=True)
    g = load_generator(store.load("generator.pt"))
    assert g.cfg.matte and generate_layers(g, samples[0][0])[1].shape == (32, 32)


def test_layer_counts_are_checked_with_clear_errors():
    pairs = [(s[0], s[1]) for s in _layered(n=2)]
    with pytest.raises(ValueError, match=r"not a \(posemap, frame, plate, mask\) sample"):
        Trainer(pairs, TrainConfig(net=MATTE, checkpoint_every_s=None))
    bad = [(s[0], s[1], s[2], s[3][:16]) for s in _layered(n=2)]
    with pytest.raises(ValueError, match="mask must be"):
        Trainer(bad, TrainConfig(net=MATTE, checkpoint_every_s=None))
    with pytest.raises(ValueError, match="use generate_layers"):
        generate(Trainer(_layered(n=2), TrainConfig(net=MATTE, checkpoint_every_s=None)).G, pairs[0][0])

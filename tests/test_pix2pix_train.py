import numpy as np
import pytest
import torch

from trainer.pix2pix import checkpoint as ckpt
from trainer.pix2pix.checkpoint import LocalCheckpointStore, load_generator
from trainer.pix2pix.data import PairDataset, to_tensor
from trainer.pix2pix.evaluate import reconstruction_metrics
from trainer.pix2pix.inference import generate
from trainer.pix2pix.networks import NetConfig
from trainer.pix2pix.run import fine_tune, train_base
from trainer.pix2pix.synthetic import PERSON_A, PERSON_B, make_pairs, random_poses
from trainer.pix2pix.train import TrainConfig, Trainer

torch.set_num_threads(1)

TINY = NetConfig(size=32, ngf=8, ndf=8, n_layers_d=2)


def _pairs(n=8, seed=0, person=PERSON_A):
    return make_pairs(person, random_poses(n, 64, seed=seed), 64, 32)


def _config(**over):
    base = dict(net=TINY, batch_size=4, lr=1e-3, checkpoint_every_s=None)
    return TrainConfig(**{**base, **over})


def _l1(generator, pairs):
    maps = np.stack([pairs[i][0] for i in range(len(pairs))])
    frames = np.stack([pairs[i][1] for i in range(len(pairs))])
    fakes = generate(generator, maps)
    return float(torch.mean(torch.abs(to_tensor(fakes) - to_tensor(frames))))


def test_l1_falls_on_a_tiny_dataset():
    pairs = _pairs()
    trainer = Trainer(pairs, _config(net=NetConfig(size=32, ngf=8, ndf=8, n_layers_d=2, n_dropout=1)))
    before = _l1(trainer.G, pairs)
    losses = [trainer.train_step()["g_l1"] for _ in range(60)]
    after = _l1(trainer.G, pairs)
    assert after < 0.5 * before
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10])


def _params(trainer):
    return [p.detach().clone() for p in (*trainer.G.parameters(), *trainer.D.parameters())]


def test_resume_takes_exactly_the_same_next_step(tmp_path):
    # Dropout, jitter and flips all draw random numbers: the resumed step must draw the same.
    pairs = _pairs(n=5)
    cfg = _config(batch_size=2, jitter=2, flip=True, seed=3)
    store = LocalCheckpointStore(tmp_path)
    first = Trainer(pairs, cfg)
    for _ in range(4):  # crosses an epoch boundary (5 samples, 2 per step)
        first.train_step()
    first.save(store)
    losses1 = first.train_step()
    w1 = _params(first)

    resumed = Trainer(pairs, cfg)
    assert resumed.restore(store) == ckpt.checkpoint_name(4)
    losses2 = resumed.train_step()
    w2 = _params(resumed)
    assert losses1 == losses2
    assert all(torch.equal(a, b) for a, b in zip(w1, w2))

    # Control: without the saved state, the next step is not the same.
    fresh = Trainer(pairs, cfg)
    fresh.train_step()
    assert not all(torch.equal(a, b) for a, b in zip(w1, _params(fresh)))


def test_budget_is_honoured(tmp_path):
    pairs = _pairs()
    cfg = _config(net=NetConfig(size=32, ngf=16, ndf=16, n_layers_d=2), checkpoint_every_s=0.5)
    calls = []
    budget = 2.0
    result = fine_tune(pairs, cfg, budget, LocalCheckpointStore(tmp_path), progress_cb=lambda *a: calls.append(a))
    slowest = max(h["step_s"] for h in result.history)
    assert result.stop_reason == "budget" and result.steps_this_run > 5
    assert result.elapsed_s <= budget + slowest + 0.25  # (the slack covers the final save)
    assert result.elapsed_s > budget - 5 * slowest - 0.3  # and it used most of it
    step, total_est, losses, eta = calls[-1]
    assert step == result.step and set(losses) == {"d", "g_gan", "g_l1"}
    assert total_est >= step and eta >= 0
    names = LocalCheckpointStore(tmp_path).list()
    assert ckpt.checkpoint_name(result.step) in names and ckpt.GENERATOR_NAME in names
    assert len([n for n in names if n.startswith("ckpt-")]) <= cfg.keep_checkpoints
    # The exported generator reproduces the trained one.
    G = load_generator(LocalCheckpointStore(tmp_path).load(ckpt.GENERATOR_NAME))
    assert np.array_equal(generate(G, pairs[0][0]), generate(result.generator, pairs[0][0]))


def test_fine_tune_resumes_after_a_crash_instead_of_warm_starting(tmp_path):
    pairs = _pairs()
    store = LocalCheckpointStore(tmp_path / "job")
    base = train_base(pairs, _config(), LocalCheckpointStore(tmp_path / "base"), max_steps=3)
    interrupted = Trainer(pairs, _config())
    interrupted.run(max_steps=5, store=store)
    base_bytes = LocalCheckpointStore(tmp_path / "base").load(
        ckpt.latest_checkpoint(LocalCheckpointStore(tmp_path / "base"))
    )
    result = fine_tune(pairs, _config(max_steps=7), 60.0, store, init_checkpoint=base_bytes)
    assert result.step == 7 and result.steps_this_run == 2  # continued from step 5
    assert [h["step"] for h in result.history] == list(range(1, 8))
    assert base.step == 3


def test_warm_start_loads_weights_but_not_optimizer(tmp_path):
    pairs_a, pairs_b = _pairs(person=PERSON_A), _pairs(seed=1, person=PERSON_B)
    held_out = _pairs(seed=2, person=PERSON_B)
    base_store = LocalCheckpointStore(tmp_path)
    train_base(pairs_a, _config(), base_store, max_steps=40)
    data = base_store.load(ckpt.latest_checkpoint(base_store))
    warm = Trainer(pairs_b, _config(seed=9))
    warm.warm_start(data)
    base_state = ckpt.from_bytes(data)
    for k, v in warm.G.state_dict().items():
        assert torch.equal(v, base_state["generator"][k])
    assert warm.step == 0 and not warm.opt_g.state  # fresh optimizer, counting from zero
    # On a similar person it starts better than scratch and stays ahead over equal steps.
    scratch = Trainer(pairs_b, _config(seed=9))
    assert reconstruction_metrics(warm.G, held_out)["ssim"] > reconstruction_metrics(scratch.G, held_out)["ssim"]
    warm.run(max_steps=10)
    scratch.run(max_steps=10)
    assert _l1(warm.G, held_out) < _l1(scratch.G, held_out)
    with pytest.raises(ValueError, match="another architecture"):
        Trainer(pairs_b, _config(net=NetConfig(size=32, ngf=16, ndf=8, n_layers_d=2))).warm_start(data)


def test_config_round_trips_through_a_dict():
    cfg = _config(jitter=3, gan_mode="bce")
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="bad training config"):
        TrainConfig.from_dict({"learning_rate": 1})
    with pytest.raises(ValueError, match="gan_mode"):
        TrainConfig(gan_mode="hinge")


def test_bad_datasets_are_rejected():
    with pytest.raises(ValueError, match="32, 32, 3"):
        Trainer(PairDataset(np.zeros((2, 16, 16, 3), np.uint8), np.zeros((2, 16, 16, 3), np.uint8)), _config())
    with pytest.raises(ValueError, match="empty"):
        Trainer([], _config())
    with pytest.raises(ValueError, match="budget_s or max_steps"):
        Trainer(_pairs(2), _config()).run()

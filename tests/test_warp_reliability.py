"""Where the warp cannot be trusted (trainer.warp_reliability) and the generator that reads it
(trainer.warp_framing.ReliableWarp, conditioning "warp-reliable")."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from test_warp_framing import SIZE, session

from infra.objectstore import ObjectStore
from schemas import DatasetReady, Rendition, layout
from schemas.keypoints import INDEX
from trainer.checkpoints import StoreCheckpoints
from trainer.fidelity import facing_class
from trainer.framing import PersonCentred
from trainer.framing_choice import recipe
from trainer.job import TrainingJob
from trainer.options import TrainerConfig
from trainer.pix2pix import checkpoint as ckpt
from trainer.pix2pix.networks import NetConfig
from trainer.pix2pix.train import TrainConfig, Trainer
from trainer.training_set import holdout_split
from trainer.warp_framing import CHANNELS, RELIABLE_CHANNELS, RESIDUAL, ReliableWarp, WarpConditioned
from trainer.warp_reliability import NAMES, reliability_maps
from vision.crop import crop_side
from vision.warp import PartWarper, SourceView, part_region

torch.set_num_threads(1)
UNSEEN, FAR, FACING = (NAMES.index(n) for n in ("unseen", "far", "facing"))


def front_view() -> tuple[SourceView, np.ndarray]:
    data, masks, _plate = session(8)
    pose = data.poses[0]
    assert facing_class(pose) == "front"
    return SourceView.build(data.frames[0], masks[0], pose), pose


def region(pose: np.ndarray, name: str) -> np.ndarray:
    return part_region(pose, name, SIZE) > 0


def test_the_source_pose_itself_marks_nothing():
    view, pose = front_view()
    maps = reliability_maps(PartWarper([view]), pose, SIZE)
    assert maps.shape == (SIZE[1], SIZE[0], 3) and maps.dtype == np.float32
    assert not maps.any()


def test_a_part_the_source_never_showed_is_marked_there_only():
    data, masks, _plate = session(8)
    pose = data.poses[0]
    mask = masks[0].copy()
    mask[int(pose[INDEX["left_hip"], 1]) + 2 :] = 0  # the view shows nothing below the hips
    view = SourceView.build(data.frames[0], mask, pose)
    assert "left shin" not in view.parts and "torso" in view.parts
    maps = reliability_maps(PartWarper([view]), pose, SIZE)
    shin = region(pose, "left shin") & ~region(pose, "torso") & ~region(pose, "left thigh")
    assert (maps[..., UNSEEN][shin] == 1).all()
    head = region(pose, "head") & ~region(pose, "torso")
    assert not maps[..., UNSEEN][head].any()  # what the view has stays trusted


def test_a_back_facing_target_against_a_front_source_is_marked():
    view, pose = front_view()
    back = pose.copy()
    hips = back[[INDEX["left_hip"], INDEX["right_hip"]], 0].mean()
    back[:, 0] = 2 * hips - back[:, 0]  # mirrored about the hips: the shoulders' order turns round
    back[[INDEX["nose"], INDEX["left_eye"], INDEX["right_eye"], INDEX["left_ear"], INDEX["right_ear"]], 2] = 0.0
    assert facing_class(back) == "back"
    maps = reliability_maps(PartWarper([view]), back, SIZE)
    torso = region(back, "torso")
    assert (maps[..., FACING][torso] == 1).all()
    assert not maps[..., UNSEEN].any()  # every part was seen, just from the other side


def test_a_limb_far_from_its_source_is_marked_far_and_the_rest_is_not():
    view, pose = front_view()
    lowered = pose.copy()
    sh, el, wr = INDEX["right_shoulder"], INDEX["right_elbow"], INDEX["right_wrist"]
    assert pose[wr, 1] < pose[el, 1] < pose[sh, 1]  # the source holds that arm up
    torso = np.linalg.norm(pose[sh, :2] - pose[INDEX["right_hip"], :2])
    lowered[el, :2] = pose[sh, :2] + [0.0, 0.6 * torso]  # the target hangs it down
    lowered[wr, :2] = pose[sh, :2] + [0.0, 1.1 * torso]
    maps = reliability_maps(PartWarper([view]), lowered, SIZE)
    fore = region(lowered, "right forearm") & ~region(lowered, "right upper arm") & ~region(lowered, "torso")
    assert maps[..., FAR][fore].min() > 0.5
    legs = region(lowered, "left shin") | region(lowered, "right shin")
    assert not maps[..., FAR][legs].any()
    assert not maps[..., FACING].any()


def test_a_training_step_runs_on_the_ten_channels_and_starts_from_the_warp():
    data, masks, plate = session()
    split = holdout_split(data.cameras, data.seqs, gap=4)
    idx = np.flatnonzero(split.train)
    base = PersonCentred(32, "facing", {"cam0": plate}, {"cam0": crop_side(data.poses[idx])})
    framing = ReliableWarp.from_person(base, data, split.train, masks)
    net, data_info = recipe(framing)
    assert net.in_channels == RELIABLE_CHANNELS and net.residual == RESIDUAL
    assert data_info["conditioning"] == "warp-reliable"
    samples = framing.training_samples(data, idx, masks)
    plain = WarpConditioned.from_person(base, data, split.train, masks).training_samples(data, idx, masks)
    x = samples[3][0]
    assert x.shape == (32, 32, RELIABLE_CHANNELS) and x.dtype == np.uint8
    assert np.array_equal(x[..., :CHANNELS], plain[3][0])  # the warp's own channels unchanged
    assert any(samples[j][0][..., CHANNELS:].any() for j in range(len(idx)))  # sources differ from targets

    trainer = Trainer(samples, TrainConfig(net=net, seed=0))
    generated = [f for f, _ in framing.frames(trainer.G, data.poses[idx[:2]], "cam0")]
    assert all(f.shape == (SIZE[1], SIZE[0], 3) for f in generated)
    trainer.run(max_steps=2, export=False)
    assert trainer.step == 2 and all(np.isfinite(h["g_l1"]) for h in trainer.history)

    # A checkpoint of the 7-channel warp generator is refused by a 10-channel trainer, by name.
    old = Trainer(plain, TrainConfig(net=NetConfig.fast(32, matte=True, in_channels=CHANNELS, residual=RESIDUAL)))
    with pytest.raises(ValueError, match="another architecture.*in_channels"):
        trainer.load_state_dict(old.state_dict())


def test_a_session_started_on_the_warp_alone_keeps_it_when_resumed(dataset):
    settings, syn = dataset
    store = ObjectStore(settings)
    ready = DatasetReady(
        session=syn.session, status="ready", samples=24, cameras=["cam0"], reference="dance", wall_time=time.time()
    )
    small = dict(checkpoint_every_s=1, progress_bar=False, reference="dance", crop_size=32, max_render_frames=6)
    config = dict(budget_s=8, first_rendition_s=3, rendition_points=(1.0,))

    def crash_at_the_second(rendition: Rendition) -> None:
        if rendition.version == 2:
            raise ConnectionError("the broker went away")

    started = TrainerConfig(**small, **config, conditioning="warp")
    first = TrainingJob(settings, started, ready, lambda *a, **k: None, crash_at_the_second)
    with pytest.raises(ConnectionError):
        first.run()
    said: list = []
    final = TrainingJob(
        settings,
        TrainerConfig(**small, **config, conditioning="warp-reliable"),
        ready,
        lambda phase, *a, message="", **k: said.append(message),
        lambda r: None,
    ).run()
    assert final.metrics["start_step"] > 0  # resumed, not restarted
    results = json.loads(store.get(layout.result_key(syn.session, "metrics.json")))
    assert results["conditioning"] == "warp"
    checkpoints = StoreCheckpoints(store, layout.checkpoints_prefix(syn.session))
    state = ckpt.from_bytes(checkpoints.load(ckpt.latest_checkpoint(checkpoints)))
    assert state["net"]["in_channels"] == CHANNELS
    assert any("started with warp conditioning: it keeps it" in m for m in said), said
    with pytest.raises(ValueError, match="framing person"):
        TrainerConfig(framing="whole", conditioning="warp-reliable")

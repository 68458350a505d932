"""Temporal coherence and the face residual: pairs of frames, sequential rendering, the face box,
exact resume, warm starts that match, and a whole session with both options."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

from infra.objectstore import ObjectStore
from schemas import DatasetReady, layout
from trainer import base as bases
from trainer.checkpoints import StoreCheckpoints
from trainer.coherent import CoherentPersonCentred
from trainer.pix2pix import checkpoint as ckpt
from trainer.pix2pix import face as facemod
from trainer.pix2pix.networks import NetConfig
from trainer.pix2pix.run import make_trainer
from trainer.pix2pix.synthetic import PERSON_A, random_poses
from trainer.pix2pix.train import TrainConfig
from trainer.service import TrainerConfig, TrainingService
from trainer.training_set import TrainingSet
from vision.crop import body_box, crop_image, crop_side, pose_to_crop

SIZE = (96, 72)
CROP = 32


def _session(n: int = 8):
    """A synthetic person moving smoothly between two poses: data, masks (its body box), framing parts."""
    keys = random_poses(2, SIZE, seed=3)
    f = np.linspace(0, 1, n)[:, None, None]
    poses = (keys[0] * (1 - f) + keys[1] * f).astype(np.float32)
    frames = [PERSON_A.render(p, SIZE, SIZE) for p in poses]
    data = TrainingSet(frames, np.zeros((n, 1, 1, 3), np.uint8), poses, np.array(["cam0"] * n), np.arange(n))
    masks = {}
    for i, p in enumerate(poses):
        x0, y0, x1, y1 = body_box(p).round().astype(int)
        m = np.zeros(SIZE[::-1], np.float32)
        m[max(0, y0) : y1, max(0, x0) : x1] = 1.0
        masks[i] = m
    plates = {"cam0": np.full((SIZE[1], SIZE[0], 3), 90, np.uint8)}
    return data, masks, plates, {"cam0": crop_side(poses)}


def _trainer(samples, framing, seed: int = 0):
    net = NetConfig.fast(CROP, matte=True, in_channels=framing.in_channels)
    cfg = TrainConfig(net=net, checkpoint_every_s=None, temporal=framing.temporal, face=framing.face, seed=seed)
    return make_trainer(samples, cfg)


def test_temporal_samples_are_consecutive_pairs_in_the_current_frames_crop():
    data, masks, plates, sides = _session()
    framing = CoherentPersonCentred(CROP, "facing", plates, sides, temporal=True, face=True)
    samples = framing.training_samples(data, np.arange(len(data)), masks)
    assert len(samples) == len(data) - 1  # the first frame has no previous one
    inputs, frame, plate, mask, prev_mask, origin = samples[2]  # the pair (frame 2, frame 3)
    a = framing.track(data.poses, "cam0").affine(3)
    assert inputs.shape == (CROP, CROP, 9) and inputs.dtype == np.uint8
    np.testing.assert_array_equal(inputs[..., :3], framing.input_map(data.poses[3], a))
    np.testing.assert_array_equal(inputs[..., 3:6], framing.input_map(data.poses[2], a))
    np.testing.assert_array_equal(inputs[..., 6:], crop_image(data.frames[2], a, CROP))
    np.testing.assert_array_equal(frame, crop_image(data.frames[3], a, CROP))
    np.testing.assert_allclose(prev_mask, crop_image(masks[2], a, CROP, edge=False), atol=1e-6)
    # The face box sits on the head keypoints, inside the crop.
    side = facemod.face_side(CROP)
    centre = facemod.head_centre(pose_to_crop(data.poses[3], a))
    x0, y0 = origin
    assert 0 <= x0 <= CROP - side and 0 <= y0 <= CROP - side
    assert x0 <= centre[0] <= x0 + side and y0 <= centre[1] <= y0 + side


def test_no_head_keypoint_means_no_face_box():
    pose = random_poses(1, SIZE, seed=1)[0]
    pose[list(facemod.HEAD_KEYPOINTS), 2] = 0.0
    assert facemod.crop_face_origin(pose, CROP) == facemod.NO_BOX
    assert facemod.face_box(pose, 10, SIZE) is None
    with pytest.raises(ValueError, match="at least 32 px"):
        facemod.face_side(16)


def test_the_face_residual_changes_the_face_box_only():
    torch.manual_seed(0)
    _cfg, face_g, _d = facemod.face_nets(CROP)
    layer = torch.rand(2, 3, CROP, CROP) * 2 - 1
    maps = torch.rand(2, 3, CROP, CROP) * 2 - 1
    out = facemod.refine(face_g.eval(), maps, layer, [(5, 9), facemod.NO_BOX])
    changed = (out - layer).abs().sum(1) > 0
    side = facemod.face_side(CROP)
    assert changed[0, 9 : 9 + side, 5 : 5 + side].any()
    inside = torch.zeros_like(changed[0])
    inside[9 : 9 + side, 5 : 5 + side] = True
    assert not changed[0][~inside].any() and not changed[1].any()


def test_a_temporal_model_renders_each_frame_from_the_previous_generated_one():
    data, masks, plates, sides = _session()
    framing = CoherentPersonCentred(CROP, "facing", plates, sides, temporal=True, face=True)
    trainer = _trainer(framing.training_samples(data, np.arange(len(data)), masks), framing)
    result = trainer.run(max_steps=3, export=False)
    assert set(result.history[-1]) >= {"g_l1", "f_l1", "f_l1_body", "f_d"}
    generator = result.generator
    assert isinstance(generator, facemod.FaceRefined)
    poses = data.poses
    sequential = np.stack([f for f, _m in framing.frames(generator, poses, "cam0")])
    alone = np.stack([f for f, _m in framing.frame_by_frame().frames(generator, poses, "cam0")])
    assert sequential.shape == (len(poses), SIZE[1], SIZE[0], 3)
    # The first frame has no previous one either way; every later one reads the frame before it.
    np.testing.assert_array_equal(sequential[0], alone[0])
    assert all(not np.array_equal(sequential[t], alone[t]) for t in range(1, len(poses)))
    # The body generator alone differs from it with its face residual only around the head.
    body = np.stack([f for f, _m in framing.frame_by_frame().frames(generator.body, poses, "cam0")])
    diff = np.abs(body.astype(int) - alone).sum(-1) > 0
    side_px = framing.face_side_px("cam0")
    for t in range(len(poses)):
        box = facemod.face_box(poses[t], side_px * 1.5, SIZE)  # generous: the box is resampled back
        outside = np.ones(diff[t].shape, bool)
        if box is not None:
            outside[box[1] : box[3], box[0] : box[2]] = False
        assert not diff[t][outside].any()


def test_temporal_and_face_training_resumes_exactly(tmp_path):
    data, masks, plates, sides = _session()
    framing = CoherentPersonCentred(CROP, "facing", plates, sides, temporal=True, face=True)
    samples = framing.training_samples(data, np.arange(len(data)), masks)
    straight = _trainer(samples, framing, seed=4)
    straight.run(max_steps=4, export=False)
    store = ckpt.LocalCheckpointStore(tmp_path)
    _trainer(samples, framing, seed=4).run(max_steps=2, store=store, export=True)
    assert store.load(ckpt.GENERATOR_NAME) is not None and store.load("face_generator.pt") is not None
    resumed = _trainer(samples, framing, seed=4)
    assert resumed.restore(store) is not None and resumed.step == 2
    resumed.run(max_steps=4, export=False)
    for a, b in ((straight.G, resumed.G), (straight.face_g, resumed.face_g)):
        for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.equal(p, q), name


def _promote(store: ObjectStore, trainer, data_info: dict) -> int:
    """Store a trained model as a base version that learnt `data_info`, promoted for its configuration."""
    net = trainer.config.net.to_dict()
    manifest = {
        "label": bases.config_label(net, data_info),
        "net": net,
        "data": data_info,
        "checkpoint": ckpt.checkpoint_name(trainer.step),
        "steps": trainer.step,
        "sessions": [],
    }
    version = bases.import_base(store, manifest, ckpt.to_bytes(trainer.state_dict()))
    bases.promote(store, version)
    return version


def test_a_base_warm_starts_only_a_model_that_learnt_the_same_way(settings):
    data, masks, plates, sides = _session()
    store = ObjectStore(settings)
    store.delete_prefix(layout.BASE_PREFIX)
    temporal_net = NetConfig.fast(CROP, matte=True, in_channels=9)
    wanted = {"framing": "person", "posemap_style": "facing", "size": CROP, "temporal": True, "face": True}
    plain = CoherentPersonCentred(CROP, "facing", plates, sides)
    trainer = _trainer(plain.training_samples(data, np.arange(len(data)), masks), plain)
    trainer.run(max_steps=1, export=False)
    # A frame-by-frame base is another configuration than a temporal session's.
    _promote(store, trainer, {**wanted, "temporal": False})
    raw, _name, why = bases.pick_base(store, temporal_net, wanted)
    assert raw is None and "no promoted base model for person-facing-32-temporal" in why
    # Recorded as temporal, a 3-channel network still does not fit a 9-channel session.
    _promote(store, trainer, wanted)
    raw, _name, why = bases.pick_base(store, temporal_net, wanted)
    assert raw is None and "architecture" in why
    # A temporal + face base: warm-starts a temporal + face session, face networks included.
    both = CoherentPersonCentred(CROP, "facing", plates, sides, temporal=True, face=True)
    samples = both.training_samples(data, np.arange(len(data)), masks)
    base = _trainer(samples, both, seed=1)
    base.run(max_steps=1, export=False)
    version = _promote(store, base, wanted)
    raw, name, why = bases.pick_base(store, temporal_net, wanted)
    assert raw is not None and name == f"base v{version:04d}", why
    fresh = _trainer(samples, both, seed=2)
    fresh.warm_start(raw)
    assert torch.equal(next(iter(fresh.face_g.parameters())), next(iter(base.face_g.parameters())))
    store.delete_prefix(layout.BASE_PREFIX)


def test_a_session_with_both_options_records_and_shows_them(dataset):
    settings, syn = dataset
    ready = DatasetReady(session=syn.session, status="ready", samples=24, cameras=["cam0"], wall_time=time.time())
    config = TrainerConfig(
        budget_s=4, progress_bar=False, reference="dance", crop_size=32, side_by_side=False, temporal=True, face=True
    )
    rendition = TrainingService(settings, config).handle(ready)
    assert rendition is not None and rendition.frames > 0
    store = ObjectStore(settings)
    results = json.loads(store.get(layout.result_key(syn.session, "metrics.json")))
    assert results["temporal"] is True and results["face"] is True
    for key in ("flicker_sequential", "flicker_frame_by_frame", "face_psnr", "face_psnr_without"):
        assert key in results, key
    assert results["flicker_sequential"] is None or results["flicker_sequential"] >= 0
    assert store.get(layout.result_key(syn.session, "coherence.png")) is not None
    state = ckpt.from_bytes(store.get(layout.checkpoints_prefix(syn.session) + store_latest(store, syn.session)))
    assert state["net"]["in_channels"] == 9 and state["train"]["temporal"] and state["train"]["face"]
    assert state["train"]["data"]["temporal"] is True and "face_generator" in state


def store_latest(store: ObjectStore, session: str) -> str:
    return ckpt.latest_checkpoint(StoreCheckpoints(store, layout.checkpoints_prefix(session)))

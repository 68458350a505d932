"""Person-centred training on awkward sessions, and the booth's background as the plate."""

from __future__ import annotations

import json
import time
import uuid

import cv2
import numpy as np
from click.testing import CliRunner

from assembler.synthetic import SyntheticSession
from infra.objectstore import ObjectStore
from producers.cli import background as background_command
from schemas import DatasetReady
from trainer.plates import PersonMasks, SessionPlates
from trainer.service import TrainerConfig, TrainingService
from trainer.training_set import TrainingSet

from helpers import add_dance, assemble


def test_a_person_cut_off_and_walking_out_of_the_frame_still_gets_a_video_and_a_warning(settings, shared_dir, tmp_path):
    settings = settings.model_copy(update={"kafka_session_timeout_ms": 3000, "kafka_heartbeat_interval_ms": 500})
    # Larger than the frame (legs below its edge), walking right until it leaves it.
    syn = SyntheticSession(f"s-{uuid.uuid4().hex[:6]}", cameras=("cam0",), frames=24, scale=1.5, drift=0.03)
    assemble(settings, syn)
    add_dance(settings, shared_dir, tmp_path, frames=6)
    ready = DatasetReady(session=syn.session, status="ready", samples=24, cameras=["cam0"], wall_time=time.time())
    config = TrainerConfig(budget_s=3, progress_bar=False, reference="dance", crop_size=32, side_by_side=False)
    rendition = TrainingService(settings, config).handle(ready)
    assert rendition is not None and rendition.frames == 6
    results = json.loads(ObjectStore(settings).get(f"sessions/{syn.session}/results/metrics.json"))
    assert results["framing"] == "person" and (results["width"], results["height"]) == syn.size
    assert any("cut off by the frame's edge" in w for w in results["warnings"]), results["warnings"]
    # The visitor's feet are never seen: the dance is placed by the body, and the trainer says so.
    assert any("placed and sized by the visitor's body" in w for w in results["warnings"]), results["warnings"]
    # The one-shot video still came, without the shins it never saw, and says so.
    assert ObjectStore(settings).get(f"sessions/{syn.session}/results/oneshot.mp4") is not None
    (note,) = [w for w in results["warnings"] if w.startswith("one-shot video")]
    assert "left shin" in note and "right shin" in note


def _still_scene(n: int, size=(64, 48)) -> tuple[list[np.ndarray], np.ndarray]:
    w, h = size
    backdrop = np.kron(
        np.random.default_rng(1).integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8), np.ones((8, 8, 1), np.uint8)
    )
    return [backdrop.copy() for _ in range(n)], backdrop


def test_the_booth_background_is_the_plate_when_it_fits_the_camera(settings, tmp_path):
    frames, backdrop = _still_scene(12)
    folder = tmp_path / "empty-booth"
    folder.mkdir()
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:03d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    runner = CliRunner()
    obj = {"settings": settings}
    done = runner.invoke(
        background_command, ["capture", "--camera", "front", "--source", str(folder), "--frames", "5"], obj=obj
    )
    assert done.exit_code == 0, done.output
    assert "64x48 from 5 frames" in done.output
    listed = runner.invoke(background_command, ["list"], obj=obj)
    assert "front" in listed.output and "64x48" in listed.output

    # A session of that camera: its frames show the person over the booth.
    poses = np.zeros((4, 17, 3), np.float32)
    data = TrainingSet(
        [f.copy() for f in frames[:4]] + [np.zeros((30, 40, 3), np.uint8)] * 2,
        np.zeros((6, 16, 16, 3), np.uint8),
        np.concatenate([poses, poses[:2]]),
        np.array(["front"] * 4 + ["side"] * 2),
        np.array([0, 1, 2, 3, 0, 1]),
    )
    for f in data.frames[:4]:
        f[10:40, 20:30] = 255  # the visitor
    masks = PersonMasks(data, "silhouette")
    masks.made = {i: np.zeros(data.frames[i].shape[:2], np.uint8) for i in range(6)}
    warnings: list[str] = []
    store = ObjectStore(settings)
    plates = SessionPlates(store, "s-bg", data, masks).estimated(np.ones(6, bool), warnings)
    assert plates["front"].source == "background" and plates["side"].source == "session"
    np.testing.assert_array_equal(plates["front"].plate.image, backdrop)  # not the white visitor
    stored = json.loads(store.get("sessions/s-bg/plates/front.json"))
    assert stored["source"] == "background" and stored["width"] == 64

    # A background of another size (the camera was changed) is not used, and the trainer says so.
    runner.invoke(
        background_command, ["capture", "--camera", "side", "--source", str(folder), "--frames", "2"], obj=obj
    )
    warnings.clear()
    plates = SessionPlates(store, "s-bg", data, masks).estimated(np.ones(6, bool), warnings)
    assert plates["side"].source == "session" and any("64x48 but the session's frames are 40x30" in w for w in warnings)
    assert runner.invoke(background_command, ["delete", "side"], obj=obj).exit_code == 0
    assert not store.exists("backgrounds/side.png")


def test_the_matte_fades_out_at_the_crop_edges():
    from trainer.framing import edge_window

    w = edge_window(100)
    assert w[50, 50] == 1.0 and w[0, 50] < 0.2 and w[0, 0] < 0.05 and w[50, 99] < 0.2
    assert (w[4:96, 4:96] == 1.0).all()  # only the outer 4% of each side

"""The generator's input representation (pose | parts | pose+parts) through the assembler, the
reference dances, the trainer and the rendition, on real photos segmented by BodyPix."""

from __future__ import annotations

import io
import json
import time
import uuid
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from assembler.consumer import AssemblerConfig
from assembler.join import NO_PARTS, join_sample
from assembler.synthetic import SyntheticSession, jpeg, produce
from dataset import iter_session_samples, read_manifest
from dataset.representation import main_person_parts
from dataset.shards import Sample, decode_ids, decode_rgb, encode_sample, png_bytes
from infra.objectstore import ObjectStore
from schemas import DatasetReady, Frame, Person, SmoothedPose, TrainingProgress, frame_key
from schemas.keypoints import INDEX, OBSERVED, SMOOTHED
from vision.parts.colours import FACE_PARTS, PALETTE, PART_ID
from vision.partsmap import colour_parts, letterbox_ids
from vision.posemap import KEYPOINT_COLOUR, Letterbox, render_pose_map

from helpers import read_topic

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
MODELS = SHARED / "models"
pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared folder absent: {SHARED}")

SIZE = (320, 240)
TORSO = [INDEX[n] for n in ("left_shoulder", "right_shoulder", "left_hip", "right_hip")]
FACE = [INDEX[n] for n in ("nose", "left_eye", "right_eye", "left_ear", "right_ear")]


def _photo(name: str) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(SHARED / "data" / "images" / name)), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory):
    from vision.parts import load_segmenter

    return load_segmenter("bodypix", MODELS, cache_dir=tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def clip():
    """Frames of the squatting person drifting over a 320 x 240 canvas, with MoveNet's poses."""
    from vision.pose import load_estimator
    from vision.pose.synthetic import moving_photo_clip

    frames = [f for f, _ in moving_photo_clip(_photo("squat.png"), n_frames=60, size=SIZE, seed=3)[:12]]
    estimator = load_estimator("movenet", MODELS)
    poses = [estimator.estimate(f, key="clip")[0].keypoints for f in frames]
    assert all((p[TORSO, 2] > 0.3).all() for p in poses), "MoveNet must see the person's torso in every frame"
    return frames, poses


def _messages(session: str, seq: int, frame: np.ndarray, pose: np.ndarray) -> tuple[Frame, SmoothedPose]:
    h, w = frame.shape[:2]
    f = Frame(
        session=session,
        camera="cam0",
        seq=seq,
        capture_ns=seq * 33_333_333,
        wall_time=1e9 + seq / 30,
        width=w,
        height=h,
        image=jpeg(frame, 95),
    )
    p = SmoothedPose(
        session=session,
        camera="cam0",
        seq=seq,
        capture_ns=f.capture_ns,
        wall_time=f.wall_time,
        width=w,
        height=h,
        backend="movenet",
        persons=[Person.from_array(pose, 0.9)],
        flags=[OBSERVED | SMOOTHED] * 17,
    )
    return f, p


def _palette_colours(rgb: np.ndarray) -> set[int]:
    """Part ids whose palette colours appear in an RGB map; fails on any colour not in the palette."""
    colours = np.unique(rgb.reshape(-1, 3), axis=0)
    ids = set()
    for c in colours:
        match = np.flatnonzero((PALETTE == c).all(axis=1))
        assert match.size, f"colour {c} is not a part colour"
        ids.add(int(match[0]))
    return ids


# --- samples ---------------------------------------------------------------------------------------
def test_parts_samples_draw_the_persons_part_map(clip, segmenter):
    frames, poses = clip
    frame, pose = _messages("s-1", 0, frames[0], poses[0])
    sample = join_sample(frame, pose, 128, "parts", segmenter.segment)
    assert isinstance(sample, Sample)
    assert [name for name, _ in sample.members()] == [
        "cam0-00000000.jpg",
        "cam0-00000000.posemap.png",
        "cam0-00000000.pose.json",
        "cam0-00000000.parts.png",
    ]

    ids = decode_ids(sample.parts_png)
    assert ids.shape == (240, 320)
    seen = segmenter.segment(decode_rgb(frame.image))
    # One person in the picture: the stored map is all of BodyPix's person pixels.
    assert ((ids > 0) == (seen.part_ids > 0)).all() and (ids > 0).mean() > 0.03
    # The person's torso keypoints lie on their parts; the nose on a face part.
    for k in TORSO:
        x, y = poses[0][k, :2].astype(int)
        assert ids[y - 3 : y + 4, x - 3 : x + 4].any(), f"keypoint {k} at {(x, y)} is off the part map"
    x, y = poses[0][INDEX["nose"], :2].astype(int)
    assert np.isin(ids[y - 4 : y + 5, x - 4 : x + 5], FACE_PARTS).any()

    posemap = decode_rgb(sample.posemap_png)
    assert posemap.shape == (128, 128, 3)
    # The map is exactly the part ids coloured and letterboxed: no stick figure, only part colours.
    np.testing.assert_array_equal(posemap, colour_parts(letterbox_ids(ids, 128)))
    shown = _palette_colours(posemap) - {0}
    assert len(shown) >= 8 and {PART_ID["torso_front"], *FACE_PARTS} & shown


def test_pose_plus_parts_adds_the_face_keypoints(clip, segmenter):
    frames, poses = clip
    frame, pose = _messages("s-1", 4, frames[4], poses[4])
    parts = decode_rgb(join_sample(frame, pose, 128, "parts", segmenter.segment).posemap_png)
    both = decode_rgb(join_sample(frame, pose, 128, "pose+parts", segmenter.segment).posemap_png)
    assert (both == KEYPOINT_COLOUR).all(axis=2).sum() > 10 and not (parts == KEYPOINT_COLOUR).all(axis=2).any()
    # Everything that differs lies around the face keypoints; the body is the part map.
    face = Letterbox.fit(SIZE, 128).to_output(poses[4][FACE, :2])
    ys, xs = np.nonzero((both != parts).any(axis=2))
    assert len(ys) > 10
    nearest = np.min(np.hypot(xs[:, None] + 0.5 - face[None, :, 0], ys[:, None] + 0.5 - face[None, :, 1]), axis=1)
    spread = np.ptp(face, axis=0).max()
    assert nearest.max() <= spread + 6


def test_pose_stays_the_default_and_parts_need_a_person(segmenter):
    syn = SyntheticSession("s-2", cameras=("cam0",), frames=3)
    frame, pose = syn.frame("cam0", 1), syn.pose("cam0", 1)
    default = join_sample(frame, pose, 64)
    assert join_sample(frame, pose, 64, "pose") == default and default.parts_png is None
    assert [n for n, _ in default.members()] == [
        "cam0-00000001.jpg",
        "cam0-00000001.posemap.png",
        "cam0-00000001.pose.json",
    ]
    stored = np.asarray(json.loads(default.pose_json)["keypoints"], np.float32)
    assert default.posemap_png == png_bytes(render_pose_map(stored, syn.size, 64))
    # The synthetic pictures are noise: BodyPix finds nobody, so there is no part-map sample.
    assert join_sample(frame, pose, 64, "parts", segmenter.segment) == NO_PARTS

    with pytest.raises(ValueError, match="needs a part segmenter"):
        join_sample(frame, pose, 64, "parts")
    with pytest.raises(ValueError, match="unknown representation 'sticks'"):
        AssemblerConfig(representation="sticks")
    with pytest.raises(ValueError, match="unknown part segmenter"):
        AssemblerConfig(representation="parts", segmenter="magic")
    args = dict(
        key="cam0-00000001",
        seq=1,
        camera="cam0",
        session="s-2",
        image=frame.image,
        encoding="jpeg",
        width=96,
        height=72,
        pose=stored,
        flags=[],
        backend="x",
        person_score=1.0,
        capture_ns=0,
        wall_time=0.0,
        resolution=64,
    )
    with pytest.raises(ValueError, match="needs the frame's part ids"):
        encode_sample(**args, representation="parts")
    with pytest.raises(ValueError, match=r"part ids are \(50, 40\) but the frame is \(96, 72\)"):
        encode_sample(**args, representation="parts", part_ids=np.zeros((40, 50), np.uint8))


def test_a_pose_keeps_only_its_own_persons_parts(segmenter):
    result = segmenter.segment(_photo("two_people_walking.png"))
    assert len(result.persons) == 2
    kept = [main_person_parts(result, p.keypoints) for p in result.persons]
    for k, ids in enumerate(kept):
        mine = (result.person_ids == k + 1) & (result.part_ids > 0)
        assert mine.sum() > 500 and ((ids > 0) == mine).all()
    assert not ((kept[0] > 0) & (kept[1] > 0)).any()
    # Without a pose (or one that lands on nobody) every part stays.
    np.testing.assert_array_equal(main_person_parts(result, None), result.part_ids)
    far = np.zeros((17, 3), np.float32)
    far[:, 2] = 1.0
    far[:, :2] = -50.0
    np.testing.assert_array_equal(main_person_parts(result, far), result.part_ids)


# --- rendition maps --------------------------------------------------------------------------------
def test_reference_part_maps_follow_the_normalized_pose():
    from trainer.dance import ReferenceMaps

    ref_size, src_size = (200, 100), (160, 120)
    ref_pose = np.zeros((17, 3), np.float32)
    ref_pose[:, 0] = np.linspace(60, 100, 17)
    ref_pose[:, 1] = np.linspace(20, 80, 17)
    ref_pose[:, 2] = 0.05  # scarcely confident: the transform still holds
    scale, shift = 0.5, np.array([30.0, 40.0], np.float32)
    moved = ref_pose.copy()
    moved[:, :2] = ref_pose[:, :2] * scale + shift
    stored = np.zeros((50, 100), np.uint8)  # stored at half the reference video's size
    stored[10:40, 30:50] = PART_ID["torso_front"]  # video pixels x 60..100, y 20..80
    empty = np.zeros((17, 3), np.float32)
    maps = ReferenceMaps(
        "parts",
        np.stack([stored, stored]),
        np.stack([ref_pose, empty]),
        ref_size,
        np.stack([moved, empty]),
        src_size,
        64,
    )
    assert len(maps) == 2
    ids = maps.part_ids(0)
    assert ids.shape == (120, 160)
    ys, xs = np.nonzero(ids)
    # Video x 60..100 -> 60..80, y 20..80 -> 50..80 in the visitor's frame.
    assert (xs.min(), xs.max() + 1, ys.min(), ys.max() + 1) == (60, 80, 50, 80)
    assert set(np.unique(ids)) == {0, PART_ID["torso_front"]}
    assert not maps.part_ids(1).any()  # nobody in the reference frame: an empty map
    rgb = maps[0]
    assert rgb.shape == (64, 64, 3) and _palette_colours(rgb) == {0, PART_ID["torso_front"]}

    # References keep their part maps at most PARTS_MAX_SIDE wide or high.
    from trainer.references.store import parts_size

    assert parts_size((1920, 1080)) == (512, 288) and parts_size((320, 240)) == (320, 240)


# --- the whole way ---------------------------------------------------------------------------------
def test_parts_session_is_assembled_trained_and_rendered(settings, clip, tmp_path):
    from assembler.cli import assemble
    from trainer.cli import reference
    from trainer.dance import ReferenceMaps
    from trainer.framing import unletterbox
    from trainer.normalize import fit_normalizer
    from trainer.references import load_reference_parts, load_reference_version
    from trainer.references.video import write_mp4
    from trainer.rendition import count_frames
    from trainer.service import TrainerConfig, TrainingService
    from vision.pose.synthetic import moving_photo_clip

    frames, poses = clip
    settings = settings.model_copy(
        update={
            "kafka_session_timeout_ms": 3000,
            "kafka_heartbeat_interval_ms": 500,
            "metrics_port": -1,
            "pose_threads": 2,
        }
    )
    session = f"parts-{uuid.uuid4().hex[:6]}"
    syn = SyntheticSession(session, cameras=("cam0",))
    stream = [m for seq, (f, p) in enumerate(zip(frames, poses)) for m in _messages(session, seq, f, p)]
    produce(
        settings,
        [syn.event_message(settings, syn.start())]
        + [
            (
                settings.topic_frames if isinstance(m, Frame) else settings.topic_smoothed,
                frame_key(session, "cam0"),
                m.encode(),
            )
            for m in stream
        ]
        + [syn.event_message(settings, syn.end())],
    )
    run = CliRunner().invoke(
        assemble,
        [
            "--group",
            f"g-{session}",
            "--shard-size",
            "8",
            "--resolution",
            "64",
            "--min-samples",
            "5",
            "--end-grace",
            "0.5",
            "--unknown-session-grace",
            "1",
            "--idle-exit",
            "1",
            "--representation",
            "parts",
            "-q",
        ],
        obj={"settings": settings},
        catch_exceptions=False,
    )
    assert run.exit_code == 0, run.output

    manifest = read_manifest(settings, session)
    assert manifest["status"] == "ready" and manifest["samples"] == len(frames)
    assert manifest["representation"] == "parts" and "parts" in manifest["members"]
    samples = list(iter_session_samples(settings, session))
    for s in samples:
        assert s.part_ids.shape == (240, 320) and (s.part_ids > 0).mean() > 0.03
        np.testing.assert_array_equal(s.posemap, colour_parts(letterbox_ids(s.part_ids, 64)))

    # A reference dance with its part maps, corrected once (the part maps carry over).
    dance = [f for f, _ in moving_photo_clip(_photo("squat.png"), n_frames=40, size=SIZE, seed=8)[:10]]
    write_mp4(tmp_path / "dance.mp4", dance, 30)
    added = CliRunner().invoke(
        reference,
        [
            "add",
            str(tmp_path / "dance.mp4"),
            "--name",
            "dance",
            "--backend",
            "movenet",
            "--representation",
            "parts",
            "--resolution",
            "64",
        ],
        obj={"settings": settings},
        catch_exceptions=False,
    )
    assert added.exit_code == 0, added.output
    (tmp_path / "fix.csv").write_text("3,drop\n")
    fixed = CliRunner().invoke(
        reference, ["correct", "dance", str(tmp_path / "fix.csv")], obj={"settings": settings}, catch_exceptions=False
    )
    assert fixed.exit_code == 0, fixed.output
    v1, ref = load_reference_version(settings, "dance", 1), load_reference_version(settings, "dance")
    assert ref.version == 2 and ref.meta["parts"]["size"] == [320, 240] and ref.meta["parts"]["frames_with_parts"] == 10
    parts = load_reference_parts(settings, ref)
    assert parts.shape == (10, 240, 320) and parts.dtype == np.uint8
    np.testing.assert_array_equal(parts, load_reference_parts(settings, v1))
    with av.open(io.BytesIO(ObjectStore(settings).get(ref.meta["files"]["preview.mp4"]))) as video:
        preview = [f.to_ndarray(format="rgb24") for f in video.decode(video=0)]
    assert len(preview) == 10 and preview[0].shape == (64, 128, 3)

    service = TrainingService(
        settings,
        TrainerConfig(budget_s=3, checkpoint_every_s=60, progress_bar=False, reference="dance", progress_every_s=0.0),
    )
    rendition = service.handle(
        DatasetReady(
            session=session,
            status="ready",
            samples=len(frames),
            cameras=["cam0"],
            reference="dance",
            wall_time=time.time(),
        )
    )
    assert rendition.frames == 10
    prefix = f"sessions/{session}/results/"
    metrics = json.loads(ObjectStore(settings).get(prefix + "metrics.json"))
    assert metrics["representation"] == "parts" and "pose_error" in metrics  # measured on part maps
    side = tmp_path / "side.mp4"
    side.write_bytes(ObjectStore(settings).get(prefix + "side-by-side.mp4"))
    assert count_frames(side) == 10
    # The strip's middle panel is the reference's part map moved onto the visitor: the maps the
    # generator was fed, not stick figures.
    normalizer = fit_normalizer(ref.poses, np.stack([s.pose for s in samples]))
    moved = np.stack([normalizer.apply(p) for p in ref.poses])
    expected = ReferenceMaps("parts", parts, ref.poses, ref.src_size, moved, SIZE, 64)
    # The strip is at the camera's size (320x240 panels): the 64 px maps un-letterboxed onto it.
    with av.open(str(side)) as video:
        shown = [f.to_ndarray(format="rgb24")[:, 320:640] for f in video.decode(video=0)]
    for i in (0, 5, 9):
        panel = shown[i].astype(np.int16)
        to_parts = np.abs(panel - unletterbox(expected[i], SIZE)).mean()
        assert to_parts < 5  # video compression only
        assert np.abs(panel - unletterbox(render_pose_map(moved[i], SIZE, 64), SIZE)).mean() > 2 * to_parts

    # A reference without part maps fails the session, with the reason, before any training time
    # is spent on it.
    plain = CliRunner().invoke(
        reference,
        ["add", str(tmp_path / "dance.mp4"), "--name", "plain", "--backend", "movenet", "--resolution", "32"],
        obj={"settings": settings},
    )
    assert plain.exit_code == 0, plain.output
    t0 = time.monotonic()
    failed = service.handle(
        DatasetReady(
            session=session,
            status="ready",
            samples=len(frames),
            cameras=["cam0"],
            reference="plain",
            wall_time=time.time(),
        )
    )
    assert failed is None
    assert time.monotonic() - t0 < 3
    progress = [m for m in read_topic(settings, settings.topic_training) if isinstance(m, TrainingProgress)]
    assert progress[-1].phase == "failed" and "reference plain v1 has no part maps" in progress[-1].message

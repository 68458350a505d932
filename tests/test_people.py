"""Several people through the dataset and the rendition: colour-coded pose maps, slots that stay
with a person, datasets that keep everyone, dancer k rendered as visitor k."""

from __future__ import annotations

import json
import time
import uuid

import cv2
import numpy as np
import pytest

from assembler.join import SessionState, join_sample
from assembler.offsets import Held
from assembler.synthetic import SyntheticSession
from dataset.manifest import build_manifest
from dataset.people import SlotBook, mean_x, session_people
from dataset.reader import shard_samples
from dataset.shards import build_shard, decode_rgb
from infra.objectstore import ObjectStore
from schemas import DatasetReady
from schemas.keypoints import NUM_KEYPOINTS, SKELETON
from trainer.group import GroupFrame, build_group_dance, match_dancers, parse_match
from trainer.pix2pix.synthetic import random_pose
from vision.posemap import MAX_SLOTS, PALETTES, render_people_map, render_pose_map

from helpers import add_dance, assemble


def _limb_only(limb: int, x0: float, src: int = 200) -> np.ndarray:
    pose = np.zeros((NUM_KEYPOINTS, 3), np.float32)
    a, b = SKELETON[limb]
    pose[a] = (x0, 0.2 * src, 0.9)
    pose[b] = (x0, 0.8 * src, 0.9)
    return pose


def _standing(x: float, h: float = 100.0) -> np.ndarray:
    """A crude upright figure centred at x (pixels)."""
    rng = np.random.default_rng(int(x))
    pose = np.zeros((NUM_KEYPOINTS, 3), np.float32)
    pose[:, 0] = x + rng.uniform(-10, 10, NUM_KEYPOINTS)
    pose[:, 1] = np.linspace(10, 10 + h, NUM_KEYPOINTS)
    pose[:, 2] = 0.9
    return pose


# --- colour-coded pose maps ------------------------------------------------------------------------
@pytest.mark.parametrize("style", ["stick", "facing"])
def test_one_person_in_slot_zero_is_exactly_the_one_person_map(style):
    rng = np.random.default_rng(4)
    for _ in range(3):
        pose = random_pose((320, 240), rng)
        one = render_people_map(pose[None], [0], (320, 240), 96, style=style)
        assert np.array_equal(one, render_pose_map(pose, (320, 240), 96, style=style))
    assert not render_people_map(np.zeros((0, NUM_KEYPOINTS, 3)), [], (320, 240), 32).any()  # an empty frame


def test_each_person_is_drawn_in_their_slots_palette():
    colour_sets = [set(limbs) | {dot} for limbs, dot in PALETTES]
    for i in range(MAX_SLOTS):
        for j in range(i + 1, MAX_SLOTS):
            assert not colour_sets[i] & colour_sets[j], (i, j)  # no colour says two people
    for limb in (0, 7, 10, 15):
        people = np.stack([_limb_only(limb, 20 + 50 * k) for k in range(MAX_SLOTS)])
        img = render_people_map(people, list(range(MAX_SLOTS)), (200, 200), 200)
        for k in range(MAX_SLOTS):
            assert tuple(img[100, 20 + 50 * k]) == PALETTES[k][0][limb], (limb, k)


def test_bad_slots_are_refused_with_the_reason():
    two = np.stack([_standing(50), _standing(150)])
    with pytest.raises(ValueError, match="share a slot"):
        render_people_map(two, [1, 1], (200, 200), 64)
    with pytest.raises(ValueError, match="one slot per person"):
        render_people_map(two, [0], (200, 200), 64)
    with pytest.raises(ValueError, match=f"0..{MAX_SLOTS - 1}"):
        render_people_map(two[:1], [MAX_SLOTS], (200, 200), 64)


# --- slots ---------------------------------------------------------------------------------------
def test_slots_read_left_to_right_at_the_start_and_stay_with_their_tracks_when_people_cross():
    book = SlotBook()
    # Track 7 on the right, track 3 on the left: slots go left to right, not by track id.
    assert book.assign(0, [7, 3], [_standing(300), _standing(50)]) == [1, 0]
    # They cross: each keeps their slot.
    for seq, x in enumerate(range(60, 300, 40), start=1):
        assert book.assign(seq, [7, 3], [_standing(350 - x), _standing(x)]) == [1, 0]


def test_a_person_hidden_for_a_moment_keeps_their_slot_and_one_gone_for_long_frees_it():
    book = SlotBook(release_frames=5)
    assert book.assign(0, [1, 2], [_standing(50), _standing(200)]) == [0, 1]
    # Track 2 hidden for 3 frames; a newcomer meanwhile must not take slot 1.
    assert book.assign(1, [1, 5], [_standing(50), _standing(120)]) == [0, 2]
    for seq in (2, 3):
        assert book.assign(seq, [1, 5], [_standing(50), _standing(120)]) == [0, 2]
    assert book.assign(4, [1, 2, 5], [_standing(50), _standing(200), _standing(120)]) == [0, 1, 2]
    # Everyone leaves for longer than release_frames; two new tracks come: slots 0, 1 again, left to right.
    assert book.assign(20, [9, 8], [_standing(250), _standing(40)]) == [1, 0]


def test_more_people_than_palettes_and_untracked_people_are_left_out_and_counted():
    book = SlotBook()
    people = [_standing(30 + 40 * k) for k in range(MAX_SLOTS + 2)]
    slots = book.assign(0, list(range(1, MAX_SLOTS + 2)) + [None], people)
    assert slots == list(range(MAX_SLOTS)) + [None, None]
    assert book.left_out == 2
    again = SlotBook.from_state(json.loads(json.dumps(book.to_state())))  # as stored in a shard's record
    assert again.assign(1, [2, 1], [people[1], people[0]]) == [1, 0] and again.left_out == 2


def test_a_visitor_count_needs_a_share_of_the_session():
    assert session_people({0: 100, 1: 90}, 100) == 2
    assert session_people({0: 100, 1: 8}, 100) == 1  # a passer-by
    assert session_people({}, 0) == 1


# --- the assembler keeps everyone --------------------------------------------------------------------
def _run_state(syn: SyntheticSession, seqs, done=None, shard_size=4) -> SessionState:
    state = SessionState(syn.start(), shard_size=shard_size, resolution=64, now=0.0, done=done)
    for seq in seqs:
        for cam in syn.cameras:
            state.add_pose(syn.pose(cam, seq), Held("t", 0, seq), 0.0)
            state.add_frame(syn.frame(cam, seq), Held("t", 1, seq), 0.0)
    return state


def _samples(buffers) -> dict[int, object]:
    return {s.seq: s for b in buffers for s in shard_samples(build_shard(b.samples.values()))}


def test_a_two_person_session_keeps_both_with_their_slots_through_a_restart():
    syn = SyntheticSession("duo", cameras=("cam0",), frames=12, size=(160, 96), people=2)
    state = _run_state(syn, range(8))
    shards = state.complete_shards()
    assert [b.index for b in shards] == [0, 1]
    samples = _samples(shards)
    for smp in samples.values():
        # The main person (track 2, on the right) is in slot 1; the left one (track 1) in slot 0.
        assert list(smp.slots) == [1, 0] and smp.people.shape == (2, NUM_KEYPOINTS, 3)
        assert np.allclose(smp.pose, smp.people[0]) and mean_x(smp.people[1]) < mean_x(smp.people[0])
        assert np.array_equal(smp.posemap, render_people_map(smp.people, smp.slots, syn.size, 64))
    records = [b.record("duo", 0) for b in shards]
    assert all(r["people"] == {"0": 4, "1": 4} and r["slots"]["holder"] == {"0": 1, "1": 2} for r in records)
    manifest = build_manifest(
        session="duo", status="ready", reason="", closed_by="end", start=syn.start(), end=None, records=records,
        resolution=64, shard_size=4, min_samples=1, preview_key=None,
    )  # fmt: skip
    assert manifest["people"] == 2 and manifest["people_samples"] == {"0": 8, "1": 8}
    assert manifest["people_left_out"] == 0
    # A restarted assembler finds shards 0 and 1 done and goes on with the same slots.
    done = {("cam0", r["index"]): r for r in records}
    later = _run_state(syn, range(12), done=done)
    more = _samples(later.all_shards())
    assert sorted(more) == [8, 9, 10, 11] and all(list(s.slots) == [1, 0] for s in more.values())


def test_a_one_person_session_is_stored_byte_for_byte_as_before():
    syn = SyntheticSession("solo", cameras=("cam0",), frames=4)
    state = _run_state(syn, range(4))
    (buf,) = state.all_shards()
    for seq, sample in buf.samples.items():
        assert sample == join_sample(syn.frame("cam0", seq), syn.pose("cam0", seq), 64)
    record = buf.record("solo", 0)
    assert "slots" not in record and "people" not in record
    manifest = build_manifest(
        session="solo", status="ready", reason="", closed_by="end", start=syn.start(), end=None, records=[record],
        resolution=64, shard_size=4, min_samples=1, preview_key=None,
    )  # fmt: skip
    assert manifest["people"] == 1 and "people_samples" not in manifest
    smp = next(iter(_samples([buf]).values()))
    assert list(smp.slots) == [0] and np.array_equal(smp.people[0], smp.pose)


def test_real_footage_people_leaving_coming_back_and_empty_frames_keep_their_palettes(posenet_pipeline, shared_dir):
    """two_people_walking.png through the pose, tracking and smoothing stages and the assembler:
    both, he alone, both, nobody, both, nobody for long, both again (as new tracks)."""
    from schemas import Frame

    photo = cv2.cvtColor(cv2.imread(str(shared_dir / "data/images/two_people_walking.png")), cv2.COLOR_BGR2RGB)
    alone = photo.copy()
    alone[:, 312:] = alone[20:60, 600:630].mean(axis=(0, 1)).astype(np.uint8)  # she walks out: snow
    empty = np.full_like(photo, 235)
    script = [photo] * 5 + [alone] * 4 + [photo] * 3 + [empty] * 3 + [photo] * 3 + [empty] * 15 + [photo] * 3
    h, w = photo.shape[:2]
    syn = SyntheticSession("couple", cameras=("cam0",))
    state = SessionState(syn.start(), shard_size=64, resolution=256, now=0.0)
    for seq, rgb in enumerate(script):
        ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        frame = Frame(
            session="couple", camera="cam0", seq=seq, capture_ns=seq * 100_000_000, wall_time=1.0, width=w, height=h,
            image=jpg.tobytes(),
        )  # fmt: skip
        _tracked, smoothed = posenet_pipeline(frame)
        state.add_pose(smoothed, Held("p", 0, seq), 0.0)
        state.add_frame(frame, Held("f", 0, seq), 0.0)
    (buf,) = state.all_shards()
    samples = _samples([buf])
    assert set(buf.rejected.values()) == {"no_person"}  # the empty frames, counted
    assert not set(range(12, 15)) & set(samples) and not set(range(18, 33)) & set(samples)
    who = {}  # slot -> which side of the picture
    for seq, smp in samples.items():
        for pose, slot in zip(smp.people, smp.slots):
            who.setdefault(int(slot), set()).add("left" if mean_x(pose) < w / 2 else "right")
        if seq in range(5, 9):
            assert list(smp.slots) == [0]  # he alone, in his slot
        else:
            assert sorted(smp.slots) == [0, 1], (seq, smp.slots)
    assert who == {0: {"left"}, 1: {"right"}}  # left to right, the same all along (new tracks included)
    record = buf.record("couple", 0)
    assert record["people"] == {"0": len(samples), "1": len(samples) - 4}
    # The stored map shows her in the second palette.
    smp = samples[0]
    dark = {c for c in PALETTES[1][0]}
    assert any(tuple(px) in dark for px in smp.posemap.reshape(-1, 3))


def test_a_crowd_on_real_footage_keeps_each_tracks_slot_and_counts_who_has_no_palette(posenet_pipeline, shared_dir):
    """vtest.avi frames 660-689: five or more pedestrians at once, more than the four palettes."""
    from helpers import video_frames

    syn = SyntheticSession("crowd", cameras=("cam0",))
    state = SessionState(syn.start(), shard_size=64, resolution=128, now=0.0)
    for frame in video_frames(shared_dir, "crowd", "cam0", 660, 30):
        _tracked, smoothed = posenet_pipeline(frame)
        state.add_pose(smoothed, Held("p", 0, frame.seq), 0.0)
        state.add_frame(frame, Held("f", 0, frame.seq), 0.0)
    (buf,) = state.all_shards()
    record = buf.record("crowd", 0)
    assert record["slots"]["left_out"] > 0  # the people beyond the palettes, counted
    samples = _samples([buf])
    assert len(samples) >= 25
    for smp in samples.values():
        assert len(set(smp.slots.tolist())) == len(smp.slots) <= MAX_SLOTS
        assert np.array_equal(smp.posemap, render_people_map(smp.people, smp.slots, (768, 576), 128))
    slot_of_track: dict[int, set[int]] = {}
    for sample in buf.samples.values():
        for person in json.loads(sample.pose_json)["people"]:
            slot_of_track.setdefault(person["track"], set()).add(person["slot"])
    assert all(len(s) == 1 for s in slot_of_track.values()), slot_of_track  # a track keeps its slot
    assert len(slot_of_track) > MAX_SLOTS  # more people came and went than there are palettes
    assert sum(record["people"].values()) > 2 * len(samples)  # most frames show three or more


@pytest.fixture(scope="module")
def posenet(tmp_path_factory, shared_dir):
    from vision.pose import load_estimator

    return load_estimator(
        "posenet", shared_dir / "models", decoder_lib="", device="cpu", cache_dir=tmp_path_factory.mktemp("m")
    )


@pytest.fixture
def posenet_pipeline(posenet):
    """The worker's pose, tracking and smoothing steps with fresh per-camera state."""
    from infra.settings import Settings
    from processors.app import SmoothStage, TrackStage, tracking_params
    from processors.estimate import PoseStage
    from schemas import frame_key
    from vision.smoothing import SmoothingParams

    pose, track = PoseStage(posenet, 4), TrackStage(tracking_params(Settings(), SmoothingParams()))
    smooth = SmoothStage(SmoothingParams())
    state = {"track": None, "smooth": None}

    def run(frame):
        estimate = pose(frame_key(frame.session, frame.camera), frame.encode())
        new, tracked = track(state["track"], estimate)
        state["track"] = new if new is not None else state["track"]
        state["smooth"], smoothed = smooth(state["smooth"], tracked)
        return tracked, smoothed

    return run


# --- dancers and visitors ----------------------------------------------------------------------------
def test_dancers_are_matched_to_visitors_left_to_right_unless_told():
    match, notes = match_dancers([300.0, 100.0], {0: 50.0, 1: 250.0})
    assert match == {1: 0, 0: 1} and notes == []
    match, notes = match_dancers([300.0, 100.0], {0: 50.0, 1: 250.0}, parse_match("0:0,1:1"))
    assert match == {0: 0, 1: 1}
    match, notes = match_dancers([10.0, 20.0, 30.0], {0: 5.0, 1: 9.0})  # three dancers, two visitors
    assert match == {0: 0, 1: 1} and notes == ["reference dancer 2 has no visitor to dance it: left out"]
    match, notes = match_dancers([10.0], {0: 5.0, 1: 9.0})
    assert match == {0: 0} and notes == ["visitor 1 has no reference dancer: left out of the rendition"]
    for bad, why in (("1-0", "dancer:visitor"), ("0:1,0:0", "matched twice"), ("0:1,1:1", "two dancers")):
        with pytest.raises(ValueError, match=why):
            parse_match(bad)
    with pytest.raises(ValueError, match="visitors \\[5\\]"):
        match_dancers([1.0], {0: 1.0}, {0: 5})
    from trainer.service import TrainerConfig

    with pytest.raises(ValueError, match="dancer:visitor"):  # booth train --match is checked up front
        TrainerConfig(match="left:right")


def test_a_group_dance_puts_each_dancer_where_their_visitor_stands(shared_dir):
    from trainer.training_set import TrainingSet

    size = (320, 160)
    left, right = _standing(60, 120), _standing(250, 120)
    n = 12
    people = [np.stack([right, left]) for _ in range(n)]
    data = TrainingSet(
        [np.zeros((size[1], size[0], 3), np.uint8)] * n, np.zeros((n, 32, 32, 3), np.uint8),
        np.stack([right] * n), np.array(["cam0"] * n), np.arange(n), people, [np.array([1, 0])] * n,
    )  # fmt: skip

    class Ref:  # two dancers: dancer 0 on the left of the reference video, dancer 1 on its right
        poses = np.stack([_standing(100, 60)] * 5)
        dancers = np.stack([np.stack([_standing(100, 60), _standing(400, 60)])] * 5)

    dance = build_group_dance(Ref(), "duo", data, "cam0", slots=[0, 1])
    assert dance.match == {0: 0, 1: 1} and dance.poses.shape == (5, 2, NUM_KEYPOINTS, 3)
    assert abs(mean_x(dance.poses[0, 0]) - 60) < 30 and abs(mean_x(dance.poses[0, 1]) - 250) < 30
    swapped = build_group_dance(Ref(), "duo", data, "cam0", override={0: 1, 1: 0}, slots=[0, 1])
    # Each visitor stays where they stand and dances the other dancer's moves.
    assert abs(mean_x(swapped.poses[0, 0]) - 60) < 30 and abs(mean_x(swapped.poses[0, 1]) - 250) < 30

    def shape(p: np.ndarray) -> np.ndarray:
        return p[:, :2] - p[:, :2].mean(axis=0)

    assert np.allclose(shape(swapped.poses[0, 0]), shape(dance.poses[0, 1]), atol=0.5)
    assert not np.allclose(shape(swapped.poses[0, 0]), shape(dance.poses[0, 0]), atol=0.5)
    # The rendition's input shows both, each in their visitor's palette.
    frame = GroupFrame(64, "stick", {"cam0": size}, [0, 1])
    drawn = frame.input_map(dance.poses[0], dance.slots, size)
    assert np.array_equal(drawn, render_people_map(dance.poses[0], [0, 1], size, 64))


# --- end to end: a two-person session trains on whole frames and renders both dancers ----------------
def test_a_two_person_session_trains_on_whole_frames_and_renders_each_dancer_as_their_visitor(
    settings, shared_dir, tmp_path
):
    from trainer.references import add_reference, load_reference_version
    from trainer.references.video import write_mp4
    from trainer.service import TrainerConfig, TrainingService
    from vision.pose.synthetic import moving_photo_clip

    settings = settings.model_copy(update={"kafka_session_timeout_ms": 3000, "kafka_heartbeat_interval_ms": 500})
    syn = SyntheticSession(f"g-{uuid.uuid4().hex[:6]}", cameras=("cam0",), frames=24, size=(128, 64), people=2)
    manifest = assemble(settings, syn)
    assert manifest["people"] == 2 and manifest["people_samples"] == {"0": 24, "1": 24}
    # A two-dancer reference from the real photo of a couple walking (PoseNet and the tracker).
    photo = cv2.cvtColor(cv2.imread(str(shared_dir / "data/images/two_people_walking.png")), cv2.COLOR_BGR2RGB)
    clip = [f for f, _ in moving_photo_clip(photo, n_frames=60, size=(320, 240), seed=3)[:8]]
    write_mp4(tmp_path / "couple.mp4", clip, 30)
    meta = add_reference(settings, tmp_path / "couple.mp4", "couple", people=2)
    assert meta["dancers"]["dancers"] == 2 and meta["backend"] == "posenet"
    ref = load_reference_version(settings, "couple")
    assert ref.dancers.shape == (8, 2, NUM_KEYPOINTS, 3)
    assert mean_x(ref.dancers[0, 0]) < mean_x(ref.dancers[0, 1])  # numbered left to right
    ready = DatasetReady(session=syn.session, status="ready", samples=24, cameras=["cam0"], wall_time=time.time())
    config = TrainerConfig(budget_s=3, progress_bar=False, reference="couple", side_by_side=False)
    rendition = TrainingService(settings, config).handle(ready)
    assert rendition is not None and rendition.frames == 8
    store = ObjectStore(settings)
    results = json.loads(store.get(f"sessions/{syn.session}/results/metrics.json"))
    assert results["framing"] == "whole" and results["people"] == 2 and results["slots"] == [0, 1]
    assert "2 visitors" in results["framing_choice"]
    assert results["dancers"] == {"0": 0, "1": 1}


def test_a_reference_of_one_dancer_still_reads_as_one(settings, shared_dir, tmp_path):
    from trainer.group import ref_dancers
    from trainer.references import load_reference_version

    add_dance(settings, shared_dir, tmp_path, frames=4)
    ref = load_reference_version(settings, "dance")
    assert ref.dancers is None and ref_dancers(ref).shape == (4, 1, NUM_KEYPOINTS, 3)


def test_the_stored_map_decodes_to_what_was_drawn():
    syn = SyntheticSession("trio", cameras=("cam0",), frames=4, size=(192, 96), people=3)
    state = _run_state(syn, range(4))
    (buf,) = state.all_shards()
    smp = _samples([buf])[0]
    assert list(smp.slots) == [2, 0, 1]  # the main person is the rightmost: slot 2
    png = next(iter(buf.samples.values())).posemap_png
    assert np.array_equal(decode_rgb(png), smp.posemap)

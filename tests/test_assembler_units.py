"""Assembler building blocks without a broker: keys, shards, joining, offsets, manifest."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest

from assembler.join import NO_FRAME, NO_PERSON, NO_POSE, UNDECODABLE, SessionState, join_sample
from assembler.offsets import OffsetTracker
from assembler.synthetic import SyntheticSession, jpeg, synthetic_image, synthetic_pose
from dataset.manifest import build_manifest, preview_choice, render_preview
from dataset.reader import shard_samples
from dataset.shards import build_shard, image_problem, iter_tar_samples
from schemas import InvalidId, layout
from schemas.keypoints import IMPUTED
from vision.posemap import render_pose_map

UNSAFE = [
    "../etc",
    "a/b",
    "..",
    "s1/../../x",
    "cam\u0430",
    "s\u200b1",
    "ses sion",
    "",
    "x" * 65,
    ".hidden",
    "s1\x00",
    "\uff53\uff11",
]


@pytest.mark.parametrize("bad", UNSAFE)
def test_key_builders_reject_unsafe_ids_before_building_a_key(bad):
    for build in (
        lambda: layout.shard_key(bad, "cam0", 0),
        lambda: layout.shard_key("s1", bad, 0),
        lambda: layout.manifest_key(bad),
        lambda: layout.preview_key(bad),
        lambda: layout.sample_key(bad, 3),
        lambda: layout.shard_index_key("s1", bad, 1),
        lambda: layout.reference_latest_key(bad),
    ):
        with pytest.raises(InvalidId):
            build()


def test_key_layout():
    assert layout.shard_key("s-1", "cam_0", 3) == "sessions/s-1/shards/cam_0-00003.tar"
    assert layout.shard_index_key("s-1", "cam_0", 3) == "sessions/s-1/index/cam_0-00003.json"
    assert layout.manifest_key("s-1") == "sessions/s-1/manifest.json"
    assert layout.sample_key("cam0", 42) == "cam0-00000042"
    assert layout.parse_shard_name("cam-a-00012") == ("cam-a", 12)
    assert layout.reference_file_key("salsa", 2, "poses.npz") == "references/salsa/v0002/poses.npz"
    with pytest.raises(ValueError, match="shard index"):
        layout.shard_key("s1", "cam0", -1)
    with pytest.raises(ValueError, match="not a reference file"):
        layout.reference_file_key("salsa", 1, "../x")
    with pytest.raises(ValueError, match="plain file extension"):
        layout.reference_source_key("salsa", ".mp4/../../x")


def _state(shard_size=4, session="s1"):
    syn = SyntheticSession(session, cameras=("cam0",), frames=12, no_person={("cam0", 2)})
    state = SessionState(syn.start(), shard_size=shard_size, resolution=64, now=0.0)
    return syn, state


def test_shard_completes_only_when_both_streams_reach_its_last_seq():
    syn, state = _state()
    tracker = OffsetTracker()
    for seq in range(6):  # frames run ahead of poses
        state.add_frame(syn.frame("cam0", seq), tracker.consumed("f", 0, seq), 0.0)
    for seq in range(3):
        state.add_pose(syn.pose("cam0", seq), tracker.consumed("p", 0, seq), 0.0)
    assert state.complete_shards() == []
    assert tracker.committable() == {("f", 0): 0, ("p", 0): 0}  # everything still held
    state.add_pose(syn.pose("cam0", 3), tracker.consumed("p", 0, 3), 0.0)
    (shard,) = state.complete_shards()
    assert (shard.camera, shard.index) == ("cam0", 0)
    assert sorted(shard.samples) == [0, 1, 3] and shard.rejected == {2: NO_PERSON}
    tracker.release(*shard.held)
    # Frames 4 and 5 of shard 1 are still held: the frames partition commits up to 4.
    assert tracker.committable() == {("f", 0): 4, ("p", 0): 4}
    # A replay of a message of a persisted shard is recognised, not rebuilt into a partial shard.
    state.done[("cam0", 0)] = shard.record("s1", 0)
    assert state.add_frame(syn.frame("cam0", 1), tracker.consumed("f", 0, 1), 0.0).replay
    # At the end, open shards are flushed as they stand: frames without poses are rejected.
    (last,) = state.all_shards()
    assert last.rejected == {4: NO_POSE, 5: NO_POSE} and not last.samples


def test_undecodable_frame_and_orphan_pose_are_rejected_with_reasons():
    syn, state = _state()
    tracker = OffsetTracker()
    bad = syn.frame("cam0", 0).model_copy(update={"image": syn.frame("cam0", 0).image[:-200]})
    outcome = state.add_frame(bad, tracker.consumed("f", 0, 0), 0.0)
    assert outcome.rejected == UNDECODABLE and "truncated" in outcome.problem
    state.add_pose(syn.pose("cam0", 1), tracker.consumed("p", 0, 0), 0.0)
    (shard,) = state.all_shards()
    assert shard.rejected == {0: UNDECODABLE, 1: NO_FRAME}


def test_duplicate_message_is_released_while_first_copy_stays_held():
    syn, state = _state()
    tracker = OffsetTracker()
    state.add_frame(syn.frame("cam0", 0), tracker.consumed("f", 0, 10), 0.0)
    dup = tracker.consumed("f", 0, 11)
    assert state.add_frame(syn.frame("cam0", 0), dup, 0.0).replay
    tracker.release(dup)
    assert tracker.committable() == {("f", 0): 10}


def test_image_problem_detects_broken_and_mis_sized_images():
    good = jpeg(synthetic_image(1, "cam0", (100, 75)))
    assert image_problem(good, "jpeg", 100, 75) is None
    assert "truncated" in image_problem(good[: len(good) // 2], "jpeg", 100, 75)
    assert "not a JPEG" in image_problem(b"GIF89a" + good, "jpeg", 100, 75)
    assert "declared" in image_problem(good, "jpeg", 640, 480)
    corrupt = good[:200] + bytes(len(good) - 202) + good[-2:]
    assert image_problem(corrupt, "jpeg", 100, 75) is not None


def test_shard_bytes_are_reproducible_and_in_webdataset_layout():
    syn = SyntheticSession("s1", cameras=("cam0",), frames=5)
    samples = [join_sample(syn.frame("cam0", s), syn.pose("cam0", s), 64) for s in range(5)]
    a = build_shard(samples)
    b = build_shard(list(reversed(samples)))
    assert a == b
    with tarfile.open(fileobj=io.BytesIO(a)) as tar:
        infos = tar.getmembers()
    assert [i.name for i in infos[:3]] == ["cam0-00000000.jpg", "cam0-00000000.posemap.png", "cam0-00000000.pose.json"]
    assert {i.mtime for i in infos} == {0} and {i.uid for i in infos} == {0}
    assert [k for k, _ in iter_tar_samples(a)] == [f"cam0-{s:08d}" for s in range(5)]
    got = list(shard_samples(a))
    for s, sample in enumerate(got):
        assert sample.seq == s and sample.src_size == (96, 72)
        np.testing.assert_allclose(sample.pose, synthetic_pose(s, (96, 72)), atol=1e-3)
        np.testing.assert_array_equal(sample.posemap, render_pose_map(sample.pose, (96, 72), 64))
        assert bool(sample.flags[0] & IMPUTED) == (s % 2 == 0)


def test_pose_estimated_on_a_resized_frame_is_brought_to_frame_pixels():
    syn = SyntheticSession("s1", cameras=("cam0",), size=(96, 72))
    frame = syn.frame("cam0", 3)
    half = SyntheticSession("s1", cameras=("cam0",), size=(48, 36)).pose("cam0", 3)
    sample = join_sample(frame, half, 64)
    pose = np.asarray(json.loads(sample.pose_json)["keypoints"])
    np.testing.assert_allclose(pose[:, :2], synthetic_pose(3, (96, 72))[:, :2], atol=1e-2)


def test_offsets_commit_the_lowest_held_offset():
    t = OffsetTracker()
    a, b, c = (t.consumed("f", 1, o) for o in (5, 6, 7))
    t.consumed("f", 2, 0)
    t.release(a, c)
    assert t.committable()[("f", 1)] == 6
    t.release(b)
    assert t.committable()[("f", 1)] == 8


def test_manifest_counts_and_preview_choice():
    records = [
        {
            "camera": "cam0",
            "index": 0,
            "shard_key": "sessions/s/shards/cam0-00000.tar",
            "samples": [0, 1, 3],
            "rejected": {"2": NO_PERSON},
            "imputed": 2,
            "keypoints": 51,
            "backends": ["movenet"],
            "bytes": 10,
        },
        {
            "camera": "cam1",
            "index": 0,
            "shard_key": None,
            "samples": [],
            "rejected": {"0": NO_POSE, "1": NO_POSE},
            "imputed": 0,
            "keypoints": 0,
            "backends": [],
            "bytes": 0,
        },
    ]
    args = dict(
        session="s",
        status="ready",
        reason="",
        closed_by="end",
        start=None,
        end=None,
        records=records,
        resolution=64,
        shard_size=4,
        min_samples=1,
        preview_key=None,
    )
    m = build_manifest(**args)
    assert m["samples"] == 3 and m["frames"] == 6
    assert m["rejected"] == {NO_PERSON: 1, NO_POSE: 2}
    assert m["per_camera"]["cam1"] == {"samples": 0, "shards": 0, "rejected": {NO_POSE: 2}}
    assert m["cameras"] == ["cam0"] and m["shards"] == ["sessions/s/shards/cam0-00000.tar"]
    assert m["imputed_share"] == round(2 / 51, 6)
    assert m["coverage"] is None  # no guided capture
    guided = {"coverage": 0.82, "reason": "target", "facings": ["front", "back"], "prompts": ["arms up"]}
    m = build_manifest(**{**args, "coverage": guided})
    assert m["coverage"]["coverage"] == 0.82 and m["coverage"]["reason"] == "target"
    assert "prompts" not in m["coverage"] and m["coverage"]["target"] is None
    assert preview_choice(records, k=2) == [
        ("sessions/s/shards/cam0-00000.tar", "cam0", 0),
        ("sessions/s/shards/cam0-00000.tar", "cam0", 3),
    ]
    frame = synthetic_image(0, "cam0", (96, 72))
    pose = synthetic_pose(0, (96, 72))
    jpg = render_preview([(frame, render_pose_map(pose, (96, 72), 64), pose)] * 3, 64)
    import cv2

    grid = cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR)
    assert grid.shape[0] == 2 * (64 + 4) + 4 and grid.shape[1] == 2 * (2 * 64 + 4) + 4

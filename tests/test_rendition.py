import logging

import av
import numpy as np
import pytest
import torch

from trainer import rendition
from trainer.pix2pix.networks import NetConfig, UNetGenerator
from trainer.pix2pix.synthetic import random_poses
from trainer.rendition import count_frames, render_video
from vision.posemap import render_pose_map

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def generator():
    torch.manual_seed(0)
    return UNetGenerator(NetConfig(size=32, ngf=8, ndf=8, n_layers_d=2)).eval()


def _decode(path):
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        info = (stream.codec_context.name, stream.average_rate)
        return info, [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def test_video_has_one_frame_per_pose(generator, tmp_path):
    poses = random_poses(11, 64, seed=0)
    path = render_video(generator, poses, 64, tmp_path / "out.mp4", progress=False, batch_size=4)
    assert count_frames(path) == 11
    (codec, rate), frames = _decode(path)
    assert codec == ("h264" if rendition.video_codec() == "libx264" else "mpeg4") and rate == 30
    assert frames[0].shape == (32, 32, 3)


def test_side_by_side_strip(generator, tmp_path):
    poses = random_poses(5, (80, 60), seed=1)
    refs = [np.full((60, 80, 3), 30 * i, np.uint8) for i in range(5)]
    path = render_video(generator, poses, (80, 60), tmp_path / "sbs.mp4", fps=25, side_by_side=refs, progress=False)
    (_, rate), frames = _decode(path)
    assert len(frames) == 5 and frames[0].shape == (32, 96, 3) and rate == 25
    # Lossy, but the middle third is still the pose map and the left the (letterboxed) reference.
    pmap = render_pose_map(poses[3], (80, 60), 32).astype(float)
    assert np.abs(frames[3][:, 32:64].astype(float) - pmap).mean() < 12
    assert abs(frames[3][10:20, 5:27].mean() - 90) < 8


def test_mismatched_inputs_are_rejected(generator, tmp_path):
    poses = random_poses(3, 64, seed=2)
    with pytest.raises(ValueError, match="side_by_side has 2 frames for 3 poses"):
        render_video(generator, poses, 64, tmp_path / "x.mp4", side_by_side=[np.zeros((8, 8, 3), np.uint8)] * 2)
    with pytest.raises(ValueError, match="poses must be"):
        render_video(generator, poses[:, :5], 64, tmp_path / "x.mp4")


def test_falls_back_to_mpeg4_without_libx264(generator, tmp_path, monkeypatch, caplog):
    real = av.codec.Codec

    def no_x264(name, mode="r"):
        if name == "libx264":
            raise av.codec.codec.UnknownCodecError(name)
        return real(name, mode)

    monkeypatch.setattr(av.codec, "Codec", no_x264)
    rendition.video_codec.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="trainer.rendition"):
            path = render_video(generator, random_poses(4, 64, seed=3), 64, tmp_path / "m.mp4", progress=False)
        assert "no libx264 encoder" in caplog.text
        (codec, _), frames = _decode(path)
        assert codec == "mpeg4" and len(frames) == 4
    finally:
        rendition.video_codec.cache_clear()

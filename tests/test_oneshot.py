"""The one-shot video against the real S3 server: `booth oneshot` renders a session's dance from
its own frames, with no training."""

from __future__ import annotations

import av
import numpy as np
from click.testing import CliRunner

from infra.objectstore import ObjectStore
from schemas import layout
from trainer.cli import oneshot
from trainer.plates import session_plate
from trainer.rendition import count_frames
from trainer.training_set import holdout_split, load_training_set


def first_frame(path) -> np.ndarray:
    with av.open(str(path)) as container:
        return next(container.decode(video=0)).to_ndarray(format="rgb24")


def test_booth_oneshot_renders_the_dance_from_the_session_alone(dataset, tmp_path):
    settings, syn = dataset
    out = tmp_path / "oneshot.mp4"
    result = CliRunner().invoke(
        oneshot,
        ["--session", syn.session, "--reference", "dance", "--out", str(out), "--person-masks", "silhouette", "-q"],
        obj={"settings": settings},
    )
    assert result.exit_code == 0, result.output
    store = ObjectStore(settings)
    video = store.get(layout.result_key(syn.session, "oneshot.mp4"))
    assert video is not None and video == out.read_bytes()
    assert count_frames(out) == 18  # one frame per reference pose
    frame = first_frame(out)
    assert frame.shape[:2] == (syn.size[1], syn.size[0])  # the camera's size
    assert "parts never seen" in result.output and "none" in result.output

    # The source views are training frames (the held-out end stays unseen), and nothing was trained.
    data = load_training_set(settings, syn.session)
    train = holdout_split(data.cameras, data.seqs).train
    views = result.output.split("source views (samples)")[1].split("\n")[0]
    chosen = [int(v) for v in views.replace("│", " ").replace("|", " ").replace(",", " ").split()]
    assert chosen and all(train[i] for i in chosen)
    assert store.list(layout.checkpoints_prefix(syn.session)) == []

    # The person is drawn over the background the session's frames give without them.
    from vision.personmask import silhouette

    plate = session_plate(data, "cam0", train, lambda i: silhouette(data.poses[i], syn.size))
    differs = np.abs(frame.astype(np.float32) - plate).max(axis=2) > 40
    assert 0.01 < differs.mean() < 0.5, differs.mean()


def test_bad_requests_are_named(dataset):
    settings, syn = dataset
    runner = CliRunner()
    missing = runner.invoke(oneshot, ["--session", "s-nosuch", "-q"], obj={"settings": settings})
    assert missing.exit_code != 0 and "s-nosuch" in missing.output
    bad_ref = runner.invoke(
        oneshot, ["--session", syn.session, "--reference", "nosuch", "-q"], obj={"settings": settings}
    )
    assert bad_ref.exit_code != 0 and "nosuch" in bad_ref.output
    bad_id = runner.invoke(oneshot, ["--session", "../x", "-q"], obj={"settings": settings})
    assert bad_id.exit_code != 0 and "--session" in bad_id.output

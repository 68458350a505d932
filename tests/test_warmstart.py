"""Base models (build, list, promote, warm start, fallbacks) and progressive renditions, against
the real broker and S3 server."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from infra.objectstore import ObjectStore
from schemas import DatasetReady, Rendition, TrainingProgress, layout
from trainer import base as bases
from trainer.job import TrainingJob
from trainer.options import TrainerConfig
from trainer.progressive import parse_points, stops

from helpers import read_topic

SMALL = dict(checkpoint_every_s=1, progress_bar=False, reference="dance", crop_size=32, max_render_frames=6)


def ready(session: str) -> DatasetReady:
    return DatasetReady(
        session=session, status="ready", samples=24, cameras=["cam0"], reference="dance", wall_time=time.time()
    )


def job(settings, session: str, published: list, progress: list | None = None, **config) -> TrainingJob:
    def say(phase, step=0, total=0, losses=None, elapsed=0.0, eta=0.0, message=""):
        if progress is not None:
            progress.append((phase, message))

    return TrainingJob(settings, TrainerConfig(**{**SMALL, **config}), ready(session), say, published.append)


def copy_session(store: ObjectStore, source: str, target: str) -> None:
    """The assembled dataset of a session again under another id (not what training made of it)."""
    for key in store.list(layout.session_prefix(source)):
        if any(f"/{folder}/" in key for folder in ("checkpoints", "results", "plates")):
            continue
        data = store.get(key)
        if key.endswith(".json"):
            data = data.replace(source.encode(), target.encode())
        store.put(key.replace(layout.session_prefix(source), layout.session_prefix(target)), data)


def test_rendition_stops_follow_the_budget_and_skip_what_a_resumed_session_has():
    assert stops(1000, (0.1, 0.3, 1.0), 20, spent_s=0, published=0) == [20, 100, 300]
    assert stops(100, (0.1, 0.3, 1.0), 20, spent_s=0, published=0) == [10, 30]  # 10 % comes first already
    # Resumed 25 s in with two versions out: only the 30 % point is ahead (5 s from now).
    assert stops(100, (0.1, 0.3, 1.0), 20, spent_s=25, published=2) == [5]
    assert stops(100, (1.0,), None, spent_s=0, published=0) == []
    # A short budget: stops closer than 5 s to the start, each other or the end are left out.
    assert stops(6, (0.1, 0.3, 1.0), 20, spent_s=0, published=0) == []
    assert stops(30, (0.1, 0.3, 0.5, 1.0), 2, spent_s=0, published=0) == [9, 15]
    assert stops(30, (0.1, 0.3, 1.0), 2, spent_s=0, published=0, min_gap_s=1) == [2, 3, 9]
    assert parse_points("10%, 30%,100%") == (0.1, 0.3, 1.0) and parse_points("0.5,1") == (0.5, 1.0)
    for bad in ("0.3,0.1", "0,1", "1.5", "half"):
        with pytest.raises(ValueError, match="rendition points"):
            parse_points(bad)


def test_versions_are_published_as_training_goes_and_the_link_plays_the_newest(dataset):
    settings, syn = dataset
    store = ObjectStore(settings)
    published: list[Rendition] = []
    config = dict(budget_s=16, first_rendition_s=5, rendition_points=(0.65, 1.0))  # stops at 5 and 10.4 s
    final = job(settings, syn.session, published, **config).run()

    assert [r.version for r in published] == list(range(1, len(published) + 1)) and len(published) >= 3
    assert [r.final for r in published] == [False] * (len(published) - 1) + [True] and final is published[-1]
    # The one-shot video is the first version (a training-free preview); the generator's follow.
    assert published[0].kind == "preview" and [r.kind for r in published[1:]] == ["gan"] * (len(published) - 1)
    steps = [r.metrics["steps"] for r in published[1:-1]]
    assert steps == sorted(steps) and steps[0] >= 1
    for r in published[:-1]:  # each version's own object
        assert r.video_key == layout.rendition_version_key(syn.session, r.version) and store.exists(r.video_key)
    for r in published[1:-1]:  # with its generator's held-out figures
        assert 0 < r.metrics["box_ssim"] <= 1 and r.metrics["box_psnr"] > 5
    newest = store.get(layout.rendition_version_key(syn.session, final.version))
    # Every link handed out plays the newest version: the first one the visitor got included.
    assert urllib.request.urlopen(published[0].url, timeout=30).read() == newest
    assert store.get(layout.result_key(syn.session, "rendition.mp4")) == newest
    record = json.loads(store.get(layout.result_key(syn.session, "versions.json")))["versions"]
    assert [v["version"] for v in record] == [r.version for r in published] and record[-1]["final"] is True


def test_a_crash_between_versions_resumes_and_keeps_every_published_version(dataset):
    settings, syn = dataset
    store = ObjectStore(settings)
    published: list[Rendition] = []

    def crash_at_the_third(rendition: Rendition) -> None:
        if rendition.version == 3:
            raise ConnectionError("the broker went away")
        published.append(rendition)

    # Versions: 1 the one-shot preview, 2 and 3 at 6 and 12 s of training, then the final one.
    config = dict(budget_s=20, first_rendition_s=5, rendition_points=(0.3, 0.6, 1.0))
    first = TrainingJob(
        settings, TrainerConfig(**{**SMALL, **config}), ready(syn.session), lambda *a, **k: None, crash_at_the_third
    )
    with pytest.raises(ConnectionError):
        first.run()
    v1, v2 = (store.get(layout.rendition_version_key(syn.session, n)) for n in (1, 2))
    assert [(r.version, r.kind) for r in published] == [(1, "preview"), (2, "gan")] and v1 and v2

    again: list[Rendition] = []
    final = job(settings, syn.session, again, **config).run()
    # Not overwritten, no second preview, numbering goes on (3 was stored, then lost).
    assert [store.get(layout.rendition_version_key(syn.session, n)) for n in (1, 2)] == [v1, v2]
    assert min(r.version for r in again) >= 4 and final.final and {r.kind for r in again} == {"gan"}
    assert final.metrics["start_step"] >= published[1].metrics["steps"]  # resumed, not restarted
    record = json.loads(store.get(layout.result_key(syn.session, "versions.json")))["versions"]
    assert [v["version"] for v in record] == list(range(1, final.version + 1))


def test_a_promoted_base_warm_starts_sessions_of_its_configuration_only(dataset):
    settings, syn = dataset
    store = ObjectStore(settings)
    other = f"{syn.session}-b"
    copy_session(store, syn.session, other)
    for s in (syn.session, other):  # a base learns only from visitors who agreed
        manifest = json.loads(store.get(layout.manifest_key(s)))
        store.put(layout.manifest_key(s), json.dumps({**manifest, "consent": True}).encode())
    # The stick figure alone (the default reads the warped visitor too: the test below).
    once = dict(budget_s=3, first_rendition_s=None, rendition_points=(1.0,), conditioning="pose")

    # No base yet: from scratch, saying why.
    said: list = []
    job(settings, syn.session, [], said, **once).run()
    assert any("no promoted base model" in m for _, m in said)

    manifest = bases.build_base(settings, [other], budget_s=3, config=TrainerConfig(**SMALL, conditioning="pose"))
    assert manifest["version"] == 1 and manifest["label"] == "person-facing-32" and manifest["sessions"] == [other]
    assert manifest["steps"] >= 1 and manifest["quality"]["box_psnr"] > 5
    assert [(m["version"], m["promoted"]) for m in bases.list_bases(store)] == [(1, False)]
    with pytest.raises(ValueError, match="v0002 has no manifest"):
        bases.promote(store, 2)
    bases.promote(store, 1)
    assert bases.list_bases(store)[0]["promoted"] is True

    session = f"{syn.session}-c"
    copy_session(store, syn.session, session)
    said, out = [], []
    final = job(settings, session, out, said, **once).run()
    assert any(m.startswith("warm start from base v0001 (person-facing-32, 1 sessions") for _, m in said), said
    assert final.metrics["base_version"] == 1
    results = json.loads(store.get(layout.result_key(session, "metrics.json")))
    assert results["warm_start"] is True and results["base_model"] == "base v0001" and results["start_step"] == 0

    # Another crop size is another configuration: from scratch, naming what is promoted.
    session = f"{syn.session}-d"
    copy_session(store, syn.session, session)
    said = []
    final = job(settings, session, [], said, **{**once, "crop_size": 64}).run()
    assert final.metrics["base_version"] == 0
    assert any("no promoted base model for person-facing-64 (promoted: person-facing-32)" in m for _, m in said)


def test_an_unreadable_promoted_base_means_scratch_with_the_reason(dataset):
    settings, syn = dataset
    store = ObjectStore(settings)
    from trainer.pix2pix.networks import NetConfig

    net = NetConfig.fast(32, matte=True).to_dict()
    data = {"framing": "person", "posemap_style": "facing", "size": 32}
    store.put(
        layout.base_manifest_key(3),
        json.dumps(
            {"version": 3, "label": "person-facing-32", "net": net, "data": data, "checkpoint": "gone.pt"}
        ).encode(),
    )
    bases.promote(store, 3)
    said: list = []
    once = dict(budget_s=3, first_rendition_s=None, rendition_points=(1.0,), conditioning="pose")
    final = job(settings, syn.session, [], said, **once).run()
    assert final.metrics["base_version"] == 0
    assert any("base v0003 is unreadable" in m and "gone.pt is missing" in m for _, m in said), said
    progress = [m for m in read_topic(settings, settings.topic_training) if isinstance(m, TrainingProgress)]
    assert progress == []  # the job alone: nothing went through the service's topic


def test_the_base_commands_list_show_promote_and_refuse_what_they_cannot_do(settings):
    from click.testing import CliRunner

    from trainer.cli import base as base_cli

    store = ObjectStore(settings)
    manifest = {
        "version": 1,
        "label": "person-facing-256",
        "net": {},
        "data": {},
        "sessions": ["a", "b"],
        "steps": 900,
        "samples": 300,
        "train_seconds": 240.0,
        "checkpoint": "ckpt-000000900.pt",
        "quality": {"box_psnr": 14.68, "box_ssim": 0.51, "psnr": 20.0, "ssim": 0.8},
    }
    store.put(layout.base_manifest_key(1), json.dumps(manifest).encode())
    store.put(layout.base_version_prefix(2) + "ckpt-000000010.pt", b"a build that never finished")

    def run(*args: str):
        return CliRunner().invoke(base_cli, list(args), obj={"settings": settings})

    listed = run("list")
    assert listed.exit_code == 0, listed.output
    assert "v0001" in listed.output and "14.68" in listed.output and "unfinished" in listed.output
    refused = run("promote", "2")
    assert refused.exit_code != 0 and "v0002 has no manifest" in refused.output
    promoted = run("promote", "1")
    assert promoted.exit_code == 0 and "base v0001 promoted for person-facing-256" in promoted.output
    assert bases.promoted(store) == {"person-facing-256": 1}
    shown = run("show", "1")
    assert shown.exit_code == 0 and "(promoted)" in shown.output and "a, b" in shown.output
    store.put(layout.manifest_key("no-consent"), json.dumps({"consent": False}).encode())
    build = run("build", "--session", "no-consent", "--budget", "1")
    assert build.exit_code != 0 and "have no recorded consent" in build.output
    assert bases.versions(store) == [1, 2]  # the refused build stored nothing


def test_a_warp_conditioned_base_warm_starts_warp_conditioned_sessions_only(dataset):
    from trainer.warp_framing import CHANNELS, RESIDUAL

    settings, syn = dataset
    store = ObjectStore(settings)
    other = f"{syn.session}-w"
    copy_session(store, syn.session, other)
    manifest = json.loads(store.get(layout.manifest_key(other)))
    store.put(layout.manifest_key(other), json.dumps({**manifest, "consent": True}).encode())

    built = bases.build_base(settings, [other], budget_s=3, config=TrainerConfig(**SMALL))  # the default: warp
    # The network and inputs a warp-conditioned session trains: the base fits it exactly.
    assert built["label"] == "person-facing-32-warp" and built["data"]["conditioning"] == "warp"
    assert built["net"]["in_channels"] == CHANNELS and built["net"]["residual"] == RESIDUAL
    assert built["steps"] >= 1 and built["quality"]["box_psnr"] > 5
    bases.promote(store, built["version"])

    once = dict(budget_s=3, first_rendition_s=None, rendition_points=(1.0,))
    said: list = []
    warm = job(settings, syn.session, [], said, **once).run()
    assert warm.metrics["base_version"] == built["version"]
    assert any(m.startswith(f"warm start from base v{built['version']:04d} (person-facing-32-warp") for _, m in said)

    session = f"{syn.session}-p"  # reads the pose map alone: another configuration
    copy_session(store, syn.session, session)
    said = []
    cold = job(settings, session, [], said, **once, conditioning="pose").run()
    assert cold.metrics["base_version"] == 0
    assert any("no promoted base model for person-facing-32 (promoted: person-facing-32-warp)" in m for _, m in said)


def test_a_resumed_session_keeps_the_conditioning_it_started_with(dataset):
    settings, syn = dataset
    store = ObjectStore(settings)

    def crash_at_the_second(rendition: Rendition) -> None:
        if rendition.version == 2:
            raise ConnectionError("the broker went away")

    # Started reading the pose map (e.g. before an upgrade made warp the default), then crashed.
    config = dict(budget_s=12, first_rendition_s=4, rendition_points=(1.0,))
    first = TrainingJob(
        settings,
        TrainerConfig(**{**SMALL, **config, "conditioning": "pose"}),
        ready(syn.session),
        lambda *a, **k: None,
        crash_at_the_second,
    )
    with pytest.raises(ConnectionError):
        first.run()

    said: list = []
    final = job(settings, syn.session, [], said, **config).run()  # the default now: warp
    assert final.metrics["start_step"] > 0  # resumed, not restarted
    results = json.loads(store.get(layout.result_key(syn.session, "metrics.json")))
    assert "conditioning" not in results and results["face"] is True  # the pose-map generator, face and all
    assert any("started with pose conditioning: it keeps it" in m for _, m in said), said

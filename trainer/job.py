"""One session's training job, in phases that `TrainingJob.run` calls in order: load (manifest,
reference dance, training set, held-out split) -> one-shot video (trainer.oneshot, published at
once) -> frame (trainer.framing_choice) -> train (warm-started when a base fits, with versions on
the way: trainer.progressive) -> evaluate -> render the reference dance -> publish (metrics.json,
the final version and its presigned link). Each phase returns what the next ones read (Loaded,
Framed, Trained, Video); the detail is in the helpers below them.

Objects per session (schemas.layout): checkpoints/ (resumable training state, started.json),
plates/ (the background plate per camera, person framing), results/ (oneshot.mp4, rendition.mp4: the newest
version, rendition-v<n>.mp4: each version, versions.json, side-by-side.mp4, samples.png,
loss.png, metrics.json).

Versions (trainer.progressive): a first video shortly after training starts, better ones at
points of the budget, the final one at its end; each a Rendition with its version, kind and
figures, published through trainer.versions; the visitor's link plays rendition.mp4, the newest.

Framing (trainer.framing): person-centred by default for pose maps (a crop following the person,
composited onto the camera's background plate), the whole frame for part maps. Either way the
held-out frames (trainer.training_set: the poses least like the rest of the session) are evaluated,
and the rendition rendered, at the camera's own resolution and aspect; every version is judged
on the dance it shows (trainer.fidelity: dance.png and the dance_* figures).

Errors are typed for the service (trainer.service): DatasetError and ReferenceUnavailable are
permanent for the session; the object store or broker being away is not (retried there).

Privacy: a job looks for its session's purge marker (schemas.layout.purge_marker_key) before it
starts, every ``purge_check_s`` while it trains, and before it publishes; a purged session stops
at the next step, its objects are deleted (the last checkpoint included) and `Purged` is raised:
nothing is published. A session without consent (its manifest) keeps only its video and records
once the video is made (infra.retention.discard_unconsented). The video's link never outlives
the video (infra.retention.video_link_expiry_s).
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from infra.objectstore import ObjectStore
from infra.retention import discard_unconsented
from infra.settings import Settings
from schemas import DatasetReady, Rendition, layout
from trainer.checkpoints import StoreCheckpoints
from trainer.dance import Dance, build_dance, load_reference, reference_frames, reference_name
from trainer.estimators import Estimators
from trainer.fidelity import SessionJudge
from trainer.framing_choice import Framed, choose_framing
from trainer.group import build_group_dance, group_framing, parse_match
from trainer.options import TrainerConfig
from trainer.plates import PersonMasks, SessionPlates
from trainer.training_set import TrainingSet, holdout_split, load_training_set
from trainer.versions import Versions

WARNING_PREFIX = "warning: "  # progress messages that are warnings (the status view and console list them)

log = logging.getLogger(__name__)

# (phase, step, total, losses, elapsed_s, eta_s, message)
Progress = Callable[..., None]


class Cancelled(Exception):
    """The job was asked to stop (its partition went to another trainer); its checkpoint stays."""


class Purged(Exception):
    """The session was purged: the job stopped and deleted what it had written; nothing published."""


@dataclass
class Loaded:
    """What the load phase read. split: the held-out split (trainer.training_set); test: the samples the
    figures are measured on (the held-out ones, else the last training frames); group: a session of
    several visitors' framing (trainer.group.group_framing), else None; dance: the reference
    dance on the session's person (trainer.dance; a group's waits for its framing: None); judge:
    the judge of the session's videos (trainer.fidelity.SessionJudge); plates: the session's
    background plates and the person masks they are made with (trainer.plates.SessionPlates, its
    PersonMasks), made as the one-shot video and then the framing ask."""

    manifest: dict
    representation: str
    name: str
    ref: object
    data: TrainingSet
    split: object
    test: np.ndarray
    group: tuple | None
    dance: Dance | None
    judge: SessionJudge
    plates: SessionPlates

    @property
    def camera(self) -> str:
        """The camera the rendition is rendered for."""
        return self.data.main_camera()


@dataclass
class Trained:
    """What the train phase gives: the final TrainResult, the step it resumed from, whether it
    warm-started (and from which base), and how training frames were sampled."""

    result: object
    start_step: int
    base: str | None
    warm: bool
    relevance: dict


@dataclass
class Video:
    """The final video, rendered but not yet published (in the render phase's folder)."""

    path: Path
    frames: int
    picture: np.ndarray | None


class TrainingJob:
    """Everything the trainer does for one DatasetReady; `run()` returns the published Rendition."""

    def __init__(
        self,
        settings: Settings,
        config: TrainerConfig,
        ready: DatasetReady,
        progress: Progress,
        publish: Callable[[Rendition], None],
        cancel: threading.Event | None = None,
        estimators: Estimators | None = None,
    ):
        self.settings, self.config, self.ready = settings, config, ready
        # The process's pose estimators (the trainer service makes them once), else this job's own.
        self.estimators = estimators or Estimators.load(settings.models_dir)
        self.session = ready.session
        self.progress, self.publish = progress, publish
        self.cancel = cancel or threading.Event()
        self.store = ObjectStore(settings)
        # One try per look: a store that is away must not hold up training (the next look retries).
        self._marker_store = ObjectStore(settings, attempts=1)
        self._purge_seen = False
        self._purge_looked_at = -float("inf")
        self.consent = False
        self.warnings: list[str] = []  # shown before training, recorded in metrics.json
        self.base_name: str | None = None
        self.device = "cpu"  # the device type training runs on: chosen by the frame phase
        self.versions = Versions(settings, self.store, self.session, self._announce, self._stop_if_purged)
        self._dance_made: list = []

    # --- the job, phase by phase -----------------------------------------------------------------
    def run(self) -> Rendition:
        self._stop_if_purged("before training")
        loaded = self.load()
        if isinstance(loaded, Rendition):  # made earlier, its frames since discarded: a fresh link
            return loaded
        self.one_shot(loaded)
        framed = self.frame(loaded)
        trained = self.train(loaded, framed)
        results = self.evaluate(loaded, framed, trained)
        with tempfile.TemporaryDirectory(prefix="booth-render-") as tmp:
            video = self.render(loaded, framed, trained, results, Path(tmp))
            return self.publish_final(video, results, trained.result.step)

    def load(self) -> Loaded | Rendition:
        """The manifest, the reference dance (checked before the budget is spent, not after), the
        training set and its held-out split, the dance placed on the visitor (one person's: every
        video renders it) and the judge of the session's videos. A session without consent whose video was made
        earlier gets that video's Rendition instead (Versions.made_earlier)."""
        self.progress("loading", message="reading the dataset")
        manifest = self._manifest()
        representation = self._representation(manifest)
        name = self.versions.reference = reference_name(
            self.settings, self.session, self.ready.reference, self.config.reference
        )
        made = None if self.consent else self.versions.made_earlier(name)
        if made is not None:
            return made
        ref = load_reference(self.store, self.session, name, representation)
        data = load_training_set(self.settings, self.session, store=self.store, expected=manifest.get("samples"))
        split, test = self._split(data, ref.poses)
        group = group_framing(manifest, data, representation, self.config.framing, self.config.posemap_style)
        camera = data.main_camera()
        main = np.flatnonzero(data.cameras == camera)
        dance = None
        if group is None:
            size, frames = data.camera_size(camera), self.config.max_render_frames
            dance = build_dance(self.store, ref, name, data.poses[main], size, data.size, representation, frames)
        judge = SessionJudge(
            [data.frames[i] for i in main], data.poses[main], self.estimators, drawn_by=manifest.get("pose_backends")
        )
        masks = PersonMasks(data, self.config.person_masks, self.settings.models_dir)
        plates = SessionPlates(self.store, self.session, data, masks)
        return Loaded(manifest, representation, name, ref, data, split, test, group, dance, judge, plates)

    def one_shot(self, loaded: Loaded) -> None:
        """The one-shot video first (trainer.oneshot): the visitor has a video seconds after the
        dataset, before the slow part. It makes the person masks of a few frames only, kept for the
        framing. The part warper moves one person: a group gets its first video from training."""
        if loaded.group is None:
            self._publish_oneshot(loaded)

    def frame(self, loaded: Loaded) -> Framed:
        """How the generator sees the session: a group's whole frames, else the one-person choice
        (trainer.framing_choice) with the conditioning the session started with."""
        from trainer.pix2pix.train import pick_device

        conditioning = self._conditioning(loaded.manifest)
        self.device = pick_device(self.config.device).type
        if loaded.group is not None:
            framed = Framed(*loaded.group)
        else:
            # One person's framing, as base models frame their sessions too.
            data, train, representation = loaded.data, loaded.split.train, loaded.representation
            framed = choose_framing(
                data, train, representation, self.config, self.device, loaded.plates, conditioning, self.progress
            )
            self.warnings += framed.warnings
        self._warn_if_not_conditioned(loaded.manifest, conditioning, framed)
        return framed

    def train(self, loaded: Loaded, framed: Framed) -> Trained:
        """Fine-tuning (trainer.progressive) within what is left of the budget, warm-started from
        a base that fits, drawing frames by relevance to the dance, a version at each of the
        budget's points; a stop asked for ends the job here (Cancelled, or Purged)."""
        from trainer.progressive import fine_tune_in_stages

        net, inputs = framed.recipe
        samples, relevance = self._samples(loaded, framed)
        base, why = self._pick_base(net, inputs)
        self._show_warnings()
        budget = self._remaining_budget()
        self.progress("training", message=why)
        result, start_step = fine_tune_in_stages(
            samples,
            self.config.loop(net, inputs, self.device),
            budget,
            StoreCheckpoints(self.store, layout.checkpoints_prefix(self.session)),
            self._stops(budget),
            lambda stage: self._stage_version(stage, loaded, framed),
            progress_cb=self._training_progress(budget),
            init_checkpoint=base,
            should_stop=lambda: self.cancel.is_set() or self.purged(),
        )
        self._stop_if_asked(result)
        return Trained(result, start_step, self.base_name, base is not None, relevance)

    def evaluate(self, loaded: Loaded, framed: Framed, trained: Trained) -> dict:
        """The held-out figures (trainer.evaluation), the temporal and face options' with and
        without, and what the session was trained on and how: metrics.json's content."""
        from trainer import evaluation

        result, data, test = trained.result, loaded.data, loaded.test
        self.progress("evaluating", result.step, result.step, message="held-out frames: SSIM, PSNR, pose, flicker")
        generator, framing, estimator = result.generator, framed.framing, self.estimators.held_out
        results = evaluation.evaluate(
            self.store, self.session, generator, framing, data, test, result.history, estimator
        )
        results.update(self._record(loaded, framed, trained))
        return results

    def render(self, loaded: Loaded, framed: Framed, trained: Trained, results: dict, folder: Path) -> Video:
        """The reference dance by the final generator, at the camera's own size and aspect (and
        beside the reference dancer), judged on the dance it shows (trainer.fidelity)."""
        step = trained.result.step
        self.progress("rendering", step, step, message="rendering the reference dance")
        dance = self._dance(loaded, framed)
        if loaded.group is not None:
            results["dancers"] = {str(d): v for d, v in sorted(dance.match.items())}
        if dance.note:
            self.warnings.append(dance.note)
            self.progress("rendering", step, step, message=f"{WARNING_PREFIX}{dance.note}")
        return self._render(trained.result.generator, framed.framing, loaded, dance, results, folder)

    def publish_final(self, video: Video, results: dict, step: int) -> Rendition:
        """metrics.json, then the final version behind the visitor's link; a session without
        consent keeps only its video and records from here (infra.retention)."""
        results = self._write_metrics(results)
        self._stop_if_purged("before its video was published")
        rendition = self.versions.publish(
            video.path, "gan", results, final=True, frames=video.frames, picture=video.picture
        )
        self.progress("done", step, step, message=rendition.url[:200])
        if not self.consent:
            discard_unconsented(self.store, self.session)
        return rendition

    # --- purge and stop --------------------------------------------------------------------------
    def purged(self, now: bool = False) -> bool:
        """Whether the session's purge marker is in the store; looked up every purge_check_s (or
        now), and once seen, always true."""
        t = time.monotonic()
        if self._purge_seen or (not now and t - self._purge_looked_at < self.settings.purge_check_s):
            return self._purge_seen
        self._purge_looked_at = t
        try:
            self._purge_seen = self._marker_store.exists(layout.purge_marker_key(self.session))
        except Exception as exc:  # noqa: BLE001 - the store away for a moment: look again next time
            log.warning("session %s: could not look for a purge marker (%s)", self.session, exc)
        return self._purge_seen

    def _stop_if_purged(self, where: str) -> None:
        """Raise Purged, once what this job (and anyone before it) wrote of the session is deleted,
        if the session was purged."""
        if self.purged(now=True):
            raise self._stop_purged(where)

    def _stop_purged(self, where: str) -> Purged:
        gone = self.store.delete_prefix(layout.session_prefix(self.session))
        log.warning("session %s was purged (%s): stopped; %d objects deleted", self.session, where, len(gone))
        return Purged(f"session {self.session} was purged ({where})")

    def _stop_if_asked(self, result) -> None:
        """Training stopped before its budget: purged (Purged) or cancelled (Cancelled)."""
        if result.stop_reason == "stopped":
            self._stop_if_purged(f"during training, at step {result.step}")
            raise Cancelled(f"session {self.session}: stopped at step {result.step}; its checkpoint is kept")

    def _announce(self, rendition: Rendition) -> None:
        self.publish(rendition)

    # --- load ------------------------------------------------------------------------------------
    def _manifest(self) -> dict:
        """The session's manifest (the assembler's), {} where there is none; its consent noted."""
        from dataset import read_manifest

        manifest = read_manifest(self.settings, self.session, store=self.store) or {}
        self.consent = manifest.get("consent") is True
        return manifest

    @staticmethod
    def _representation(manifest: dict) -> str:
        from dataset.representation import DEFAULT_REPRESENTATION, check_representation

        return check_representation(manifest.get("representation", DEFAULT_REPRESENTATION))

    def _split(self, data: TrainingSet, dance) -> tuple:
        """(the held-out split, the samples the figures are measured on); its notes are warnings."""
        cfg = self.config
        poses = data.poses if cfg.holdout == "novel" else None
        # The frames that show the dance's poses stay in training (trainer.training_set.novel_split).
        split = holdout_split(data.cameras, data.seqs, cfg.holdout_fraction, cfg.holdout_gap, poses=poses, dance=dance)
        if split.note:
            self.warnings.append(split.note)
        test = split.test
        if not test.any():
            # Too few frames to hold any out: the figures then describe training frames.
            test = np.zeros(len(data), bool)
            test[-min(4, len(data)) :] = True
            self.warnings.append("too few frames to hold any out: the quality figures are on training frames")
        return split, test

    # --- frame -----------------------------------------------------------------------------------
    def _conditioning(self, manifest: dict) -> str:
        """What the generator reads besides the pose map: asked (trainer option, else the manifest),
        else the default; a resumed session keeps the generator it started (an upgrade may have
        changed the default)."""
        from trainer.warp_framing import chosen_conditioning

        asked = self.config.conditioning or manifest.get("conditioning")
        conditioning, started = chosen_conditioning(asked, self.config.temporal), self._started_conditioning()
        if started not in (None, conditioning):
            self.warnings.append(f"resuming a session that started with {started} conditioning: it keeps it")
            return started
        return conditioning

    def _started_conditioning(self) -> str | None:
        """What an earlier attempt of this session's generator read (its latest checkpoint), or None."""
        from trainer.pix2pix import checkpoint as ckpt

        store = StoreCheckpoints(self.store, layout.checkpoints_prefix(self.session))
        name = ckpt.latest_checkpoint(store)
        if name is None:
            return None
        try:
            state = ckpt.from_bytes(store.load(name))
        except Exception:  # noqa: BLE001 - unreadable: the resume itself reports it
            return None
        return str(state.get("train", {}).get("data", {}).get("conditioning", "pose"))

    def _warn_if_not_conditioned(self, manifest: dict, conditioning: str, framed: Framed) -> None:
        asked = self.config.conditioning or manifest.get("conditioning")
        inputs = framed.recipe[1]
        if (
            asked not in (None, "pose")
            and inputs.get("conditioning", "pose") == "pose"
            and framed.framing.name != "person"
        ):
            self.warnings.append(
                f"{conditioning} conditioning needs the person framing: the generator reads the pose map"
            )

    # --- train -----------------------------------------------------------------------------------
    def _pick_base(self, net, inputs: dict) -> tuple[bytes | None, str]:
        """(the promoted base's checkpoint whose configuration is the session's, or None; why)."""
        from trainer.base_registry import pick_base

        base, self.base_name, why = pick_base(self.store, net, inputs)
        if base is None:
            log.warning("session %s: %s; fine-tuning starts from scratch", self.session, why)
        return base, why

    def _show_warnings(self) -> None:
        for warning in self.warnings:
            log.warning("session %s: %s", self.session, warning)
            self.progress("loading", message=f"{WARNING_PREFIX}{warning}")

    def _remaining_budget(self) -> float:
        """The budget counts from the first attempt: a resumed session gets what is left of it."""
        key = layout.checkpoints_prefix(self.session) + "started.json"
        raw = self.store.get(key)
        if raw is None:
            self.store.put(key, json.dumps({"wall_time": time.time()}).encode(), "application/json")
            return self.config.budget_s
        spent = time.time() - json.loads(raw)["wall_time"]
        return max(self.config.budget_s - spent, min(60.0, self.config.budget_s * 0.1))

    def _samples(self, loaded: Loaded, framed: Framed) -> tuple[object, dict]:
        """(the training samples, how they are drawn): each training frame repeated by its relevance
        to the dance (nearer the dance's poses: oftener, trainer.coverage) where there is one sample
        per frame (temporal samples skip some: kept as they are). The dance's poses no training
        frame shows become a warning."""
        from trainer.coverage import Repeated, training_relevance, uncovered_words

        data, ref = loaded.data, loaded.ref
        train_idx = np.flatnonzero(loaded.split.train)
        counts, relevance = training_relevance(ref.poses, data.poses, data.cameras, train_idx)
        relevance["sampling"] = "by relevance to the dance"
        words = uncovered_words(relevance, ref.times)
        if words:
            self.warnings.append(words)
        samples = framed.framing.training_samples(data, train_idx, framed.masks)
        if len(samples) == len(train_idx):
            return Repeated(samples, counts), relevance
        relevance["sampling"] = "off: the samples are not one per training frame"
        return samples, relevance

    def _stops(self, budget: float) -> list[float]:
        """Seconds from now at which a version is published (trainer.progressive.stops)."""
        from trainer.progressive import stops

        cfg = self.config
        spent = max(0.0, cfg.budget_s - budget)
        return stops(cfg.budget_s, cfg.rendition_points, cfg.first_rendition_s, spent, len(self.versions.listed()))

    def _training_progress(self, budget: float) -> Callable[[int, int, dict, float], None]:
        """The training loop's progress callback: a progress message every progress_every_s."""
        last = {"t": 0.0}

        def on_progress(step: int, total: int, losses: dict, eta: float) -> None:
            now = time.monotonic()
            if now - last["t"] >= self.config.progress_every_s:
                last["t"] = now
                self.progress(
                    "training",
                    step,
                    total,
                    {k: float(v) for k, v in losses.items()},
                    elapsed=budget - eta if eta <= budget else 0.0,
                    eta=eta,
                )

        return on_progress

    def _dance(self, loaded: Loaded, framed: Framed):
        """The reference dance on the session's person (loaded.dance) or group (trainer.group: built
        once, at the first version that renders it)."""
        if loaded.dance is not None:
            return loaded.dance
        if not self._dance_made:
            cfg = self.config
            match = parse_match(cfg.match) if cfg.match else None
            self._dance_made.append(
                build_group_dance(
                    loaded.ref,
                    loaded.name,
                    loaded.data,
                    loaded.camera,
                    match,
                    cfg.max_render_frames,
                    framed.framing.slots,
                )
            )
        return self._dance_made[0]

    # --- evaluate --------------------------------------------------------------------------------
    def _record(self, loaded: Loaded, framed: Framed, trained: Trained) -> dict:
        """What metrics.json records of the session's training: its start, steps and time, the
        frames trained on and held out, the inputs, the warnings (the list itself: the render
        phase's join it) and the coverage of the dance."""
        result, data, camera, split = trained.result, loaded.data, loaded.camera, loaded.split
        return dict(
            warm_start=trained.warm,
            base_model=trained.base,
            base_version=int(trained.base.split("v")[-1]) if trained.base else 0,
            steps=result.step,
            start_step=trained.start_step,
            train_seconds=result.elapsed_s,
            step_seconds=sum(h.get("step_s", 0.0) for h in result.history),
            samples=len(data),
            trained_on=int(split.train.sum()),
            holdout_gap=split.gap,
            holdout=self.config.holdout,
            representation=loaded.representation,
            camera=camera,
            width=data.camera_size(camera)[0],
            height=data.camera_size(camera)[1],
            warnings=self.warnings,
            coverage={"capture": loaded.manifest.get("coverage"), "training": trained.relevance},
            **framed.recipe[1],
            **framed.info,
        )

    # --- render and publish ----------------------------------------------------------------------
    def _render(self, generator, framing, loaded: Loaded, dance, results: dict, folder: Path) -> Video:
        """rendition.mp4 in folder (and side-by-side.mp4 stored); its figures into results."""
        from trainer.rendition import count_frames

        out, side = folder / "rendition.mp4", folder / "side.mp4"
        dancer = reference_frames(self.store, dance.ref, len(dance.poses), folder) if self.config.side_by_side else None
        side_path = side if dancer is not None else None
        picture = self._render_judged(
            generator, framing, loaded, dance, out, results, side_by_side=dancer, side_path=side_path
        )
        count = count_frames(out)
        if dancer is not None:
            self.store.put(layout.result_key(self.session, "side-by-side.mp4"), side.read_bytes(), "video/mp4")
            results["side_by_side_frames"] = count_frames(side)
        results["rendition_frames"] = count
        return Video(out, count, picture)

    def _write_metrics(self, results: dict) -> dict:
        """metrics.json with the version it describes; NaN (e.g. no keypoint comparable) is written
        as null: JSON and the schemas have no NaN."""
        results["version"] = self.versions.next_number()
        results = {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in results.items()}
        self.store.put(
            layout.result_key(self.session, "metrics.json"), json.dumps(results, indent=2).encode(), "application/json"
        )
        return results

    def _stage_version(self, stage, loaded: Loaded, framed: Framed) -> Rendition:
        """A version from the generator as training stands (trainer.progressive): the dance rendered,
        its held-out figures measured (no pose check: that waits for the final evaluation)."""
        from trainer.evaluation import version_figures

        self.progress("training", stage.step, stage.step, message=f"rendering a version at step {stage.step}")
        generator, framing, data, camera = stage.generator, framed.framing, loaded.data, loaded.camera
        dance = self._dance(loaded, framed)
        # step_seconds: time in training steps alone (train_seconds also holds set-up and earlier versions).
        step_seconds = sum(h.get("step_s", 0.0) for h in stage.history)
        figures: dict = {"steps": stage.step, "train_seconds": stage.elapsed_s, "step_seconds": step_seconds}
        figures.update(version_figures(generator, framing, data, loaded.test, camera))
        figures["base_version"] = int(self.base_name.split("v")[-1]) if self.base_name else 0
        with tempfile.TemporaryDirectory(prefix="booth-version-") as tmp:
            out = Path(tmp) / "rendition.mp4"
            picture = self._render_judged(generator, framing, loaded, dance, out, figures)
            return self.versions.publish(out, "gan", figures, picture=picture)

    def _publish_oneshot(self, loaded: Loaded) -> None:
        """The first video of the session, before fine-tuning: the visitor's pixels warped part by
        part through the dance (trainer.oneshot), over the stored plate, the booth's background or a
        plate estimated from a spread of frames (trainer.plates.SessionPlates.quick). The person
        masks it makes stay in loaded.plates for the framing. Its failure never costs the session
        its video."""
        from trainer.oneshot import render_oneshot

        self.progress("loading", message="one-shot video: the visitor's own pixels moved through the dance")
        if self.versions.listed():
            # A resumed session: its visitor already has a video at least this good; a preview
            # published now would replace a better version behind their link.
            return
        try:
            camera = loaded.camera
            dance = loaded.dance
            assert dance is not None, "one person's dance"
            with tempfile.TemporaryDirectory(prefix="booth-oneshot-") as tmp:
                out = Path(tmp) / "oneshot.mp4"
                judge = loaded.judge.watcher(dance)
                shot = render_oneshot(
                    self.store,
                    self.session,
                    loaded.data,
                    loaded.split.train,
                    dance.poses,
                    loaded.plates.quick(camera, loaded.split.train),
                    mask_of=loaded.plates.masks.of,
                    camera=camera,
                    out_path=out,
                    judge=judge,
                )
                self.warnings += shot.warnings  # shown with the others before training starts
                figures = shot.metrics()
                # The first video does not wait for the floor (a second of the judge): GAN versions carry it.
                fidelity = loaded.judge.verdict(judge, floor=False)
                figures.update(fidelity.figures)
                for warning in fidelity.warnings:  # shown with the others before training starts
                    if warning not in self.warnings:
                        self.warnings.append(warning)
                self.versions.publish(out, "preview", figures, frames=shot.frames, picture=fidelity.picture)
        except Purged:
            raise
        except Exception as exc:  # noqa: BLE001 - the fine-tuned video still comes
            self.warnings.append(f"no one-shot video: {type(exc).__name__}: {exc}")
            return
        log.info("session %s: one-shot video in %.1f s", self.session, shot.seconds)

    # --- rendering a version, judged on its dance (trainer.rendition, trainer.fidelity) -------------
    def _render_judged(
        self, generator, framing, loaded: Loaded, dance, out: Path, figures: dict, **video
    ) -> np.ndarray | None:
        """The dance by the generator into `out` (trainer.rendition.write_video, `video` its
        options), judged as it is written (trainer.fidelity): the judge's figures into `figures`,
        its new warnings kept and shown; the picture (dance.png)."""
        from trainer.rendition import write_video

        judge = loaded.judge.watcher(dance)
        frames = framing.frames(generator, dance.poses, loaded.camera, maps=dance.maps)
        frames = frames if judge is None else judge.watch(frames)
        write_video(frames, len(dance.poses), out, 30, progress=self.config.progress_bar, **video)
        fidelity = loaded.judge.verdict(judge)
        figures.update(fidelity.figures)
        for warning in fidelity.warnings:
            if warning not in self.warnings:
                self.warnings.append(warning)
                log.warning("session %s: %s", self.session, warning)
                self.progress("rendering", message=f"{WARNING_PREFIX}{warning}")
        return fidelity.picture

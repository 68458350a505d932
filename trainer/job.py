"""One session's training job: dataset -> one-shot video (trainer.oneshot, published at once) ->
fine-tuning (warm-started when a base fits) -> evaluation -> rendition of the reference dance ->
results and a presigned link in the store.

Objects per session (schemas.layout): checkpoints/ (resumable training state, started.json),
plates/ (the background plate per camera, person framing), results/ (oneshot.mp4, rendition.mp4: the newest
version, rendition-v<n>.mp4: each version, versions.json, side-by-side.mp4, samples.png,
loss.png, metrics.json).

Versions (trainer.progressive): a first video shortly after training starts, better ones at
points of the budget, the final one at its end; each a Rendition with its version, kind and
figures, published through `_publish_version`; the visitor's link plays rendition.mp4, the newest.

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
from infra.retention import discard_unconsented, video_link_expiry_s
from infra.settings import Settings
from schemas import DatasetReady, Rendition, layout
from trainer.checkpoints import StoreCheckpoints
from trainer.dance import build_dance, load_reference, reference_frames, reference_name
from trainer.framing import DEFAULT_STYLES, FRAMINGS, WholeFrame
from trainer.group import build_group_dance, group_framing, parse_match
from trainer.progressive import DEFAULT_FIRST_S, DEFAULT_POINTS, check_points
from trainer.training_set import (
    DEFAULT_HOLDOUT_FRACTION,
    DEFAULT_HOLDOUT_GAP,
    DEFAULT_SPLIT,
    SPLITS,
    DatasetError,
    TrainingSet,
    holdout_split,
    load_training_set,
)

CUDA_BATCH = 8  # samples per step on a GPU: a 512 crop's fast networks use a few GiB (not yet measured on a card)
WARNING_PREFIX = "warning: "  # progress messages that are warnings (the status view and console list them)

log = logging.getLogger(__name__)

# (phase, step, total, losses, elapsed_s, eta_s, message)
Progress = Callable[..., None]


@dataclass(frozen=True)
class TrainerConfig:
    budget_s: float = 3600.0  # wall clock for fine-tuning one session
    checkpoint_every_s: float = 180.0
    holdout_fraction: float = DEFAULT_HOLDOUT_FRACTION  # of each camera's session, held out
    holdout_gap: int = DEFAULT_HOLDOUT_GAP  # frames between training and held-out ones, used for neither
    holdout: str = DEFAULT_SPLIT  # "novel": the poses least like the rest held out; "tail": the last frames
    framing: str = "auto"  # "person", "whole", or "auto" (person for pose maps, whole for part maps)
    crop_size: int | None = None  # person framing's generator size: None = 512 where CUDA is, else 256
    batch_size: int | None = None  # None: CUDA_BATCH where CUDA is (float16 autocast there), else 1
    posemap_style: str | None = None  # None: the framing's default (vision.posemap STYLES)
    person_masks: str = "auto"  # vision.personmask: "auto", "blazepose" or "silhouette"
    # Person framing only (trainer.coherent): frames conditioned on the previous one; a face residual.
    # Defaults from bench.bench_temporal (docs/generation.md): on a CPU budget temporal training halves the steps
    # and loses on every figure; the face residual costs ~4% of a step and sharpens the face box.
    temporal: bool = False
    face: bool = True
    # The generator reads the pose map ("pose") or also the visitor warped to the pose ("warp"), with
    # maps of where that warp is unreliable ("warp-reliable", trainer.warp_reliability);
    # None: what the session's manifest asks for (the assembler's --conditioning), else "pose".
    conditioning: str | None = None
    reference: str | None = None  # used when the session names none (else settings.default_reference)
    side_by_side: bool = True
    max_render_frames: int | None = None
    progress_every_s: float = 1.0
    device: str | None = None
    progress_bar: bool = True
    rendition_points: tuple[float, ...] = DEFAULT_POINTS  # shares of the budget with a version (trainer.progressive)
    first_rendition_s: float | None = DEFAULT_FIRST_S  # a first version after this much training; None: none
    match: str | None = None  # several visitors: "dancer:visitor,..." instead of left to right (trainer.group)

    def __post_init__(self) -> None:
        check_points(self.rendition_points)
        from vision.personmask import KINDS
        from vision.posemap import check_style

        if self.match is not None:
            parse_match(self.match)
        if self.framing not in ("auto", *FRAMINGS):
            raise ValueError(f"unknown framing {self.framing!r}; choose auto, {', '.join(FRAMINGS)}")
        if self.crop_size is not None and (self.crop_size < 16 or self.crop_size & (self.crop_size - 1)):
            raise ValueError(f"the crop size must be a power of two of at least 16, got {self.crop_size}")
        if self.posemap_style is not None:
            check_style(self.posemap_style)
        from trainer.warp_framing import CONDITIONINGS

        if self.conditioning is not None and self.conditioning not in CONDITIONINGS:
            raise ValueError(f"unknown conditioning {self.conditioning!r}; choose one of {', '.join(CONDITIONINGS)}")
        if self.conditioning not in (None, "pose") and self.framing == "whole":
            raise ValueError(
                f"{self.conditioning} conditioning moves the visitor's pixels into the person's crop: "
                "use framing person"
            )
        if self.holdout not in SPLITS:
            raise ValueError(f"unknown held-out split {self.holdout!r}; choose one of {', '.join(SPLITS)}")
        if self.person_masks not in KINDS:
            raise ValueError(f"unknown person mask source {self.person_masks!r}; choose one of {', '.join(KINDS)}")


def recipe(framing) -> tuple:
    """(NetConfig, what the model learnt from) for a framing: the generator's inputs and outputs
    follow it. One place, so a base model built on earlier sessions (trainer.base) has exactly the
    network and the recorded inputs of a session that would warm-start from it."""
    from trainer.pix2pix.networks import NetConfig
    from trainer.pix2pix.sequence import in_channels

    temporal, face = bool(getattr(framing, "temporal", False)), bool(getattr(framing, "face", False))
    net = NetConfig.fast(
        framing.size,
        matte=framing.name == "person",
        in_channels=getattr(framing, "channels", in_channels(temporal)),
        residual=getattr(framing, "residual", None),
    )
    data_info = {
        "framing": framing.name,
        "posemap_style": framing.style,
        "size": framing.size,
        "temporal": temporal,
        "face": face,
    }
    if getattr(framing, "conditioning", "pose") != "pose":
        data_info["conditioning"] = framing.conditioning
    return net, data_info


class Cancelled(Exception):
    """The job was asked to stop (its partition went to another trainer); its checkpoint stays."""


class Purged(Exception):
    """The session was purged: the job stopped and deleted what it had written; nothing published."""


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
    ):
        self.settings, self.config, self.ready = settings, config, ready
        self.session = ready.session
        self.progress, self.publish = progress, publish
        self.cancel = cancel or threading.Event()
        self.store = ObjectStore(settings)
        # One try per look: a store that is away must not hold up training (the next look retries).
        self._marker_store = ObjectStore(settings, attempts=1)
        self._purge_seen = False
        self._purge_looked_at = -float("inf")
        self.consent = False

    # --- purge ---------------------------------------------------------------------------------
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

    def _stop_purged(self, where: str) -> Purged:
        """Delete what this job (and anyone before it) wrote of the purged session."""
        gone = self.store.delete_prefix(layout.session_prefix(self.session))
        log.warning("session %s was purged (%s): stopped; %d objects deleted", self.session, where, len(gone))
        return Purged(f"session {self.session} was purged ({where})")

    def run(self) -> Rendition:
        from dataset import read_manifest
        from dataset.representation import DEFAULT_REPRESENTATION, check_representation
        from trainer.base_registry import pick_base
        from trainer.coverage import Repeated
        from trainer.pix2pix.train import TrainConfig, pick_device
        from trainer.progressive import fine_tune_in_stages, stops

        s, cfg, session = self.settings, self.config, self.session
        if self.purged(now=True):
            raise self._stop_purged("before training")
        self.progress("loading", message="reading the dataset")
        manifest = read_manifest(s, session, store=self.store) or {}
        self.consent = manifest.get("consent") is True
        representation = check_representation(manifest.get("representation", DEFAULT_REPRESENTATION))
        # The reference is checked before the budget is spent, not after.
        name = reference_name(s, session, self.ready.reference, cfg.reference)
        made = None if self.consent else self._made_earlier(name)
        if made is not None:
            return made
        ref = load_reference(s, session, name, representation)
        self._reference_name, self.base_name = name, None
        data = load_training_set(s, session, store=self.store, expected=manifest.get("samples"))
        self._data = data
        poses = data.poses if cfg.holdout == "novel" else None
        split = holdout_split(data.cameras, data.seqs, cfg.holdout_fraction, cfg.holdout_gap, poses=poses)
        self.warnings: list[str] = [split.note] if split.note else []
        test = split.test
        if not test.any():
            # Too few frames to hold any out: the figures then describe training frames.
            test = np.zeros(len(data), bool)
            test[-min(4, len(data)) :] = True
            self.warnings.append("too few frames to hold any out: the quality figures are on training frames")
        train_idx = np.flatnonzero(split.train)

        # The one-shot video first: it needs the person masks of a few frames only (kept for the
        # framing's), so the visitor has a video seconds after the dataset, before the slow part.
        group = group_framing(manifest, data, representation, cfg.framing, cfg.posemap_style)  # several visitors
        mask_cache: dict[int, np.ndarray] = {}
        if group is None:  # the part warper moves one person: a group gets its first video from training
            self._publish_oneshot(ref, name, data, split.train, mask_cache)
        from trainer.warp_framing import chosen_conditioning

        asked = cfg.conditioning or manifest.get("conditioning")
        conditioning, started = chosen_conditioning(asked, cfg.temporal), self._started_conditioning()
        if started not in (None, conditioning):
            # A resumed session keeps the generator it started (an upgrade may have changed the default).
            self.warnings.append(f"resuming a session that started with {started} conditioning: it keeps it")
            conditioning = started
        device = pick_device(cfg.device).type
        framing, masks, info = group or self._framing(
            data, split.train, representation, device, conditioning, mask_cache
        )
        net, data_info = recipe(framing)
        temporal, face = data_info["temporal"], data_info["face"]
        if asked not in (None, "pose") and data_info.get("conditioning", "pose") == "pose" and framing.name != "person":
            self.warnings.append(
                f"{conditioning} conditioning needs the person framing: the generator reads the pose map"
            )
        counts, relevance = self._relevance(ref, data, train_idx)
        base, base_name, why = pick_base(self.store, net, data_info)
        if base is None:
            log.warning("session %s: %s; fine-tuning starts from scratch", session, why)
        for warning in self.warnings:
            log.warning("session %s: %s", session, warning)
            self.progress("loading", message=f"{WARNING_PREFIX}{warning}")
        train_cfg = TrainConfig(
            net=net,
            batch_size=cfg.batch_size or (CUDA_BATCH if device == "cuda" else 1),
            amp=True,  # float16 autocast and a gradient scaler, on CUDA only (trainer.pix2pix.train)
            checkpoint_every_s=cfg.checkpoint_every_s,
            device=cfg.device,
            progress_bar=cfg.progress_bar,
            data=data_info,
            temporal=temporal,
            face=face,
        )
        store = StoreCheckpoints(self.store, layout.checkpoints_prefix(session))
        budget = self._remaining_budget()
        self.progress("training", message=why)
        self.base_name = base_name
        camera = data.main_camera()
        main = np.flatnonzero(data.cameras == camera)
        dance_box: list = []

        def the_dance():
            if not dance_box and group is not None:
                match = parse_match(cfg.match) if cfg.match else None
                dance_box.append(
                    build_group_dance(ref, name, data, camera, match, cfg.max_render_frames, framing.slots)
                )
            if not dance_box:
                dance_box.append(
                    build_dance(
                        s,
                        ref,
                        name,
                        data.poses[main],
                        data.camera_size(camera),
                        data.size,
                        representation,
                        cfg.max_render_frames,
                    )
                )
            return dance_box[0]

        def on_stage(stage) -> None:
            self.progress("training", stage.step, stage.step, message=f"rendering a version at step {stage.step}")
            self._stage_version(stage, framing, data, test, camera, the_dance())

        last = {"t": 0.0}

        def on_progress(step: int, total: int, losses: dict, eta: float) -> None:
            now = time.monotonic()
            if now - last["t"] >= cfg.progress_every_s:
                last["t"] = now
                self.progress(
                    "training",
                    step,
                    total,
                    {k: float(v) for k, v in losses.items()},
                    elapsed=budget - eta if eta <= budget else 0.0,
                    eta=eta,
                )

        spent = max(0.0, cfg.budget_s - budget)
        at = stops(cfg.budget_s, cfg.rendition_points, cfg.first_rendition_s, spent, len(self._versions()))
        samples = framing.training_samples(data, train_idx, masks)
        if len(samples) == len(train_idx):  # one sample per frame (temporal samples skip some: kept as they are)
            samples = Repeated(samples, counts)
        else:
            relevance["sampling"] = "off: the samples are not one per training frame"
        result, start_step = fine_tune_in_stages(
            samples,
            train_cfg,
            budget,
            store,
            at,
            on_stage,
            progress_cb=on_progress,
            init_checkpoint=base,
            should_stop=lambda: self.cancel.is_set() or self.purged(),
        )
        if result.stop_reason == "stopped":
            if self.purged(now=True):
                raise self._stop_purged(f"during training, at step {result.step}")
            raise Cancelled(f"session {session}: stopped at step {result.step}; its checkpoint is kept")
        generator = result.generator
        self.progress("evaluating", result.step, result.step, message="held-out frames: SSIM, PSNR, pose, flicker")
        from trainer.evaluation import evaluate

        results = evaluate(s, self.store, session, generator, framing, data, test, result.history)
        results.update(self._with_and_without(generator, framing, data, test))
        results.update(
            warm_start=base is not None,
            base_model=base_name,
            base_version=int(base_name.split("v")[-1]) if base_name else 0,
            steps=result.step,
            start_step=start_step,
            train_seconds=result.elapsed_s,
            step_seconds=sum(h.get("step_s", 0.0) for h in result.history),
            samples=len(data),
            trained_on=int(split.train.sum()),
            holdout_gap=split.gap,
            holdout=cfg.holdout,
            representation=representation,
            camera=camera,
            width=data.camera_size(camera)[0],
            height=data.camera_size(camera)[1],
            warnings=self.warnings,
            coverage={"capture": manifest.get("coverage"), "training": relevance},
            **data_info,
            **info,
        )
        self.progress("rendering", result.step, result.step, message="rendering the reference dance")
        dance = the_dance()
        if group is not None:
            results["dancers"] = {str(d): v for d, v in sorted(dance.match.items())}
        if dance.note:
            self.warnings.append(dance.note)
            self.progress("rendering", result.step, result.step, message=f"{WARNING_PREFIX}{dance.note}")
        rendition = self._render(generator, framing, camera, dance, results)
        self.progress("done", result.step, result.step, message=rendition.url[:200])
        if not self.consent:
            discard_unconsented(self.store, session)
        return rendition

    def _relevance(self, ref, data, train_idx: np.ndarray) -> tuple[np.ndarray, dict]:
        """Per training frame, how often it is drawn (nearer the dance's poses: oftener,
        trainer.coverage); the dance's poses no training frame shows become a warning."""
        from trainer.coverage import training_relevance, uncovered_words

        counts, summary = training_relevance(ref.poses, data.poses, data.cameras, train_idx)
        summary["sampling"] = "by relevance to the dance"
        words = uncovered_words(summary, ref.times)
        if words:
            self.warnings.append(words)
        return counts, summary

    def _made_earlier(self, name: str) -> Rendition | None:
        """A session without consent whose video was made and whose frames are already discarded
        (a redelivery after a crash before the commit): its Rendition again, with a fresh link."""
        video_key = layout.result_key(self.session, "rendition.mp4")
        listed = self.store.list_info(video_key)
        if not listed or self.store.list(layout.shards_prefix(self.session)):
            return None
        raw = self.store.get(layout.result_key(self.session, "metrics.json"))
        results = json.loads(raw) if raw else {}
        frames = int(results.get("rendition_frames") or 0)
        last = (self._versions() or [{}])[-1]
        rendition = self._rendition(
            video_key, listed[0].written_at, name, frames, results, version=last.get("version", 1), final=True
        )
        self.publish(rendition)
        discard_unconsented(self.store, self.session)
        log.info("session %s: its video was made earlier; published again", self.session)
        return rendition

    def _rendition(
        self, video_key: str, written_at: float, name: str, frames: int, results: dict, **version
    ) -> Rendition:
        """The Rendition of a video; its link plays the session's rendition.mp4 (the newest version)."""
        expiry = video_link_expiry_s(self.settings, written_at)
        return Rendition(
            session=self.session,
            reference=name,
            video_key=video_key,
            url=self.store.presign(layout.result_key(self.session, "rendition.mp4"), expiry),
            expires_at=time.time() + expiry,
            frames=frames,
            metrics={
                k: float(v)
                for k, v in results.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)
            },
            wall_time=time.time(),
            **version,
        )

    # --- versions --------------------------------------------------------------------------------
    def _versions(self) -> list[dict]:
        """The versions published so far (versions.json), oldest first."""
        raw = self.store.get(layout.result_key(self.session, "versions.json"))
        return list(json.loads(raw)["versions"]) if raw else []

    def _publish_version(
        self,
        video_path: Path,
        kind: str,
        metrics: dict,
        *,
        final: bool = False,
        frames: int | None = None,
        picture: np.ndarray | None = None,
    ) -> Rendition:
        """Publish a video of the session as its next version: stored under its own key, copied to
        rendition.mp4 (the visitor's link plays the newest), recorded with its figures in
        versions.json, then announced. A published version is never overwritten: a resumed job
        numbers on from versions.json. kind: "gan" (the generator) or "preview" (training-free)."""
        from trainer.rendition import count_frames

        versions = self._versions()
        n = max((v["version"] for v in versions), default=0) + 1
        video = video_path.read_bytes()
        own_key = layout.rendition_version_key(self.session, n)
        stable = layout.result_key(self.session, "rendition.mp4")
        frames = count_frames(video_path) if frames is None else frames
        self.store.put(own_key, video, "video/mp4")
        if picture is not None:  # the dance asked | rendered (trainer.fidelity), beside the video
            from trainer.pix2pix.samples import png_bytes

            png = png_bytes(picture)
            self.store.put(layout.dance_picture_key(self.session, n), png, "image/png")
            self.store.put(layout.result_key(self.session, "dance.png"), png, "image/png")
        written_at = time.time()  # no later than the store's own time for it: the link expires first
        self.store.put(stable, video, "video/mp4")
        figures = {
            k: float(v)
            for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)
        }
        figures.pop("version", None)
        versions.append(
            {**figures, "version": n, "kind": kind, "final": final, "key": own_key, "wall_time": written_at}
        )
        self.store.put(
            layout.result_key(self.session, "versions.json"),
            json.dumps({"versions": versions}, indent=2).encode(),
            "application/json",
        )
        if self.purged(now=True):
            raise self._stop_purged(f"before version {n} of its video was published")
        # The final version's key is the stable one: it is what a session without consent keeps.
        rendition = self._rendition(
            stable if final else own_key,
            written_at,
            self._reference_name,
            frames,
            {**figures, "version": n},
            version=n,
            kind=kind,
            final=final,
        )
        self.publish(rendition)
        log.info("session %s: version %d (%s%s) %s", self.session, n, kind, ", final" if final else "", rendition.url)
        return rendition

    def _stage_version(self, stage, framing, data: TrainingSet, test: np.ndarray, camera: str, dance) -> Rendition:
        """A version from the generator as training stands (trainer.progressive): the dance rendered,
        its held-out figures measured (no pose check: that waits for the final evaluation)."""
        from trainer.evaluation import held_out_frames
        from trainer.pix2pix.evaluate import video_quality
        from trainer.rendition import write_video

        generator = stage.generator
        # step_seconds: time in training steps alone (train_seconds also holds set-up and earlier versions).
        step_seconds = sum(h.get("step_s", 0.0) for h in stage.history)
        figures: dict = {"steps": stage.step, "train_seconds": stage.elapsed_s, "step_seconds": step_seconds}
        cams = held_out_frames(generator, framing, data, test)
        if camera in cams:
            real, fake, _maps, poses = cams[camera]
            q = video_quality(real, fake, poses)
            figures.update({k: q[k] for k in ("box_psnr", "box_ssim", "psnr", "ssim")})
        figures["base_version"] = int(self.base_name.split("v")[-1]) if self.base_name else 0
        judge = self._judge(dance, data)
        with tempfile.TemporaryDirectory(prefix="booth-version-") as tmp:
            out = Path(tmp) / "rendition.mp4"
            frames = framing.frames(generator, dance.poses, camera, maps=dance.maps)
            write_video(self._watched(judge, frames), len(dance.poses), out, 30, progress=self.config.progress_bar)
            picture = self._judged(judge, figures)
            return self._publish_version(out, "gan", figures, picture=picture)

    def _judge(self, dance, data: TrainingSet):
        """A DanceJudge for a video of this dance (trainer.fidelity), or None for a group's dance."""
        from trainer.fidelity import DanceJudge

        poses = np.asarray(dance.poses)
        if poses.ndim != 3:  # several dancers: judged one person at a time is not done yet
            return None
        drawn_by = (getattr(dance.ref, "meta", None) or {}).get("backend")
        camera = data.main_camera()
        return DanceJudge(poses, drawn_by, self.settings.models_dir, session_poses=data.poses[data.cameras == camera])

    @staticmethod
    def _watched(judge, frames):
        return frames if judge is None else judge.watch(frames)

    def _judged(self, judge, figures: dict, show: bool = True) -> np.ndarray | None:
        """Judge the frames kept: its figures into `figures`, its new warnings kept (and shown, or
        left for the list shown before training); the picture."""
        if judge is None:
            return None
        fidelity = judge.judge()
        figures.update(fidelity.figures)
        for warning in fidelity.warnings:
            if warning not in self.warnings:
                self.warnings.append(warning)
                if show:
                    log.warning("session %s: %s", self.session, warning)
                    self.progress("rendering", message=f"{WARNING_PREFIX}{warning}")
        return fidelity.picture

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

    def _framing(
        self,
        data,
        train: np.ndarray,
        representation: str,
        device: str,
        conditioning: str | None = None,
        masks: dict[int, np.ndarray] | None = None,
    ):
        """(framing, person masks of the training samples or None, what to record about them);
        conditioning: None for the trainer's choice from its config (trainer.warp_framing); masks:
        those already made (index -> uint8 mask), kept and completed."""
        from trainer.warp_framing import chosen_conditioning

        cfg = self.config
        conditioning = conditioning or chosen_conditioning(cfg.conditioning, cfg.temporal)
        kind = cfg.framing
        if kind == "auto":
            kind = "person" if representation == "pose" else "whole"
        if kind == "person" and representation != "pose":
            raise DatasetError(
                f"session {self.session} is in the {representation!r} representation: person-centred generation "
                "draws pose maps in the crop, so it needs the 'pose' representation (or train with framing whole)"
            )
        sizes = {c: data.camera_size(c) for c in data.camera_names()}
        if kind == "whole" and (cfg.temporal or cfg.face):
            self.warnings.append("the temporal and face options are for the person framing: this session has neither")
        if kind == "whole":
            return WholeFrame(data.size, cfg.posemap_style or DEFAULT_STYLES["whole"], representation, sizes), None, {}
        from trainer.coherent import CoherentPersonCentred
        from trainer.pix2pix.face import MIN_FACE_CROP
        from trainer.plates import camera_plates
        from vision.crop import crop_side
        from vision.personmask import PersonMasker

        idx = np.flatnonzero(train)
        sides = {}
        try:
            for camera in sizes:
                sides[camera] = crop_side(data.poses[idx[data.cameras[idx] == camera]])
        except ValueError as exc:
            self.warnings.append(f"{exc}: the whole frame is used instead of a crop around the person")
            if cfg.temporal or cfg.face:
                self.warnings.append("the temporal and face options are for the person framing: not used")
            return WholeFrame(data.size, cfg.posemap_style or DEFAULT_STYLES["whole"], representation, sizes), None, {}
        masker = PersonMasker(cfg.person_masks, self.settings.models_dir)
        if masker.why:
            self.warnings.append(masker.why)
        masks = {} if masks is None else masks  # uint8, 255 = person: a quarter of float32's memory
        last = time.monotonic()
        for k, i in enumerate(idx):
            if int(i) not in masks:
                masks[int(i)] = np.round(masker.mask(data.frames[i], data.poses[i]) * 255).astype(np.uint8)
            if time.monotonic() - last >= self.config.progress_every_s:
                last = time.monotonic()
                self.progress("loading", k, len(idx), message=f"person masks ({masker.name}) {k}/{len(idx)}")
        if masker.fallbacks:
            self.warnings.append(
                f"BlazePose found nobody where the pose is in {masker.fallbacks} of {len(idx)} training frames: "
                "their masks are drawn from the pose"
            )
        cut = _cut_off_share(data, idx)
        if cut > 0.2:
            self.warnings.append(
                f"the person is cut off by the frame's edge in {cut:.0%} of the training frames: "
                "what lies outside is never learnt"
            )
        self.progress("loading", message="background plates")
        plates = camera_plates(self.store, self.session, data, train, masks, masker.name, self.warnings)
        crop = cfg.crop_size or (512 if device == "cuda" else 256)
        face = cfg.face
        if face and crop < MIN_FACE_CROP:
            face = False
            self.warnings.append(
                f"a {crop} px crop is too small for a face box (at least {MIN_FACE_CROP}): no face residual"
            )
        framing = CoherentPersonCentred(
            crop,
            cfg.posemap_style or DEFAULT_STYLES["person"],
            {c: p.plate.image for c, p in plates.items()},
            sides,
            temporal=cfg.temporal,
            face=face,
        )
        if conditioning in ("warp", "warp-reliable"):
            from trainer.warp_framing import warp_framing

            try:
                framing = warp_framing(conditioning).from_person(framing, data, train, masks)
            except ValueError as exc:  # no view of the person to warp: the pose map alone
                self.warnings.append(f"{exc}: the generator reads the pose map alone")
            else:
                # Not combined yet: the warped view carries the visitor's own face and appearance
                # frame to frame; metrics.json records temporal and face as off.
                if cfg.temporal:
                    self.warnings.append("the temporal option is not combined with warp conditioning: not used")
        info = {
            "person_masks": masker.name,
            "plate_source": ",".join(sorted({p.source for p in plates.values()})),
            "plate_filled": max(p.plate.filled for p in plates.values()),
            "crop_side_px": round(sides[data.main_camera()], 1),
        }
        return framing, masks, info

    def _with_and_without(self, generator, framing, data, test: np.ndarray) -> dict:
        """The temporal and face options' figures with and without; coherence.png with the results."""
        from trainer.coherence_figures import with_and_without
        from trainer.pix2pix.samples import png_bytes

        figures, picture = with_and_without(generator, framing, data, test)
        if picture is not None:
            self.store.put(layout.result_key(self.session, "coherence.png"), png_bytes(picture), "image/png")
        return figures

    def _publish_oneshot(self, ref, name: str, data, train: np.ndarray, masks: dict[int, np.ndarray]) -> None:
        """The first video of the session, before fine-tuning: the visitor's pixels warped part by
        part through the dance (trainer.oneshot), over the booth's background or a plate estimated
        from a spread of frames. The person masks it makes are left in `masks` (uint8, as the
        framing keeps them). Its failure never costs the session its video."""
        from trainer.oneshot import render_oneshot, stored_plate
        from vision.personmask import PersonMasker

        s, cfg = self.settings, self.config
        self.progress("loading", message="one-shot video: the visitor's own pixels moved through the dance")
        maskers: list[PersonMasker] = []

        def mask_of(i: int) -> np.ndarray:
            if i not in masks:
                if not maskers:
                    maskers.append(PersonMasker(cfg.person_masks, s.models_dir))
                masks[i] = np.round(maskers[0].mask(data.frames[i], data.poses[i]) * 255).astype(np.uint8)
            return masks[i]

        if self._versions():
            # A resumed session: its visitor already has a video at least this good; a preview
            # published now would replace a better version behind their link.
            return
        try:
            camera = data.main_camera()
            main = np.flatnonzero(data.cameras == camera)
            size = data.camera_size(camera)
            dance = build_dance(s, ref, name, data.poses[main], size, data.size, "pose", cfg.max_render_frames)
            plate = stored_plate(self.store, self.session, camera, size)
            with tempfile.TemporaryDirectory(prefix="booth-oneshot-") as tmp:
                out = Path(tmp) / "oneshot.mp4"
                judge = self._judge(dance, data)
                shot = render_oneshot(
                    self.store,
                    self.session,
                    data,
                    train,
                    dance.poses,
                    plate,
                    mask_of=mask_of,
                    camera=camera,
                    out_path=out,
                    judge=judge,
                )
                self.warnings += shot.warnings  # shown with the others before training starts
                figures = shot.metrics()
                picture = self._judged(judge, figures, show=False)
                self._publish_version(out, "preview", figures, frames=shot.frames, picture=picture)
        except Purged:
            raise
        except Exception as exc:  # noqa: BLE001 - the fine-tuned video still comes
            self.warnings.append(f"no one-shot video: {type(exc).__name__}: {exc}")
            return
        log.info("session %s: one-shot video in %.1f s", self.session, shot.seconds)

    def _remaining_budget(self) -> float:
        """The budget counts from the first attempt: a resumed session gets what is left of it."""
        key = layout.checkpoints_prefix(self.session) + "started.json"
        raw = self.store.get(key)
        if raw is None:
            self.store.put(key, json.dumps({"wall_time": time.time()}).encode(), "application/json")
            return self.config.budget_s
        spent = time.time() - json.loads(raw)["wall_time"]
        return max(self.config.budget_s - spent, min(60.0, self.config.budget_s * 0.1))

    def _render(self, generator, framing, camera: str, dance, results: dict) -> Rendition:
        from trainer.rendition import count_frames, write_video

        cfg, session, store = self.config, self.session, self.store
        n = len(dance.poses)
        judge = self._judge(dance, self._data)
        with tempfile.TemporaryDirectory(prefix="booth-render-") as tmp:
            out, side = Path(tmp) / "rendition.mp4", Path(tmp) / "side.mp4"
            dancer = reference_frames(store, dance.ref, n, Path(tmp)) if cfg.side_by_side else None
            write_video(
                self._watched(judge, framing.frames(generator, dance.poses, camera, maps=dance.maps)),
                n,
                out,
                30,
                side_by_side=dancer,
                side_path=side if dancer is not None else None,
                progress=cfg.progress_bar,
            )
            frames = count_frames(out)
            if dancer is not None:
                store.put(layout.result_key(session, "side-by-side.mp4"), side.read_bytes(), "video/mp4")
                results["side_by_side_frames"] = count_frames(side)
            results["rendition_frames"] = frames
            picture = self._judged(judge, results)
            results["version"] = max((v["version"] for v in self._versions()), default=0) + 1
            # NaN (e.g. no keypoint comparable) is written as null: JSON and the schemas have no NaN.
            results = {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in results.items()}
            store.put(
                layout.result_key(session, "metrics.json"), json.dumps(results, indent=2).encode(), "application/json"
            )
            if self.purged(now=True):
                raise self._stop_purged("before its video was published")
            return self._publish_version(out, "gan", results, final=True, frames=frames, picture=picture)


def _cut_off_share(data: TrainingSet, idx: np.ndarray) -> float:
    """Share of the samples idx whose body box reaches past the frame's edge."""
    from vision.crop import body_box

    cut = 0
    for i in idx:
        box = body_box(data.poses[i])
        w, h = data.frame_size(int(i))
        cut += box is not None and (box[0] < 0 or box[1] < 0 or box[2] > w or box[3] > h)
    return cut / max(1, len(idx))

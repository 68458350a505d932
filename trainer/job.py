"""One session's training job: dataset -> fine-tuning (warm-started when a base fits) ->
evaluation -> rendition of the reference dance -> results and a presigned link in the store.

Objects per session (schemas.layout): checkpoints/ (resumable training state, started.json),
plates/ (the background plate per camera, person framing), results/ (rendition.mp4,
side-by-side.mp4, samples.png, loss.png, metrics.json).

Framing (trainer.framing): person-centred by default for pose maps (a crop following the person,
composited onto the camera's background plate), the whole frame for part maps. Either way the
held-out block at the end of each camera's frames is evaluated, and the rendition rendered, at
the camera's own resolution and aspect.

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
from trainer.dataset import (
    DEFAULT_HOLDOUT_FRACTION,
    DEFAULT_HOLDOUT_GAP,
    DatasetError,
    TrainingSet,
    holdout_split,
    load_training_set,
)
from trainer.framing import DEFAULT_STYLES, FRAMINGS, PersonCentred, WholeFrame
from trainer.people import build_group_dance, group_framing, parse_match

WARNING_PREFIX = "warning: "  # progress messages that are warnings (the status view and console list them)

log = logging.getLogger(__name__)

# (phase, step, total, losses, elapsed_s, eta_s, message)
Progress = Callable[..., None]


@dataclass(frozen=True)
class TrainerConfig:
    budget_s: float = 3600.0  # wall clock for fine-tuning one session
    checkpoint_every_s: float = 180.0
    holdout_fraction: float = DEFAULT_HOLDOUT_FRACTION  # the end of each camera's session, held out
    holdout_gap: int = DEFAULT_HOLDOUT_GAP  # frames between training and held-out ones, used for neither
    framing: str = "auto"  # "person", "whole", or "auto" (person for pose maps, whole for part maps)
    crop_size: int | None = None  # person framing's generator size: None = 512 where CUDA is, else 256
    posemap_style: str | None = None  # None: the framing's default (vision.posemap STYLES)
    person_masks: str = "auto"  # vision.personmask: "auto", "blazepose" or "silhouette"
    reference: str | None = None  # used when the session names none (else settings.default_reference)
    side_by_side: bool = True
    max_render_frames: int | None = None
    progress_every_s: float = 1.0
    device: str | None = None
    progress_bar: bool = True
    match: str | None = None  # several visitors: "dancer:visitor,..." instead of left to right (trainer.people)

    def __post_init__(self) -> None:
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
        if self.person_masks not in KINDS:
            raise ValueError(f"unknown person mask source {self.person_masks!r}; choose one of {', '.join(KINDS)}")


class Cancelled(Exception):
    """The job was asked to stop (its partition went to another trainer); its checkpoint stays."""


class Purged(Exception):
    """The session was purged: the job stopped and deleted what it had written; nothing published."""


def base_checkpoint(store: ObjectStore, net, data: dict) -> tuple[bytes | None, str | None, str]:
    """(checkpoint bytes, name, why) of the base model to warm-start from, or (None, None, why not).

    The base must have the session's architecture (net: NetConfig) and have learnt from the same
    inputs (data: framing, pose-map style and size, as TrainConfig.data records). A base that
    cannot be read or does not fit is never fatal: the session trains from scratch and `why`
    says so."""
    from trainer.pix2pix import checkpoint as ckpt
    from trainer.pix2pix.networks import NetConfig

    base_store = StoreCheckpoints(store, layout.BASE_PREFIX)
    name = ckpt.latest_checkpoint(base_store)
    if name is None:
        return None, None, f"no base model in {layout.BASE_PREFIX}"
    raw = base_store.load(name)
    try:
        if raw is None:
            raise ValueError("listed but missing")
        state = ckpt.from_bytes(raw)
        theirs = NetConfig.from_dict(state["net"])
    except Exception as exc:  # noqa: BLE001 - an unreadable base costs a warm start, never the session
        return None, None, f"base model {name} is unreadable ({type(exc).__name__}: {exc})"
    learnt = {"framing": "whole", "posemap_style": "stick", **(state.get("train") or {}).get("data", {})}
    wanted = {k: data[k] for k in ("framing", "posemap_style") if k in data}
    if theirs.size != net.size or theirs.matte != net.matte:
        why = f"base model {name} is a {theirs.size}px {learnt['framing']}-frame model"
        return None, None, f"{why}; this session needs {net.size}px {data.get('framing')}"
    if theirs != net:
        return None, None, f"base model {name} has another architecture than this session's"
    if any(learnt.get(k) != v for k, v in wanted.items()):
        why = f"base model {name} learnt {learnt.get('framing')} frames, {learnt.get('posemap_style')} pose maps"
        return None, None, f"{why}; this session needs {wanted}"
    return raw, name, f"warm start from {name}"


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
        from trainer.assembler import read_manifest
        from trainer.assembler.representation import DEFAULT_REPRESENTATION, check_representation
        from trainer.pix2pix.networks import NetConfig
        from trainer.pix2pix.train import TrainConfig, fine_tune, pick_device

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
        data = load_training_set(s, session, store=self.store, expected=manifest.get("samples"))
        split = holdout_split(data.cameras, data.seqs, cfg.holdout_fraction, cfg.holdout_gap)
        self.warnings: list[str] = [split.note] if split.note else []
        test = split.test
        if not test.any():
            # Too few frames to hold any out: the figures then describe training frames.
            test = np.zeros(len(data), bool)
            test[-min(4, len(data)) :] = True
            self.warnings.append("too few frames to hold any out: the quality figures are on training frames")
        train_idx = np.flatnonzero(split.train)

        group = group_framing(manifest, data, representation, cfg.framing, cfg.posemap_style)  # several visitors
        framing, masks, info = group or self._framing(data, split.train, representation, pick_device(cfg.device).type)
        net = NetConfig.fast(framing.size, matte=framing.name == "person")
        data_info = {"framing": framing.name, "posemap_style": framing.style, "size": framing.size}
        base, base_name, why = base_checkpoint(self.store, net, data_info)
        if base is None:
            log.warning("session %s: %s; fine-tuning starts from scratch", session, why)
        for warning in self.warnings:
            log.warning("session %s: %s", session, warning)
            self.progress("loading", message=f"{WARNING_PREFIX}{warning}")
        train_cfg = TrainConfig(
            net=net,
            checkpoint_every_s=cfg.checkpoint_every_s,
            device=cfg.device,
            progress_bar=cfg.progress_bar,
            data=data_info,
        )
        store = StoreCheckpoints(self.store, layout.checkpoints_prefix(session))
        budget = self._remaining_budget()
        self.progress("training", message=why)
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

        result = fine_tune(
            framing.training_samples(data, train_idx, masks),
            train_cfg,
            budget,
            store,
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
        camera = data.main_camera()
        results.update(
            warm_start=base is not None,
            base_checkpoint=base_name,
            steps=result.step,
            start_step=result.step - result.steps_this_run,
            train_seconds=result.elapsed_s,
            samples=len(data),
            trained_on=int(split.train.sum()),
            holdout_gap=split.gap,
            representation=representation,
            camera=camera,
            width=data.camera_size(camera)[0],
            height=data.camera_size(camera)[1],
            warnings=self.warnings,
            **data_info,
            **info,
        )
        self.progress("rendering", result.step, result.step, message="rendering the reference dance")
        main = np.flatnonzero(data.cameras == camera)
        if group is not None:
            match = parse_match(cfg.match) if cfg.match else None
            dance = build_group_dance(ref, name, data, camera, match, cfg.max_render_frames, framing.slots)
            results["dancers"] = {str(d): v for d, v in sorted(dance.match.items())}
        else:
            size = data.camera_size(camera)
            dance = build_dance(s, ref, name, data.poses[main], size, data.size, representation, cfg.max_render_frames)
        if dance.note:
            self.warnings.append(dance.note)
            self.progress("rendering", result.step, result.step, message=f"{WARNING_PREFIX}{dance.note}")
        rendition = self._render(generator, framing, camera, dance, results)
        self.progress("done", result.step, result.step, message=rendition.url[:200])
        if not self.consent:
            discard_unconsented(self.store, session)
        return rendition

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
        rendition = self._rendition(video_key, listed[0].written_at, name, frames, results)
        self.publish(rendition)
        discard_unconsented(self.store, self.session)
        log.info("session %s: its video was made earlier; published again", self.session)
        return rendition

    def _rendition(self, video_key: str, written_at: float, name: str, frames: int, results: dict) -> Rendition:
        expiry = video_link_expiry_s(self.settings, written_at)
        return Rendition(
            session=self.session,
            reference=name,
            video_key=video_key,
            url=self.store.presign(video_key, expiry),
            expires_at=time.time() + expiry,
            frames=frames,
            metrics={
                k: float(v)
                for k, v in results.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)
            },
            wall_time=time.time(),
        )

    def _framing(self, data, train: np.ndarray, representation: str, device: str):
        """(framing, person masks of the training samples or None, what to record about them)."""
        cfg = self.config
        kind = cfg.framing
        if kind == "auto":
            kind = "person" if representation == "pose" else "whole"
        if kind == "person" and representation != "pose":
            raise DatasetError(
                f"session {self.session} is in the {representation!r} representation: person-centred generation "
                "draws pose maps in the crop, so it needs the 'pose' representation (or train with framing whole)"
            )
        sizes = {c: data.camera_size(c) for c in data.camera_names()}
        if kind == "whole":
            return WholeFrame(data.size, cfg.posemap_style or DEFAULT_STYLES["whole"], representation, sizes), None, {}
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
            return WholeFrame(data.size, cfg.posemap_style or DEFAULT_STYLES["whole"], representation, sizes), None, {}
        masker = PersonMasker(cfg.person_masks, self.settings.models_dir)
        if masker.why:
            self.warnings.append(masker.why)
        masks: dict[int, np.ndarray] = {}  # uint8, 255 = person: a quarter of float32's memory
        last = time.monotonic()
        for k, i in enumerate(idx):
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
        framing = PersonCentred(
            crop, cfg.posemap_style or DEFAULT_STYLES["person"], {c: p.plate.image for c, p in plates.items()}, sides
        )
        info = {
            "person_masks": masker.name,
            "plate_source": ",".join(sorted({p.source for p in plates.values()})),
            "plate_filled": max(p.plate.filled for p in plates.values()),
            "crop_side_px": round(sides[data.main_camera()], 1),
        }
        return framing, masks, info

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
        video_key = layout.result_key(session, "rendition.mp4")
        n = len(dance.poses)
        with tempfile.TemporaryDirectory(prefix="booth-render-") as tmp:
            out, side = Path(tmp) / "rendition.mp4", Path(tmp) / "side.mp4"
            dancer = reference_frames(store, dance.ref, n, Path(tmp)) if cfg.side_by_side else None
            write_video(
                framing.frames(generator, dance.poses, camera, maps=dance.maps),
                n,
                out,
                30,
                side_by_side=dancer,
                side_path=side if dancer is not None else None,
                progress=cfg.progress_bar,
            )
            frames = count_frames(out)
            written_at = time.time()  # no later than the store's own time for it: the link expires first
            store.put(video_key, out.read_bytes(), "video/mp4")
            if dancer is not None:
                store.put(layout.result_key(session, "side-by-side.mp4"), side.read_bytes(), "video/mp4")
                results["side_by_side_frames"] = count_frames(side)
        results["rendition_frames"] = frames
        # NaN (e.g. no keypoint comparable) is written as null: JSON and the schemas have no NaN.
        results = {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in results.items()}
        store.put(
            layout.result_key(session, "metrics.json"), json.dumps(results, indent=2).encode(), "application/json"
        )
        if self.purged(now=True):
            raise self._stop_purged("before its video was published")
        rendition = self._rendition(video_key, written_at, dance.name, frames, results)
        self.publish(rendition)
        log.info("session %s: rendition %s", session, rendition.url)
        return rendition


def _cut_off_share(data: TrainingSet, idx: np.ndarray) -> float:
    """Share of the samples idx whose body box reaches past the frame's edge."""
    from vision.crop import body_box

    cut = 0
    for i in idx:
        box = body_box(data.poses[i])
        w, h = data.frame_size(int(i))
        cut += box is not None and (box[0] < 0 or box[1] < 0 or box[2] > w or box[3] > h)
    return cut / max(1, len(idx))

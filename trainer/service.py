"""The trainer: on DatasetReady, fine-tune pix2pix for the visitor within a budget, then render.

    datasets --[TrainingService]--> training (progress), renditions (+ objects in the store)

A consumer group (<app_id>-trainer), so several trainers share sessions. The offset of a
DatasetReady is committed only after its Rendition is published: a trainer that dies mid-way is
replaced by one that resumes from the session's latest checkpoint in the store.

Objects per session, under sessions/<s>/:
    checkpoints/ckpt-*.pt, checkpoints/generator.pt    training state (resumable) and the result
    results/samples.png, results/loss.png              what a person looks at
    results/rendition.mp4, results/metrics.json        the video and its evaluation
The base model lives under models/base/ (`booth train base`).

The generator's input is the session's representation (its manifest's "representation": pose
maps, part maps, or part maps with the face; trainer.assembler.representation). For part maps
the reference dance's stored part maps (`booth reference add --representation parts`) are moved
with each pose's normalization (trainer.partsmap.pose_transform) into the visitor's frame.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
from prometheus_client import Gauge, Histogram

from infra import kafka, metrics
from infra.objectstore import client, get_bytes, list_keys, put_bytes, retrying
from infra.settings import Settings
from schemas import DatasetReady, Rendition, SchemaError, TrainingProgress, validate_id

log = logging.getLogger(__name__)

TRAINING_STEP = Gauge("booth_training_step", "Training step of the session being trained", ["session"])
TRAINING_LOSS = Gauge("booth_training_loss", "Latest training loss", ["session", "loss"])
TRAINING_ETA = Gauge("booth_training_eta_seconds", "Estimated seconds of training left", ["session"])
SESSION_SECONDS = Histogram("booth_trainer_session_seconds", "DatasetReady to Rendition",
                            buckets=(30, 60, 120, 300, 600, 1200, 1800, 3600, 5400, 7200))

BASE_PREFIX = "models/base/"


class S3CheckpointStore:
    """The trainer's checkpoint store (trainer.pix2pix.checkpoint.CheckpointStore) in the object store."""

    def __init__(self, settings: Settings, prefix: str):
        self.settings, self.prefix, self.c = settings, prefix.rstrip("/") + "/", client(settings)

    def save(self, name: str, data: bytes) -> None:
        put_bytes(self.settings, self.prefix + name, data, c=self.c)

    def load(self, name: str) -> bytes | None:
        return get_bytes(self.settings, self.prefix + name, c=self.c)

    def list(self) -> list[str]:
        return sorted(k[len(self.prefix):] for k in list_keys(self.settings, self.prefix, c=self.c))

    def delete(self, name: str) -> None:
        retrying(f"delete {name}", lambda: self.c.remove_object(self.settings.s3_bucket, self.prefix + name))


@dataclass(frozen=True)
class TrainerConfig:
    budget_s: float = 3600.0  # wall clock for fine-tuning one session
    checkpoint_every_s: float = 180.0
    holdout_every: int = 10  # every n-th sample is held out for evaluation
    reference: str | None = None  # used when the session names none
    side_by_side: bool = True
    max_render_frames: int | None = None
    progress_every_s: float = 1.0
    device: str | None = None
    progress_bar: bool = True


def _session_prefix(session: str) -> str:
    return f"sessions/{validate_id(session, 'session')}/"


class TrainingService:
    def __init__(self, settings: Settings, config: TrainerConfig = TrainerConfig()):
        self.settings, self.config = settings, config
        self._producer = None

    # --- events ---------------------------------------------------------------------------
    def _publish(self, topic: str, key: str, message) -> None:
        if self._producer is None:
            self._producer = kafka.producer(self.settings)
        self._producer.send(topic, key=key.encode(), value=message.encode()).get(timeout=30)

    def _progress(self, session: str, phase: str, step=0, total=0, losses=None, elapsed=0.0, eta=0.0, message=""):
        self._publish(self.settings.topic_training, session, TrainingProgress(
            session=session, phase=phase, step=step, total_steps=max(total, step), losses=losses or {},
            elapsed_s=elapsed, eta_s=eta, message=message[:500], wall_time=time.time()))

    # --- one session ----------------------------------------------------------------------
    def handle(self, ready: DatasetReady) -> Rendition | None:
        session = ready.session
        if ready.status != "ready":
            log.info("session %s: dataset %s (%s); nothing to train", session, ready.status, ready.reason)
            return None
        t0 = time.monotonic()
        try:
            rendition = self._train_and_render(ready)
        except Exception as exc:
            log.exception("session %s: training failed", session)
            self._progress(session, "failed", message=f"{type(exc).__name__}: {exc}")
            raise
        SESSION_SECONDS.observe(time.monotonic() - t0)
        return rendition

    def _train_and_render(self, ready: DatasetReady) -> Rendition:
        from trainer.assembler import read_manifest
        from trainer.assembler.representation import DEFAULT_REPRESENTATION, check_representation, needs_parts
        from trainer.pix2pix import checkpoint as ckpt
        from trainer.pix2pix.networks import NetConfig
        from trainer.pix2pix.train import TrainConfig, fine_tune

        s, cfg, session = self.settings, self.config, ready.session
        prefix = _session_prefix(session)
        self._progress(session, "loading", message="reading the dataset")
        manifest = read_manifest(s, session) or {}
        representation = check_representation(manifest.get("representation", DEFAULT_REPRESENTATION))
        frames, maps, poses, src_size = _load_dataset(s, session)
        if needs_parts(representation):
            self._check_reference_parts(ready, representation)  # before the budget is spent, not after
        held = np.arange(len(frames)) % cfg.holdout_every == cfg.holdout_every - 1
        if held.all() or len(frames) < 2:
            held[:] = False
        train_pairs = list(zip(maps[~held], frames[~held]))
        test_pairs = list(zip(maps[held], frames[held])) or train_pairs[:4]
        size = maps.shape[1]

        base_store = S3CheckpointStore(s, BASE_PREFIX)
        base_name = ckpt.latest_checkpoint(base_store)
        base = base_store.load(base_name) if base_name else None
        net = NetConfig.from_dict(ckpt.from_bytes(base)["net"]) if base else NetConfig.fast(size)
        if net.size != size:
            log.warning("base model is %dpx but the dataset %dpx: training from scratch", net.size, size)
            base, net = None, NetConfig.fast(size)
        if base is None:
            log.warning("session %s: no base model in %s; fine-tuning starts from scratch", session, BASE_PREFIX)
        train_cfg = TrainConfig(net=net, checkpoint_every_s=cfg.checkpoint_every_s, device=cfg.device,
                                progress_bar=cfg.progress_bar)
        store = S3CheckpointStore(s, prefix + "checkpoints/")
        budget = self._remaining_budget(prefix)
        last = {"t": 0.0}

        def on_progress(step: int, total: int, losses: dict, eta: float) -> None:
            TRAINING_STEP.labels(session).set(step)
            TRAINING_ETA.labels(session).set(eta)
            for name, value in losses.items():
                TRAINING_LOSS.labels(session, name).set(value)
            now = time.monotonic()
            if now - last["t"] >= cfg.progress_every_s:
                last["t"] = now
                self._progress(session, "training", step, total, {k: float(v) for k, v in losses.items()},
                               elapsed=budget - eta if eta <= budget else 0.0, eta=eta)

        result = fine_tune(train_pairs, train_cfg, budget, store, progress_cb=on_progress, init_checkpoint=base)
        generator = result.generator
        self._progress(session, "evaluating", result.step, result.step, message="sample grid, SSIM, PSNR")
        results = self._evaluate(session, generator, test_pairs, poses[held] if held.any() else poses[:4],
                                 src_size, result, representation)
        results.update(warm_start=base is not None, base_checkpoint=base_name, steps=result.step,
                       start_step=result.step - result.steps_this_run,
                       train_seconds=result.elapsed_s, samples=len(frames), held_out=int(held.sum()),
                       representation=representation)
        self._progress(session, "rendering", result.step, result.step, message="rendering the reference dance")
        rendition = self._render(ready, generator, poses, src_size, results, representation)
        self._progress(session, "done", result.step, result.step, message=rendition.url[:200])
        return rendition

    def _check_reference_parts(self, ready: DatasetReady, representation: str) -> None:
        from trainer.references import load_reference_version
        from trainer.references.store import PARTS_FILE

        name = ready.reference or self.config.reference
        if name is None:
            raise RuntimeError(f"session {ready.session} names no reference dance and none is configured")
        ref = load_reference_version(self.settings, name)
        if PARTS_FILE not in ref.meta.get("files", {}):
            raise FileNotFoundError(
                f"session {ready.session} is in the {representation} representation but reference {name} "
                f"v{ref.version} has no part maps: add it with `booth reference add --representation parts`")

    def _remaining_budget(self, prefix: str) -> float:
        """The budget counts from the first attempt: a resumed session gets what is left of it."""
        key = prefix + "checkpoints/started.json"
        raw = get_bytes(self.settings, key)
        if raw is None:
            put_bytes(self.settings, key, json.dumps({"wall_time": time.time()}).encode(), "application/json")
            return self.config.budget_s
        spent = time.time() - json.loads(raw)["wall_time"]
        return max(self.config.budget_s - spent, min(60.0, self.config.budget_s * 0.1))

    def _evaluate(self, session, generator, test_pairs, test_poses, src_size, result,
                  representation: str = "pose") -> dict:
        from trainer.pix2pix.evaluate import pose_consistency, reconstruction_metrics
        from trainer.pix2pix.inference import generate
        from trainer.pix2pix.samples import loss_curves, png_bytes, sample_grid

        s, prefix = self.settings, _session_prefix(session)
        maps = np.stack([m for m, _ in test_pairs])
        reals = np.stack([f for _, f in test_pairs])
        fakes = generate(generator, maps[:4])
        put_bytes(s, prefix + "results/samples.png", png_bytes(sample_grid(maps[:4], reals[:4], fakes)), "image/png")
        if result.history:
            put_bytes(s, prefix + "results/loss.png", png_bytes(loss_curves(result.history)), "image/png")
        out = {k: float(v) for k, v in reconstruction_metrics(generator, test_pairs).items()}
        try:
            from processors.pose import load_estimator

            estimator = load_estimator("movenet", s.models_dir if Path(s.models_dir).is_dir() else None)

            def estimate(image: np.ndarray) -> np.ndarray:
                persons = estimator.estimate(image, key="eval")
                return persons[0].keypoints if persons else np.zeros((17, 3), np.float32)

            if representation == "pose":
                consistency = pose_consistency(generator, test_poses, src_size, estimate)
            else:  # pose_consistency draws stick figures: this generator reads the held-out part maps
                consistency = _map_consistency(generator, maps, test_poses, src_size, estimate)
            out["pose_error"] = float(consistency["mean_error"])
        except Exception as exc:  # noqa: BLE001 - evaluation must not cost the visitor the video
            log.warning("pose consistency not measured: %s", exc)
        return out

    def _render(self, ready: DatasetReady, generator, target_poses, src_size, results: dict,
                representation: str = "pose") -> Rendition:
        from trainer.assembler.representation import needs_parts
        from trainer.normalize import fit_normalizer
        from trainer.references import load_reference_parts, load_reference_version
        from trainer.rendition import count_frames, render_video

        s, cfg, session = self.settings, self.config, ready.session
        reference = ready.reference or cfg.reference
        if reference is None:
            raise RuntimeError(f"session {session} names no reference dance and none is configured")
        ref = load_reference_version(s, reference)
        ref_poses = ref.poses[: cfg.max_render_frames] if cfg.max_render_frames else ref.poses
        normalizer = fit_normalizer(ref_poses, target_poses)
        poses = np.stack([normalizer.apply(p) for p in ref_poses])
        maps = None
        if needs_parts(representation):
            parts = load_reference_parts(s, ref)[: len(ref_poses)]
            maps = ReferenceMaps(representation, parts, ref_poses, ref.src_size, poses, src_size, generator.size)
        prefix = _session_prefix(session)
        with tempfile.TemporaryDirectory(prefix="booth-render-") as tmp:
            out = Path(tmp) / "rendition.mp4"
            render_video(generator, poses, src_size, out, fps=30, progress=cfg.progress_bar, maps=maps)
            frames = count_frames(out)
            put_bytes(s, prefix + "results/rendition.mp4", out.read_bytes(), "video/mp4")
            if cfg.side_by_side:
                dancer = self._reference_frames(ref, len(poses), Path(tmp))
                if dancer is not None:
                    side = Path(tmp) / "side.mp4"
                    render_video(generator, poses, src_size, side, fps=30, side_by_side=dancer, progress=False,
                                 maps=maps)
                    put_bytes(s, prefix + "results/side-by-side.mp4", side.read_bytes(), "video/mp4")
                    results["side_by_side_frames"] = count_frames(side)
        results["rendition_frames"] = frames
        # NaN (e.g. no keypoint comparable) is written as null: JSON and the schemas have no NaN.
        results = {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in results.items()}
        put_bytes(s, prefix + "results/metrics.json", json.dumps(results, indent=2).encode(), "application/json")
        expiry = s.link_expiry_s
        url = client(s).presigned_get_object(s.s3_bucket, prefix + "results/rendition.mp4", expires=timedelta(seconds=expiry))
        rendition = Rendition(session=session, reference=reference, video_key=prefix + "results/rendition.mp4",
                              url=url, expires_at=time.time() + expiry, frames=frames,
                              metrics={k: float(v) for k, v in results.items()
                                       if isinstance(v, (int, float)) and not isinstance(v, bool)},
                              wall_time=time.time())
        self._publish(s.topic_renditions, session, rendition)
        log.info("session %s: rendition %s", session, url)
        return rendition

    def _reference_frames(self, ref, n: int, tmp: Path) -> list | None:
        """The reference dancer's own frames (reference | pose map | result), if its video is stored."""
        from trainer.references.video import read_frames

        key = (ref.meta.get("source") or {}).get("key")
        data = get_bytes(self.settings, key) if key else None
        if data is None:
            log.warning("reference %s has no stored source video: no side-by-side video", ref.name)
            return None
        path = tmp / ("source." + key.rsplit(".", 1)[-1])
        path.write_bytes(data)
        frames = [frame for frame, _t in read_frames(path)][:n]
        if len(frames) != n:
            log.warning("reference video has %d frames for %d poses: no side-by-side video", len(frames), n)
            return None
        return frames

    # --- the consumer ---------------------------------------------------------------------
    def run(self, stop: threading.Event | None = None, idle_exit: float | None = None, max_sessions: int | None = None) -> int:
        """Consume DatasetReady until stopped; returns the number of sessions rendered."""
        from trainer.assembler.metrics import report_consumer_lag

        metrics.serve(self.settings, "trainer")
        stop = stop or threading.Event()
        consumer = kafka.consumer(self.settings, self.settings.topic_datasets, group_id=self.settings.group("trainer"),
                                  max_poll_records=1, max_poll_interval_ms=4 * 3600 * 1000)
        done, idle_since = 0, time.monotonic()
        try:
            while not stop.is_set():
                batches = consumer.poll(timeout_ms=500)
                report_consumer_lag(consumer, self.settings.group("trainer"))  # booth_consumer_lag, as of this poll
                if not batches:
                    if idle_exit is not None and time.monotonic() - idle_since > idle_exit:
                        break
                    continue
                for _tp, records in batches.items():
                    for record in records:
                        try:
                            ready = DatasetReady.decode(record.value)
                        except SchemaError as exc:
                            from infra.deadletters import send_dead_letter

                            send_dead_letter(kafka.producer(self.settings), self.settings, "trainer", str(exc),
                                             record.topic, record.key, record.value, record.partition, record.offset).get(30)
                        else:
                            if self.handle(ready) is not None:
                                done += 1
                        consumer.commit()
                idle_since = time.monotonic()
                if max_sessions is not None and done >= max_sessions:
                    break
        finally:
            consumer.close()
            if self._producer is not None:
                self._producer.close()
        return done


def _load_dataset(settings: Settings, session: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]:
    """(frames letterboxed like their maps, input maps, poses [N, 17, 3], source size (w, h)).

    The poses are in the captured frames' pixels, so the source size is the captured frames'
    (the most common one if cameras differ), not the maps' size.
    """
    from collections import Counter

    from trainer.assembler import iter_session_samples
    from trainer.posemap import letterbox_image

    frames, maps, poses, sizes = [], [], [], Counter()
    for smp in iter_session_samples(settings, session):
        frames.append(letterbox_image(smp.frame, (smp.posemap.shape[1], smp.posemap.shape[0])))
        maps.append(smp.posemap)
        poses.append(smp.pose)
        sizes[smp.src_size] += 1
    if not frames:
        raise RuntimeError(f"session {session} has no samples")
    if len(sizes) > 1:
        log.warning("session %s: frames of several sizes %s; rendering for %s", session, sorted(sizes),
                    sizes.most_common(1)[0][0])
    return np.stack(frames), np.stack(maps), np.stack(poses), sizes.most_common(1)[0][0]


class ReferenceMaps:
    """The reference's part maps, each moved along with its pose's normalization and drawn in the
    representation at the generator's size; built one at a time when indexed (a Sequence, for
    trainer.rendition.render_video's maps=).

    parts [T, h, w]: stored part ids (trainer.references; h, w may be smaller than the video);
    ref_poses [T, 17, 3] in the reference video's pixels (ref_size); poses: the same poses
    normalized into the visitor's frame of src_size.
    """

    def __init__(self, representation: str, parts: np.ndarray, ref_poses: np.ndarray, ref_size: tuple[int, int],
                 poses: np.ndarray, src_size: tuple[int, int], out_size: int):
        if not len(parts) == len(ref_poses) == len(poses):
            raise ValueError(f"{len(parts)} part maps, {len(ref_poses)} reference poses, {len(poses)} poses: "
                             "one of each per frame")
        self.representation, self.parts, self.ref_poses, self.poses = representation, parts, ref_poses, poses
        self.src_size, self.out_size = (int(src_size[0]), int(src_size[1])), out_size
        h, w = parts.shape[1:]
        # Stored map pixels -> reference video pixels (continuous coordinates scale as they are).
        self._unscale = np.diag([ref_size[0] / w, ref_size[1] / h, 1.0])

    def __len__(self) -> int:
        return len(self.poses)

    def part_ids(self, i: int) -> np.ndarray:
        """Frame i's part ids in the visitor's frame (uint8 [H, W] of src_size)."""
        from trainer.partsmap import pose_transform, warp_ids

        try:
            # normalize moves every keypoint by one scale and shift, confident or not: all of them
            # pin the transform down, even in frames where few are confident.
            m = pose_transform(self.ref_poses[i], self.poses[i], score_threshold=-np.inf)
        except ValueError:  # no two distinct keypoints: nobody in this reference frame
            return np.zeros((self.src_size[1], self.src_size[0]), np.uint8)
        return warp_ids(self.parts[i], m @ self._unscale, self.src_size)

    def __getitem__(self, i: int) -> np.ndarray:
        from trainer.partsmap import render_representation

        return render_representation(self.representation, poses=self.poses[i], src_size=self.src_size,
                                     out_size=self.out_size, part_ids=self.part_ids(i))


def _map_consistency(generator, maps: np.ndarray, poses: np.ndarray, src_size: tuple[int, int], estimate) -> dict:
    """trainer.pix2pix.evaluate.pose_consistency for ready-made input maps (e.g. part maps)."""
    from trainer.pix2pix.evaluate import keypoint_error
    from trainer.pix2pix.inference import generate
    from trainer.posemap import Letterbox

    box = Letterbox.fit(src_size, generator.size)
    fakes = generate(generator, maps)
    errors = np.stack([keypoint_error(box.pose_to_output(p), estimate(f), 0.3) for p, f in zip(poses, fakes)])
    seen = np.isfinite(errors)
    return {"mean_error": float(np.nanmean(errors)) if seen.any() else float("nan")}


def train_base(settings: Settings, sessions: list[str], budget_s: float, max_steps: int | None = None,
               size: int | None = None, progress: bool = True):
    """`booth train base`: a base model on one or more sessions of the booth scene, from scratch."""
    from trainer.assembler import load_session_samples, read_manifest
    from trainer.pix2pix.networks import NetConfig
    from trainer.pix2pix.train import TrainConfig, train_base as run

    kinds = {session: (read_manifest(settings, session) or {}).get("representation", "pose") for session in sessions}
    if len(set(kinds.values())) > 1:
        raise ValueError(f"sessions assembled in different representations {kinds}: a model learns one")
    pairs = []
    for session in sessions:
        pairs += [(m, f) for f, m, _ in load_session_samples(settings, session)]
    if not pairs:
        raise RuntimeError(f"no samples in sessions {sessions}")
    cfg = TrainConfig(net=NetConfig.fast(size or pairs[0][0].shape[0]), progress_bar=progress)
    return run(pairs, cfg, S3CheckpointStore(settings, BASE_PREFIX), budget_s=budget_s, max_steps=max_steps)

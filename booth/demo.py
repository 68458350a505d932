"""`booth demo`: one whole booth session on the embedded stack, started and stopped for you.

    stack up -> workers (processors, assembler, trainer) -> reference dance -> session start
    -> camera clip -> session end -> dataset -> fine-tuning -> rendition link + summary

The clip is a video you pass (--video) or, by default, one built from a real photo of a person:
scikit-image's bundled "astronaut" photo (or --photo PATH), the person found by BlazePose (mask
and keypoints) and made to dance by the part warper (vision.dance_clip: arms raised and bent,
head tilted, body swaying, over the photo with the person inpainted), as a booth camera sees a
visitor whose limbs move; without the BlazePose models the whole photo slides across the frame
instead. The camera is 16:9 (640x360), and the video comes back at that aspect. The reference
dance is built the same way with another rhythm. The one-shot video (trainer.oneshot) arrives
first; the summary shows when, and the fine-tuned one after it.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from infra import kafka
from infra.stack import Stack, embedded_settings
from schemas import DatasetReady, PoseEstimate, Rendition, SmoothedPose, TrainingProgress, decode
from trainer.oneshot import is_oneshot


@dataclass
class DemoOptions:
    video: Path | None = None
    photo: Path | None = None
    frames: int = 150
    size: tuple[int, int] = (640, 360)  # a 16:9 camera
    resolution: int = 128  # generator (crop) size: small enough to learn in minutes on a CPU
    budget_s: float = 180.0
    reference_frames: int = 90
    timeout_s: float | None = None
    keep_stack: bool = False
    temporal: bool | None = None  # the trainer's options (None: its defaults)
    face: bool | None = None


@dataclass
class Timeline:
    marks: dict[str, float] = field(default_factory=dict)

    def mark(self, name: str) -> None:
        self.marks.setdefault(name, time.monotonic())

    def span(self, a: str, b: str) -> float | None:
        if a in self.marks and b in self.marks:
            return self.marks[b] - self.marks[a]
        return None


def demo_photo(path: Path | None) -> np.ndarray:
    import cv2

    if path is not None:
        image = cv2.imread(str(path))
        if image is None:
            raise FileNotFoundError(f"cannot read the photo {path}")
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    from skimage import data

    return data.astronaut()  # NASA's portrait of Eileen Collins, shipped inside scikit-image


def photo_person(photo: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(BlazePose's mask, keypoints [17, 3]) of the photo's person, or None when the models or the
    person are missing."""
    try:
        from vision.pose import load_estimator

        persons = load_estimator("blazepose", None, 1, track=False, with_mask=True).estimate(photo)
    except Exception:  # noqa: BLE001 - the demo then moves the whole photo
        return None
    if not persons or persons[0].mask is None:
        return None
    return persons[0].mask, persons[0].keypoints


def build_clip(
    photo: np.ndarray, n: int, size: tuple[int, int], seed: int, person: tuple[np.ndarray, np.ndarray] | None = None
) -> list[np.ndarray]:
    """The photo's person dancing (vision.dance_clip), or without a person, the photo sliding."""
    from vision.dance_clip import dancing_person_clip
    from vision.pose.synthetic import moving_photo_clip

    if person is None:
        return [frame for frame, _ in moving_photo_clip(photo, n_frames=n, size=size, seed=seed)]
    mask, pose = person
    return [frame for frame, _ in dancing_person_clip(photo, mask, pose, n_frames=n, size=size, seed=seed)]


class Demo:
    def __init__(self, options: DemoOptions, state_dir: Path, echo=print):
        self.o, self.echo = options, echo
        self.state_dir = state_dir
        self.settings = embedded_settings(state_dir, app_id=f"demo-{uuid.uuid4().hex[:6]}")
        self.stack = Stack(self.settings, state_dir=state_dir)
        self.workers: dict[str, subprocess.Popen] = {}
        self.t = Timeline()

    # --- processes --------------------------------------------------------------------------
    def _spawn(self, name: str, *args: str) -> None:
        log = open(self.state_dir / "logs" / f"{name}.log", "ab")
        self.workers[name] = subprocess.Popen(
            [sys.executable, "-m", "booth.cli", *args],
            env={**self.settings.to_env(), "PYTHONUNBUFFERED": "1"},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def _check_workers(self) -> None:
        for name, proc in self.workers.items():
            if proc.poll() is not None:
                raise RuntimeError(
                    f"the {name} worker exited with code {proc.returncode}; "
                    f"see {self.state_dir / 'logs' / (name + '.log')}"
                )

    def stop(self) -> None:
        for proc in self.workers.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.workers.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        if not self.o.keep_stack:
            self.stack.down()

    # --- the session ------------------------------------------------------------------------
    def run(self) -> dict:
        from producers.camera import run_cameras
        from producers.session import publish
        from producers.sources import open_source
        from trainer.references import add_reference
        from trainer.references.video import write_mp4

        o, s = self.o, self.settings
        self.echo(f"starting the embedded stack in {self.state_dir} ...")
        self.stack.up()
        (self.state_dir / "logs").mkdir(parents=True, exist_ok=True)
        self._spawn("processors", "process", "--backend", "movenet")
        self._spawn(
            "assembler",
            "assemble",
            "--resolution",
            str(o.resolution),
            "--min-samples",
            "10",
            "--shard-size",
            "32",
            "--end-grace",
            "3",
            "-q",
        )
        self._spawn(
            "trainer",
            "train",
            "--budget",
            str(o.budget_s),
            "--checkpoint-every",
            "60",
            "--crop-size",
            str(o.resolution),
            *(
                f"--{'' if on else 'no-'}{name}"
                for name, on in (("temporal", o.temporal), ("face", o.face))
                if on is not None
            ),
            "-q",
        )

        photo = demo_photo(o.photo)
        person = photo_person(photo)
        reference_video = self.state_dir / "reference.mp4"
        write_mp4(reference_video, build_clip(photo, o.reference_frames, o.size, seed=7, person=person), 30)
        self.echo("extracting the reference dance's poses ...")
        add_reference(s, reference_video, "demo-dance", backend="movenet", replace=True)

        session = f"demo-{time.strftime('%H%M%S')}-{uuid.uuid4().hex[:4]}"
        if o.video is not None:
            source = open_source(str(o.video))
        else:
            clip_path = self.state_dir / "clip.mp4"
            write_mp4(clip_path, build_clip(photo, o.frames, o.size, seed=1, person=person), 30)
            source = open_source(str(clip_path))
        # The demo's "visitor" is a photo the operator chose: kept like a consenting visitor's, so
        # the results folder gets the pictures too.
        publish(s, session, "start", ["cam0"], reference="demo-dance", consent=True)
        self._check_workers()
        self.echo(f"session {session}: the camera plays the clip in real time ...")
        self.t.mark("capture")
        summary = run_cameras(s, session, {"cam0": source}, size=o.size, speed=1.0)
        self.t.mark("captured")
        publish(s, session, "end")
        self.echo(
            f"session {session} ended: {summary.total('captured')} frames captured, "
            f"{summary.total('acknowledged')} acknowledged"
        )
        rendition = self._follow(session)
        rows = self._summary(session, summary, rendition)
        rows["files"] = str(self._download(session))
        return rows

    def _download(self, session: str) -> Path:
        """Keep the results on disk too: the link dies with the embedded stack."""
        from infra.objectstore import ObjectStore
        from schemas import layout

        store = ObjectStore(self.settings)
        out = self.state_dir / "results" / session
        out.mkdir(parents=True, exist_ok=True)
        for name in (
            "rendition.mp4",
            "oneshot.mp4",
            "side-by-side.mp4",
            "samples.png",
            "loss.png",
            "metrics.json",
            "coherence.png",
        ):
            data = store.get(layout.result_key(session, name))
            if data is not None:
                (out / name).write_bytes(data)
        preview = store.get(layout.preview_key(session))
        if preview is not None:
            (out / "dataset-preview.jpg").write_bytes(preview)
        plate = store.get(layout.plate_key(session, "cam0"))
        if plate is not None:
            (out / "plate.png").write_bytes(plate)
        return out

    def _metrics(self, session: str) -> dict:
        """The session's metrics.json (text and lists too, which Rendition.metrics leaves out)."""
        import json

        from infra.objectstore import ObjectStore
        from schemas import layout

        data = ObjectStore(self.settings).get(layout.result_key(session, "metrics.json"))
        return json.loads(data) if data else {}

    def _follow(self, session: str) -> Rendition:
        """Watch the topics until the rendition arrives, showing training progress."""
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        s, o = self.settings, self.o
        topics = (s.topic_poses, s.topic_smoothed, s.topic_datasets, s.topic_training, s.topic_renditions)
        consumer = kafka.consumer(s, *topics, group_id=None)
        self.counts = {"poses": 0, "smoothed": 0, "with_person": 0}
        self.progress_last: TrainingProgress | None = None
        self.ready: DatasetReady | None = None
        self.oneshot: Rendition | None = None
        deadline = time.monotonic() + (o.timeout_s or o.budget_s * 2 + 300)
        with Progress(
            TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"), TimeRemainingColumn()
        ) as bar:
            task = bar.add_task("waiting for the dataset", total=None, info="")
            try:
                while time.monotonic() < deadline:
                    self._check_workers()
                    for records in consumer.poll(timeout_ms=500).values():
                        for r in records:
                            message = decode(r.value)
                            if getattr(message, "session", None) != session:
                                continue
                            if isinstance(message, PoseEstimate):
                                self.counts["poses"] += 1
                                self.t.mark("first_pose")
                                self.t.marks["last_pose"] = time.monotonic()
                            elif isinstance(message, SmoothedPose):
                                self.counts["smoothed"] += 1
                                self.counts["with_person"] += bool(message.persons)
                            elif isinstance(message, DatasetReady):
                                self.ready = message
                                self.t.mark("dataset")
                                if message.status != "ready":
                                    raise RuntimeError(f"the dataset failed: {message.reason}")
                                bar.update(task, description="fine-tuning")
                            elif isinstance(message, TrainingProgress):
                                self.progress_last = message
                                self.t.mark(message.phase)
                                info = " ".join(f"{k}={v:.3f}" for k, v in message.losses.items())
                                bar.update(
                                    task,
                                    description=message.phase,
                                    completed=message.step,
                                    total=message.total_steps or None,
                                    info=f"step {message.step} {info}",
                                )
                                if message.phase == "failed":
                                    raise RuntimeError(f"training failed: {message.message}")
                            elif isinstance(message, Rendition) and is_oneshot(message):
                                self.t.mark("oneshot")  # the first video; the fine-tuned one follows
                                self.oneshot = message
                                bar.update(task, description="one-shot video ready; fine-tuning")
                            elif isinstance(message, Rendition):
                                self.t.mark("rendition")
                                return message
            finally:
                consumer.close()
        raise TimeoutError("no rendition arrived in time; see the worker logs in " + str(self.state_dir / "logs"))

    def _summary(self, session: str, camera, rendition: Rendition) -> dict:
        from trainer.assembler import read_manifest

        manifest = read_manifest(self.settings, session) or {}
        m, t = rendition.metrics, self.t
        metrics = self._metrics(session)
        rows = {
            "session": session,
            "frames captured / sent": f"{camera.total('captured')} / {camera.total('acknowledged')}",
            "frames dropped": camera.total("dropped"),
            "poses (with a person)": f"{self.counts['poses']} ({self.counts['with_person']})",
            "imputed keypoint share": _fmt(manifest.get("imputed_share")),
            "samples in the dataset": manifest.get("samples", self.ready.samples if self.ready else "?"),
            "training steps": int(m.get("steps", 0)),
            "warm start": "yes" if m.get("warm_start") else "no (no base model in the store)",
            "framing": framing(metrics),
            "held-out frames (gap)": f"{int(m.get('held_out', 0))} ({int(m.get('holdout_gap', 0))} frames)",
            "SSIM / PSNR (held out, whole frame)": f"{_fmt(m.get('ssim'))} / {_fmt(m.get('psnr'))} dB",
            "SSIM / PSNR (held out, person box)": f"{_fmt(m.get('box_ssim'))} / {_fmt(m.get('box_psnr'))} dB",
            "flicker (1 = as the real video)": _fmt(m.get("flicker")),
            "pose error (normalized)": _fmt(m.get("pose_error")),
            **coherence_rows(metrics),
            "rendition frames (size)": f"{rendition.frames} ({size(metrics)})",
            "warnings": "; ".join(metrics.get("warnings") or []) or "none",
            "time: capture": _secs(t.span("capture", "captured")),
            "time: capture -> last pose": _secs(t.span("capture", "last_pose")),
            "time: session end -> dataset": _secs(t.span("captured", "dataset")),
            "time: dataset -> one-shot video": _secs(t.span("dataset", "oneshot")),
            "time: dataset -> trained": _secs(t.span("dataset", "evaluating")),
            "time: evaluate + render": _secs(t.span("evaluating", "rendition")),
            "one-shot link": self.oneshot.url if self.oneshot is not None else "-",
            "rendition link": rendition.url,
        }
        return rows


def coherence_rows(metrics: dict) -> dict:
    """The temporal and face options, with their figures with and without (coherence.png shows them)."""
    on = {k: "on" if metrics.get(k) else "off" for k in ("temporal", "face")}
    rows = {"temporal / face options": f"{on['temporal']} / {on['face']}"}
    if metrics.get("temporal"):
        rows["flicker: in sequence / frame by frame"] = (
            f"{_fmt(metrics.get('flicker_sequential'))} / {_fmt(metrics.get('flicker_frame_by_frame'))}"
        )
    if metrics.get("face"):
        rows["face box SSIM / PSNR: with / without"] = (
            f"{_fmt(metrics.get('face_ssim'))} / {_fmt(metrics.get('face_psnr'))} dB with, "
            f"{_fmt(metrics.get('face_ssim_without'))} / {_fmt(metrics.get('face_psnr_without'))} dB without"
        )
    return rows


def framing(metrics: dict) -> str:
    """How the generator saw the person, in words: 'person crop 128 px (facing pose maps)'."""
    if metrics.get("framing") == "person":
        return f"person crop {metrics.get('size')} px ({metrics.get('posemap_style')} pose maps)"
    return f"whole frame {metrics.get('size')} px" if metrics.get("framing") else "-"


def size(metrics: dict) -> str:
    return f"{metrics['width']}x{metrics['height']}" if "width" in metrics else "?"


def _fmt(value) -> str:
    return "-" if value is None else f"{float(value):.3f}"


def _secs(value) -> str:
    return "-" if value is None else f"{value:.1f} s"

"""`booth demo`: one whole booth session on the embedded stack, started and stopped for you.

    stack up -> workers (processors, assembler, trainer) -> reference dance -> session start
    -> camera clip -> session end -> dataset -> fine-tuning -> rendition link + summary

The clip is a video you pass (--video) or, by default, one built from a real photo of a person:
scikit-image's bundled "astronaut" photo (or --photo PATH), the person found by BlazePose (mask
and keypoints) and made to dance by the part warper (vision.dance_clip: arms raised and bent,
head tilted, body swaying, over the photo with the person inpainted), as a booth camera sees a
visitor whose limbs move; without the BlazePose models the whole photo slides across the frame
instead (the demo says why). The demo installs the models it lacks first (vision.models): pose
comes from MoveNet, else from BlazePose, which also gives the masks and the dancer. The camera is
16:9 (640x360), and the video comes back at that aspect. The reference
dance is built the same way with another rhythm. The one-shot video (trainer.oneshot) arrives
first; the summary shows when, and the fine-tuned one after it.

Warm start: before the session, a small base model of the same scene is built (trainer.base):
other people (scikit-image's "camera" photo, or --base-photo) moved over the visitor's own
backdrop, trained for --base-budget seconds, promoted in the store, and kept under the state
folder so that the next demo imports it instead of training it again. The session fine-tunes from
it; versions of the video arrive while the budget runs; at the end the demo trains the same
session from scratch for as long as the warm model had spent in training steps for its last
version before the final one (or the final one, when the budget had room for no other), and
prints both models' held-out quality at that equal time.
"""

from __future__ import annotations

import shutil
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
    conditioning: str | None = None  # "pose" or "warp" (None: the trainer's choice)
    base: bool = True
    base_budget_s: float = 90.0
    base_photos: tuple[Path, ...] = ()
    base_frames: int = 90
    mirror_seconds: float = 3.0  # the live mirror on the visitor's poses at the end (0: none)
    mirror_budget_s: float = 0.0  # training of the reference dancer's generator for it (0: the skeleton)


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


def photo_person(photo: np.ndarray, models_dir: Path | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """(BlazePose's mask, keypoints [17, 3]) of the photo's person, or None when no person is found.
    Raises BackendUnavailable naming the missing model files (vision.models.locate)."""
    from vision.pose import load_estimator

    persons = load_estimator("blazepose", models_dir, 1, track=False, with_mask=True).estimate(photo)
    if not persons or persons[0].mask is None:
        return None
    return persons[0].mask, persons[0].keypoints


def base_people(paths: tuple[Path, ...]) -> list[tuple[str, np.ndarray]]:
    """(name, RGB photo) of the base model's people: the given photos, else scikit-image's
    "camera" (a photographer, grey), which is not the visitor."""
    if paths:
        return [(p.stem, demo_photo(p)) for p in paths]
    from skimage import data

    grey = data.camera()
    return [("camera", np.repeat(grey[..., None], 3, axis=2))]


def scene_session(photo: np.ndarray, person, backdrop: np.ndarray, n: int, size: tuple[int, int], seed: int):
    """A TrainingSet of the photo's person moving over the scene's backdrop; its poses are the
    photo's keypoints carried by each frame's affine (exact)."""
    from trainer.training_set import TrainingSet
    from vision.pose.synthetic import apply_affine, moving_person_clip

    mask, keypoints = person
    clip = moving_person_clip(photo, mask, n_frames=n, size=size, seed=seed, backdrop=backdrop)
    poses = []
    for _frame, affine in clip:
        p = np.array(keypoints, np.float32)
        p[:, :2] = apply_affine(affine, p[:, :2])
        poses.append(p)
    return TrainingSet(
        [f for f, _ in clip], np.zeros((n, 1, 1, 3), np.uint8), np.stack(poses), np.array(["cam0"] * n), np.arange(n)
    )


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
            # The results are on disk (results/) and the base model in base-cache/: the store's
            # copies (the session's frames and checkpoints, about 200 MB at the demo's size, and the
            # imported base) would only pile up run after run.
            for data in ("s3-data", "prometheus-data"):
                shutil.rmtree(self.state_dir / data, ignore_errors=True)

    # --- the session ------------------------------------------------------------------------
    def run(self) -> dict:
        from producers.camera import run_cameras
        from producers.session import publish
        from producers.sources import open_source
        from trainer.references import add_reference
        from trainer.references.video import write_mp4

        o, s = self.o, self.settings
        self.models_note = self._ensure_models()
        photo = demo_photo(o.photo)
        person, self.person_note = self._photo_person(photo)
        self.echo(f"starting the embedded stack in {self.state_dir} ...")
        self.stack.up()
        (self.state_dir / "logs").mkdir(parents=True, exist_ok=True)
        self._spawn("processors", "process", "--backend", "auto")
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
            *(("--conditioning", o.conditioning) if o.conditioning else ()),
            "-q",
        )

        self.base_note = (
            self._ensure_base(photo, None if person is None else person[0]) if o.base else "off (--no-base)"
        )
        reference_video = self.state_dir / "reference.mp4"
        write_mp4(reference_video, build_clip(photo, o.reference_frames, o.size, seed=7, person=person), 30)
        self.echo("extracting the reference dance's poses ...")
        add_reference(s, reference_video, "demo-dance", backend="auto", replace=True)

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
        self.equal_time = (
            self._warm_against_scratch(session) if o.base and rendition.metrics.get("base_version") else None
        )
        rows = self._summary(session, summary, rendition)
        rows["files"] = str(self._download(session))
        rows.update(self._mirror(Path(rows["files"])))
        return rows

    # --- the live mirror ------------------------------------------------------------------------
    def _mirror(self, out: Path) -> dict:
        """The live mirror for a few seconds on the visitor's own poses, as the booth screen shows
        it while a visitor warms up: mirror.mp4 and its figures. The dancer's generator when one is
        trained (--mirror-budget), else the skeleton."""
        import cv2

        from trainer.mirror import load_mirror, replay
        from trainer.references.video import write_mp4

        o = self.o
        if o.mirror_seconds <= 0 or not self.visitor:
            return {}
        if o.mirror_budget_s > 0:
            from trainer.references.generator import train_generator

            self.echo(f"training the reference dancer's generator for the mirror ({o.mirror_budget_s:.0f} s) ...")
            train_generator(self.settings, "demo-dance", budget_s=o.mirror_budget_s, size=64)
        mirror = load_mirror(self.settings, "cam0", "demo-dance", width=320)
        self.echo(f"the live mirror: the reference dancer follows the visitor for {o.mirror_seconds:.0f} s ...")
        poses, walls = zip(*sorted(self.visitor, key=lambda pw: pw[1]))
        frames = replay(mirror, list(poses), list(walls), o.mirror_seconds)
        if frames:
            images = [
                cv2.cvtColor(cv2.imdecode(np.frombuffer(f.jpeg, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
                for f in frames
            ]
            write_mp4(out / "mirror.mp4", images, max(1.0, mirror.fps(window_s=o.mirror_seconds + 1) or 15.0))
        st = mirror.state()
        what = "the dancer's generator" if st["generator"] else "the skeleton (no dancer's generator: --mirror-budget)"
        return {
            "mirror": f"{len(frames)} frames of {what}",
            "mirror rate / render delay p50, p95": f"{st['fps']:.1f} frames/s / {_fmt(st['delay_ms_p50'])}, "
            f"{_fmt(st['delay_ms_p95'])} ms",
            "mirror poses offered / dropped (superseded, stale)": (
                f"{st['offered']} / {st['superseded']}, {st['stale']}"
            ),
        }

    # --- models -------------------------------------------------------------------------------
    def _ensure_models(self) -> str:
        """Install the model files neither the models folder nor ../shared/models holds; say once
        which backends the demo runs on. Raises BackendUnavailable when no pose backend can run."""
        from vision import models
        from vision.pose import resolve_backend

        folder = Path(self.settings.models_dir)
        missing = models.install(folder, echo=self.echo)
        if missing:
            self.echo(models.explain(missing))
        backend, _, note = resolve_backend("auto", folder)
        if note:
            note = "MoveNet's model is not installed: pose, masks and the dancer come from BlazePose"
        else:
            note = f"pose from {backend}"
        self.echo(f"models: {note}")
        return note

    def _photo_person(self, photo: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray] | None, str]:
        """The photo's person and a note; without one the clip is the sliding photo, and the note says why."""
        from vision.pose import BackendUnavailable

        try:
            person = photo_person(photo, Path(self.settings.models_dir))
        except BackendUnavailable as exc:
            note = f"no dancer: BlazePose cannot run ({exc}); the clip slides the whole photo instead"
            self.echo(note)
            return None, note
        if person is None:
            note = "no dancer: BlazePose found no person in the photo; the clip slides the whole photo instead"
            self.echo(note)
            return None, note
        return person, "the photo's person, moved by the part warper"

    # --- the base model -----------------------------------------------------------------------
    def _options(self) -> dict:
        """The trainer options the demo was given (the rest: the trainer's defaults)."""
        o = self.o
        given = (("temporal", o.temporal), ("face", o.face), ("conditioning", o.conditioning))
        return {k: v for k, v in given if v is not None}

    def _ensure_base(self, photo: np.ndarray, mask: np.ndarray | None) -> str:
        """Promote a base model of this scene in the store: the cached one, or one built now."""
        import hashlib
        import json

        from infra.objectstore import ObjectStore
        from trainer import base as bases
        from trainer.options import TrainerConfig
        from trainer.warp_framing import chosen_conditioning
        from vision.pose.synthetic import cutout_backdrop

        o, store = self.o, ObjectStore(self.settings)
        if mask is None:
            return f"none: {self.person_note}"
        backdrop = cutout_backdrop(photo, mask, o.size)
        people = base_people(o.base_photos)
        conditioning = chosen_conditioning(o.conditioning, bool(o.temporal))  # what the session will read
        recipe = (
            f"{o.resolution}:{o.base_budget_s}:{o.base_frames}:{o.size}:{[n for n, _ in people]}:{o.temporal}:{o.face}"
            f":{conditioning}"
        )
        key = hashlib.sha1(recipe.encode() + backdrop.tobytes()[::997]).hexdigest()[:12]
        cache = self.state_dir / "base-cache"
        manifest_path, checkpoint_path = cache / f"base-{key}.json", cache / f"base-{key}.pt"
        if manifest_path.exists() and checkpoint_path.exists():
            manifest = json.loads(manifest_path.read_text())
            version = bases.import_base(store, manifest, checkpoint_path.read_bytes())
            bases.promote(store, version)
            return f"reused {manifest['label']} from {cache} ({manifest['steps']} steps)"
        sets = {}
        for k, (name, picture) in enumerate(people):
            person = photo_person(picture, Path(self.settings.models_dir))
            if person is None:
                self.echo(f"no person found in the base photo {name}: left out")
                continue
            for seed in (3, 4):  # two takes of each person
                sets[f"demo-base-{k}-{seed}"] = scene_session(picture, person, backdrop, o.base_frames, o.size, seed)
        if not sets:
            return "none: no person found in the base photos"
        self.echo(
            f"building a base model of this scene: {len(sets)} takes of {len(people)} other people, "
            f"{o.base_budget_s:.0f} s (kept in {cache} for the next demo) ..."
        )
        # The session's own options, so that the base fits it (trainer.base: same inputs).
        config = TrainerConfig(crop_size=o.resolution, checkpoint_every_s=60.0, **self._options())
        manifest = bases.build_base_on(self.settings, sets, "pose", o.base_budget_s, config, echo=self.echo)
        bases.promote(store, manifest["version"])
        manifest, raw = bases.export_base(store, manifest["version"])
        cache.mkdir(parents=True, exist_ok=True)
        checkpoint_path.write_bytes(raw)
        manifest_path.write_text(json.dumps(manifest, indent=2))
        return f"built {manifest['label']} ({manifest['steps']} steps in {manifest['train_seconds']:.0f} s)"

    def _warm_against_scratch(self, session: str) -> dict | None:
        """Train the session from scratch for as long as the warm model spent in training steps for
        its last version before the final one (else the final one); both models' held-out figures
        at that equal time."""
        import json

        from infra.objectstore import ObjectStore
        from schemas import layout
        from trainer.evaluation import held_out_frames
        from trainer.framing_choice import choose_framing, recipe
        from trainer.options import TrainerConfig
        from trainer.pix2pix.evaluate import video_quality
        from trainer.pix2pix.run import make_trainer
        from trainer.pix2pix.train import TrainConfig
        from trainer.plates import PersonMasks, SessionPlates
        from trainer.training_set import holdout_split, load_training_set

        store = ObjectStore(self.settings)
        raw = store.get(layout.result_key(session, "versions.json"))
        versions = json.loads(raw)["versions"] if raw else []
        earlier = [v for v in versions if not v["final"] and v.get("box_psnr") is not None]
        warm = earlier[-1] if earlier else (versions[-1] if versions else None)
        if warm is None or not warm.get("step_seconds"):
            return None
        seconds = float(warm["step_seconds"])  # time in training steps, as the scratch arm below counts it
        self.echo(f"training the same session from scratch for {seconds:.0f} s of steps, to compare at equal time ...")
        data = load_training_set(self.settings, session, store=store)
        split = holdout_split(data.cameras, data.seqs, poses=data.poses)
        # The session's own recipe (its options), so that only the start differs.
        config = TrainerConfig(crop_size=self.o.resolution, **self._options())
        plates = SessionPlates(store, session, data, PersonMasks(data, config.person_masks, self.settings.models_dir))
        framed = choose_framing(data, split.train, "pose", config, "cpu", plates)
        framing = framed.framing
        samples = framing.training_samples(data, np.flatnonzero(split.train), framed.masks)
        net, inputs = recipe(framing)
        config = TrainConfig(
            net=net, checkpoint_every_s=None, progress_bar=True, temporal=inputs["temporal"], face=inputs["face"]
        )
        trainer = make_trainer(samples, config)
        generator = trainer.G
        while trainer.elapsed_s < seconds:
            generator = trainer.run(budget_s=seconds - trainer.elapsed_s, export=False).generator
        real, fake, _maps, poses = held_out_frames(generator, framing, data, split.test)["cam0"]
        scratch = video_quality(real, fake, poses)
        return {"seconds": seconds, "warm": warm, "scratch": scratch, "scratch_steps": trainer.step}

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
            "dance.png",
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
        """Watch the topics until the rendition arrives, showing training progress: a live bar on a
        terminal, a plain line every few seconds off it; each version as it reaches the visitor."""
        s, o = self.settings, self.o
        topics = (s.topic_poses, s.topic_smoothed, s.topic_datasets, s.topic_training, s.topic_renditions)
        consumer = kafka.consumer(s, *topics, group_id=None)
        self.counts = {"poses": 0, "smoothed": 0, "with_person": 0}
        # The visitor's smoothed poses (main person or None, wall time): the mirror replays them.
        self.visitor: list = []
        self.progress_last: TrainingProgress | None = None
        self.ready: DatasetReady | None = None
        self.oneshot: Rendition | None = None
        self.versions: list[tuple[Rendition, float]] = []
        deadline = time.monotonic() + (o.timeout_s or o.budget_s * 2 + 300)
        with _Status(self.echo) as status:
            status.show("waiting for the dataset", f"{self.counts['poses']} poses")
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
                                if self.ready is None:
                                    status.show("waiting for the dataset", f"{self.counts['poses']} poses")
                            elif isinstance(message, SmoothedPose):
                                from trainer.mirror import main_person

                                self.visitor.append((main_person(message), message.wall_time))
                                self.counts["smoothed"] += 1
                                self.counts["with_person"] += bool(message.persons)
                            elif isinstance(message, DatasetReady):
                                self.ready = message
                                self.t.mark("dataset")
                                if message.status != "ready":
                                    raise RuntimeError(f"the dataset failed: {message.reason}")
                                status.say(
                                    f"dataset ready: {message.samples} samples; fine-tuning for {o.budget_s:.0f} s"
                                )
                            elif isinstance(message, TrainingProgress):
                                self.progress_last = message
                                self.t.mark(message.phase)
                                info = " ".join(f"{k}={v:.3f}" for k, v in message.losses.items())
                                status.show(
                                    message.phase,
                                    f"step {message.step}"
                                    + (f"/{message.total_steps}" if message.total_steps else "")
                                    + f", {message.elapsed_s:.0f} s"
                                    + (f", about {message.eta_s:.0f} s left" if message.eta_s else "")
                                    + (f" ({info})" if info else ""),
                                    completed=message.step,
                                    total=message.total_steps or None,
                                )
                                if message.phase == "failed":
                                    raise RuntimeError(f"training failed: {message.message}")
                            elif isinstance(message, Rendition) and is_oneshot(message):
                                self.t.mark("oneshot")  # the first video; the fine-tuned one follows
                                self.oneshot = message
                                status.say(
                                    f"version 1 of the video (one-shot, before any training): "
                                    f"{self._since_dataset():.0f} s after the dataset; fine-tuning goes on"
                                )
                            elif isinstance(message, Rendition):
                                self.versions.append((message, time.monotonic()))
                                psnr = message.metrics.get("box_psnr")
                                status.say(
                                    f"version {message.version} of the video{' (final)' if message.final else ''}: "
                                    f"{self._since_dataset():.0f} s after the dataset, "
                                    f"{int(message.metrics.get('steps', 0))} steps"
                                    + (f", held-out person-box PSNR {psnr:.2f} dB" if psnr is not None else "")
                                )
                                if message.final:
                                    self.t.mark("rendition")
                                    return message
            finally:
                consumer.close()
        raise TimeoutError("no rendition arrived in time; see the worker logs in " + str(self.state_dir / "logs"))

    def _since_dataset(self) -> float:
        return time.monotonic() - self.t.marks.get("dataset", time.monotonic())

    def _summary(self, session: str, camera, rendition: Rendition) -> dict:
        from dataset import read_manifest

        manifest = read_manifest(self.settings, session) or {}
        m, t = rendition.metrics, self.t
        metrics = self._metrics(session)
        rows = {
            "session": session,
            "models": self.models_note,
            "dancer": self.person_note,
            "frames captured / sent": f"{camera.total('captured')} / {camera.total('acknowledged')}",
            "frames dropped": camera.total("dropped"),
            "poses (with a person)": f"{self.counts['poses']} ({self.counts['with_person']})",
            "imputed keypoint share": _fmt(manifest.get("imputed_share")),
            "samples in the dataset": manifest.get("samples", self.ready.samples if self.ready else "?"),
            "training steps": int(m.get("steps", 0)),
            "base model": self.base_note,
            "warm start": f"yes, from {metrics.get('base_model')}" if metrics.get("warm_start") else "no",
            "versions (after the dataset)": "; ".join(
                f"v{r.version} at {at - t.marks['dataset']:.0f} s: box PSNR {_fmt(r.metrics.get('box_psnr'))} dB, "
                f"dance limb {_fmt(r.metrics.get('dance_limb_error'))}"
                for r, at in self.versions
                if "dataset" in t.marks
            ),
            **dance_rows(self.oneshot.metrics if self.oneshot is not None else {}, m),
            **self._equal_time_row(),
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
        }
        if self.o.keep_stack:  # without the stack the links are dead: the files are the results
            rows["one-shot link"] = self.oneshot.url if self.oneshot is not None else "-"
            rows["rendition link"] = rendition.url
        return rows

    def _equal_time_row(self) -> dict:
        e = getattr(self, "equal_time", None)
        if not e:
            return {}
        w, s = e["warm"], e["scratch"]
        key = f"warm vs scratch after {e['seconds']:.0f} s of steps (person box PSNR / SSIM)"
        return {
            key: f"warm {_fmt(w.get('box_psnr'))} dB / {_fmt(w.get('box_ssim'))} ({int(w.get('steps', 0))} steps) "
            f"vs scratch {_fmt(s['box_psnr'])} dB / {_fmt(s['box_ssim'])} ({e['scratch_steps']} steps)"
        }


class _Status:
    """The demo's running status: a rich bar on a terminal; off it plain lines (infra.progress)."""

    def __init__(self, echo):
        from infra.progress import PlainStatus, is_terminal

        self.echo = echo
        self.plain = None if is_terminal(sys.stdout) else PlainStatus(echo)
        self.bar = None

    def __enter__(self):
        if self.plain is None:
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"), TimeRemainingColumn()
            )
            self.bar.__enter__()
            self.task = self.bar.add_task("", total=None, info="")
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def show(self, heading: str, detail: str = "", completed: int | None = None, total: int | None = None) -> None:
        if self.bar is not None:
            self.bar.update(self.task, description=heading, info=detail, completed=completed, total=total)
        else:
            assert self.plain is not None
            self.plain.update(heading, detail)

    def say(self, line: str) -> None:
        """A line that always shows (above the bar on a terminal)."""
        if self.bar is not None:
            self.bar.console.print(line, highlight=False)
        else:
            self.echo(line)


def dance_rows(oneshot: dict, final: dict) -> dict:
    """The dance each video shows (trainer.fidelity): limb error, facing, frames with a person."""

    def said(m: dict) -> str:
        if "dance_person_found" not in m:
            return "-"
        return (
            f"limb error {_fmt(m.get('dance_limb_error'))} (p90 {_fmt(m.get('dance_limb_error_p90'))}) torso lengths, "
            f"the judge's floor on the session's own frames {_fmt(m.get('dance_limb_floor'))}, "
            f"facing agreement {_fmt(m.get('dance_facing_agreement'))}, "
            f"person found {_fmt(m.get('dance_person_found'))}"
        )

    return {"dance fidelity: one-shot": said(oneshot), "dance fidelity: final": said(final)}


def coherence_rows(metrics: dict) -> dict:
    """What the generator read, the temporal and face options, with their figures with and without
    (coherence.png shows them)."""
    on = {k: "on" if metrics.get(k) else "off" for k in ("temporal", "face")}
    rows = {
        "conditioning": metrics.get("conditioning", "pose"),
        "temporal / face options": f"{on['temporal']} / {on['face']}",
    }
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

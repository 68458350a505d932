"""What the live mirror's speed costs in quality: the dance limb error of its frames against the
offline rendition of the same reference dancer, driven by the same poses, side by side.

    .venv/bin/python -m bench.bench_mirror_quality [--budget 120] [--longer 3] [--poses 90] [--quick]
        [--threads 1] [--photo FILE]

Starts a private embedded stack (broker + S3 server) in a temporary folder. The reference is a clip
made as the demo makes its dancer's (booth.demo: a photo's person danced by vision.dance_clip, 150
frames at 640x360, seed 7; the photo is ../shared's squat.png, a whole body, or --photo), added
twice with `booth reference add`'s code path (BlazePose) and given two generators with `booth
reference train`'s code path, each for --budget seconds on this machine's CPU with --threads torch
threads (one by default: on a shared 2-core machine two threads contend, and a step takes 2.5-5
times as long):

* the mirror's: 128 px, width 16 (trainer.references.generator's defaults, chosen for speed:
  bench/bench_mirror.py);
* the offline size: 256 px, width 32, what a session's generator is on a CPU.

The visitor is the same person's other dance (seed 1, as the demo's camera clip). Its poses go
through the mirror (trainer.mirror.load_mirror, as the console runs it: the visitor normalized
onto the dancer, one torch thread, 480 px wide, JPEG); each frame keeps the pose it drew, and the
offline renditions render exactly those poses at the reference's own size (the trainer's
whole-frame framing, no JPEG, every pose). Arms:

* reference: the reference's own frames against its own poses: what a renderer that drew these
  poses perfectly would score with this judge (its floor);
* mirror: the mirror's frames (its generator, normalization, display size and JPEG);
* mirror's generator offline: the same weights rendered offline (what the live path costs);
* offline size: the 256 px generator of width 32 rendered offline (what the small generator
  costs), after the same seconds, then trained on (from its checkpoint) to --longer times the
  seconds: a step of it costs about three times the small one's, so at 3x it has taken about as
  many steps.

trainer.fidelity judges every frame with MoveNet (the poses are BlazePose's): limb error in torso
lengths (mean, p90) over the frames it could compare (a torso found: the "compared" share), share
of frames with a person found, facing agreement. Ratios: the mirror's
limb error over each offline arm's. The training budget is small next to a real reference's
(`booth reference train --budget 1800`, or a GPU), so both generators are early in training and
the figures compare sizes at equal seconds, not finished dancers. Pictures (dance.png per arm:
asked pose | rendered frame) go to <state dir>/bench/mirror-quality/.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from bench.bench_person import SHARED, _table
from infra.settings import Settings

SIZE = (640, 360)  # the demo's camera
# A whole body (the limb error needs shoulders and hips the judge finds); the astronaut's portrait
# ends at the hips, so few of its frames can be compared.
SQUAT = SHARED / "data" / "images" / "squat.png"
REFERENCE_FRAMES = 150
DRAWN_BY = "blazepose"  # the reference's and the visitor's poses: the judge is MoveNet
ARMS = {"mirror": (128, 16), "offline": (256, None)}  # reference name: generator size, width (None: the recipe's)

COLUMNS = [
    ("arm                           ", "arm", ""),
    ("size", "size", ""),
    ("steps", "steps", ""),
    ("frame", "frame", ""),
    ("limb err", "dance_limb_error", ".3f"),
    ("limb p90", "dance_limb_error_p90", ".3f"),
    ("found", "dance_person_found", ".2f"),
    ("compared", "compared", ".2f"),
    ("facing", "dance_facing_agreement", ".2f"),
    ("mirror/this", "ratio", ".2f"),
    ("held-out box SSIM", "box_ssim", ".3f"),
]


def judge(arm: str, asked: np.ndarray, images, models_dir, out_dir: Path, n: int | None = None) -> dict:
    """trainer.fidelity's figures of `images` (RGB frames) against the poses asked of them (n
    frames spread over them; all by default); dance.png to out_dir/<arm>-dance.png."""
    from trainer.fidelity import DanceJudge
    from trainer.pix2pix.samples import png_bytes

    j = DanceJudge(asked, DRAWN_BY, models_dir, frames=n or len(asked))
    for _ in j.watch((im, im) for im in images):
        pass
    result = j.judge()
    if result.picture is not None:
        (out_dir / f"{arm}-dance.png").write_bytes(png_bytes(result.picture))
    for w in result.warnings:
        print(f"  {arm}: {w}")
    return result.figures


def mirrored(settings, visitor: np.ndarray) -> tuple[np.ndarray, list[np.ndarray], float]:
    """The mirror's frames of the visitor's poses, every pose rendered (no drops: quality, not
    speed, is measured here): (poses drawn [N, 17, 3] in the frames' pixels, RGB frames, the
    display's scale from the reference's pixels)."""
    from trainer.mirror import load_mirror

    mirror = load_mirror(settings, "cam0", "mirror")
    asked, images = [], []
    for seq, pose in enumerate(visitor):
        mirror.offer(pose, time.time(), seq)
        frame = mirror.step(timeout=0)
        if frame is None or frame.pose is None:
            continue
        asked.append(frame.pose)
        images.append(
            cv2.cvtColor(cv2.imdecode(np.frombuffer(frame.jpeg, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        )
    if not asked:
        raise SystemExit("the mirror rendered none of the visitor's poses")
    return np.stack(asked), images, mirror.k


def main() -> None:
    from booth.demo import build_clip, demo_photo, photo_person
    from infra.stack import Stack, embedded_settings
    from trainer.references import add_reference, load_reference_version
    from trainer.references.generator import CAMERA, load_dancer, train_generator
    from vision.dance_clip import dancing_person_clip

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, help="seconds of CPU training per generator (default 120)")
    ap.add_argument("--poses", type=int, help="the visitor's poses (default 90: 3 s at 30 fps)")
    ap.add_argument(
        "--longer", type=float, default=3.0, help="the offline generator then trained on to this many times the seconds"
    )
    ap.add_argument("--threads", type=int, default=1, help="torch threads while training (default 1)")
    ap.add_argument("--photo", type=Path, help="the person to dance (default: ../shared's squat.png, a whole body)")
    ap.add_argument("--quick", action="store_true", help="30 s per generator, 48 poses: a smoke run")
    args = ap.parse_args()
    budget = args.budget or (30.0 if args.quick else 120.0)
    n_poses = args.poses or (48 if args.quick else 90)
    longer = args.longer
    models_dir = SHARED / "models" if (SHARED / "models").is_dir() else None
    out_dir = Path(Settings().state_dir) / "bench" / "mirror-quality"
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    torch.set_num_threads(args.threads)

    photo_path = args.photo or (SQUAT if SQUAT.is_file() else None)
    photo = demo_photo(photo_path)
    print(f"the dancer and the visitor: {photo_path or 'the demo photo (astronaut)'}", flush=True)
    person = photo_person(photo, models_dir)
    if person is None:
        raise SystemExit("no person found on the demo's photo")
    reference_frames = build_clip(photo, REFERENCE_FRAMES, SIZE, seed=7, person=person)
    visitor = np.stack([p for _f, p in dancing_person_clip(photo, *person, n_frames=n_poses, size=SIZE, seed=1)])

    with tempfile.TemporaryDirectory(prefix="booth-bench-mirror-") as tmp:
        from trainer.references.video import write_mp4

        settings = embedded_settings(Path(tmp))
        stack = Stack(settings, state_dir=Path(tmp))
        stack.up(prometheus=False)
        try:
            video = Path(tmp) / "reference.mp4"
            write_mp4(video, reference_frames, 30)
            infos = {}
            for name, (size, ngf) in ARMS.items():
                print(f"{name}: adding the reference (BlazePose on {REFERENCE_FRAMES} frames) ...", flush=True)
                add_reference(settings, video, name, backend=DRAWN_BY, replace=True)
                print(f"{name}: training its {size} px generator for {budget:.0f} s on the CPU ...", flush=True)
                infos[name] = train_generator(settings, name, budget_s=budget, size=size, ngf=ngf)
                print(f"  {infos[name]['steps']} steps in {infos[name]['train_seconds']} s", flush=True)
            ref = load_reference_version(settings, "mirror")
            if not np.allclose(ref.poses, load_reference_version(settings, "offline").poses, atol=1e-3):
                print("  note: the two references' poses differ slightly (two BlazePose runs)")

            asked, images, k = mirrored(settings, visitor)
            print(f"the mirror rendered {len(asked)} of the visitor's {n_poses} poses", flush=True)
            offline_poses = asked.copy()
            offline_poses[:, :, :2] /= k  # the same poses in the reference's pixels
            small, large = (load_dancer(settings, name) for name in ARMS)

            def row(arm: str, info: dict | None, frame: tuple[int, int], figures: dict) -> dict:
                net = info["net"] if info else None
                return {
                    "arm": arm,
                    "size": f"{net['size']}/{net['ngf']}" if net else "",
                    "steps": info["steps"] if info else "",
                    "box_ssim": info.get("box_ssim", float("nan")) if info else float("nan"),
                    "frame": f"{frame[0]}x{frame[1]}",
                    "compared": figures.get("dance_compared", 0) / max(figures.get("dance_judged", 1), 1),
                    **figures,
                }

            print("judging (MoveNet on every frame) ...", flush=True)
            shown = images[0].shape[1], images[0].shape[0]
            rows = [
                row(
                    "reference (its own frames)",
                    None,
                    SIZE,
                    judge("reference", ref.poses, reference_frames, models_dir, out_dir, 48),
                ),
                row("mirror", infos["mirror"], shown, judge("mirror", asked, images, models_dir, out_dir)),
            ]
            for arm, slug, dancer, info in (
                ("mirror's generator offline", "mirror-offline", small, infos["mirror"]),
                ("offline size, equal seconds", "offline", large, infos["offline"]),
            ):
                frames = [f for f, _map in dancer.framing.frames(dancer.generator, offline_poses, CAMERA)]
                rows.append(row(arm, info, SIZE, judge(slug, offline_poses, frames, models_dir, out_dir)))
            if longer > 1:
                # Training goes on from its checkpoint, as `booth reference train` run again does.
                print(f"offline: training on for {budget * (longer - 1):.0f} s ...", flush=True)
                info = train_generator(settings, "offline", budget_s=budget * (longer - 1), size=256, ngf=None)
                print(f"  {info['steps']} steps in all", flush=True)
                dancer = load_dancer(settings, "offline")
                frames = [f for f, _map in dancer.framing.frames(dancer.generator, offline_poses, CAMERA)]
                figures = judge("offline-longer", offline_poses, frames, models_dir, out_dir)
                rows.append(row(f"offline size, {longer:g}x the seconds", info, SIZE, figures))
        finally:
            stack.down()
    mirror_error = rows[1]["dance_limb_error"]
    for r in rows[2:]:
        r["ratio"] = mirror_error / max(r["dance_limb_error"], 1e-9)
    print(
        f"\nthe dance of the visitor's {len(asked)} poses, judged by MoveNet on every frame; generators trained "
        f"{budget:.0f} s each on this machine's CPU ({longer:g}x for the last row), {args.threads} torch thread(s):"
    )
    _table(rows, COLUMNS)
    for offline in rows[3:]:
        print(
            f"mirror / {offline['arm']}: limb error {mirror_error / max(offline['dance_limb_error'], 1e-9):.2f}x "
            f"(mean), {rows[1]['dance_limb_error_p90'] / max(offline['dance_limb_error_p90'], 1e-9):.2f}x (p90); "
            f"person found {rows[1]['dance_person_found']:.2f} against {offline['dance_person_found']:.2f}"
        )
    print(f"the reference's own frames: limb error {rows[0]['dance_limb_error']:.3f}")
    print(f"pictures: {out_dir} ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()

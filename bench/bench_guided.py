"""Guided capture against walking about: how much of a dance each visitor's 30 seconds cover.

Synthetic persons (trainer.figure; no dance footage is shipped): a dance of key poses held about
a second each (facings front/back/left/right, arms down/out/up/forward, knees bent), played on a
loop as the display does. Two visitors over the same 30 s at 15 poses a second, both at another
place and size in their camera than the dancer:

  guided    watches the display and follows the dance, 0.4 s behind, with their own wobble
            (0.06 torso lengths a keypoint) and misses some moves (a random 15% of key poses
            done with arms down instead), after the 3 s countdown;
  walking   what the booth got before: walks across and back (profiles), faces the camera now
            and then, once a T-pose, arms down or swinging.

Columns: coverage (trainer.coverage, live, as the display's meter) at 15 and 30 s, the seconds
to reach 80% (-: not within 30 s), the dance frames the 30 s never show, the meter's time per
update (mean and worst, on one core), and the facings covered.

Trained (--budget S, default 120; 0 skips it): seed 0's two 30 s sessions, filmed, trained and
rendered the same way, then judged on the dance. The person's pixels are real: the man of
../shared/data/images/two_people_walking.png (BlazePose's mask and keypoints), moved part by part
(vision.warp.PartWarper) into each visitor's poses above, over snow from the same photo, 640x480 at
15 fps. No real footage of a visitor following a dance exists, and vtest.avi's walkers are other
people at another size, so both arms are made from the same photo to differ only in what the
visitor did. Each session goes through the trainer's own steps as bench_person/bench_dance run
them: the pose-novel held-out split (sparing the frames that show the dance's poses, as
trainer.job does), the person masker, plate and crop, the default generator
(warp-conditioned, trainer.framing_choice.recipe), training frames drawn by relevance to the dance
(trainer.coverage.training_relevance + Repeated, as trainer.job does), S seconds of steps each in
alternating 10 s slices; then one loop of the dance, placed where the visitor stands, rendered and
judged by trainer.fidelity (MoveNet; the poses are exact, drawn by no estimator): dance limb error
(mean, p90, torso lengths), facing agreement, person found. dance-guided.png / dance-walking.png
and the dance videos go to <state dir>/bench/guided/.

    python -m bench.bench_guided [--seeds N] [--budget S] [--quick]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from trainer.coverage import LiveCoverage
from trainer.figure import figure

FPS = 15
SECONDS = 30.0
COUNTDOWN = 3.0
TARGET = 0.8
KEYS = [
    (0, "down", 0.0),
    (0, "out", 0.0),
    (0, "up", 0.0),
    (0, "forward", 0.6),
    (90, "out", 0.0),
    (180, "down", 0.0),
    (180, "up", 0.0),
    (-90, "forward", 0.0),
    (0, ("up", "down"), 0.0),
    (0, ("down", "up"), 0.0),
    (180, "out", 0.6),
    (45, "up", 0.0),
]


def _tween(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    return (1 - t) * a + t * b


def dance(rng: np.random.Generator, hold_s: float = 1.0) -> np.ndarray:
    """[T, 17, 3]: the key poses in a shuffled order, each held hold_s with a quarter-second move."""
    order = rng.permutation(len(KEYS))
    keys = [figure(KEYS[i][0], KEYS[i][1], KEYS[i][2], centre_x=320, scale=110) for i in order]
    out = []
    n = int(hold_s * FPS)
    move = max(1, n // 4)
    for k, pose in enumerate(keys):
        nxt = keys[(k + 1) % len(keys)]
        out += [pose] * (n - move) + [_tween(pose, nxt, (j + 1) / (move + 1)) for j in range(move)]
    return np.stack(out).astype(np.float32)


def _wobble(pose: np.ndarray, rng: np.random.Generator, torso: float, sigma: float) -> np.ndarray:
    out = pose.copy()
    out[:, :2] += rng.normal(0, sigma * torso, (17, 2))
    return out


def guided(steps: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """The visitor following the looped dance (see module doc), at 70% of the dancer's size."""
    scale, lag = 0.7, int(0.4 * FPS)
    hold = int(FPS)
    missed = rng.random(len(steps) // hold + 1) < 0.15
    out = []
    for f in range(int(SECONDS * FPS)):
        t = f / FPS
        if t < COUNTDOWN:
            pose = figure(0, "down", centre_x=260, ground_y=420, scale=77)
        else:
            i = (f - int(COUNTDOWN * FPS) - lag) % len(steps)
            src = steps[max(i, 0)].copy()
            if missed[i // hold]:
                src = figure(0, "down", centre_x=320, scale=110)
            pose = src.copy()
            pose[:, 0] = 260 + scale * (src[:, 0] - 320)
            pose[:, 1] = 420 + scale * (src[:, 1] - 440)
        out.append(_wobble(pose, rng, 77, 0.06))
    return out


def walking(rng: np.random.Generator) -> list[np.ndarray]:
    """Walks across and back, faces the camera now and then, a T-pose once (module doc)."""
    out = []
    x, direction = 120.0, 1
    tpose_at = rng.uniform(8, 20)
    for f in range(int(SECONDS * FPS)):
        t = f / FPS
        if abs(t - tpose_at) < 1.5:
            pose = figure(0, "out", centre_x=x, ground_y=420, scale=77)
        elif int(t) % 7 in (3,):
            pose = figure(0, "down", centre_x=x, ground_y=420, scale=77)
        else:
            x += direction * 6.0
            if not 80 < x < 560:
                direction = -direction
            swing = ("forward", "down") if int(t * 2) % 2 else ("down", "forward")
            pose = figure(90 * direction, swing, centre_x=x, ground_y=420, scale=77)
        out.append(_wobble(pose, rng, 77, 0.06))
    return out


def run(name: str, steps: np.ndarray, poses: list[np.ndarray]) -> dict:
    live = LiveCoverage(steps)
    at: dict[int, float] = {}
    reached = None
    spent: list[float] = []
    for f, pose in enumerate(poses):
        live.add("cam0", pose, wall_time=f / FPS)
        if (f + 1) % FPS == 0:  # the meter's once a second
            t0 = time.perf_counter()
            report = live.report(now=(f + 1) / FPS)
            spent.append(time.perf_counter() - t0)
            second = (f + 1) // FPS
            at[second] = report["coverage"]
            if reached is None and report["coverage"] >= TARGET:
                reached = second
    final = live.report(now=SECONDS)
    return {
        "visitor": name,
        "at_15s": at[15],
        "at_30s": at[30],
        "to_80": reached,
        "facings": ",".join(final["facings"]),
        "unseen": final["measurable_frames"] - round(final["coverage"] * final["measurable_frames"]),
        "meter_ms": float(np.mean(spent)) * 1000,
        "meter_max_ms": max(spent) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budget", type=float, help="seconds of training per arm (default 120; 0: no training)")
    parser.add_argument("--quick", action="store_true", help="one seed, 20 s of training per arm: a smoke run")
    parser.add_argument("--dance-frames", type=int, default=48, help="frames of the dance rendered and judged")
    args = parser.parse_args()
    if args.quick:
        args.seeds = 1
    budget = args.budget if args.budget is not None else (20.0 if args.quick else 120.0)
    rows = []
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        steps = dance(rng)
        for name, poses in (("guided", guided(steps, rng)), ("walking", walking(rng))):
            rows.append({"seed": seed, **run(name, steps, poses)})
    header = f"{'seed':>4}  {'visitor':8} {'cov@15s':>8} {'cov@30s':>8} {'to 80%':>7} {'unseen':>7}"
    header += f" {'meter ms':>9} {'max ms':>7}  facings"
    print(header)
    for r in rows:
        to = "-" if r["to_80"] is None else f"{r['to_80']}s"
        print(
            f"{r['seed']:>4}  {r['visitor']:8} {r['at_15s']:8.0%} {r['at_30s']:8.0%} {to:>7} {r['unseen']:>7} "
            f"{r['meter_ms']:9.1f} {r['meter_max_ms']:7.1f}  {r['facings']}"
        )
    g = [r for r in rows if r["visitor"] == "guided"]
    w = [r for r in rows if r["visitor"] == "walking"]
    mean = lambda rs, k: float(np.mean([r[k] for r in rs]))  # noqa: E731
    print(
        f"\nmean coverage at 30 s: guided {mean(g, 'at_30s'):.0%}, walking {mean(w, 'at_30s'):.0%} "
        f"(ratio {mean(g, 'at_30s') / max(mean(w, 'at_30s'), 1e-9):.1f}x); guided reached {TARGET:.0%} in "
        f"{sum(r['to_80'] is not None for r in g)}/{len(g)} runs, "
        f"walking in {sum(r['to_80'] is not None for r in w)}/{len(w)}"
    )
    if budget > 0:
        trained(rows, budget, args.dance_frames)


PHOTO = "two_people_walking.png"
CANVAS = (640, 480)
STANDS = (260.0, 420.0, 0.7)  # where the visitor stands (x, ground y) and their size against the dancer's


def placed(steps: np.ndarray) -> np.ndarray:
    """The dance moved to where the visitor stands, at the visitor's size (as guided() follows it)."""
    x, y, k = STANDS
    out = np.array(steps, np.float32, copy=True)
    out[:, :, 0] = x + k * (steps[:, :, 0] - 320)
    out[:, :, 1] = y + k * (steps[:, :, 1] - 440)
    return out


def photo_person(shared: Path, models_dir: Path | None):
    """(photo, the person's mask, keypoints, where from): the leftmost person of the shared photo,
    by BlazePose, or the demo's astronaut (upper body only) without the shared data."""
    import cv2

    from vision.pose import load_estimator

    path = shared / "data" / "images" / PHOTO
    image = cv2.imread(str(path))
    if image is None:
        from booth.demo import demo_photo

        photo, where = demo_photo(None), "scikit-image's astronaut photo (no shared photo)"
    else:
        photo, where = cv2.cvtColor(image, cv2.COLOR_BGR2RGB), f"the left person of {path.name}"
    persons = load_estimator("blazepose", models_dir, 2, track=False, with_mask=True).estimate(photo)
    persons = [p for p in persons if p.mask is not None]
    if not persons:
        raise SystemExit(f"BlazePose finds no person in {where}")
    person = min(persons, key=lambda p: float(np.mean(p.keypoints[p.keypoints[:, 2] > 0.3, 0])))
    return photo, person.mask, person.keypoints.astype(np.float32), where


def filmed(name: str, poses: list[np.ndarray], warper, backdrop: np.ndarray, where: str):
    """A bench.footage.Session of the photo's person in `poses`."""
    from bench.footage import Session

    frames = np.stack([warper.render(p, backdrop)[0] for p in poses])
    source = f"{where}, moved as the {name} visitor"
    return Session(name, frames, np.stack(poses).astype(np.float32), float(FPS), source)


def train_arm(session, dance: np.ndarray, models_dir: Path | None):
    """(Prepared, framing, trainer, relevance summary): the session as the trainer prepares it."""
    from bench.bench_person import prepare
    from trainer.coverage import Repeated, training_relevance
    from trainer.framing_choice import recipe
    from trainer.pix2pix.train import TrainConfig, Trainer
    from trainer.warp_framing import WarpConditioned

    p = prepare(session, models_dir, dance=dance)
    idx = np.flatnonzero(p.train)
    framing = WarpConditioned.from_person(p.person, p.data, p.train, p.masks)
    net, _data = recipe(framing)
    samples = framing.training_samples(p.data, idx, p.masks)
    counts, relevance = training_relevance(dance, p.data.poses, p.data.cameras, idx)
    if len(samples) == len(idx):
        samples = Repeated(samples, counts)
    return p, framing, Trainer(samples, TrainConfig(net=net, checkpoint_every_s=None, seed=0)), relevance


def judged(arm: str, dance: np.ndarray, framing, generator, out_dir: Path, models_dir: Path | None) -> dict:
    """The dance rendered by the arm's generator, judged (every frame), dance.png and the video kept."""
    from bench.bench_person import CAMERA
    from trainer.fidelity import DanceJudge
    from trainer.pix2pix.samples import png_bytes
    from trainer.rendition import write_video

    j = DanceJudge(dance, "blazepose", models_dir, frames=len(dance))
    frames = framing.frames(generator, dance, CAMERA)
    write_video(j.watch(frames), len(dance), out_dir / f"dance-{arm}.mp4", 10, progress=False)
    result = j.judge()
    if result.picture is not None:
        (out_dir / f"dance-{arm}.png").write_bytes(png_bytes(result.picture))
    for w in result.warnings:
        print(f"  {arm}: {w}")
    return result.figures


def trained(rows: list[dict], budget: float, dance_frames: int) -> None:
    """Seed 0's sessions filmed, trained and judged on the dance (module doc); prints the table."""
    import torch

    from bench.bench_person import SHARED, train_alternately
    from infra.settings import Settings
    from trainer.fidelity import FACINGS, facings_of
    from vision.pose.synthetic import cutout_backdrop
    from vision.warp import PartWarper, SourceView

    torch.manual_seed(0)
    t0 = time.perf_counter()
    models_dir = SHARED / "models" if (SHARED / "models").is_dir() else None
    out_dir = Path(Settings().state_dir) / "bench" / "guided"
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    steps = dance(rng)
    visitors = {"guided": guided(steps, rng), "walking": walking(rng)}
    photo, mask, keypoints, where = photo_person(SHARED, models_dir)
    warper = PartWarper([SourceView.build(photo, mask, keypoints)])
    # Snow and trees from the photo's left quarter, where nobody stands.
    backdrop = cutout_backdrop(photo[:, : photo.shape[1] // 4], mask[:, : photo.shape[1] // 4], CANVAS)
    loop = placed(steps)
    dance_judged = loop[np.linspace(0, len(loop) - 1, dance_frames).round().astype(int)]
    print(
        f"\ntrained: {budget:.0f} s of training per arm; person: {where}; motion: synthetic (trainer.figure); "
        f"torch threads {torch.get_num_threads()}",
        flush=True,
    )
    arms = {}
    for name, poses in visitors.items():
        session = filmed(name, poses, warper, backdrop, where)
        arms[name] = train_arm(session, loop, models_dir)
        p, _f, _t, rel = arms[name]
        print(
            f"  {name}: {len(session.frames)} frames filmed, {int(p.train.sum())} trained on; facings "
            f"{facings_of(session.poses[p.train])}; training frames cover {rel['share']:.0%} of the dance",
            flush=True,
        )
    train_alternately({k: a[2] for k, a in arms.items()}, budget)
    out = []
    for name, (_p, framing, trainer, rel) in arms.items():
        meter = next(r for r in rows if r["seed"] == 0 and r["visitor"] == name)
        figures = judged(name, dance_judged, framing, trainer.G, out_dir, models_dir)
        out.append({"visitor": name, "meter": meter, "steps": trainer.step, "train_cov": rel["share"], **figures})
    print(
        f"\n{'visitor':8} {'cov@30s':>8} {'to 80%':>7} {'trained cov':>11} {'steps':>6} "
        f"{'limb err':>9} {'limb p90':>9} {'facing':>7} {'found':>6}"
    )
    for r in out:
        to = "-" if r["meter"]["to_80"] is None else f"{r['meter']['to_80']}s"
        print(
            f"{r['visitor']:8} {r['meter']['at_30s']:8.0%} {to:>7} {r['train_cov']:11.0%} {r['steps']:6d} "
            f"{r.get('dance_limb_error', float('nan')):9.3f} {r.get('dance_limb_error_p90', float('nan')):9.3f} "
            f"{r.get('dance_facing_agreement', float('nan')):7.2f} {r.get('dance_person_found', float('nan')):6.2f}"
        )
    print("limb error by the asked pose's facing:")
    for r in out:
        by = ", ".join(f"{c} {r[f'dance_limb_error_{c}']:.3f}" for c in FACINGS if f"dance_limb_error_{c}" in r)
        print(f"  {r['visitor']:8} {by or '-'}")
    g, w = out
    cut = 1 - g.get("dance_limb_error", np.nan) / max(w.get("dance_limb_error", np.nan), 1e-9)
    met_cov = g["meter"]["to_80"] is not None and g["meter"]["to_80"] <= SECONDS
    print(
        f"\ntarget: guided >= 80% in 30 s: {'met' if met_cov else 'NOT met'} ({g['meter']['at_30s']:.0%}); "
        f"guided limb error {cut:.0%} lower than walking (target >= 30%): {'met' if cut >= 0.3 else 'NOT met'} "
        f"at {budget:.0f} s of training each"
    )
    print(f"pictures and dance videos: {out_dir} ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()

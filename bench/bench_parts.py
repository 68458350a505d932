"""Body-part segmentation speed: ms per frame for each stage, BodyPix against pose-derived parts.

    .venv/bin/python -m bench.bench_parts [--quick] [--models DIR]

All stages run in this one process on the two shared photos (alternating). The table gives each
stage's p50 relative to BodyPix's network alone at 1 thread: the network, the numpy decoding
that replaces Coral's decoder op, the whole segment() call, BlazePose + nearest-limb parts,
colour repair of a JPEG'd part mask, and rendering the generator input.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from vision import models
from vision.parts import decode
from vision.parts.bodypix import BodyPixSegmenter
from vision.parts.colours import colourize
from vision.parts.from_pose import PoseDerivedSegmenter
from vision.parts.repair import repair_ids
from vision.partsmap import render_representation
from vision.pose import load_estimator


def timed(fn: Callable[[int], object], n: int, warmup: int) -> np.ndarray:
    for i in range(warmup):
        fn(i)
    out = []
    for i in range(n):
        start = time.perf_counter()
        fn(i)
        out.append((time.perf_counter() - start) * 1000)
    return np.array(out)


def measure_threads(
    models_dir: Path, cache: Path, threads: int, images: list[np.ndarray], n: int, warmup: int
) -> list[tuple[str, int, np.ndarray]]:
    """BodyPix stages and the pose-derived alternative at one TFLite thread count."""

    def frame(i: int) -> np.ndarray:
        return images[i % len(images)]

    seg = BodyPixSegmenter(models_dir, threads, device="cpu", cache_dir=cache)
    rows = [("bodypix network (decoder op removed)", threads, timed(lambda i: seg._run(frame(i)), n, warmup))]
    if threads == 1:
        nets = [seg.net_outputs(im) for im in images]
        poses = [decode.decode_multiple_poses(x) for x in nets]
        rows.append(
            (
                "  numpy pose decoding (multi-person)",
                1,
                timed(lambda i: decode.decode_multiple_poses(nets[i % 2]), n, warmup),
            )
        )
        rows.append(
            (
                "  numpy instance costs (long offsets)",
                1,
                timed(lambda i: decode.instance_costs(nets[i % 2], poses[i % 2]), n, warmup),
            )
        )
    rows.append(("bodypix segment() total", threads, timed(lambda i: seg.segment(frame(i)), n, warmup)))
    derived = PoseDerivedSegmenter(load_estimator("blazepose", models_dir, threads, track=False))
    rows.append(("blazepose + nearest-limb parts", threads, timed(lambda i: derived.segment(frame(i)), n, warmup)))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few frames: finishes in seconds")
    parser.add_argument("--models", type=Path, default=None, help="models folder (default: found)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    models_dir = args.models or models.find_models_dir()
    if models_dir is None:
        raise SystemExit("no models folder found: pass --models or run vision.models.find_or_install")
    images = [
        cv2.cvtColor(cv2.imread(str(models.SHARED_MODELS.parent / "data" / "images" / f"{n}.png")), cv2.COLOR_BGR2RGB)
        for n in ("two_people_walking", "squat")
    ]
    n, warmup = (6, 2) if args.quick else (40, 5)

    rows: list[tuple[str, int, np.ndarray]] = []
    with tempfile.TemporaryDirectory() as cache:
        for threads in (1, 2):
            rows += measure_threads(models_dir, Path(cache), threads, images, n, warmup)
        seg = BodyPixSegmenter(models_dir, 1, device="cpu", cache_dir=Path(cache))
        result = seg.segment(images[0])
    rgb = colourize(result.part_ids)
    _, jpg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])
    noisy = cv2.cvtColor(cv2.imdecode(jpg, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    rows.append(("repair 640x480 mask, k-means only", 1, timed(lambda i: repair_ids(noisy, refine=False), n, warmup)))
    rows.append(("repair 640x480 mask, k-means + borders", 1, timed(lambda i: repair_ids(noisy), n, warmup)))
    rows.append(
        (
            "render pose+parts at 256",
            1,
            timed(
                lambda i: render_representation(
                    "pose+parts",
                    poses=result.poses,
                    part_ids=result.part_ids,
                    person_ids=result.person_ids,
                    out_size=256,
                ),
                n,
                warmup,
            ),
        )
    )

    base = np.percentile(rows[0][2], 50)
    print(f"{n} frames per row, {warmup} warm-up; ratio = p50 / bodypix network at 1 thread")
    print(f"{'stage':42} {'threads':>7} {'p50 ms':>8} {'p90 ms':>8} {'ratio':>6}")
    for label, threads, times in rows:
        p50, p90 = np.percentile(times, 50), np.percentile(times, 90)
        print(f"{label:42} {threads:>7} {p50:8.1f} {p90:8.1f} {p50 / base:6.2f}")


if __name__ == "__main__":
    main()

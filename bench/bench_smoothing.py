"""Quality of keypoint imputation + smoothing on synthetic dancers with known truth.

Compares, side by side on the same corrupted sequences:
  raw        the observation where its score >= confidence_threshold, else the last such
             observation held (what a pipeline that only respects the score would show);
  one-euro   a plain One Euro filter (same min_cutoff / beta / d_cutoff as ours) over `raw`;
  online     ours: OnlineSmoother, causal, frame by frame;
  savgol / median   ours offline (centered), for reference videos processed ahead of time.
Metrics: RMSE to truth (px), jitter (mean |second difference|, px/frame^2; truth's own is shown),
lag (the shift in frames, sub-frame by parabolic fit, that best aligns output with truth, i.e.
minimises the RMSE to the shifted truth), coverage (share of keypoint-frames given a position).
RMSE and jitter are taken over the keypoint-frames every method covers.

    .venv/bin/python -m bench.bench_smoothing [--quick] [--seeds N] [--frames T]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from vision.smoothing import SmoothingParams, one_euro_sequence, smooth_online, smooth_sequence
from vision.smoothing.synthetic import corrupt, stick_figure

SETS = {
    "light": dict(jitter_px=2.0, drop_fraction=0.10, mean_drop_frames=2.0, outlier_rate=0.002),
    "dropout-heavy": dict(jitter_px=3.0, drop_fraction=0.30, mean_drop_frames=6.0, outlier_rate=0.01),
}
MAX_LAG = 5
TARGET_VS_RAW, TARGET_VS_ONE_EURO, TARGET_LAG = 0.5, 0.8, 1.0


def hold_confident(poses: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """The naive baseline: confident observations, low-score ones replaced by the last confident one."""
    xy = poses[..., :2].astype(np.float64).copy()
    valid = poses[..., 2] >= threshold
    have = valid.copy()
    for i in range(1, len(xy)):
        held = ~valid[i] & have[i - 1]
        xy[i, held] = xy[i - 1, held]
        have[i] |= have[i - 1]
    return xy, have


def lag_frames(out: np.ndarray, have: np.ndarray, truth: np.ndarray) -> float:
    """Shift s (frames) minimising the RMSE between out[t] and truth[t - s]; positive = delayed."""
    shifts = np.arange(-MAX_LAG, MAX_LAG + 1)
    n = len(out)
    mse = []
    for s in shifts:
        lo, hi = max(0, s), min(n, n + s)
        diff = out[lo:hi] - truth[lo - s : hi - s]
        m = have[lo:hi]
        mse.append(np.mean(np.sum(diff[m] ** 2, axis=-1)))
    mse = np.array(mse)
    i = int(np.argmin(mse))
    if 0 < i < len(mse) - 1:  # parabola through the minimum and its neighbours
        a, b, c = mse[i - 1], mse[i], mse[i + 1]
        denom = a - 2 * b + c
        return float(shifts[i] + (0.5 * (a - c) / denom if denom > 0 else 0.0))
    return float(shifts[i])


def jitter(out: np.ndarray, have: np.ndarray) -> tuple[float, float]:
    """Sum and count of |second difference| over frames where three consecutive outputs exist."""
    ok = have[:-2] & have[1:-1] & have[2:]
    acc = np.linalg.norm(out[2:] - 2 * out[1:-1] + out[:-2], axis=-1)
    return float(acc[ok].sum()), int(ok.sum())


def run_methods(truth: np.ndarray, times: np.ndarray, observed: np.ndarray, params: SmoothingParams):
    """{method: (xy [T, 17, 2], have [T, 17])}, plus the online time per frame."""
    raw, raw_have = hold_confident(observed, params.confidence_threshold)
    one_euro = one_euro_sequence(
        raw, times, params.min_cutoff, params.beta, params.d_cutoff, mask=raw_have[..., None].repeat(2, axis=-1)
    )
    start = time.perf_counter()
    online, _, _ = smooth_online(observed, times, params)
    per_frame = (time.perf_counter() - start) / len(times)
    methods = {
        "truth": (truth[..., :2].astype(np.float64), np.ones(truth.shape[:2], bool)),
        "raw": (raw, raw_have),
        "one-euro": (one_euro, raw_have),
        "online": (online[..., :2].astype(np.float64), online[..., 2] > 0),
    }
    for mode in ("savgol", "median"):
        out, _ = smooth_sequence(observed, times, mode, params)
        methods[mode] = (out[..., :2].astype(np.float64), out[..., 2] > 0)
    return methods, per_frame


def evaluate(
    set_kwargs: dict, seeds: int, frames: int, params: SmoothingParams, first_seed: int = 1000
) -> tuple[dict, float]:
    totals: dict[str, np.ndarray] = {}
    lags: dict[str, list[float]] = {}
    timing = []
    for seed in range(seeds):
        truth, times = stick_figure(frames, seed=first_seed + seed)
        observed = corrupt(truth, seed=first_seed + seed, **set_kwargs).poses
        methods, per_frame = run_methods(truth, times, observed, params)
        timing.append(per_frame)
        common = np.logical_and.reduce([have for _, have in methods.values()])
        txy = truth[..., :2]
        for name, (xy, have) in methods.items():
            err2 = np.sum((xy - txy) ** 2, axis=-1)
            jsum, jn = jitter(xy, common)
            t = totals.setdefault(name, np.zeros(6))
            t += [err2[common].sum(), common.sum(), jsum, jn, have.sum(), have.size]
            lags.setdefault(name, []).append(lag_frames(xy, common, txy))
    rows = {}
    for name, t in totals.items():
        rows[name] = dict(
            rmse=np.sqrt(t[0] / t[1]), jitter=t[2] / t[3], coverage=t[4] / t[5], lag=float(np.mean(lags[name]))
        )
    return rows, float(np.mean(timing))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 short sequences per set (seconds)")
    parser.add_argument("--seeds", type=int, default=None, help="sequences per set (default 8)")
    parser.add_argument("--frames", type=int, default=None, help="frames per sequence at 30 fps (default 900)")
    args = parser.parse_args()
    seeds = args.seeds or (2 if args.quick else 8)
    frames = args.frames or (300 if args.quick else 900)
    params = SmoothingParams()
    print(f"{seeds} sequences x {frames} frames (30 fps, 640x480) per set; params: {params}")
    print(
        "raw = confident observation, low-score keypoints hold the last confident one; "
        "one-euro = plain One Euro over raw\n"
    )
    all_met = True
    for set_name, kwargs in SETS.items():
        rows, per_frame = evaluate(kwargs, seeds, frames, params)
        raw, oe = rows["raw"]["rmse"], rows["one-euro"]["rmse"]
        print(f"== {set_name}: {kwargs}  (online: {per_frame * 1e3:.2f} ms/frame)")
        print(
            f"{'method':10s} {'RMSE px':>8s} {'/raw':>6s} {'/1euro':>7s} {'jitter':>7s} {'lag fr':>7s} {'coverage':>9s}"
        )
        for name, r in rows.items():
            print(
                f"{name:10s} {r['rmse']:8.2f} {r['rmse'] / raw:6.2f} {r['rmse'] / oe:7.2f} "
                f"{r['jitter']:7.2f} {r['lag']:7.2f} {r['coverage']:9.3f}"
            )
        if set_name == "dropout-heavy":
            online = rows["online"]
            checks = {
                f"online RMSE <= {TARGET_VS_RAW} x raw": online["rmse"] <= TARGET_VS_RAW * raw,
                f"online RMSE <= {TARGET_VS_ONE_EURO} x one-euro": online["rmse"] <= TARGET_VS_ONE_EURO * oe,
                f"online lag <= {TARGET_LAG} frame": abs(online["lag"]) <= TARGET_LAG,
            }
            for text, ok in checks.items():
                print(f"target {text}: {'met' if ok else 'NOT met'}")
                all_met &= ok
        print()
    print("all targets met" if all_met else "some targets NOT met")


if __name__ == "__main__":
    main()

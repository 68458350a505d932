"""Pictures of training: a sample grid (pose map | real | generated) and loss curves, drawn with
OpenCV so no plotting library is needed. Images are uint8 RGB; `png_bytes` encodes for upload."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_WHITE, _GREY, _DARK = (255, 255, 255), (150, 150, 150), (30, 30, 30)
_SERIES_COLOURS = ((40, 110, 220), (220, 90, 40), (40, 160, 70), (150, 60, 180))


def png_bytes(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def _text(
    img: np.ndarray, text: str, org: tuple[int, int], scale: float = 0.45, colour=_WHITE, thickness: int = 1
) -> None:
    cv2.putText(img, text, org, _FONT, scale, colour, thickness, cv2.LINE_AA)


def sample_grid(
    posemaps: np.ndarray, reals: np.ndarray, fakes: np.ndarray, *, max_rows: int = 4, min_cell: int = 128
) -> np.ndarray:
    """Rows of (pose map | real | generated) under a labelled header. Small images are enlarged
    (nearest neighbour, so pixels stay visible) to at least min_cell pixels."""
    posemaps, reals, fakes = (np.asarray(a) for a in (posemaps, reals, fakes))
    if not (posemaps.shape == reals.shape == fakes.shape) or posemaps.ndim != 4:
        raise ValueError(
            f"need three [N, H, W, 3] arrays of one shape, got {posemaps.shape}, {reals.shape}, {fakes.shape}"
        )
    n = min(max_rows, len(posemaps))
    h, w = posemaps.shape[1:3]
    k = max(1, -(-min_cell // min(h, w)))
    ch, cw = h * k, w * k
    header = 24
    pad = 4
    grid = np.full((header + n * (ch + pad), 3 * (cw + pad) + pad, 3), _DARK, np.uint8)
    for j, title in enumerate(("pose map", "real", "generated")):
        _text(grid, title, (pad + j * (cw + pad) + 4, 17))
    for i in range(n):
        for j, img in enumerate((posemaps[i], reals[i], fakes[i])):
            cell = cv2.resize(img, (cw, ch), interpolation=cv2.INTER_NEAREST) if k > 1 else img
            y, x = header + i * (ch + pad), pad + j * (cw + pad)
            grid[y : y + ch, x : x + cw] = cell
    return grid


def _nice_ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    return list(np.linspace(lo, hi, n + 1))


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    return f"{v:.3g}" if 1e-3 <= abs(v) < 1e4 else f"{v:.1e}"


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(values) < window:
        return values
    kernel = np.ones(window) / window
    head = np.cumsum(values[: window - 1]) / np.arange(1, window)  # shorter windows at the start
    return np.concatenate([head, np.convolve(values, kernel, mode="valid")])


def loss_curves(
    history: Sequence[dict],
    keys: Sequence[str] = ("g_l1", "g_gan", "d"),
    *,
    width: int = 720,
    panel_height: int = 170,
    smooth: int | None = None,
) -> np.ndarray:
    """One panel per loss key (each with its own y range): raw values faint, a moving average
    bold, axes with step and value ticks. history is Trainer's list of {"step", key: value}."""
    if not history:
        raise ValueError("no training history to plot")
    steps = np.array([h["step"] for h in history], float)
    keys = [k for k in keys if k in history[0]]
    if not keys:
        raise ValueError(f"none of the requested loss keys is in the history ({sorted(history[0])})")
    window = smooth if smooth is not None else max(1, len(history) // 50)
    left, right, top, bottom = 64, 16, 24, 30
    img = np.full((panel_height * len(keys), width, 3), 255, np.uint8)
    x0, x1 = left, width - right
    s_lo, s_hi = steps.min(), max(steps.max(), steps.min() + 1)
    for p, key in enumerate(keys):
        oy = p * panel_height
        y0, y1 = oy + top, oy + panel_height - bottom
        vals = np.array([h[key] for h in history], float)
        finite = vals[np.isfinite(vals)]
        v_lo, v_hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        if v_hi - v_lo < 1e-12:
            v_lo, v_hi = v_lo - 0.5, v_hi + 0.5

        def to_px(s, v, y0=y0, y1=y1, v_lo=v_lo, v_hi=v_hi):  # this panel's scale, bound now
            x = x0 + (s - s_lo) / (s_hi - s_lo) * (x1 - x0)
            y = y1 - (v - v_lo) / (v_hi - v_lo) * (y1 - y0)
            return np.stack([x, y], -1)

        for v in _nice_ticks(v_lo, v_hi):
            y = int(round(y1 - (v - v_lo) / (v_hi - v_lo) * (y1 - y0)))
            cv2.line(img, (x0, y), (x1, y), (230, 230, 230), 1)
            _text(img, _fmt(v), (4, y + 4), 0.38, _DARK)
        for s in _nice_ticks(s_lo, s_hi):
            x = int(round(x0 + (s - s_lo) / (s_hi - s_lo) * (x1 - x0)))
            cv2.line(img, (x, y1), (x, y1 + 4), _DARK, 1)
            label = str(int(round(s)))
            _text(img, label, (x - 4 * len(label), y1 + 17), 0.38, _DARK)
        cv2.rectangle(img, (x0, y0), (x1, y1), _DARK, 1)
        colour = _SERIES_COLOURS[p % len(_SERIES_COLOURS)]
        faint = tuple(int(c + (255 - c) * 0.65) for c in colour)
        ok = np.isfinite(vals)
        raw = to_px(steps[ok], vals[ok])
        if len(raw) > 1:
            cv2.polylines(img, [np.round(raw).astype(np.int32)], False, faint, 1, cv2.LINE_AA)
            sm = to_px(steps[ok], _smooth(vals[ok], window))
            cv2.polylines(img, [np.round(sm).astype(np.int32)], False, colour, 2, cv2.LINE_AA)
        elif len(raw) == 1:
            cv2.circle(img, tuple(np.round(raw[0]).astype(int)), 3, colour, -1, cv2.LINE_AA)
        _text(img, f"{key}  (last {_fmt(vals[ok][-1]) if ok.any() else 'n/a'})", (x0 + 4, oy + 17), 0.5, colour, 1)
    _text(img, "x: training step", (x1 - 118, 17), 0.42, _DARK)
    return img

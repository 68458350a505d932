"""One Euro filter (Casiez, Roussel & Vogel, CHI 2012), vectorised over an array of signals.

Every element (e.g. each keypoint coordinate) is an independent filter with its own time of last
update, so elements may be skipped while missing and resume later. The time step comes from the
timestamps passed in (seconds), never from an assumed frame rate.
"""

from __future__ import annotations

import numpy as np


def smoothing_factor(te: np.ndarray | float, cutoff: np.ndarray | float) -> np.ndarray:
    """alpha = 1 / (1 + tau / te), tau = 1 / (2 pi cutoff): the paper's exponential smoothing factor."""
    tau = 1.0 / (2.0 * np.pi * np.asarray(cutoff, dtype=np.float64))
    return 1.0 / (1.0 + tau / np.asarray(te, dtype=np.float64))


class OneEuroFilter:
    """A One Euro filter for every element of an array of shape `shape`.

    State: `x` (filtered value), `dx` (filtered derivative, units per second), `t` (time of the
    element's last update) and `initialised`; all float64/bool arrays of `shape`, readable and, via
    `overwrite` / `reset`, writable so that callers can impute through gaps.
    """

    def __init__(self, shape: tuple[int, ...], min_cutoff: float, beta: float, d_cutoff: float):
        if not (min_cutoff > 0 and d_cutoff > 0 and beta >= 0):
            raise ValueError(
                f"OneEuroFilter needs min_cutoff > 0, d_cutoff > 0 and beta >= 0, got {min_cutoff}, {d_cutoff}, {beta}"
            )
        self.shape = tuple(shape)
        self.min_cutoff = float(min_cutoff)
        self.beta = float(beta)
        self.d_cutoff = float(d_cutoff)
        self.x = np.zeros(self.shape, np.float64)
        self.dx = np.zeros(self.shape, np.float64)
        self.t = np.zeros(self.shape, np.float64)
        self.initialised = np.zeros(self.shape, bool)

    def __call__(self, x: np.ndarray, t: float, mask: np.ndarray | None = None) -> np.ndarray:
        """Filter sample `x` taken at time `t` (seconds); return the filtered values of all elements.

        Only elements where `mask` is true (default: all finite ones) are updated; the others keep
        their state and their previous filtered value is returned (NaN if they never had a sample).
        """
        x = np.asarray(x, dtype=np.float64)
        if x.shape != self.shape:
            raise ValueError(f"OneEuroFilter expects samples of shape {self.shape}, got {x.shape}")
        if not np.isfinite(t):
            raise ValueError(f"OneEuroFilter timestamp must be finite, got {t}")
        update = np.isfinite(x) if mask is None else np.asarray(mask, bool) & np.isfinite(x)
        fresh = update & ~self.initialised
        cont = update & self.initialised
        te = np.where(cont, t - self.t, 1.0)
        if np.any(te[cont] <= 0):
            raise ValueError(f"OneEuroFilter timestamps must increase: got t={t} after t={self.t[cont].max()}")
        # The paper's algorithm: derivative from the previous *filtered* value, low-passed at
        # d_cutoff; the cutoff for the value then grows with the filtered speed.
        dx = (x - self.x) / te
        edx = self.dx + smoothing_factor(te, self.d_cutoff) * (dx - self.dx)
        cutoff = self.min_cutoff + self.beta * np.abs(edx)
        xf = self.x + smoothing_factor(te, cutoff) * (x - self.x)
        self.x = np.where(cont, xf, np.where(fresh, x, self.x))
        self.dx = np.where(cont, edx, np.where(fresh, 0.0, self.dx))
        self.t = np.where(update, t, self.t)
        self.initialised = self.initialised | update
        return np.where(self.initialised, self.x, np.nan)

    def overwrite(self, mask: np.ndarray, x: np.ndarray, dx: np.ndarray, t: float) -> None:
        """Set the state of the masked elements (e.g. to an extrapolated value during a gap)."""
        mask = np.asarray(mask, bool)
        self.x = np.where(mask, x, self.x)
        self.dx = np.where(mask, dx, self.dx)
        self.t = np.where(mask, t, self.t)
        self.initialised = self.initialised | mask

    def reset(self, mask: np.ndarray) -> None:
        """Forget the masked elements: their next sample starts them afresh."""
        mask = np.asarray(mask, bool)
        self.x = np.where(mask, 0.0, self.x)
        self.dx = np.where(mask, 0.0, self.dx)
        self.t = np.where(mask, 0.0, self.t)
        self.initialised = self.initialised & ~mask

    def to_state(self) -> dict:
        """JSON-able state; floats round-trip exactly through JSON (shortest repr)."""
        return {
            "x": self.x.ravel().tolist(),
            "dx": self.dx.ravel().tolist(),
            "t": self.t.ravel().tolist(),
            "initialised": self.initialised.ravel().tolist(),
        }

    def load_state(self, state: dict) -> None:
        try:
            arrays = {k: np.asarray(state[k]) for k in ("x", "dx", "t", "initialised")}
        except KeyError as err:
            raise ValueError(f"OneEuroFilter state lacks the key {err}") from None
        size = int(np.prod(self.shape))
        for key, value in arrays.items():
            if value.size != size:
                raise ValueError(
                    f"OneEuroFilter state '{key}' has {value.size} values, expected {size} for shape {self.shape}"
                )
        self.x = arrays["x"].astype(np.float64).reshape(self.shape)
        self.dx = arrays["dx"].astype(np.float64).reshape(self.shape)
        self.t = arrays["t"].astype(np.float64).reshape(self.shape)
        self.initialised = arrays["initialised"].astype(bool).reshape(self.shape)


def one_euro_sequence(
    values: np.ndarray,
    times: np.ndarray,
    min_cutoff: float,
    beta: float,
    d_cutoff: float,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Run a fresh filter over a whole sequence `values[T, ...]` sampled at `times[T]` (seconds)."""
    values = np.asarray(values, dtype=np.float64)
    times = np.asarray(times, dtype=np.float64)
    if times.shape != values.shape[:1]:
        raise ValueError(f"one_euro_sequence needs one time per sample: {times.shape} vs {values.shape}")
    filt = OneEuroFilter(values.shape[1:], min_cutoff, beta, d_cutoff)
    out = np.empty_like(values)
    for i in range(len(values)):
        out[i] = filt(values[i], float(times[i]), None if mask is None else mask[i])
    return out

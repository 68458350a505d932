"""The vectorised One Euro filter against a plain scalar transcription of the published algorithm."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from vision.smoothing.one_euro import OneEuroFilter, one_euro_sequence


class ScalarOneEuro:
    """One Euro filter for one signal, written straight from Casiez, Roussel & Vogel (CHI 2012):

        alpha(fc, Te) = 1 / (1 + tau / Te),  tau = 1 / (2 pi fc)
        dx      = (x_i - xhat_{i-1}) / Te
        dxhat_i = alpha(d_cutoff) dx + (1 - alpha(d_cutoff)) dxhat_{i-1}
        fc      = min_cutoff + beta |dxhat_i|
        xhat_i  = alpha(fc) x_i + (1 - alpha(fc)) xhat_{i-1}
    with xhat_0 = x_0 and dxhat_0 = 0; Te is the time since the previous sample.
    """

    def __init__(self, min_cutoff: float, beta: float, d_cutoff: float):
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.x_prev: float | None = None
        self.dx_prev = 0.0
        self.t_prev = 0.0

    @staticmethod
    def alpha(cutoff: float, te: float) -> float:
        tau = 1.0 / (2.0 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / te)

    def __call__(self, x: float, t: float) -> float:
        if self.x_prev is None:
            self.x_prev, self.dx_prev, self.t_prev = x, 0.0, t
            return x
        te = t - self.t_prev
        dx = (x - self.x_prev) / te
        a_d = self.alpha(self.d_cutoff, te)
        dx_hat = a_d * dx + (1.0 - a_d) * self.dx_prev
        cutoff = self.min_cutoff + self.beta * abs(dx_hat)
        a = self.alpha(cutoff, te)
        x_hat = a * x + (1.0 - a) * self.x_prev
        self.x_prev, self.dx_prev, self.t_prev = x_hat, dx_hat, t
        return x_hat


def _signals(n: int, shape: tuple[int, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noisy random-walk signals around 300 px with jittery, variable time steps (13-60 ms)."""
    rng = np.random.default_rng(seed)
    times = np.cumsum(rng.uniform(0.013, 0.06, n)) + 1.7e3
    values = 300.0 + np.cumsum(rng.normal(0, 6.0, (n,) + shape), axis=0) + rng.normal(0, 2.0, (n,) + shape)
    return values, times


@pytest.mark.parametrize("min_cutoff,beta,d_cutoff", [(1.0, 0.1, 2.0), (0.3, 0.0, 1.0), (4.0, 1.5, 0.5)])
def test_vectorised_matches_scalar_reference_with_variable_time_steps(min_cutoff, beta, d_cutoff):
    values, times = _signals(120, (17, 2), seed=1)
    got = one_euro_sequence(values, times, min_cutoff, beta, d_cutoff)
    for k in range(17):
        for c in range(2):
            ref = ScalarOneEuro(min_cutoff, beta, d_cutoff)
            expected = [ref(float(values[i, k, c]), float(times[i])) for i in range(len(times))]
            np.testing.assert_allclose(got[:, k, c], expected, rtol=0, atol=1e-9)


def test_jitter_is_removed_and_beta_cuts_the_lag():
    times = np.arange(300) / 30.0
    truth = 300.0 + 40.0 * np.sin(2 * np.pi * 0.3 * times)
    noisy = truth + np.random.default_rng(5).normal(0, 3.0, times.shape)
    adaptive = one_euro_sequence(noisy[:, None], times, 1.0, 0.05, 2.0)[:, 0]
    fixed = one_euro_sequence(noisy[:, None], times, 1.0, 0.0, 2.0)[:, 0]
    rmse = lambda x: np.sqrt(np.mean((x - truth)[30:] ** 2))  # noqa: E731
    assert np.abs(np.diff(adaptive, 2)).mean() < 0.5 * np.abs(np.diff(noisy, 2)).mean()
    assert rmse(adaptive) < 0.8 * 3.0  # better than the raw noise
    assert rmse(adaptive) < 0.5 * rmse(fixed)  # a plain 1 Hz low-pass lags far behind


def test_masked_elements_keep_state_and_resume_like_an_unsampled_signal():
    values, times = _signals(80, (5,), seed=2)
    rng = np.random.default_rng(3)
    mask = rng.random(values.shape) > 0.3
    mask[0] = True
    filt = OneEuroFilter((5,), 1.0, 0.2, 1.5)
    got = np.array([filt(values[i], float(times[i]), mask[i]) for i in range(len(times))])
    for k in range(5):
        ref = ScalarOneEuro(1.0, 0.2, 1.5)
        last = math.nan
        for i in range(len(times)):
            if mask[i, k]:
                last = ref(float(values[i, k]), float(times[i]))
            assert got[i, k] == pytest.approx(last, abs=1e-9), (i, k)


def test_never_sampled_elements_are_nan_and_constant_input_stays_constant():
    filt = OneEuroFilter((3,), 1.0, 0.1, 1.0)
    out = filt(np.array([5.0, 5.0, 5.0]), 0.0, np.array([True, True, False]))
    assert out[0] == 5.0 and np.isnan(out[2])
    for i in range(1, 20):
        out = filt(np.array([5.0, 5.0, 5.0]), i / 30, np.array([True, True, False]))
    assert np.all(out[:2] == 5.0) and np.isnan(out[2])


def test_state_round_trip_through_json_continues_identically():
    values, times = _signals(60, (17, 2), seed=4)
    a = OneEuroFilter((17, 2), 1.0, 0.1, 2.0)
    for i in range(30):
        a(values[i], float(times[i]))
    b = OneEuroFilter((17, 2), 1.0, 0.1, 2.0)
    b.load_state(json.loads(json.dumps(a.to_state())))
    for i in range(30, 60):
        np.testing.assert_array_equal(a(values[i], float(times[i])), b(values[i], float(times[i])))


def test_bad_input_is_rejected_with_a_clear_message():
    filt = OneEuroFilter((2,), 1.0, 0.1, 1.0)
    filt(np.zeros(2), 1.0)
    with pytest.raises(ValueError, match="increase"):
        filt(np.zeros(2), 1.0)
    with pytest.raises(ValueError, match="shape"):
        filt(np.zeros(3), 2.0)
    with pytest.raises(ValueError, match="min_cutoff"):
        OneEuroFilter((2,), 0.0, 0.1, 1.0)
    with pytest.raises(ValueError, match="lacks"):
        filt.load_state({"x": [0, 0]})

"""The frequency content of a re-uploading model along one input: how rough is a QNN before training?

A data re-uploading circuit is a finite Fourier series in each input (Schuld et al., PRA 103, 032430, 2021): an
encoding gate ``R(lambda x)`` contributes frequencies ``+-lambda / 2``, so ``K`` encodings of a feature reach angular
frequencies up to ``K lambda / 2``, and with random initial angles the power concentrates around
``~ sqrt(K) lambda / 2``. :func:`high_frequency_fraction` measures the share of a sampled function's variance
above an angular frequency (Hann-windowed periodogram); :func:`line_spectrum_fraction` applies it to a regressor
``x [B, d] -> y [B]`` along one feature with the others held fixed. This is the evidence behind the
``lambda_0 = 1/sqrt(K)`` default of the trainable feature-map weights (config/README.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch


def high_frequency_fraction(values: np.ndarray, spacing: float, cutoff: float) -> float:
    """Fraction of the variance of equally spaced samples ``values`` at angular frequencies ``|omega| > cutoff``.

    The mean is removed and a Hann window applied before the FFT; the fraction is of the windowed power, which
    approximates the function's spectral distribution to within the window's resolution ``~ 4 pi / (n spacing)``.
    """
    v = np.asarray(values, dtype=float)
    if v.ndim != 1 or v.size < 8:
        raise ValueError(f"need a 1-D array of at least 8 samples, got shape {v.shape}")
    if not spacing > 0:
        raise ValueError(f"spacing must be positive, got {spacing}")
    v = (v - v.mean()) * np.hanning(v.size)
    power = np.abs(np.fft.rfft(v)) ** 2
    omega = 2.0 * math.pi * np.fft.rfftfreq(v.size, d=spacing)
    total = power[1:].sum()
    return float(power[1:][omega[1:] > cutoff].sum() / total) if total > 0 else 0.0


def line_spectrum_fraction(regressor: Callable[[torch.Tensor], torch.Tensor], n_features: int, *, feature: int = 0,
                           half_width: float = 8 * math.pi, n_samples: int = 4096, cutoff: float = 4.0,
                           offset: np.ndarray | None = None) -> float:
    """:func:`high_frequency_fraction` of ``regressor`` along feature ``feature`` over ``[-half_width, half_width]``
    (other features at ``offset``, default 0)."""
    xs = np.linspace(-half_width, half_width, n_samples)
    x = np.zeros((n_samples, n_features)) if offset is None else np.tile(np.asarray(offset, dtype=float), (n_samples, 1))
    x[:, feature] = xs
    with torch.no_grad():
        y = regressor(torch.as_tensor(x, dtype=torch.float64)).detach().numpy().ravel()
    return high_frequency_fraction(y, xs[1] - xs[0], cutoff)

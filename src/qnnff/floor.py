"""The information floor of a feature set: how well ANY smooth model can predict the energy from these inputs.

A model cannot beat the information in its inputs. When two geometries share the same inputs but differ in energy, no
model of any size, depth or training separates them; when the inputs describe the geometry completely, the floor is
the data's own noise. :func:`information_floor` measures it with a Gaussian process (scikit-learn's
``GaussianProcessRegressor``): a constant times an RBF kernel with one length scale per input (ARD) plus a white-noise
kernel, the hyperparameters fitted by maximum marginal likelihood on the training set, energies only, inputs
standardised on the training set. Its test RMSE(E), in the scaled units of the error tables, is the floor that a
model of those inputs is held against: a model within :data:`AT_FLOOR_RATIO` of it is "at the floor of its inputs",
and only other inputs, not more capacity, data or training, can improve it.

A GP interpolates a smooth function of the inputs from 300-500 points far better than a small network does, so its
error estimates what the inputs allow; it is not a guaranteed lower bound (a GP can miss structure too), which is why
the tables call it the floor *of the inputs* and give the kernel it found.
"""

from __future__ import annotations

import logging
import time
import warnings
from typing import Any

import numpy as np

AT_FLOOR_RATIO = 1.5  # a model whose RMSE(E) is within this factor of its inputs' floor is at the floor of its inputs
FLOOR = "floor (inputs) [scaled]"  # the tables' column: the floor as a test RMSE(E) in scaled units
_log = logging.getLogger("qnnff")


def information_floor(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, *, seed: int,
                      n_restarts: int = 1) -> dict[str, Any]:
    """Test RMSE of a Gaussian process fitted to ``(x_train, y_train)`` (energies in the units the RMSE is wanted in).

    ``x_*``: [n, d] inputs, standardised here on the training set (an input constant over the training set is
    dropped, as it carries no information there; it is named in ``constant_inputs``). ``n_restarts``: extra starts of
    the marginal-likelihood optimiser from random hyperparameters drawn with ``seed``. Returns the test and training
    RMSE, the fitted kernel and noise level, the optimiser's warnings (never silently dropped) and the fit time.
    """
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, WhiteKernel
    from sklearn.gaussian_process.kernels import ConstantKernel as C

    x_train, x_test = np.asarray(x_train, dtype=float), np.asarray(x_test, dtype=float)
    y_train, y_test = np.asarray(y_train, dtype=float).ravel(), np.asarray(y_test, dtype=float).ravel()
    if x_train.ndim != 2 or x_test.ndim != 2 or x_train.shape[1] != x_test.shape[1]:
        raise ValueError(f"information_floor: inputs must be [n, d] with the same d, got {x_train.shape} and {x_test.shape}")
    if len(x_train) != len(y_train) or len(x_test) != len(y_test):
        raise ValueError(f"information_floor: {len(x_train)} / {len(x_test)} inputs for {len(y_train)} / {len(y_test)} energies")
    if len(x_train) < 2 or len(x_test) < 1:
        raise ValueError("information_floor: needs at least 2 training and 1 test point")
    for name, a in (("x_train", x_train), ("y_train", y_train), ("x_test", x_test), ("y_test", y_test)):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"information_floor: {name} holds NaN or inf")
    mu, sd = x_train.mean(axis=0), x_train.std(axis=0)
    keep = sd > 1e-12 * np.maximum(1.0, np.abs(mu))
    if not keep.any():
        raise ValueError("information_floor: every input is constant over the training set")
    xs_train = (x_train[:, keep] - mu[keep]) / sd[keep]
    xs_test = (x_test[:, keep] - mu[keep]) / sd[keep]
    d = xs_train.shape[1]
    kernel = C(1.0, (1e-3, 1e5)) * RBF(np.ones(d), (1e-2, 1e4)) + WhiteKernel(1e-6, (1e-12, 1e-1))
    gp = GaussianProcessRegressor(kernel, normalize_y=True, n_restarts_optimizer=int(n_restarts), random_state=int(seed) % 2**32)
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gp.fit(xs_train, y_train)
    seconds = time.perf_counter() - t0
    pred_test = gp.predict(xs_test)
    pred_train = gp.predict(xs_train)
    fitted = gp.kernel_.get_params()
    return {
        "rmse": float(np.sqrt(np.mean((pred_test - y_test) ** 2))),
        "rmse_train": float(np.sqrt(np.mean((pred_train - y_train) ** 2))),
        "n_train": len(x_train), "n_test": len(x_test), "n_inputs": int(x_train.shape[1]),
        "constant_inputs": [int(i) for i in np.nonzero(~keep)[0]],
        "length_scales": [float(v) for v in np.atleast_1d(fitted["k1__k2__length_scale"])],
        "noise_sd": float(np.sqrt(fitted["k2__noise_level"]) * np.std(y_train)),  # the fitted noise, in the units of y (normalize_y)
        "kernel": str(gp.kernel_),
        "log_marginal_likelihood": float(gp.log_marginal_likelihood_value_),
        "optimizer_warnings": sorted({str(w.message).splitlines()[0] for w in caught}),
        "n_restarts": int(n_restarts), "seed": int(seed), "seconds": seconds,
    }


def at_floor(rmse: float, floor: float) -> bool:
    """Whether a model's RMSE(E) lies within :data:`AT_FLOOR_RATIO` of its inputs' floor, either side. The floor is an
    energies-only GP: a model fitted to forces as well (sGDML) can lie far below it, which is not "at" it."""
    return bool(np.isfinite(rmse) and np.isfinite(floor) and floor / AT_FLOOR_RATIO <= rmse <= AT_FLOOR_RATIO * floor)


def model_floor(model, positions_train: np.ndarray, y_train: np.ndarray, positions_test: np.ndarray, y_test: np.ndarray, *,
                seed: int, n_restarts: int = 1, label: str = "") -> dict[str, Any]:
    """:func:`information_floor` of the inputs a model sees (:meth:`~qnnff.models.base.ForceField.floor_inputs` of the
    positions, Angstrom: its inputs, or an invariant description of the same information); the optimiser's warnings are
    logged under ``label``."""
    import torch

    with torch.no_grad():
        x_train, x_test = (model.floor_inputs(torch.as_tensor(np.asarray(p), dtype=torch.float64)).numpy()
                           for p in (positions_train, positions_test))
    res = information_floor(x_train, y_train, x_test, y_test, seed=seed, n_restarts=n_restarts)
    for w in res["optimizer_warnings"]:
        _log.warning("%s: GP optimiser: %s", label, w)
    return res

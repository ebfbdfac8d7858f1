"""The information floor (issue 24): a Gaussian process on a feature set, energies only, test RMSE(E).

Synthetic cases with known answers: complete inputs reach the noise level; inputs with a dropped variable stall at the
dropped variable's share of the energy, whatever the model; the result is deterministic and bad input is refused."""

import numpy as np
import pytest

from qnnff.floor import AT_FLOOR_RATIO, at_floor, information_floor


def energy(q: np.ndarray) -> np.ndarray:
    return np.sin(2.0 * q[:, 0]) + 0.5 * q[:, 1] ** 2 + 0.3 * np.cos(3.0 * q[:, 2])


@pytest.fixture(scope="module")
def data():
    g = np.random.default_rng(7)
    q_train, q_test = g.uniform(-1, 1, (300, 3)), g.uniform(-1, 1, (200, 3))
    noise = 1e-3
    return q_train, energy(q_train) + noise * g.standard_normal(300), q_test, energy(q_test), noise


def test_complete_inputs_reach_the_noise_level(data):
    q_train, y_train, q_test, y_test, noise = data
    out = information_floor(q_train, y_train, q_test, y_test, seed=0)
    assert out["rmse"] < 3 * noise, out
    assert out["noise_sd"] == pytest.approx(noise, rel=0.5)
    assert out["n_inputs"] == 3 and out["n_train"] == 300 and out["n_test"] == 200 and len(out["length_scales"]) == 3


def test_inputs_with_a_dropped_variable_stall_at_its_share_of_the_energy(data):
    q_train, y_train, q_test, y_test, noise = data
    out = information_floor(q_train[:, :2], y_train, q_test[:, :2], y_test, seed=0)
    missing = 0.3 * np.cos(3.0 * q_test[:, 2])  # what the first two inputs cannot know
    lower = np.sqrt(np.mean((missing - missing.mean()) ** 2))
    assert out["rmse"] > 0.9 * lower > 100 * noise
    assert out["rmse"] < 1.2 * lower  # and the GP finds everything else


def test_a_constant_input_is_dropped_and_named(data):
    q_train, y_train, q_test, y_test, _ = data
    x_train = np.column_stack([q_train, np.full(len(q_train), 2.0)])
    x_test = np.column_stack([q_test, np.full(len(q_test), 2.0)])
    out = information_floor(x_train, y_train, x_test, y_test, seed=0)
    assert out["constant_inputs"] == [3] and len(out["length_scales"]) == 3


def test_same_seed_same_floor(data):
    q_train, y_train, q_test, y_test, _ = data
    a = information_floor(q_train[:100], y_train[:100], q_test, y_test, seed=3, n_restarts=1)
    b = information_floor(q_train[:100], y_train[:100], q_test, y_test, seed=3, n_restarts=1)
    assert a["rmse"] == b["rmse"] and a["kernel"] == b["kernel"]


@pytest.mark.parametrize("bad, match", [("nan", "x_train holds NaN"), ("shape", "same d"), ("count", "energies")])
def test_bad_input_is_refused(data, bad, match):
    q_train, y_train, q_test, y_test, _ = data
    if bad == "nan":
        q_train = q_train.copy(); q_train[3, 1] = np.nan
    elif bad == "shape":
        q_test = q_test[:, :2]
    else:
        y_train = y_train[:-1]
    with pytest.raises(ValueError, match=match):
        information_floor(q_train, y_train, q_test, y_test, seed=0)


def test_at_floor():
    assert at_floor(0.015, 0.0163) and at_floor(AT_FLOOR_RATIO * 0.01, 0.01)
    assert not at_floor(0.0138, 0.00005) and not at_floor(float("nan"), 0.01)

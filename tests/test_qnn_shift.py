"""Forces from circuits: parameter-shift input gradients on Aer against the exact torch engine."""

import numpy as np
import pytest
import torch

from qnnff.features import CoordinateFamily, EnergyScaler, Featurizer
from qnnff.models.qnn import QNNForceField
from qnnff.qnn.circuit import build_qnn_circuit
from qnnff.qnn.shift import build_shift_circuit

LIH = dict(n_qubits=2, depth=3, feature_map="full", feature_map_reps=2, trainable_feature_map="full", trainable_feature_map_reps=2)


def lih_model(seed=3):
    fz = Featurizer(families=[CoordinateFamily("r_LiH", "bond", ((0, 1),))], feature_map="pi_arcsin_arccos", lo=[1.0], hi=[4.0],
                    symbols=["Li", "H"])
    m = QNNForceField(featurizer=fz, energy_scaler=EnergyScaler(center=-217.0, scale=0.8), circuit=LIH, seed=seed)
    with torch.no_grad():  # non-trivial feature-map weights and readout
        m.regressor.weights[:6] = torch.tensor([0.8, 1.3, -0.6, 1.1, 0.7, 1.9], dtype=torch.float64)
        m.regressor.a.fill_(0.9)
        m.regressor.b.fill_(-0.05)
    return m


def lih_positions(n, seed=0):
    rng = np.random.default_rng(seed)
    r = rng.uniform(1.1, 3.9, n)
    u = rng.normal(size=(n, 3))
    pos = np.zeros((n, 2, 3))
    pos[:, 1] = u / np.linalg.norm(u, axis=1, keepdims=True) * r[:, None]  # randomly oriented bond
    return pos + rng.normal(size=(n, 1, 3))


def test_shift_circuit_has_one_parameter_per_occurrence():
    qc, x, w = build_qnn_circuit(n_features=3, **LIH)
    sc = build_shift_circuit(qc, inputs=list(x), weights=list(w), weight_values=np.linspace(0.5, 1.5, len(w)))
    assert sc.n_occurrences == 3 * 2 * 2 * 3  # depth x reps x qubits x features
    assert sorted(set(sc.feature.tolist())) == [0, 1, 2]
    assert set(sc.circuit.parameters) == set(sc.thetas)
    # the slopes are the trainable feature-map weights lambda_{r, j} (index r * n_f + j)
    assert np.allclose(sorted(set(np.round(sc.slope, 12))), sorted(set(np.round(np.linspace(0.5, 1.5, len(w))[:6], 12))))
    v = sc.parameter_values(np.array([[0.1, 0.2, 0.3]]))
    assert v.shape == (1, 1 + 2 * sc.n_occurrences, sc.n_occurrences)
    with pytest.raises(ValueError, match="weight values"):
        build_shift_circuit(qc, inputs=list(x), weights=list(w), weight_values=np.zeros(3))
    with pytest.raises(ValueError, match="exactly one input"):  # weights not bound: angle lambda * x has two parameters
        build_shift_circuit(qc, inputs=list(x), weights=[], weight_values=np.zeros(0))


def test_parameter_shift_forces_match_exact_engine():
    m, pos = lih_model(), lih_positions(6)
    r = m.aer_energy_and_forces(pos, shots=None, seed=1)
    assert r["info"]["n_primitive_calls"] == 1 and r["info"]["n_circuits"] == 6 * (1 + 2 * 36)
    assert np.max(np.abs(r["energy"] - r["exact_energy"])) < 1e-8
    assert np.max(np.abs(r["forces"] - r["exact_forces"])) < 1e-8
    assert np.max(np.abs(r["exact_forces"])) > 1e-2  # non-trivial forces
    assert np.all(r["forces_stderr"] == 0)
    # Newton's third law for a diatomic (the chain rule through the bond-length features)
    assert np.max(np.abs(r["forces"].sum(axis=1))) < 1e-8


def test_parameter_shift_three_qubit_water_matches_engine():
    from test_qnn_model import CIRCUIT, water_featurizer, water_positions

    pos = water_positions(3)
    m = QNNForceField(featurizer=water_featurizer(water_positions(200, seed=5)), energy_scaler=EnergyScaler(center=-2079.5, scale=0.37),
                      circuit=CIRCUIT, seed=7)
    r = m.aer_energy_and_forces(pos, shots=None, seed=2)
    assert np.max(np.abs(r["forces"] - r["exact_forces"])) < 1e-8
    assert np.max(np.abs(r["energy"] - r["exact_energy"])) < 1e-8


def test_shot_forces_within_four_sigma_and_seeded():
    m, pos = lih_model(), lih_positions(5, seed=4)
    r = m.aer_energy_and_forces(pos, shots=2000, seed=11)
    err = r["forces_stderr"]
    assert np.all(err > 0)
    z = np.abs(r["forces"] - r["exact_forces"]) / err
    assert np.all(z < 4.0), z.max()
    assert np.all(np.abs(r["energy"] - r["exact_energy"]) < 4 * r["energy_stderr"])
    # shot noise is real (not exact) and the seed fixes it
    assert np.max(np.abs(r["forces"] - r["exact_forces"])) > 1e-4
    again = m.aer_energy_and_forces(pos, shots=2000, seed=11)
    assert np.array_equal(again["forces"], r["forces"])
    other = m.aer_energy_and_forces(pos, shots=2000, seed=12)
    assert not np.array_equal(other["forces"], r["forces"])

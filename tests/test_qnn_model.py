"""The QNN force field: forces, symmetry, QPY artifact round trip, Aer evaluation with shots and noise."""

import io
import math
import zipfile

import numpy as np
import pytest
import torch
from geometry_helpers import water_batch
from qiskit import qpy

from qnnff.features import CoordinateFamily, EnergyScaler, Featurizer
from qnnff.models import load_model
from qnnff.models.base import TrainingBatch
from qnnff.models.qnn import QNNForceField

CIRCUIT = dict(n_qubits=3, depth=3, feature_map="full", feature_map_reps=2, trainable_feature_map="full",
               trainable_feature_map_reps=2)


def water_positions(n, seed=0):
    """Water-like frames, randomly oriented (:func:`geometry_helpers.water_batch`)."""
    return water_batch(n, seed)


def water_featurizer(pos):
    fams = [CoordinateFamily("r_OH", "bond", ((0, 1), (0, 2))), CoordinateFamily("a_HOH", "angle", ((1, 0, 2),))]
    probe = Featurizer(families=fams, feature_map="arcsin", lo=[0.0] * 3, hi=[1e3] * 3, symbols=["O", "H", "H"])
    q = probe.internal(pos)
    return Featurizer(families=fams, feature_map="arcsin", lo=q.min(0).values.tolist(), hi=q.max(0).values.tolist(),
                      symbols=["O", "H", "H"])


@pytest.fixture(scope="module")
def model_and_positions():
    pos = water_positions(12)
    fz = water_featurizer(water_positions(200, seed=5))
    model = QNNForceField(featurizer=fz, energy_scaler=EnergyScaler(center=-2079.5, scale=0.37), circuit=CIRCUIT, seed=7)
    with torch.no_grad():  # a non-trivial readout
        model.regressor.a.fill_(0.9)
        model.regressor.b.fill_(-0.05)
    return model, pos


def test_counts_and_initialisation(model_and_positions):
    model, _ = model_and_positions
    assert model.n_circuit_parameters == 3 * 2 * 3 + 3 * 2 + 2 * 3  # 18 + 6 + 6 = 30
    assert model.n_parameters() == model.n_circuit_parameters + model.n_readout_parameters
    w = QNNForceField(featurizer=model.featurizer, energy_scaler=model.energy_scaler, circuit=CIRCUIT, seed=7).regressor.weights
    # feature-map weights start at 1/sqrt(K), K = 3 layers x 2 repetitions x 3 qubits = 18 encodings of each feature
    assert torch.allclose(w[:6], torch.full((6,), 1 / math.sqrt(18), dtype=w.dtype)) and torch.all(w[6:].abs() <= math.pi)
    same = QNNForceField(featurizer=model.featurizer, energy_scaler=model.energy_scaler, circuit=CIRCUIT, seed=7).regressor.weights
    other = QNNForceField(featurizer=model.featurizer, energy_scaler=model.energy_scaler, circuit=CIRCUIT, seed=8).regressor.weights
    assert torch.equal(w, same) and not torch.equal(w, other)
    eff = model.effdim_module()
    assert sum(p.numel() for p in eff.regressor.parameters() if p.requires_grad) == model.n_circuit_parameters
    with pytest.raises(ValueError, match="features"):
        QNNForceField(featurizer=model.featurizer, energy_scaler=model.energy_scaler, circuit={**CIRCUIT, "n_features": 4})


def test_forces_are_minus_the_energy_gradient(model_and_positions):
    model, pos = model_and_positions
    e, f = model.energy_and_forces(pos)
    sc = model.energy_scaler

    def central(h):  # central differences of E - center (the constant only adds round-off), eV/A
        fd = torch.zeros_like(pos)
        with torch.no_grad():
            for a in range(3):
                for k in range(3):
                    d = torch.zeros_like(pos)
                    d[:, a, k] = h
                    fd[:, a, k] = -sc.scale * (model.scaled_energy(pos + d) - model.scaled_energy(pos - d)) / (2 * h)
        return fd

    fd = (4 * central(5e-5) - central(1e-4)) / 3  # Richardson: O(h^4)
    assert (f - fd).abs().max() < 1e-6  # eV/A
    # the training path (precomputed features and Jacobian, fast engine) gives the same scaled predictions
    x, jac = model.featurizer.features_and_jacobian(pos)
    y, fs = model.scaled_energy_and_forces(TrainingBatch(pos, torch.zeros(len(pos)), torch.zeros_like(pos), x, jac))
    assert torch.allclose(sc.center + sc.scale * y.detach(), e, atol=1e-10)
    assert torch.allclose(sc.scale * fs.detach(), f, atol=1e-10)


def test_energy_invariant_and_forces_covariant(model_and_positions):
    model, pos = model_and_positions
    e, f = model.energy_and_forces(pos)
    rng = np.random.default_rng(1)
    rot, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    rot = torch.tensor(rot * np.sign(np.linalg.det(rot)))
    moved = pos @ rot.T + torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)
    e2, f2 = model.energy_and_forces(moved)
    assert torch.allclose(e2, e, atol=1e-9)
    assert torch.allclose(f2, f @ rot.T, atol=1e-9)
    perm = [0, 2, 1]  # swap the two H atoms
    e3, f3 = model.energy_and_forces(pos[:, perm])
    assert torch.allclose(e3, e, atol=1e-9)
    assert torch.allclose(f3, f[:, perm], atol=1e-9)


def test_qpy_artifact_round_trip(model_and_positions, tmp_path):
    model, pos = model_and_positions
    path = tmp_path / "qnn.zip"
    model.save(path, provenance={"test": True})
    with zipfile.ZipFile(path) as zf:
        (qc,) = qpy.load(io.BytesIO(zf.read("blobs/circuit.qpy")))
    assert qc == model.quantum_circuit
    loaded = load_model(path)
    assert isinstance(loaded, QNNForceField)
    e1, f1 = model.energy_and_forces(pos)
    e2, f2 = loaded.energy_and_forces(pos)
    assert (e1 - e2).abs().max() < 1e-12 and (f1 - f2).abs().max() < 1e-12
    assert loaded.n_parameters() == model.n_parameters()
    assert torch.equal(loaded.regressor.weights, model.regressor.weights)


def test_aer_shots_within_four_sigma_and_noise_runs(model_and_positions):
    model, pos = model_and_positions
    pos = pos[:8]
    res = model.aer_energy(pos, shots=8000, seed=3)
    z = (res["energy"] - res["exact"]) / res["stderr"]
    assert np.all(np.abs(z) < 4.0), z
    again = model.aer_energy(pos, shots=8000, seed=3)
    assert np.array_equal(res["energy"], again["energy"])  # seeded
    exact_aer = model.aer_energy(pos, shots=None)
    assert np.allclose(exact_aer["energy"], exact_aer["exact"], atol=1e-10) and np.all(exact_aer["stderr"] == 0)
    noisy = model.aer_energy(pos, shots=None, noise="depolarizing", p1=0.01, p2=0.05, seed=3)
    a, b = model.regressor.a.item(), model.regressor.b.item()
    z = lambda e: ((e - model.energy_scaler.center) / model.energy_scaler.scale - b) / a  # noqa: E731  (<Z_0>)
    zn, ze = z(noisy["energy"]), z(noisy["exact"])
    assert np.all(np.abs(zn) <= 1 + 1e-9)
    assert np.abs(zn - ze).max() > 1e-3  # the noise shows ...
    assert np.corrcoef(zn, ze)[0, 1] > 0.5 and np.mean(np.abs(zn)) < np.mean(np.abs(ze))  # ... and mostly damps <Z>
    device = model.aer_energy(pos[:3], shots=2000, noise="FakeManilaV2", seed=1)
    assert device["info"]["noise"] == "FakeManilaV2" and np.all(np.isfinite(device["energy"]))

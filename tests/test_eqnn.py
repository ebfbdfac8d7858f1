"""The symmetry-invariant QNN model kind (qnnff.models.eqnn, issue 28) on the exact engine.

Invariances (rotation, like-atom permutation) to 1e-10 eV with forces that rotate and permute; forces against finite
differences; the energy on qiskit-aer (exact statevector) equal to the engine's; the artifact round trip; the guards of
every kind; a tiny model trained in a fixture (MACE-style) whose loss falls and whose forces stay exact. The circuits are
small (D = 2 or 3) so that the module runs in seconds; the architecture is the paper-sized one's (qnnff.qnn.eqnn).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.io import read
from geometry_helpers import random_rotation

from qnnff.calculators import ModelCalculator
from qnnff.config import system_spec
from qnnff.errors import NonFiniteGeometryError, OutOfDomainError, OverlappingAtomsError
from qnnff.features import EnergyScaler, Featurizer, extend_to_symmetric_point, internal_coordinates
from qnnff.models.base import TrainingBatch
from qnnff.models.eqnn import EQNNForceField
from qnnff.models.factory import load_model

SMALL = {"LiH": {"depth": 3}, "H2O": {"depth": 3}, "H3O+": {"depth": 2}}
LIKE = {"H2O": [[0, 2, 1]], "H3O+": [[0, 2, 1, 3], [0, 3, 2, 1], [0, 2, 3, 1], [0, 3, 1, 2], [0, 1, 3, 2]]}


def _data(repo, system: str, n: int = 40) -> dict:
    import yaml

    spec = system_spec(yaml.safe_load((repo / "config" / "config.yaml").read_text()), system)
    frames = read(repo / "results" / system / "data" / "train.extxyz", index=f":{n}", format="extxyz")
    pos = np.stack([a.get_positions() for a in frames])
    energy = np.array([a.info["REF_energy"] for a in frames])
    forces = np.stack([a.arrays["REF_forces"] for a in frames])
    q = internal_coordinates(spec.families, torch.as_tensor(pos))
    lo, hi = extend_to_symmetric_point(spec.families, q.min(0).values.numpy(), q.max(0).values.numpy())
    feat = Featurizer(families=spec.families, feature_map=spec.feature_map, lo=lo, hi=hi, margin=0.05, symbols=list(spec.symbols))
    return {"featurizer": feat, "scaler": EnergyScaler.fit(energy), "positions": pos, "energy": energy, "forces": forces}


@pytest.fixture(scope="module")
def models(repo):
    out = {}
    for system, circuit in SMALL.items():
        d = _data(repo, system)
        m = EQNNForceField(featurizer=d["featurizer"], energy_scaler=d["scaler"], circuit=circuit, seed=3, init_couplings=1.0)
        out[system] = (m, d)
    return out


@pytest.mark.parametrize("system", list(SMALL))
def test_rotation_invariance_and_rotated_forces(models, system):
    m, d = models[system]
    pos = torch.tensor(d["positions"][:6])
    rot = torch.tensor(random_rotation(np.random.default_rng(11)))
    shift = torch.tensor([0.3, -1.2, 0.7])
    e, f = m.energy_and_forces(pos, check=False)
    e2, f2 = m.energy_and_forces(pos @ rot.T + shift, check=False)
    assert float(e.max() - e.min()) > 1e-3  # the model depends on the geometry (not a constant)
    assert float((e2 - e).abs().max()) < 1e-10
    assert float((f2 - f @ rot.T).abs().max()) < 1e-9


@pytest.mark.parametrize("system", ["H2O", "H3O+"])
def test_like_atom_permutations_leave_the_energy_and_permute_the_forces(models, system):
    m, d = models[system]
    pos = torch.tensor(d["positions"][:6])
    e, f = m.energy_and_forces(pos, check=False)
    for perm in LIKE[system]:
        e2, f2 = m.energy_and_forces(pos[:, perm], check=False)
        assert float((e2 - e).abs().max()) < 1e-10, perm
        assert float((f2 - f[:, perm]).abs().max()) < 1e-9, perm


@pytest.mark.parametrize("system", list(SMALL))
def test_forces_are_minus_the_gradient(models, system):
    m, d = models[system]
    pos = torch.tensor(d["positions"][:3])
    _, f = m.energy_and_forces(pos, check=False)
    _, f_autograd = m.energy_and_forces(pos, check=False, create_graph=True)  # double autograd through the engine
    assert float((f - f_autograd.detach()).abs().max()) < 1e-10
    h = 1e-5
    fd = torch.empty_like(f)
    with torch.no_grad():
        for i in range(pos.shape[1]):
            for k in range(3):
                p, q = pos.clone(), pos.clone()
                p[:, i, k] += h
                q[:, i, k] -= h
                fd[:, i, k] = -(m.energy(p, check=False) - m.energy(q, check=False)) / (2 * h)
    assert float((fd - f).abs().max()) < 1e-6  # eV/Angstrom; central differences, h^2 ~ 1e-10
    assert float(f.sum(1).abs().max()) < 1e-10  # no net force (translation invariance)


@pytest.mark.parametrize("system", ["LiH", "H3O+"])
def test_aer_statevector_energy_equals_the_engine(models, system):
    m, d = models[system]
    pos = d["positions"][:4]
    res = m.aer_energy(pos, shots=None)
    assert np.abs(res["energy"] - res["exact"]).max() < 1e-10
    assert res["info"]["averaging_permutations"] == len(m.permutations)


@pytest.mark.parametrize("system", list(SMALL))
def test_information_floor_is_measured_without_the_frame(models, system):
    """The floor of the EQNN's inputs is measured on the inverse interatomic distances (the same information without
    the frame): unchanged by a rotation and a reflection of the molecule, unlike the relative positions it sees."""
    from qnnff.floor import model_floor

    m, d = models[system]
    pos = torch.tensor(d["positions"][:8])
    n = pos.shape[1]
    f = m.floor_inputs(pos)
    assert f.shape == (8, n * (n - 1) // 2)
    i, j = 1, 0
    assert torch.allclose(f[:, 0], 1.0 / (pos[:, i] - pos[:, j]).norm(dim=-1))
    q = torch.tensor(random_rotation(np.random.default_rng(5))) @ torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64))
    moved = pos @ q.T + torch.tensor([0.4, 0.1, -0.9])
    assert torch.allclose(m.floor_inputs(moved), f, atol=1e-12)
    assert not torch.allclose(m.model_inputs(moved), m.model_inputs(pos), atol=1e-3)
    y = (d["energy"] - d["scaler"].center) / d["scaler"].scale
    res = model_floor(m, d["positions"][:30], y[:30], d["positions"][30:], y[30:], seed=0)
    assert res["n_inputs"] == n * (n - 1) // 2


def test_parameter_counts_of_the_paper_sized_models(repo):
    """The default config's sizes: the paper QNN's counts (LiH 50, H2O 87)."""
    for system, depth, count in (("LiH", 16, 50), ("H2O", 17, 87)):
        d = _data(repo, system, 5)
        m = EQNNForceField(featurizer=d["featurizer"], energy_scaler=d["scaler"], circuit={"depth": depth})
        assert m.n_circuit_parameters == count and m.n_parameters() == count + 2


def test_artifact_round_trip(models, tmp_path):
    m, d = models["H3O+"]
    path = tmp_path / "eqnn.zip"
    m.save(path, provenance={"test": True})
    loaded = load_model(path)
    assert isinstance(loaded, EQNNForceField) and loaded.permutations == m.permutations
    pos = d["positions"][:5]
    e, f = m.energy_and_forces(pos, check=False)
    e2, f2 = loaded.energy_and_forces(pos, check=False)
    assert torch.equal(e, e2) and torch.equal(f, f2)


def test_calculator_guards(models):
    m, d = models["H2O"]
    calc = ModelCalculator(m)
    atoms = Atoms("OHH", positions=d["positions"][0])
    atoms.calc = calc
    e = atoms.get_potential_energy()
    assert e == pytest.approx(float(m.energy(d["positions"][:1])[0]), abs=1e-9)
    for bad, err in ((np.nan, NonFiniteGeometryError), ("overlap", OverlappingAtomsError), ("far", OutOfDomainError)):
        p = d["positions"][0].copy()
        if bad == "overlap":
            p[2] = p[1] + 0.01
        elif bad == "far":
            p[1] = p[0] + 3.0 * (p[1] - p[0])
        else:
            p[1, 0] = bad
        with pytest.raises(err):
            m.energy(p)


@pytest.fixture(scope="module")
def trained(repo):
    """A tiny H2O model (D = 2) trained for 40 L-BFGS evaluations on 30 frames with the energy + force loss."""
    from qnnff import training

    d = _data(repo, "H2O", 30)
    m = EQNNForceField(featurizer=d["featurizer"], energy_scaler=d["scaler"], circuit={"depth": 2}, seed=5)
    sc = d["scaler"]
    pos = torch.tensor(d["positions"])
    batch = TrainingBatch(pos, torch.tensor((d["energy"] - sc.center) / sc.scale), torch.tensor(d["forces"] / sc.scale))
    before = training.loss_terms(m, batch, chi=1.0, create_graph=False)[0].item()
    res = training.train(m, batch, optimizer="lbfgs", iterations=40, chi=1.0, seed=1)
    return m, d, before, res


def test_training_lowers_the_loss_and_keeps_exact_forces(trained):
    m, d, before, res = trained
    assert res.final_loss < 0.5 * before
    pos = torch.tensor(d["positions"][:2])
    _, f = m.energy_and_forces(pos, check=False)
    h = 1e-5
    p, q = pos.clone(), pos.clone()
    p[:, 1, 2] += h
    q[:, 1, 2] -= h
    fd = -(m.energy(p, check=False) - m.energy(q, check=False)) / (2 * h)
    assert float((fd - f[:, 1, 2]).abs().max()) < 1e-6


def test_effective_dimension_uses_the_engine_hook(trained):
    from qnnff.effdim import model_effective_dimension, sample_uniform_box

    m, d, _, _ = trained
    em = m.effdim_module()
    y = em.scaled_energy(torch.tensor(d["positions"][:8]))
    assert float(y.abs().max()) <= 1.0 + 1e-12  # (<O> + 1) / 2 lies in [-1, 1]
    theta = sample_uniform_box(n_samples=3, n_params=em.n_parameters(), rng=np.random.default_rng(0))
    hook = model_effective_dimension(model=em, positions=d["positions"][:10], theta_samples=theta, n=[100], jacobian="hook")
    ref = model_effective_dimension(model=em, positions=d["positions"][:10], theta_samples=theta, n=[100], jacobian="loop")
    assert hook.d_n_over_d == pytest.approx(ref.d_n_over_d, rel=1e-8)


def test_u_angles_reproduce_the_encoding_gate():
    """The Aer form replaces RV(v) by U(theta, phi, lambda): equal up to a global phase, also on the axes, at v = 0
    and at rotation angle pi."""
    from qiskit.circuit.library import RVGate, UGate

    from qnnff.models.eqnn import rv_u_angles

    rng = np.random.default_rng(4)
    v = np.vstack([rng.normal(size=(200, 3)) * 3, np.zeros((1, 3)), np.eye(3) * np.pi, -np.eye(3) * 1.3, [[1e-12, 0, 0]]])
    worst = 0.0
    for vi, a in zip(v, rv_u_angles(v)):
        m, u = RVGate(*vi).to_matrix(), UGate(*a).to_matrix()
        phase = np.vdot(u.ravel(), m.ravel())
        worst = max(worst, float(np.abs(m - phase / abs(phase) * u).max()))
    assert worst < 1e-12


def test_aer_with_shots_measures_the_heisenberg_observable(models):
    """Sampled on Aer (three measurement settings: XX, YY, ZZ), the energies scatter around the engine's within their
    standard errors, and a depolarising noise model shifts them."""
    m, d = models["H2O"]
    pos = d["positions"][:4]
    res = m.aer_energy(pos, shots=8000, seed=3)
    assert res["info"]["measurement_groups"] == 3
    z = (res["energy"] - res["exact"]) / res["stderr"]
    assert np.all(res["stderr"] > 0) and np.abs(z).max() < 5, z
    noisy = m.aer_energy(pos, shots=8000, seed=3, noise="depolarizing", p1=0.01, p2=0.05)
    assert np.abs(noisy["energy"] - res["exact"]).mean() > 3 * res["stderr"].mean()

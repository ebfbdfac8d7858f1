"""The frozen numpy evaluator of a trained QNN (qnnff.qnn.frozen) against the torch model, and the calculator switch.

Agreement is asserted at 1e-10 (eV, eV/Angstrom) on random in-domain geometries for the paper's three circuits
(LiH N=2 D=10 full/full l=2; H2O N=3 D=12 full/full l=3; H3O+ N=6 D=10 linear/linear l=3) with random weights and
readout; no timings are asserted (benchmarks/bench_md.py measures MD speed).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ase import Atoms
from qiskit.circuit import ParameterVector, QuantumCircuit
from qiskit.quantum_info import SparsePauliOp, Statevector

from qnnff.calculators import ModelCalculator, OutOfDomainError
from qnnff.errors import UnsupportedCircuitError
from qnnff.features import PRIMITIVES, CoordinateFamily, EnergyScaler, Featurizer, extend_to_symmetric_point
from qnnff.md import run_stretched_bond
from qnnff.models.qnn import QNNForceField
from qnnff.qnn.circuit import build_qnn_circuit
from qnnff.qnn.engine import CompiledCircuit, QNNRegressor
from qnnff.qnn.frozen import FrozenCircuit, FrozenQNN, NumpyFeaturizer

TOL = 1e-12  # relative to the largest |E| or |F| (eV, eV/Angstrom): both paths run the same program and kernel;
# what is left is the round-off of the numpy and torch feature chains

LIH_CIRCUIT = dict(n_qubits=2, depth=10, feature_map="full", feature_map_reps=2, trainable_feature_map="full",
                   trainable_feature_map_reps=2)
H2O_CIRCUIT = dict(n_qubits=3, depth=12, feature_map="full", feature_map_reps=3, trainable_feature_map="full",
                   trainable_feature_map_reps=3)
H3O_CIRCUIT = dict(n_qubits=6, depth=10, feature_map="linear", feature_map_reps=3, trainable_feature_map="linear",
                   trainable_feature_map_reps=3)


# ---------------------------------------------------------------------------------------------------------------
# geometries and models
# ---------------------------------------------------------------------------------------------------------------
def _rotation(rng: np.random.Generator) -> np.ndarray:
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    return q


def lih_geometries(n: int, rng: np.random.Generator, lo: float = 1.0, hi: float = 4.0) -> np.ndarray:
    out = np.zeros((n, 2, 3))
    for b in range(n):
        d = rng.normal(size=3)
        out[b, 0] = rng.normal(size=3)
        out[b, 1] = out[b, 0] + rng.uniform(lo, hi) * d / np.linalg.norm(d)
    return out


def water_geometries(n: int, rng: np.random.Generator) -> np.ndarray:
    out = []
    for _ in range(n):
        r1, r2 = rng.uniform(0.9, 1.1, 2)
        th = math.radians(rng.uniform(98.0, 112.0))
        p = np.array([[0, 0, 0], [0, 0, r1], [r2 * math.sin(th), 0, r2 * math.cos(th)]])
        out.append(p @ _rotation(rng) + rng.normal(size=3))
    return np.array(out)


def hydronium_geometries(n: int, rng: np.random.Generator) -> np.ndarray:
    out = []
    for _ in range(n):
        p = [[0.0, 0.0, 0.0]]
        for k in range(3):
            r, pol = rng.uniform(0.95, 1.05), math.radians(rng.uniform(105.0, 115.0))
            az = math.radians(120.0 * k + rng.uniform(-6.0, 6.0))
            p.append([r * math.sin(pol) * math.cos(az), r * math.sin(pol) * math.sin(az), r * math.cos(pol)])
        out.append(np.array(p) @ _rotation(rng) + rng.normal(size=3))
    return np.array(out)


def fitted_featurizer(families, feature_map, symbols, train) -> Featurizer:
    m = sum(len(f) for f in families)
    probe = Featurizer(families=families, feature_map=feature_map, lo=[-1e4] * m, hi=[1e4] * m, symbols=symbols)
    q = probe.internal(torch.as_tensor(train)).numpy()
    lo, hi = extend_to_symmetric_point(families, q.min(0), q.max(0))
    return Featurizer(families=families, feature_map=feature_map, lo=lo.tolist(), hi=hi.tolist(), symbols=symbols)


def randomize(model: QNNForceField, seed: int) -> QNNForceField:
    """Random circuit weights (feature-map weights included) and readout."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        w = model.regressor.weights
        w.copy_((torch.rand(w.shape, generator=g, dtype=torch.float64) * 2 - 1) * math.pi)
        model.regressor.a.fill_(0.5 + torch.rand((), generator=g, dtype=torch.float64).item())
        model.regressor.b.fill_(torch.rand((), generator=g, dtype=torch.float64).item() - 0.5)
    return model


def lih_model(seed: int = 3, *, random_weights: bool = True) -> QNNForceField:
    """LiH QNN; ``random_weights=False`` keeps the model's own seeded initialisation (feature-map weights 1: the plain
    feature map, whose initial well holds a bond released at 2.2 A inside the domain)."""
    fz = Featurizer(families=[CoordinateFamily("r_LiH", "bond", ((0, 1),))], feature_map="pi_arcsin_arccos", lo=[1.0], hi=[4.0],
                    margin=0.05, symbols=["Li", "H"])
    model = QNNForceField(featurizer=fz, energy_scaler=EnergyScaler(center=-218.3, scale=1.7), circuit=LIH_CIRCUIT, seed=seed,
                          feature_map_init=1.0)
    return randomize(model, seed) if random_weights else model


def h2o_model(seed: int = 4) -> QNNForceField:
    fams = [CoordinateFamily("r_OH", "bond", ((0, 1), (0, 2))), CoordinateFamily("a_HOH", "angle", ((1, 0, 2),))]
    fz = fitted_featurizer(fams, "arcsin", ["O", "H", "H"], water_geometries(400, np.random.default_rng(100)))
    return randomize(QNNForceField(featurizer=fz, energy_scaler=EnergyScaler(center=-2079.6, scale=0.9), circuit=H2O_CIRCUIT), seed)


def h3o_model(seed: int = 5) -> QNNForceField:
    fams = [CoordinateFamily("r_OH", "bond", ((0, 1), (0, 2), (0, 3))),
            CoordinateFamily("a_HOH", "angle", ((1, 0, 2), (1, 0, 3), (2, 0, 3)))]
    fz = fitted_featurizer(fams, "arcsin", ["O", "H", "H", "H"], hydronium_geometries(400, np.random.default_rng(101)))
    return randomize(QNNForceField(featurizer=fz, energy_scaler=EnergyScaler(center=-2087.1, scale=1.3), circuit=H3O_CIRCUIT), seed)


SYSTEMS = {"LiH": (lih_model, lih_geometries), "H2O": (h2o_model, water_geometries), "H3O+": (h3o_model, hydronium_geometries)}


@pytest.fixture(scope="module")
def models() -> dict[str, QNNForceField]:
    return {name: make() for name, (make, _) in SYSTEMS.items()}


def in_domain(model: QNNForceField, pos: np.ndarray) -> np.ndarray:
    return pos[~model.featurizer.out_of_domain(torch.as_tensor(pos)).numpy()]


# ---------------------------------------------------------------------------------------------------------------
# agreement with the torch model
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(SYSTEMS))
def test_paper_circuits_agree_with_torch(models, name):
    model = models[name]
    frozen = FrozenQNN(model)
    pos = in_domain(model, SYSTEMS[name][1](12, np.random.default_rng(7)))
    assert len(pos) >= 8
    e_ref, f_ref = model.energy_and_forces(torch.as_tensor(pos))
    e_ref, f_ref = e_ref.numpy(), f_ref.numpy()
    e, f = frozen.energy_and_forces(pos)  # [B, n, 3]: frame by frame
    de, df = np.abs(e - e_ref).max(), np.abs(f - f_ref).max()
    print(f"{name}: {frozen.circuit.describe()}; max |dE| = {de:.1e} eV, max |dF| = {df:.1e} eV/A (|F| up to {np.abs(f_ref).max():.1f})")
    tol_e, tol_f = TOL * max(1.0, np.abs(e_ref).max()), TOL * max(1.0, np.abs(f_ref).max())
    assert de < tol_e and df < tol_f
    assert np.abs(f_ref).max() > 0.1  # a nontrivial check
    e1, f1 = frozen.energy_and_forces(pos[0])  # one geometry [n, 3]
    assert isinstance(e1, float) and f1.shape == pos[0].shape
    assert e1 == e[0] and np.array_equal(f1, f[0])
    np.testing.assert_allclose(frozen.energy(pos), e_ref, rtol=0, atol=tol_e)
    assert abs(frozen.energy(pos[1]) - e_ref[1]) < tol_e


def test_frozen_path_runs_the_training_program(models):
    """No second simulator: the frozen evaluator runs the model's own compiled program (the encoding angles, the same
    in every layer, are one entry of the angle layer)."""
    for name, model in models.items():
        frozen = FrozenQNN(model)
        assert frozen.circuit.program is model.program
        d = frozen.circuit.describe()
        assert d["distinct_angles"] < d["rotations"], (name, d)


@pytest.mark.parametrize("config", [
    dict(n_qubits=2, n_features=3, depth=3, trainable_feature_map="none", feature_map_reps=2),
    dict(n_qubits=3, n_features=2, depth=2, rotations=("rx", "rz", "ry"), final_rotations=False, entanglement="full"),
    dict(n_qubits=2, n_features=2, depth=2, feature_map_reps=7, trainable_feature_map_reps=3),  # 7 items: prefix/suffix path
    dict(n_qubits=2, n_features=5, depth=2, feature_map="linear", trainable_feature_map="linear", trainable_feature_map_reps=2),
    dict(n_qubits=5, n_features=4, depth=2, feature_map="linear", feature_map_reps=2, entanglement="full"),
])
def test_circuit_value_and_input_gradient(config):
    qc, xv, wv = build_qnn_circuit(**config)
    rng = np.random.default_rng(11)
    w = rng.uniform(-math.pi, math.pi, len(wv))
    x = rng.uniform(-1.5, 1.5, (6, len(xv)))
    reg = QNNRegressor(CompiledCircuit(qc, inputs=list(xv), weights=list(wv)), w)
    y_ref, g_ref = reg.value_and_input_grad(torch.as_tensor(x), create_graph=False)
    fc = FrozenCircuit(qc, inputs=list(xv), weights=list(wv), weight_values=w)
    for b in range(len(x)):
        y, g = fc.value_and_grad(x[b])
        assert abs(y - float(y_ref[b])) < 1e-12 and np.abs(g - g_ref[b].numpy()).max() < 1e-12
        assert abs(fc.value(x[b]) - y) < 1e-13


def test_general_circuit_against_statevector():
    """Gates the paper's builder does not use: H, CZ, SWAP and an input-dependent P between constants, a constant
    gate inside an input-dependent run, an idle qubit, layers with different encodings, and a non-diagonal
    observable; checked against qiskit's Statevector (values) and central differences (gradients)."""
    x = ParameterVector("x", 3)
    w = ParameterVector("w", 4)
    qc = QuantumCircuit(4)
    qc.h(0)
    qc.ry(w[0] * x[0], 0)
    qc.sx(0)  # constant inside the run
    qc.rz(x[1] + 0.3, 0)
    qc.rx(w[1] * x[2] - x[0], 1)
    qc.cz(0, 1)
    qc.p(2.0 * x[1], 1)
    qc.ry(w[2], 1)
    qc.swap(1, 2)
    qc.rx(w[3] * x[1], 0)
    qc.ry(x[2], 2)
    qc.cx(2, 0)
    qc.rz(0.7, 0)
    qc.t(2)
    obs = SparsePauliOp(["IIXZ", "IYYI", "IIIZ"], coeffs=[0.7, 0.4, -0.2])
    wvals = np.array([0.8, -1.3, 0.45, 2.1])
    fc = FrozenCircuit(qc, inputs=list(x), weights=list(w), weight_values=wvals, observable=obs)

    def ref(xv: np.ndarray) -> float:
        bound = qc.assign_parameters({**dict(zip(w, wvals)), **dict(zip(x, xv))})
        return float(Statevector(bound).expectation_value(obs).real)

    rng = np.random.default_rng(3)
    for _ in range(4):
        xv = rng.uniform(-1.5, 1.5, 3)
        y, g = fc.value_and_grad(xv)
        assert abs(y - ref(xv)) < 1e-12
        h = 1e-5
        fd = np.array([(ref(xv + h * e) - ref(xv - h * e)) / (2 * h) for e in np.eye(3)])
        assert np.abs(g - fd).max() < 1e-8


def test_unsupported_gates_are_rejected():
    x = ParameterVector("x", 2)
    qc = QuantumCircuit(2)
    qc.crz(x[0], 0, 1)
    with pytest.raises(UnsupportedCircuitError, match="crz"):
        FrozenCircuit(qc, inputs=list(x), weights=[], weight_values=np.zeros(0))
    qc = QuantumCircuit(1)
    qc.ry(x[0] * x[0], 0)
    with pytest.raises(UnsupportedCircuitError, match="not of the form"):
        FrozenCircuit(qc, inputs=list(x), weights=[], weight_values=np.zeros(0))


# ---------------------------------------------------------------------------------------------------------------
# the feature chain in numpy
# ---------------------------------------------------------------------------------------------------------------
def _inverse_bond(pos: torch.Tensor, i: int, j: int) -> torch.Tensor:
    return 1.0 / torch.linalg.vector_norm(pos[..., i, :] - pos[..., j, :], dim=-1)


@pytest.mark.parametrize("feature_map", ["arcsin", "pi_arcsin_arccos", "identity"])
@pytest.mark.parametrize("symmetrize", ["moments", "sort"])
def test_numpy_featurizer_jacobian(feature_map, symmetrize, monkeypatch):
    """Features and d(features)/d(positions) of bonds, angles and dihedrals (symmetrised families of 2 and 3 members)
    against torch autograd; and an unknown coordinate type through the torch fallback."""
    fams = [
        CoordinateFamily("r", "bond", ((0, 1), (2, 3), (1, 2)), symmetrize),
        CoordinateFamily("a", "angle", ((0, 1, 2), (1, 2, 3)), symmetrize),
        CoordinateFamily("d", "dihedral", ((0, 1, 2, 3),)),
    ]
    rng = np.random.default_rng(2)
    base = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.45], [1.35, 0.0, 1.9], [1.5, 0.9, 3.1]])
    train = base[None] + rng.normal(scale=0.08, size=(300, 4, 3))
    fz = fitted_featurizer(fams, feature_map, ["O", "O", "H", "H"], train)
    nf = NumpyFeaturizer(fz)
    assert not nf.torch_fallback
    pos = in_domain_feat(fz, base[None] + rng.normal(scale=0.05, size=(8, 4, 3)))
    x_ref, j_ref = fz.features_and_jacobian(torch.as_tensor(pos))
    for b in range(len(pos)):
        x, j = nf.jacobian(pos[b])
        np.testing.assert_allclose(x, x_ref[b].numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(j, j_ref[b].numpy(), rtol=1e-10, atol=1e-10)
    # torch fallback for a coordinate type the numpy chain does not know
    monkeypatch.setitem(PRIMITIVES, "inverse_bond", (_inverse_bond, 2))
    fams2 = fams + [CoordinateFamily("inv", "inverse_bond", ((0, 3),))]
    fz2 = fitted_featurizer(fams2, feature_map, ["O", "O", "H", "H"], train)
    nf2 = NumpyFeaturizer(fz2)
    assert nf2.torch_fallback
    pos2 = in_domain_feat(fz2, pos)
    x_ref, j_ref = fz2.features_and_jacobian(torch.as_tensor(pos2))
    x, j = nf2.jacobian(pos2[0])
    np.testing.assert_allclose(x, x_ref[0].numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(j, j_ref[0].numpy(), rtol=1e-10, atol=1e-10)


def test_numpy_featurizer_jacobian_coupled_moments():
    """The H3O+ default set (moments of the O-H bonds coupled with their opposite H-O-H angles) goes through the torch
    fallback, whose one-pass Jacobian (one geometry copy per coordinate) must equal torch's per-sample Jacobian."""
    fams = [CoordinateFamily("r_OH", "bond", ((0, 1), (0, 2), (0, 3)), "moments", couple_with="a_HOH"),
            CoordinateFamily("a_HOH", "angle", ((2, 0, 3), (1, 0, 3), (1, 0, 2)), "moments")]
    rng = np.random.default_rng(5)
    base = np.array([[0.0, 0.0, 0.0], [0.97, 0.0, 0.25], [-0.49, 0.84, 0.25], [-0.49, -0.84, 0.25]])
    train = base[None] + rng.normal(scale=0.05, size=(300, 4, 3))
    fz = fitted_featurizer(fams, "identity", ["O", "H", "H", "H"], train)
    nf = NumpyFeaturizer(fz)
    assert nf.torch_fallback
    pos = in_domain_feat(fz, base[None] + rng.normal(scale=0.03, size=(6, 4, 3)))
    x_ref, j_ref = fz.features_and_jacobian(torch.as_tensor(pos))
    assert x_ref.shape[1] == 9
    for b in range(len(pos)):
        x, j = nf.jacobian(pos[b])
        np.testing.assert_allclose(x, x_ref[b].numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(j, j_ref[b].numpy(), rtol=1e-10, atol=1e-10)


def in_domain_feat(fz: Featurizer, pos: np.ndarray) -> np.ndarray:
    keep = pos[~fz.out_of_domain(torch.as_tensor(pos)).numpy()]
    assert len(keep) >= 1
    return keep


# ---------------------------------------------------------------------------------------------------------------
# domain
# ---------------------------------------------------------------------------------------------------------------
def _torch_path_message(model: QNNForceField, pos: np.ndarray) -> str:
    atoms = Atoms(model.symbols, positions=pos)
    atoms.calc = ModelCalculator(model, frozen=False)
    with pytest.raises(OutOfDomainError) as err:
        atoms.get_forces()
    return str(err.value)


def test_out_of_domain_raises_like_the_calculator(models):
    lih, h2o = models["LiH"], models["H2O"]
    frozen = FrozenQNN(lih)
    for r in (4.5, 0.8):
        pos = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, r]])
        with pytest.raises(OutOfDomainError, match=rf"r_LiH = {r:.4f} \(training range \[1\.0000, 4\.0000\]") as err:
            frozen.energy_and_forces(pos)
        assert str(err.value) == _torch_path_message(lih, pos)
        with pytest.raises(OutOfDomainError):
            frozen.energy(pos)
    pos = water_geometries(1, np.random.default_rng(0))[0]
    pos[1] = pos[0] + 1.6 * (pos[1] - pos[0])  # one O-H bond far too long
    with pytest.raises(OutOfDomainError, match=r"r_OH\.mean = ") as err:
        FrozenQNN(h2o).energy_and_forces(pos)
    assert str(err.value) == _torch_path_message(h2o, pos)
    with pytest.raises(ValueError, match="NaN"):
        frozen.energy_and_forces(np.array([[0.0, 0.0, 0.0], [0.0, 0.0, np.nan]]))
    with pytest.raises(ValueError, match="shape"):
        frozen.energy_and_forces(np.zeros((3, 3)))


# ---------------------------------------------------------------------------------------------------------------
# the calculator
# ---------------------------------------------------------------------------------------------------------------
def test_calculator_uses_the_frozen_evaluator(models):
    from test_calculators import TinyWater

    model = lih_model(seed=9)
    fast, slow = ModelCalculator(model), ModelCalculator(model, frozen=False)
    assert fast.backend == "frozen" and slow.backend == "fused"
    assert ModelCalculator(TinyWater()).backend == "fused"
    with pytest.raises(ValueError, match="frozen=True"):
        ModelCalculator(TinyWater(), frozen=True)
    for pos in lih_geometries(5, np.random.default_rng(4), 1.1, 3.9):
        a, b = Atoms("LiH", positions=pos), Atoms("LiH", positions=pos)
        a.calc, b.calc = fast, slow
        e = a.get_potential_energy()
        assert abs(e - b.get_potential_energy()) < TOL * abs(e)
        np.testing.assert_allclose(a.get_forces(), b.get_forces(), rtol=0, atol=TOL * max(1.0, np.abs(b.get_forces()).max()))
    # the model changed in place (as training would): the calculator refreezes
    atoms = Atoms("LiH", positions=[[0, 0, 0], [0, 0, 2.0]])
    atoms.calc = fast
    e0 = atoms.get_potential_energy()
    with torch.no_grad():
        model.regressor.weights.add_(0.05)
        model.regressor.b.add_(0.01)
    atoms.positions[1, 2] += 1e-3
    e1, f1 = atoms.get_potential_energy(), atoms.get_forces()
    e_ref, f_ref = model.energy_and_forces(torch.as_tensor(atoms.positions)[None])
    assert e1 != e0 and abs(e1 - float(e_ref[0])) < TOL * abs(e1)
    assert np.abs(f1 - f_ref[0].numpy()).max() < TOL * max(1.0, np.abs(f1).max())
    # species and domain checks stay
    wrong = Atoms("HLi", positions=[[0, 0, 0], [0, 0, 2.0]])
    wrong.calc = fast
    with pytest.raises(ValueError, match="built for atoms"):
        wrong.get_forces()
    far = Atoms("LiH", positions=[[0, 0, 0], [0, 0, 4.6]])
    far.calc = fast
    with pytest.raises(OutOfDomainError, match="r_LiH = 4.6000"):
        far.get_forces()


def test_stretched_bond_md_matches_the_torch_path():
    model = lih_model(seed=0, random_weights=False)  # its well holds the bond inside the domain from r = 2.2 A
    kw = dict(symbols=["Li", "H"], r_start_A=2.2, timestep_fs=0.5, n_steps=300, log_every=10)
    fast = run_stretched_bond(calculator=ModelCalculator(model), **kw)
    slow = run_stretched_bond(calculator=ModelCalculator(model, frozen=False), **kw)
    assert fast.md.extra["completed"] and slow.md.extra["completed"]
    assert np.abs(fast.r_A - slow.r_A).max() < 1e-9
    assert np.abs(fast.md.total_energy - slow.md.total_energy).max() < 1e-9
    assert fast.r_A.max() - fast.r_A.min() > 0.01  # the bond actually oscillates


def test_calculator_notices_replaced_parameters_buffers_and_scaler():
    """is_current skips looking the model's objects up while no Revisioned module was changed structurally
    (qnnff.revision): every way of replacing one must still refreeze the evaluator."""
    model = lih_model(seed=9)
    calc = ModelCalculator(model)
    atoms = Atoms("LiH", positions=[[0, 0, 0], [0, 0, 2.0]])
    atoms.calc = calc
    atoms.get_potential_energy()
    reg, feat = model.regressor, model.featurizer
    changes = {
        "parameter assigned": lambda: setattr(reg, "weights", torch.nn.Parameter(reg.weights.detach() + 0.05)),
        "parameter registered": lambda: reg.register_parameter("b", torch.nn.Parameter(reg.b.detach() + 0.01)),
        "buffer registered": lambda: feat.register_buffer("hi", feat.hi + 0.1),
        "scaler assigned": lambda: setattr(model, "energy_scaler", EnergyScaler(center=model.energy_scaler.center + 1.0,
                                                                                scale=model.energy_scaler.scale)),
    }
    for what, change in changes.items():
        frozen = calc._frozen
        assert frozen.is_current(model) and frozen.is_current(model), what  # (the second call: the fast path)
        change()
        assert not frozen.is_current(model), what
        atoms.positions[1, 2] += 1e-4
        e, f = atoms.get_potential_energy(), atoms.get_forces()
        assert calc._frozen is not frozen, what
        e_ref, f_ref = model.energy_and_forces(torch.as_tensor(atoms.positions)[None])
        assert abs(e - float(e_ref[0])) < TOL * abs(e), what
        assert np.abs(f - f_ref[0].detach().numpy()).max() < TOL * max(1.0, np.abs(f).max()), what

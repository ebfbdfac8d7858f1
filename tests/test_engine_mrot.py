"""Rotations about an involution, exp(-i theta M / 2), as one op of the engine (kernel op type 2): the two-qubit Pauli
rotations rxx, ryy, rzz, rzx and PauliEvolutionGate of a Hamiltonian with two eigenvalues (the Heisenberg exchange
XX + YY + ZZ = 2 SWAP - 1 of the invariant QNN, run by the pure-permutation kernels; a single Pauli term with Y, whose
M has complex phases; ZZ, whose M has fixed points with -1). Values against Qiskit's Statevector, dy/dphi and the
Hessian-vector product of the kernels against the plain torch reference (which applies the op in its own torch
code) on one sample, a few and several tiles, with shared and per-sample weights, the same gate as one op and as
three ops, the force-loss gradient against the autograd mode, and the refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from circuit_helpers import finite_difference_input_grad, force_loss_gradients
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter, ParameterVector
from qiskit.circuit.library import PauliEvolutionGate
from qiskit.quantum_info import SparsePauliOp, Statevector

from qnnff.qnn import kernels
from qnnff.qnn.engine import CompiledCircuit, UnsupportedCircuitError, _simulate_autograd
from qnnff.qnn.frozen import FrozenCircuit

BIG = kernels.LANES + 45  # more samples than one tile
HEIS = SparsePauliOp(["XX", "YY", "ZZ"])


def mrot_circuit():
    """Every kind of involution rotation, with constant, linear (weight or input) and bilinear (weight x input)
    angles, between rv encodings, rotations and CX on 4 qubits."""
    x, w = ParameterVector("x", 4), ParameterVector("w", 7)
    qc = QuantumCircuit(4)
    qc.h(0)
    qc.x(1)
    qc.cx(0, 1)
    qc.rv(w[0] * x[0], w[0] * x[1], w[0] * x[2], 0)
    qc.rv(w[1] * x[2], x[3], w[1] * x[0], 1)
    qc.ry(w[2] * x[3], 2)
    qc.rx(0.3, 3)
    qc.append(PauliEvolutionGate(HEIS, time=w[3]), [0, 1])            # SWAP-type: pure permutation
    qc.append(PauliEvolutionGate(HEIS, time=w[4] * x[1]), [2, 1])     # ... with an input-dependent angle
    qc.rxx(w[5] + x[2], 1, 3)
    qc.ryy(w[6], 0, 3)
    qc.rzz(w[3] * x[0], 0, 2)                                         # diagonal: fixed points with -1
    qc.rzx(0.7 * w[2], 3, 1)
    qc.append(PauliEvolutionGate(SparsePauliOp(["XY"], [0.6]), time=w[5] * x[3]), [2, 3])  # complex phases
    qc.cx(1, 2)
    qc.append(PauliEvolutionGate(HEIS, time=0.4), [3, 0])             # constant angle
    qc.rv(w[0] * x[0], w[0] * x[1], w[0] * x[2], 2)
    qc.append(PauliEvolutionGate(HEIS, time=w[3]), [1, 3])
    obs = SparsePauliOp(["IIXX", "IIYY", "IIZZ", "ZIIZ", "XYII"], [1.0, 1.0, 1.0, 0.4, -0.3])
    return qc, x, w, obs


@pytest.fixture(scope="module")
def setup():
    qc, x, w, obs = mrot_circuit()
    prog = CompiledCircuit(qc, inputs=list(x), weights=list(w), observable=obs)
    W = torch.tensor(np.random.default_rng(5).uniform(-1.5, 1.5, len(w)))
    return qc, x, w, obs, prog, W


def points(B: int, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.tensor(rng.normal(size=(B, 4)) * rng.uniform(0.0, 2.0, (B, 1)))


def test_program_structure(setup):
    _, _, _, _, prog, _ = setup
    d = prog.describe()
    assert d["involution_rotations"] == prog.n_mrot == 9
    kops = prog.kernel_args[1]
    assert (kops[:, 0] == 2).sum() == 9
    # the exchange ops are pure permutations (the fast kernels), the others are not
    triv = kernels._trivial_phases(prog.kernel_args[3], prog.kernel_args[4])
    m = kops[kops[:, 0] == 2, 1]
    assert triv[m].sum() == 5  # 4 PauliEvolutionGate(XX + YY + ZZ) + rxx (XX: a pure permutation too)


def test_values_match_qiskit_statevector(setup):
    qc, x, w, obs, prog, W = setup
    X = points(6, seed=1)
    ref = np.array([Statevector(qc.assign_parameters({**dict(zip(x, X[b].tolist())), **dict(zip(w, W.tolist()))}))
                    .expectation_value(obs).real for b in range(len(X))])
    for mode in ("adjoint", "autograd"):
        assert np.abs(prog.expectation(X, W, mode=mode).detach().numpy() - ref).max() < 1e-12, mode


@pytest.mark.parametrize("B", [1, 7, BIG])
def test_kernel_derivatives_match_the_torch_reference(setup, B):
    _, _, _, _, prog, W = setup
    X = points(B, seed=B)
    phi = prog.angles_of(X, W).detach()
    p = phi.clone().requires_grad_(True)
    y_ref = _simulate_autograd(prog, p)
    (G_ref,) = torch.autograd.grad(y_ref.sum(), p, create_graph=True)
    rng = np.random.default_rng(B)
    for zero_weight_rows in (False, True):  # True: phidot = 0 on the angles without inputs (the force loss's case)
        v = torch.tensor(rng.normal(size=phi.shape))
        if zero_weight_rows:
            v[prog.kernel_args[-1] == 0] = 0.0
        (H_ref,) = torch.autograd.grad((G_ref * v).sum(), p, retain_graph=True)
        pn, vn = np.ascontiguousarray(phi.numpy()), np.ascontiguousarray(v.numpy())
        scale = max(1.0, H_ref.abs().max().item())
        for args in (prog.kernel_args, prog.kernel_args_per_sample):
            y, G = kernels.value_grad(pn, *args)
            H = kernels.hvp(pn, vn, *args)
            assert np.abs(y - y_ref.detach().numpy()).max() < 1e-12
            assert np.abs(G - G_ref.detach().numpy()).max() < 1e-10
            assert np.abs(H - H_ref.numpy()).max() < 1e-10 * scale
            assert np.array_equal(y, kernels.forward(pn, *args))
            K = len(args[5]) - 1
            ws = np.empty(kernels.workspace_size(pn.shape, args[0], args[5], args[6]))
            GQ = np.empty((K, 4, B))
            y2, G2 = kernels.value_grad_ws(pn, ws, GQ, *args)
            assert np.array_equal(y, y2) and np.array_equal(G, G2)
            assert np.array_equal(H, kernels.hvp_ws(pn, vn, GQ, ws, *args))
            # lanes are independent: the last sample alone gives its bits
            p1, v1 = np.ascontiguousarray(pn[:, -1:]), np.ascontiguousarray(vn[:, -1:])
            assert np.array_equal(kernels.hvp(p1, v1, *args)[:, 0], H[:, -1])


def test_one_exchange_op_equals_three_pauli_rotations():
    """exp(-i J (XX + YY + ZZ)) as one PauliEvolutionGate (one pure-permutation op) and as rxx ryy rzz (three ops, two
    with phases): the same values, input gradients and weight gradients of a force loss."""
    x, J = ParameterVector("x", 2), Parameter("J")
    progs = []
    for native in (True, False):
        qc = QuantumCircuit(2)
        qc.rv(J * x[0], x[1], 0.3, 0)
        qc.ry(x[1], 1)
        if native:
            qc.append(PauliEvolutionGate(HEIS, time=J * x[0]), [0, 1])
        else:
            for g in (qc.rxx, qc.ryy, qc.rzz):
                g(2 * J * x[0], 0, 1)
        qc.rv(x[0], J, x[1], 1)
        progs.append(CompiledCircuit(qc, inputs=list(x), weights=[J], observable=SparsePauliOp(["XI", "ZY"], [0.6, -0.8])))
    assert [p.n_mrot for p in progs] == [1, 3]
    X = points(9, seed=4)[:, :2]
    out = []
    for p in progs:
        w = torch.tensor([0.9], dtype=torch.float64, requires_grad=True)
        y, g = p.expectation_and_input_grad(X, w)
        (gw,) = torch.autograd.grad((y ** 2).sum() + (g ** 2).sum(), w)
        out.append((y.detach(), g.detach(), gw))
    for a, b in zip(*out):
        assert (a - b).abs().max() < 1e-12


@pytest.mark.parametrize("B", [7, BIG])
def test_force_loss_gradient_adjoint_equals_autograd(setup, B):
    _, _, _, _, prog, W = setup
    for a, b in zip(*force_loss_gradients(prog, W, points(B, seed=20 + B), n_atoms=2, seed=B)):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)


def test_input_gradient_vs_finite_differences(setup):
    _, _, _, _, prog, W = setup
    X = points(5, seed=3)
    _, g = prog.expectation_and_input_grad(X, W, create_graph=False)
    fd = finite_difference_input_grad(prog, X, W)  # central finite differences
    assert (g - fd).abs().max() < 1e-8


def test_frozen_evaluator_refuses_involution_rotations():
    x, w = Parameter("x"), Parameter("w")
    qc = QuantumCircuit(2)
    qc.ry(w * x, 0)
    qc.rzz(w, 0, 1)
    qc.rx(x, 1)
    prog = CompiledCircuit(qc, inputs=[x], weights=[w], observable=SparsePauliOp("XZ"))
    with pytest.raises(UnsupportedCircuitError, match="involution"):
        FrozenCircuit(program=prog, weight_values=np.array([0.4]))


@pytest.mark.parametrize("make, match", [
    (lambda qc, J: qc.append(PauliEvolutionGate(SparsePauliOp(["XX", "ZI"]), time=J), [0, 1]), "must commute"),
    (lambda qc, J: qc.append(PauliEvolutionGate(SparsePauliOp(["XX", "YY"]), time=J), [0, 1]), "two distinct eigenvalues"),
    (lambda qc, J: qc.append(PauliEvolutionGate(SparsePauliOp(["XX", "YZ"], [1.0, 1.0]), time=J), [0, 1]), "two distinct"),
])
def test_unsupported_evolutions_are_refused_naming_the_instruction(make, match):
    J = Parameter("J")
    qc = QuantumCircuit(2)
    qc.h(0)
    make(qc, J)
    with pytest.raises(UnsupportedCircuitError, match=rf"instruction 1 \(PauliEvolution on qubits \[0, 1\]\).*{match}"):
        CompiledCircuit(qc, inputs=[], weights=[J], observable=SparsePauliOp("ZZ"))

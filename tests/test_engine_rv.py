"""rv gates (Qiskit's RVGate, exp(-i v . sigma / 2), the encoding of the rotation-equivariant QNN) in the engine:
values against Qiskit's Statevector (including v = 0 and |v| ~ 1e-9), dy/dphi and the Hessian-vector product of the
kernels against the plain torch reference, dy/dx against finite differences, the force-loss gradient against the
autograd mode, several tile widths, and the Heisenberg couplings as rxx, ryy, rzz (run natively, equal to their
decomposition; the rest of those rotations: test_engine_mrot.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from circuit_helpers import finite_difference_input_grad, force_loss_gradients
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter, ParameterVector
from qiskit.circuit.library import RVGate
from qiskit.quantum_info import SparsePauliOp, Statevector

from qnnff.qnn import kernels
from qnnff.qnn.engine import CompiledCircuit, UnsupportedCircuitError, _rv_quaternion, _simulate_autograd, _su2_quaternion
from qnnff.qnn.frozen import FrozenCircuit

BIG = kernels.LANES + 45  # more samples than one tile


def rv_circuit():
    """Two position vectors r = x[0:3], r' = x[3:6] encoded as rv(alpha r) (alpha a weight) and other rv gates with
    shared, constant, linear and bilinear components, fused with rx / ry / rz and fixed gates, CX entanglers."""
    x, w = ParameterVector("x", 6), ParameterVector("w", 6)
    qc = QuantumCircuit(3)
    qc.h(0)
    qc.rv(w[0] * x[0], w[0] * x[1], w[0] * x[2], 0)
    qc.rz(w[1], 0)
    qc.rv(w[0] * x[0], w[0] * x[1], w[0] * x[2], 0)  # the same components again: the same angles
    qc.rv(w[1] * x[3], 0.0, w[1] * x[3], 1)  # one angle in two components, a constant one
    qc.rx(w[2] * x[4], 1)
    qc.rv(x[5], w[3], 0.7, 2)
    qc.cx(0, 1)
    qc.cx(1, 2)
    qc.s(2)
    qc.rv(w[0] * x[3], w[0] * x[4], w[0] * x[5], 2)
    qc.ry(w[4], 2)
    qc.sx(0)
    qc.rv(w[5], x[0] * x[1], w[2], 0)
    qc.cx(2, 0)
    qc.rv(w[0] * x[0], w[0] * x[1], w[0] * x[2], 1)
    qc.rx(w[5] * x[2], 1)
    obs = SparsePauliOp(["IXX", "IYY", "IZZ", "ZII", "XIY"], [1.0, 1.0, 1.0, 0.4, -0.3])
    return qc, x, w, obs


@pytest.fixture(scope="module")
def setup():
    qc, x, w, obs = rv_circuit()
    prog = CompiledCircuit(qc, inputs=list(x), weights=list(w), observable=obs)
    rng = np.random.default_rng(7)
    W = torch.tensor(rng.uniform(-1.5, 1.5, 6))
    return qc, x, w, obs, prog, W


def points(B: int, seed: int = 0) -> torch.Tensor:
    """B inputs: position vectors of random length up to ~6 (|alpha r| across both branches of the rv series), the
    first sample zero (v = 0 exactly), the second ~1e-9."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(B, 6)) * rng.uniform(0.0, 2.5, (B, 1))
    X[0] = 0.0
    if B > 1:
        X[1] = 1e-9 * rng.normal(size=6)
    return torch.tensor(X)


def test_program_structure(setup):
    _, _, _, _, prog, _ = setup
    rv = [e for els in prog.blocks for e in els if e[0] == "rv"]
    assert len(rv) == prog.n_rv == prog.describe()["rv_gates"] == 7
    assert rv[0][2] == rv[1][2]  # alpha r: deduplicated angles
    assert rv[2][2][0] == rv[2][2][2]  # one angle in two components
    # several rv elements, a rotation and a fixed gate fused into one block
    assert any(sum(e[0] == "rv" for e in els) >= 2 and any(e[0] == "rot" for e in els) and any(e[0] == "fixed" for e in els)
               for els in prog.blocks)


def test_rv_quaternion_matches_qiskit_matrix():
    rng = np.random.default_rng(1)
    vs = [np.zeros(3), 1e-9 * rng.normal(size=3), [2.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 4.0 + 1e-12],
          *(rng.normal(size=3) * s for s in (0.3, 1.0, 3.0, 10.0))]
    for v in vs:
        q = np.array([t.item() for t in _rv_quaternion(*torch.tensor(np.asarray(v, dtype=float)))])
        assert np.abs(q - _su2_quaternion(RVGate(*v).to_matrix())).max() < 1e-15, v


def test_values_match_qiskit_statevector(setup):
    qc, x, w, obs, prog, W = setup
    X = points(6, seed=1)
    ref = np.array([Statevector(qc.assign_parameters({**dict(zip(x, X[b].tolist())), **dict(zip(w, W.tolist()))}))
                    .expectation_value(obs).real for b in range(len(X))])
    for mode in ("adjoint", "autograd"):
        y = prog.expectation(X, W, mode=mode).detach().numpy()
        assert np.abs(y - ref).max() < 1e-12, mode
    y, _ = prog.expectation_and_input_grad(X, W, create_graph=False)
    assert np.abs(y.numpy() - ref).max() < 1e-12
    # the frozen evaluator either refuses rv elements or agrees (this circuit has products of inputs: it runs the
    # program's own kernel arguments)
    try:
        fz = FrozenCircuit(program=prog, weight_values=W.numpy())
    except (ValueError, UnsupportedCircuitError):
        return
    assert abs(fz.value(X[2].numpy()) - ref[2]) < 1e-12


@pytest.mark.parametrize("B", [1, 7, BIG])
def test_kernel_derivatives_match_the_torch_reference(setup, B):
    _, _, _, _, prog, W = setup
    X = points(B, seed=B)
    if B == BIG:
        assert kernels._tile_width(B) < B  # several tiles
    phi = prog.angles_of(X, W).detach()
    p = phi.clone().requires_grad_(True)
    y_ref = _simulate_autograd(prog, p)
    (G_ref,) = torch.autograd.grad(y_ref.sum(), p, create_graph=True)
    v = torch.tensor(np.random.default_rng(B).normal(size=phi.shape))
    (H_ref,) = torch.autograd.grad((G_ref * v).sum(), p)
    pn, vn = np.ascontiguousarray(phi.numpy()), np.ascontiguousarray(v.numpy())
    scale = max(1.0, H_ref.abs().max().item())
    for args in (prog.kernel_args, prog.kernel_args_per_sample):
        y, G = kernels.value_grad(pn, *args)
        H = kernels.hvp(pn, vn, *args)
        assert np.abs(y - y_ref.detach().numpy()).max() < 1e-12
        assert np.abs(G - G_ref.detach().numpy()).max() < 1e-10
        assert np.abs(H - H_ref.numpy()).max() < 1e-10 * scale
        # the work-array variants and the reused block gradients give the same bits
        K = len(args[5]) - 1
        ws = np.empty(kernels.workspace_size(pn.shape, args[0], args[5], args[6]))
        GQ = np.empty((K, 4, B))
        y2, G2 = kernels.value_grad_ws(pn, ws, GQ, *args)
        assert np.array_equal(y, y2) and np.array_equal(G, G2) and np.array_equal(y, kernels.forward(pn, *args))
        assert np.array_equal(y, kernels.forward_ws(pn, ws, *args))
        assert np.array_equal(H, kernels.hvp_ws(pn, vn, GQ, ws, *args))
        assert np.array_equal(H, kernels.hvp_ws(pn, vn, np.empty((1, 4, 0)), np.empty(0), *args))
        # lanes are independent: the last sample alone gives its bits
        p1, v1 = np.ascontiguousarray(pn[:, -1:]), np.ascontiguousarray(vn[:, -1:])
        assert np.array_equal(kernels.value_grad(p1, *args)[1][:, 0], G[:, -1])
        assert np.array_equal(kernels.hvp(p1, v1, *args)[:, 0], H[:, -1])


def test_input_gradient_vs_finite_differences(setup):
    _, _, _, _, prog, W = setup
    X = points(5, seed=3)
    y, g = prog.expectation_and_input_grad(X, W, create_graph=False)
    _, g_ref = prog.expectation_and_input_grad(X, W, create_graph=False, mode="autograd")
    assert (g - g_ref).abs().max() < 1e-12
    fd = finite_difference_input_grad(prog, X, W)  # central finite differences
    assert (g - fd).abs().max() < 1e-8


@pytest.mark.parametrize("B", [7, BIG])
def test_force_loss_gradient_adjoint_equals_autograd(setup, B):
    _, _, _, _, prog, W = setup
    for a, b in zip(*force_loss_gradients(prog, W, points(B, seed=10 + B), n_atoms=2, seed=B)):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)


def test_autograd_mode_is_smooth_at_zero_to_higher_orders():
    """The torch reference path: gradcheck and gradgradcheck at v = 0, tiny |v| and across the series switch."""
    x, a = ParameterVector("x", 3), Parameter("a")
    qc = QuantumCircuit(2)
    qc.rv(a * x[0], a * x[1], a * x[2], 0)
    qc.cx(0, 1)
    qc.rv(x[2], a, x[0], 1)
    prog = CompiledCircuit(qc, inputs=list(x), weights=[a], observable=SparsePauliOp(["XX", "YY", "ZZ"]))
    X = torch.tensor([[0.0, 0.0, 0.0], [1e-9, -2e-9, 3e-9], [2.0, 3.4, -0.5]], dtype=torch.float64, requires_grad=True)
    W = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    f = lambda p, q: prog.expectation(p, q, mode="autograd")  # noqa: E731
    assert torch.autograd.gradcheck(f, (X, W)) and torch.autograd.gradgradcheck(f, (X, W))
    assert torch.autograd.gradcheck(lambda p, q: prog.expectation_and_input_grad(p, q), (X, W))


def test_pauli_rotations_run_natively_and_equal_their_decomposition():
    x, J = ParameterVector("x", 3), Parameter("J")
    qc = QuantumCircuit(2)
    qc.rv(J * x[0], J * x[1], J * x[2], 0)
    qc.rv(x[2], x[1], x[0], 1)
    qc.rxx(2 * J, 0, 1)
    qc.ryy(2 * J, 0, 1)
    qc.rzz(2 * J + x[1], 0, 1)
    obs = SparsePauliOp(["XX", "YY", "ZZ"])
    prog = CompiledCircuit(qc, inputs=list(x), weights=[J], observable=obs)
    assert prog.describe()["involution_rotations"] == 3
    dec = CompiledCircuit(qc.decompose(gates_to_decompose=["rxx", "ryy", "rzz"]), inputs=list(x), weights=[J], observable=obs)
    assert "involution_rotations" not in dec.describe()
    X, Jv = np.array([0.3, -0.2, 0.5]), 0.7
    ref = Statevector(qc.assign_parameters({**dict(zip(x, X)), J: Jv})).expectation_value(obs).real
    for p in (prog, dec):
        assert abs(p.expectation(torch.tensor(X[None]), torch.tensor([Jv], dtype=torch.float64)).item() - ref) < 1e-12

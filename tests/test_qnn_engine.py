"""The torch statevector engine: exact values (vs qiskit-aer), input gradients (finite differences, parameter
shift), autograd checks, force-loss gradients, and circuits it must refuse."""

import math

import numpy as np
import pytest
import torch
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter, ParameterVector
from qiskit.quantum_info import SparsePauliOp
from qiskit_aer.primitives import EstimatorV2

from qnnff.qnn.circuit import build_qnn_circuit, z_observable
from qnnff.qnn.engine import CompiledCircuit, QNNRegressor, UnsupportedCircuitError

SMALL = dict(n_qubits=3, n_features=3, depth=2, feature_map="full", feature_map_reps=2,
             trainable_feature_map="full", trainable_feature_map_reps=2)


def aer_values(qc, obs, params, values):
    """Exact expectation values from Aer's statevector EstimatorV2; ``values[b, k]`` is the value of ``params[k]``."""
    col = {p: k for k, p in enumerate(params)}
    pv = np.stack([values[:, col[p]] for p in qc.parameters], axis=1) if qc.parameters else None
    pub = (qc, obs, pv) if pv is not None else (qc, obs)
    return np.asarray(EstimatorV2(options={"default_precision": 0.0}).run([pub]).result()[0].data.evs).reshape(-1)


def random_config(rng):
    n = int(rng.integers(1, 5))
    return dict(
        n_qubits=n, n_features=int(rng.integers(1, 5)), depth=int(rng.integers(1, 4)),
        feature_map=str(rng.choice(["full", "linear"])), feature_map_reps=int(rng.integers(1, 4)),
        trainable_feature_map=str(rng.choice(["full", "linear", "none"])), trainable_feature_map_reps=int(rng.integers(1, 4)),
        entanglement=str(rng.choice(["linear", "full"])),
        rotations=tuple(rng.choice(["rx", "ry", "rz"], size=int(rng.integers(1, 4)), replace=False)),
        final_rotations=bool(rng.integers(0, 2)),
    )


def test_engine_matches_aer_statevector_on_random_circuits_from_the_config_space():
    rng = np.random.default_rng(11)
    for _ in range(8):
        cfg = random_config(rng)
        qc, x, w = build_qnn_circuit(**cfg)
        prog = CompiledCircuit(qc, inputs=list(x), weights=list(w))
        X = rng.uniform(-1.6, 1.6, (4, len(x)))
        W = rng.uniform(-math.pi, math.pi, len(w))
        ours = prog.expectation(torch.tensor(X), torch.tensor(W)).numpy()
        ref = aer_values(qc, z_observable(cfg["n_qubits"]), list(x) + list(w), np.hstack([X, np.tile(W, (4, 1))]))
        assert np.abs(ours - ref).max() < 1e-10, cfg
        # the light-cone pruning changes nothing
        full = CompiledCircuit(qc, inputs=list(x), weights=list(w), prune=False).expectation(torch.tensor(X), torch.tensor(W))
        assert np.abs(full.numpy() - ref).max() < 1e-10


def test_engine_matches_aer_on_a_general_circuit():
    """Fixed gates, CZ/SWAP/CY, u/p gates, bilinear input*input and input*weight terms, offsets, another observable."""
    x, w = ParameterVector("x", 2), ParameterVector("w", 4)
    qc = QuantumCircuit(3)
    qc.h(0); qc.sx(1); qc.t(2)
    qc.ry(0.5 * w[0] * x[0] + 0.3, 0)
    qc.rx(x[0] * x[1] - 2.0 * w[1], 1)
    qc.cz(0, 1); qc.swap(1, 2); qc.cy(2, 0)
    qc.u(w[2], x[1], 0.7, 2)
    qc.p(w[3] + x[0], 1)
    qc.s(0); qc.barrier()
    qc.cx(1, 0); qc.rz(w[0] * w[1], 0); qc.ry(x[1], 2); qc.cx(2, 1)
    rng = np.random.default_rng(3)
    X, W = rng.uniform(-1, 1, (5, 2)), rng.uniform(-2, 2, 4)
    for obs in (z_observable(3), SparsePauliOp(["ZIZ", "IZI"], [0.5, -1.5])):
        prog = CompiledCircuit(qc, inputs=list(x), weights=list(w), observable=obs)
        ours = prog.expectation(torch.tensor(X), torch.tensor(W)).numpy()
        ref = aer_values(qc, obs, list(x) + list(w), np.hstack([X, np.tile(W, (5, 1))]))
        assert np.abs(ours - ref).max() < 1e-10


@pytest.mark.parametrize("make, match", [
    (lambda qc, p, q: qc.ry(p.sin(), 0), "not of the form"),
    (lambda qc, p, q: qc.ry(p * p, 0), "not of the form"),
    (lambda qc, p, q: qc.crx(p, 0, 1), "not supported"),  # (rxx, ryy, rzz, rzx are: test_engine_rv.py)
    (lambda qc, p, q: qc.ch(0, 1), "not a permutation"),
    (lambda qc, p, q: qc.ry(Parameter("stranger"), 0), "neither inputs nor weights"),
])
def test_unsupported_circuits_are_rejected(make, match):
    p, q = Parameter("p"), Parameter("q")
    qc = QuantumCircuit(2)
    qc.rz(p + q, 1)
    make(qc, p, q)
    with pytest.raises(UnsupportedCircuitError, match=match):
        CompiledCircuit(qc, inputs=[p], weights=[q])
    qm = QuantumCircuit(1, 1)
    qm.ry(p, 0)
    qm.measure(0, 0)
    with pytest.raises(UnsupportedCircuitError, match="measurements"):
        CompiledCircuit(qm, inputs=[p], weights=[])


def _small(seed=0, B=4):
    qc, x, w = build_qnn_circuit(**SMALL)
    prog = CompiledCircuit(qc, inputs=list(x), weights=list(w))
    rng = np.random.default_rng(seed)
    X = torch.tensor(rng.uniform(-1.4, 1.4, (B, len(x))))
    W = torch.tensor(rng.uniform(-math.pi, math.pi, len(w)))
    return qc, x, w, prog, X, W


def test_input_gradient_vs_finite_differences_and_parameter_shift():
    from circuit_helpers import finite_difference_input_grad

    qc, x, w, prog, X, W = _small(1, B=3)
    _, g = prog.expectation_and_input_grad(X, W, create_graph=False)
    fd = finite_difference_input_grad(prog, X, W)  # central finite differences
    assert (g - fd).abs().max() < 1e-8
    # parameter-shift rule on the Qiskit circuit, evaluated by Aer: every rotation whose angle depends on x_j
    # contributes (d angle / d x_j) * [y(angle + pi/2) - y(angle - pi/2)] / 2
    params = list(x) + list(w)
    vals = np.hstack([X.numpy(), np.tile(W.numpy(), (len(X), 1))])
    psr = np.zeros(X.shape)
    for k, inst in enumerate(qc.data):
        if inst.operation.name not in ("rx", "ry", "rz"):
            continue
        (expr,) = inst.operation.params
        for j, xj in enumerate(x):
            if xj not in expr.parameters:
                continue
            dexpr = expr.gradient(xj)
            coef = np.array([float(dexpr.bind({p: v for p, v in zip(params, row) if p in dexpr.parameters}).numeric())
                             if hasattr(dexpr, "parameters") and dexpr.parameters else float(dexpr) for row in vals])
            diff = 0.0
            for sgn in (+1, -1):
                shifted = qc.copy()
                op = shifted.data[k].operation.to_mutable()
                op.params = [expr + sgn * math.pi / 2]
                shifted.data[k] = shifted.data[k].replace(operation=op)
                diff = diff + sgn * aer_values(shifted, z_observable(qc.num_qubits), params, vals)
            psr[:, j] += coef * diff / 2
    assert np.abs(g.numpy() - psr).max() < 1e-10


def test_gradcheck_adjoint_and_gradgradcheck_autograd():
    _, _, _, prog, X, W = _small(2, B=3)
    Xg, Wg = X.clone().requires_grad_(True), W.clone().requires_grad_(True)
    # adjoint path: outputs (y, dy/dx), checked w.r.t. inputs and weights, i.e. up to mixed second derivatives
    assert torch.autograd.gradcheck(lambda a, b: prog.expectation_and_input_grad(a, b), (Xg, Wg))
    assert torch.autograd.gradcheck(lambda a, b: prog.expectation(a, b), (Xg, Wg))
    # plain differentiable simulation of the same compiled program: any order
    f = lambda a, b: prog.expectation(a, b, mode="autograd")  # noqa: E731
    assert torch.autograd.gradcheck(f, (Xg, Wg))
    assert torch.autograd.gradgradcheck(f, (Xg, Wg))


def test_force_loss_gradient_adjoint_equals_autograd_and_regressor_jacobian():
    from circuit_helpers import force_loss_gradients

    _, _, _, prog, X, W = _small(3, B=5)
    for a, b in zip(*force_loss_gradients(prog, W, X, n_atoms=3, seed=0)):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)
    # the per-sample parameter Jacobian hook (used by the effective dimension)
    reg = QNNRegressor(prog, W, readout=(0.8, 0.1))
    theta = torch.cat([p.detach().reshape(-1) for p in reg.parameters()])
    y, J = reg.value_and_parameter_jacobian(X, theta)
    ref = torch.autograd.functional.jacobian(
        lambda th: torch.func.functional_call(reg, {"weights": th[:-2], "a": th[-2], "b": th[-1]}, (X,)), theta)
    assert torch.allclose(J, ref, atol=1e-12) and torch.allclose(y, reg(X))


def test_chunked_evaluation_and_batch_of_one():
    _, _, _, prog, X, W = _small(4, B=7)
    reg = QNNRegressor(prog, W, chunk_size=3)
    with torch.no_grad():
        y = reg(X)
    y1, g1 = reg.value_and_input_grad(X, create_graph=False)
    y2, g2 = QNNRegressor(prog, W).value_and_input_grad(X, create_graph=False)
    assert torch.allclose(y, y2, atol=1e-14) and torch.allclose(y1, y2, atol=1e-14) and torch.allclose(g1, g2, atol=1e-14)
    ys, gs = reg.value_and_input_grad(X[:1])
    assert ys.shape == (1,) and torch.allclose(gs.detach(), g2[:1], atol=1e-14)


def _parameter_shift_input_grad(qc, x, w, X, W):
    """d<Z_0>/dx by the exact parameter-shift rule on the Qiskit circuit, every shifted circuit evaluated by Aer in one
    run: each rotation whose angle depends on x_j contributes (d angle / d x_j) [y(angle + pi/2) - y(angle - pi/2)] / 2."""
    params = list(x) + list(w)
    vals = np.hstack([X, np.tile(W, (len(X), 1))])
    obs = z_observable(qc.num_qubits)
    pubs, terms = [], []
    for k, inst in enumerate(qc.data):
        if inst.operation.name not in ("rx", "ry", "rz") or not inst.operation.params[0].parameters:
            continue
        (expr,) = inst.operation.params
        for j, xj in enumerate(x):
            if xj not in expr.parameters:
                continue
            dexpr = expr.gradient(xj)
            coef = np.array([float(dexpr.bind({p: v for p, v in zip(params, row) if p in dexpr.parameters}).numeric())
                             if hasattr(dexpr, "parameters") and dexpr.parameters else float(dexpr) for row in vals])
            for sgn in (+1, -1):
                shifted = qc.copy()
                op = shifted.data[k].operation.to_mutable()
                op.params = [expr + sgn * math.pi / 2]
                shifted.data[k] = shifted.data[k].replace(operation=op)
                col = {p: c for c, p in enumerate(params)}
                pubs.append((shifted, obs, np.stack([vals[:, col[p]] for p in shifted.parameters], axis=1)))
                terms.append((j, sgn * coef / 2))
    g = np.zeros(X.shape)
    if pubs:
        res = EstimatorV2(options={"default_precision": 0.0}).run(pubs).result()
        for (j, c), r in zip(terms, res):
            g[:, j] += c * np.asarray(r.data.evs).reshape(-1)
    return g


def test_random_circuits_energies_input_gradients_and_force_loss_gradients_agree_with_aer():
    """Random circuits from the config space: energies and input gradients against Aer (parameter shift) at 1e-10;
    the force-loss gradient (mixed second derivatives, compiled Hessian-vector product) against the plain torch
    autograd simulation, whose energies are themselves checked against Aer; the frozen evaluator at 1e-12."""
    from qnnff.qnn.frozen import FrozenCircuit

    rng = np.random.default_rng(2024)
    for _ in range(6):
        cfg = random_config(rng)
        qc, x, w = build_qnn_circuit(**cfg)
        prog = CompiledCircuit(qc, inputs=list(x), weights=list(w))
        B = 3
        X = rng.uniform(-1.4, 1.4, (B, len(x)))
        W = rng.uniform(-math.pi, math.pi, len(w))
        Xt, Wt = torch.tensor(X), torch.tensor(W)
        ref = aer_values(qc, z_observable(cfg["n_qubits"]), list(x) + list(w), np.hstack([X, np.tile(W, (B, 1))]))
        y, g = prog.expectation_and_input_grad(Xt, Wt, create_graph=False)
        assert np.abs(y.numpy() - ref).max() < 1e-10, cfg
        assert np.abs(prog.expectation(Xt, Wt, mode="autograd").detach().numpy() - ref).max() < 1e-10, cfg
        assert np.abs(g.numpy() - _parameter_shift_input_grad(qc, x, w, X, W)).max() < 1e-10, cfg
        # force loss: d/dtheta [ mean (y - y0)^2 + mean (dy/dx . J - f0)^2 ]
        J = torch.tensor(rng.normal(size=(B, len(x), 2, 3)))
        f0 = torch.tensor(rng.normal(size=(B, 2, 3)))
        grads = []
        for mode in ("adjoint", "autograd"):
            reg = QNNRegressor(prog, W, readout=(0.9, -0.1), mode=mode)
            yy, gg = reg.value_and_input_grad(Xt)
            loss = ((yy - 0.3) ** 2).mean() + ((torch.einsum("bd,bdnk->bnk", gg, J) - f0) ** 2).mean()
            grads.append(torch.autograd.grad(loss, list(reg.parameters())))
        for a, b in zip(*grads):
            assert torch.allclose(a, b, rtol=0, atol=1e-10), cfg
        # the frozen evaluator (MD) runs the same program: agreement to 1e-12
        fc = FrozenCircuit(program=prog, weight_values=W)
        for b in range(B):
            yb, gb = fc.value_and_grad(X[b])
            assert abs(yb - float(y[b])) < 1e-12 and np.abs(gb - g[b].numpy()).max() < 1e-12


def test_hessian_vector_product_kernel_against_finite_differences_of_the_gradient_kernel():
    """The compiled Hessian-vector product is the directional derivative of the compiled gradient (central
    differences, h = 1e-5), on a circuit with fixed gates, monomials, bilinear angles and a non-diagonal observable."""
    from circuit_helpers import mixed_program

    from qnnff.qnn import kernels

    prog, _, _ = mixed_program()
    rng = np.random.default_rng(5)
    B = 37  # samples (several tiles: tests/test_kernels_fast_paths.py)
    phi = prog.angles_of(torch.tensor(rng.uniform(-1, 1, (B, 2))), torch.tensor(rng.uniform(-2, 2, 3))).numpy().copy()
    v = rng.normal(size=phi.shape)
    args = prog.kernel_args_per_sample
    H = kernels.hvp(phi, v, *args)
    h = 1e-5
    fd = (kernels.value_grad(phi + h * v, *args)[1] - kernels.value_grad(phi - h * v, *args)[1]) / (2 * h)
    assert np.abs(H - fd).max() < 1e-8
    y, G = kernels.value_grad(phi, *args)
    assert np.abs(y - kernels.forward(phi, *args)).max() < 1e-14
    fdy = (kernels.forward(phi + h * v, *args) - kernels.forward(phi - h * v, *args)) / (2 * h)
    assert np.abs((G * v).sum(0) - fdy).max() < 1e-9

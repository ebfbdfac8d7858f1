"""Effective dimension: agreement with qiskit-machine-learning's EffectiveDimension, range and monotonicity, models."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from geometry_helpers import water_positions

from qnnff.effdim import (
    effective_dimension,
    model_effective_dimension,
    module_function,
    sample_around,
    sample_uniform_box,
)

N_QUBITS = 2
N_LAYERS = 3
N_WEIGHTS = N_QUBITS * N_LAYERS + N_QUBITS  # trainable RY per qubit and layer + a final RY layer


# --------------------------------------------------------------------------------------------------------------------
# one small circuit, built twice: in qiskit (for qiskit-ML) and as a differentiable torch statevector simulation
#
#   for each layer l:  RY(x_q) on every qubit q (data re-uploading), RY(theta_{l,q}) on every qubit q, CX(0 -> 1)
#   final:             RY(theta_{L,q}) on every qubit;  observable Z on qubit 0 (qiskit label "IZ")


def qiskit_circuit():
    from qiskit.circuit import ParameterVector, QuantumCircuit

    x = ParameterVector("x", N_QUBITS)
    w = ParameterVector("w", N_WEIGHTS)
    qc = QuantumCircuit(N_QUBITS)
    k = 0
    for _ in range(N_LAYERS):
        for q in range(N_QUBITS):
            qc.ry(x[q], q)
        for q in range(N_QUBITS):
            qc.ry(w[k], q)
            k += 1
        qc.cx(0, 1)
    for q in range(N_QUBITS):
        qc.ry(w[k], q)
        k += 1
    return qc, list(x), list(w)


def _ry(state: torch.Tensor, angle: torch.Tensor, qubit: int) -> torch.Tensor:
    """RY on one qubit of a real batch state [B, 2 (q1), 2 (q0)] (qiskit's little-endian index q1*2 + q0)."""
    c, s = torch.cos(angle / 2), torch.sin(angle / 2)
    c = c.reshape(-1, 1)
    s = s.reshape(-1, 1)
    if qubit == 0:
        a0, a1 = state[:, :, 0], state[:, :, 1]
        return torch.stack([c * a0 - s * a1, s * a0 + c * a1], dim=2)
    a0, a1 = state[:, 0, :], state[:, 1, :]
    return torch.stack([c * a0 - s * a1, s * a0 + c * a1], dim=1)


def _cx01(state: torch.Tensor) -> torch.Tensor:
    """CX with control qubit 0, target qubit 1: flip q1 where q0 = 1."""
    return torch.stack([state[:, :, 0], state[:, :, 1].flip(1)], dim=2)


def torch_qnn(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """<Z_0> of the circuit above, x [B, 2], theta [N_WEIGHTS] -> [B]; differentiable and torch.func-friendly."""
    B = x.shape[0]
    state = torch.zeros(B, 2, 2, dtype=torch.float64) + theta[0] * 0  # (ties the dtype/batching of theta in)
    state = state + torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    k = 0
    for _ in range(N_LAYERS):
        for q in range(N_QUBITS):
            state = _ry(state, x[:, q], q)
        for q in range(N_QUBITS):
            state = _ry(state, theta[k].expand(B), q)
            k += 1
        state = _cx01(state)
    for q in range(N_QUBITS):
        state = _ry(state, theta[k].expand(B), q)
        k += 1
    prob = state**2
    return prob[:, :, 0].sum(-1) - prob[:, :, 1].sum(-1)


@pytest.fixture(scope="module")
def qnn_and_samples():
    from qiskit.primitives import StatevectorEstimator
    from qiskit.quantum_info import SparsePauliOp
    from qiskit_machine_learning.gradients import ParamShiftEstimatorGradient
    from qiskit_machine_learning.neural_networks import EstimatorQNN

    qc, xp, wp = qiskit_circuit()
    est = StatevectorEstimator()
    qnn = EstimatorQNN(
        circuit=qc, estimator=est, observables=SparsePauliOp("IZ"), input_params=xp, weight_params=wp,
        gradient=ParamShiftEstimatorGradient(estimator=est), default_precision=0.0,
    )
    rng = np.random.default_rng(1234)
    weights = rng.uniform(-math.pi, math.pi, size=(12, N_WEIGHTS))
    inputs = rng.uniform(-math.pi, math.pi, size=(9, N_QUBITS))
    return qnn, weights, inputs


def test_torch_circuit_matches_qiskit(qnn_and_samples):
    qnn, weights, inputs = qnn_and_samples
    for w in weights[:3]:
        y_q = np.asarray(qnn.forward(inputs, w))[:, 0]
        g_q = np.asarray(qnn.backward(inputs, w)[1])[:, 0, :]
        th = torch.tensor(w, requires_grad=True)
        y_t = torch_qnn(torch.tensor(inputs), th)
        g_t = torch.stack([torch.autograd.grad(y_t[i], th, retain_graph=True)[0] for i in range(len(inputs))])
        np.testing.assert_allclose(y_t.detach().numpy(), y_q, atol=1e-12)
        np.testing.assert_allclose(g_t.numpy(), g_q, atol=1e-10)


NS = [50, 100, 300, 1000, 10**5]


@pytest.fixture(scope="module")
def qiskit_reference(qnn_and_samples):
    from qiskit_machine_learning.neural_networks import EffectiveDimension

    qnn, weights, inputs = qnn_and_samples
    ref = EffectiveDimension(qnn, weight_samples=weights, input_samples=inputs)
    return np.asarray(ref.get_effective_dimension(dataset_size=NS)) / N_WEIGHTS, float(ref.get_effective_dimension(dataset_size=300)) / N_WEIGHTS


@pytest.mark.parametrize("jacobian", ["jacrev", "loop"])
def test_matches_qiskit_machine_learning(qnn_and_samples, qiskit_reference, jacobian):
    _, weights, inputs = qnn_and_samples
    ref_d, ref_single = qiskit_reference
    ours = effective_dimension(model_fn=torch_qnn, theta_samples=torch.tensor(weights), x_samples=torch.tensor(inputs), n=NS,
                               jacobian=jacobian)
    print(f"\n[{jacobian}] n={NS}\n  ours   d_n/d: {ours.d_n_over_d}\n  qiskit d_n/d: {ref_d}\n"
          f"  max |diff| = {np.abs(ours.d_n_over_d - ref_d).max():.2e}")
    assert ours.n_params == N_WEIGHTS
    np.testing.assert_allclose(ours.d_n_over_d, ref_d, rtol=0, atol=1e-6)
    np.testing.assert_allclose(ours.d_n, ref_d * N_WEIGHTS, rtol=0, atol=1e-6 * N_WEIGHTS)
    one = effective_dimension(model_fn=torch_qnn, theta_samples=weights, x_samples=inputs, n=300, jacobian=jacobian)
    assert one.d_n_over_d.shape == (1,)
    assert abs(one.d_n_over_d[0] - ref_single) < 1e-6


class _QiskitQNNFunction(torch.autograd.Function):
    """qiskit-ML EstimatorQNN forward/backward as a torch function of theta (old-style: torch.func cannot transform it)."""

    @staticmethod
    def forward(ctx, theta, x, qnn):
        ctx.qnn, ctx.x, ctx.w = qnn, x.numpy(), theta.detach().numpy()
        return torch.as_tensor(np.asarray(qnn.forward(ctx.x, ctx.w))[:, 0])

    @staticmethod
    def backward(ctx, gy):
        jac = torch.as_tensor(np.asarray(ctx.qnn.backward(ctx.x, ctx.w)[1])[:, 0, :])  # [B, P]
        return gy @ jac, None, None


def test_autograd_function_falls_back_to_loop(qnn_and_samples, qiskit_reference):
    """A wrapper around qiskit-ML's own forward/backward: 'auto' cannot vmap it, uses one pass per input, same numbers."""
    qnn, weights, inputs = qnn_and_samples
    ref_d, _ = qiskit_reference
    fn = lambda x, th: _QiskitQNNFunction.apply(th, x, qnn)  # noqa: E731
    res = effective_dimension(model_fn=fn, theta_samples=weights[:], x_samples=inputs, n=NS)
    assert res.jacobian_method == "loop"
    np.testing.assert_allclose(res.d_n_over_d, ref_d, rtol=0, atol=1e-6)
    with pytest.raises(RuntimeError):
        effective_dimension(model_fn=fn, theta_samples=weights[:1], x_samples=inputs, n=NS, jacobian="jacrev")
    assert effective_dimension(model_fn=torch_qnn, theta_samples=weights[:2], x_samples=inputs, n=300).jacobian_method == "jacrev"


def test_range_and_monotone_in_n(qnn_and_samples):
    """On this example d_n/d lies in [0, 1] and rises with n for n >= 1000 (kappa >~ 23).

    Not a theorem: at small n (kappa close to 1) the 1/log(kappa) normalisation makes d_n/d exceed 1 and fall with n
    (here d_n/d = 1.17 at n = 50, minimum 0.75 near n = 300), exactly as in qiskit-ML (see the test above).
    """
    _, weights, inputs = qnn_and_samples
    ns = np.unique(np.geomspace(1000, 10**8, 40).astype(int))
    res = effective_dimension(model_fn=torch_qnn, theta_samples=weights, x_samples=inputs, n=ns)
    assert np.all(res.d_n_over_d >= 0) and np.all(res.d_n_over_d <= 1)
    assert np.all(np.diff(res.d_n) >= 0)
    # the normalisation: the average trace of F_hat is P
    assert abs(res.fisher_eigenvalues.sum(-1).mean() - N_WEIGHTS) < 1e-9


def test_identity_fisher_closed_form():
    """y = x . theta at theta = 0 on one-hot inputs: F_hat = I, so d_n = P log(1 + kappa) / log(kappa) (> P: not clipped)."""
    P = 5
    x = torch.eye(P, dtype=torch.float64)
    res = effective_dimension(model_fn=lambda x, th: x @ th, theta_samples=torch.zeros(1, P), x_samples=x, n=[100, 10**6])
    k = np.array([100, 10**6]) / (2 * math.pi * np.log([100, 10**6]))
    np.testing.assert_allclose(res.d_n, P * np.log1p(k) / np.log(k), rtol=1e-12)
    np.testing.assert_allclose(res.fisher_eigenvalues, np.ones((1, P)), atol=1e-12)


def test_gamma_and_small_n():
    rng = np.random.default_rng(0)
    th = sample_uniform_box(n_samples=4, n_params=N_WEIGHTS, rng=rng)
    x = torch.as_tensor(rng.uniform(-1, 1, size=(5, 2)))
    with pytest.raises(ValueError, match="kappa"):
        effective_dimension(model_fn=torch_qnn, theta_samples=th, x_samples=x, n=10)
    r1 = effective_dimension(model_fn=torch_qnn, theta_samples=th, x_samples=x, n=1000)
    r2 = effective_dimension(model_fn=torch_qnn, theta_samples=th, x_samples=x, n=1000, gamma=2.0)
    assert r1.d_n[0] != r2.d_n[0] and r2.gamma == 2.0
    with pytest.raises(ValueError, match="2-D"):
        effective_dimension(model_fn=torch_qnn, theta_samples=th[0], x_samples=x, n=1000)
    with pytest.raises(ValueError, match=r"y \[N\]"):
        effective_dimension(model_fn=lambda x, t: torch_qnn(x, t)[:2], theta_samples=th, x_samples=x, n=1000)


def test_samplers():
    rng = np.random.default_rng(0)
    a = sample_uniform_box(n_samples=100, n_params=3, rng=rng, low=-1.0, high=2.0)
    assert a.shape == (100, 3) and a.min() >= -1 and a.max() <= 2 and a.dtype == torch.float64
    c = torch.tensor([1.0, -2.0])
    b = sample_around(n_samples=50, center=c, half_width=0.1, rng=rng)
    assert b.shape == (50, 2) and torch.all((b - c).abs() <= 0.1)


# --------------------------------------------------------------------------------------------------------------------
# ForceField models


def _water_featurizer():
    from qnnff.features import CoordinateFamily, Featurizer

    fams = [CoordinateFamily("r_OH", "bond", ((0, 1), (0, 2))), CoordinateFamily("a_HOH", "angle", ((1, 0, 2),))]
    return Featurizer(families=fams, feature_map="arcsin", lo=[0.85, 0.0, 95.0], hi=[1.15, 0.1, 115.0], symbols=["O", "H", "H"])


def test_feature_model_function_matches_regressor():
    from qnnff.features import EnergyScaler
    from qnnff.models.base import FeatureForceField

    class Tiny(FeatureForceField):
        kind = "tiny-test"

        def __init__(self):
            super().__init__(featurizer=_water_featurizer(), energy_scaler=EnergyScaler(0.0, 1.0))
            torch.manual_seed(0)
            self.regressor = torch.nn.Sequential(torch.nn.Linear(3, 4, dtype=torch.float64), torch.nn.Tanh(),
                                                 torch.nn.Linear(4, 1, dtype=torch.float64), torch.nn.Flatten(0))

        def to_artifact(self):
            raise NotImplementedError

        @classmethod
        def from_artifact(cls, arrays, meta, blobs):
            raise NotImplementedError

    model = Tiny()
    mf = module_function(model, output_map="auto")
    assert mf.output_map == "tanh" and mf.input_kind == "features" and mf.n_params == model.n_parameters() == 21
    pos = torch.as_tensor(water_positions(np.random.default_rng(0), 7))
    x = mf.inputs(pos)
    with torch.no_grad():
        np.testing.assert_allclose(mf.model_fn(x, mf.theta0).numpy(), torch.tanh(model.scaled_energy(pos)).numpy(), atol=1e-14)
    # swapping parameters does not touch the module
    before = [p.detach().clone() for p in model.parameters()]
    rng = np.random.default_rng(3)
    th = sample_around(n_samples=6, center=mf.theta0, half_width=0.5, rng=rng)
    r_j = model_effective_dimension(model=model, positions=pos, theta_samples=th, n=[100, 1000])
    r_l = model_effective_dimension(model=model, positions=pos, theta_samples=th, n=[100, 1000], jacobian="loop")
    np.testing.assert_allclose(r_j.d_n, r_l.d_n, atol=1e-10)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert r_j.jacobian_method == "jacrev" and r_l.jacobian_method == "loop"
    with pytest.raises(ValueError, match="output_map"):
        module_function(model, output_map="sigmoid")
    with pytest.raises(ValueError, match="hook"):
        model_effective_dimension(model=model, positions=pos, theta_samples=th, n=100, jacobian="hook")

    # the value_and_parameter_jacobian hook (here written with torch.func; a QNN would use its adjoint gradients)
    reg = model.regressor
    names = [k for k, _ in reg.named_parameters()]
    shapes = [p.shape for _, p in reg.named_parameters()]

    def value_and_parameter_jacobian(x, theta):
        def f(th):
            parts = torch.split(th, [math.prod(sh) for sh in shapes])
            return torch.func.functional_call(reg, {k: t.reshape(sh) for k, t, sh in zip(names, parts, shapes)}, (x,))

        return f(theta), torch.func.jacrev(f)(theta)

    reg.value_and_parameter_jacobian = value_and_parameter_jacobian
    for output_map in ("tanh", "identity", "clamp"):
        r_h = model_effective_dimension(model=model, positions=pos, theta_samples=th, n=[100, 1000], output_map=output_map)
        r_t = model_effective_dimension(model=model, positions=pos, theta_samples=th, n=[100, 1000], output_map=output_map, jacobian="jacrev")
        assert r_h.jacobian_method == "jacobian_fn" and r_t.jacobian_method == "jacrev"
        np.testing.assert_allclose(r_h.d_n, r_t.d_n, atol=1e-10)


def test_bpnn_at_n2p2_size():
    """The n2p2-sized BPNN (1642 parameters) on 100 geometries x 100 parameter draws: the Gram-matrix path gives
    100 eigenvalues per draw and a d_n/d in [0, 1]."""
    from qnnff.features import EnergyScaler
    from qnnff.models import bpnn as bpnn_mod

    pos = torch.as_tensor(water_positions(np.random.default_rng(1), 100))
    model = bpnn_mod.BPNNForceField.from_training_data(pos, symbols=["O", "H", "H"], energy_scaler=EnergyScaler(0.0, 1.0))
    P = model.n_parameters()
    assert P == 1642
    th = sample_around(n_samples=100, center=module_function(model).theta0, half_width=0.1, rng=np.random.default_rng(0))
    res = model_effective_dimension(model=model, positions=pos, theta_samples=th, n=[300, 10**4])
    assert res.fisher_eigenvalues.shape == (100, 100)
    assert np.all((res.d_n_over_d >= 0) & (res.d_n_over_d <= 1))

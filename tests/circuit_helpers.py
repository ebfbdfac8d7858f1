"""Circuits and checks shared by the engine and kernel tests."""

import torch
from qiskit import QuantumCircuit
from qiskit.circuit import ParameterVector
from qiskit.quantum_info import SparsePauliOp

from qnnff.qnn.engine import CompiledCircuit


def mixed_program() -> tuple[CompiledCircuit, int, int]:
    """(program, inputs, weights) of a circuit beyond the QNN family: fixed gates, monomials with phases (CZ, CY, S),
    bilinear angles and a non-diagonal observable."""
    xp, wp = ParameterVector("x", 2), ParameterVector("w", 3)
    qc = QuantumCircuit(3)
    qc.h(0); qc.sx(2)
    qc.ry(wp[0] * xp[0], 0); qc.rx(xp[0] * xp[1], 1); qc.rz(wp[1] + xp[1], 2)
    qc.cx(0, 1); qc.cz(1, 2); qc.s(1)
    qc.u(wp[2], xp[0], 0.3, 1); qc.swap(0, 2); qc.ry(wp[1] * wp[2], 0)
    qc.cz(0, 1); qc.rx(wp[0] * xp[1], 0); qc.cy(2, 0); qc.ry(wp[2], 2)
    obs = SparsePauliOp(["XIZ", "IYY", "ZII"], [0.4, -0.7, 1.1])
    return CompiledCircuit(qc, inputs=list(xp), weights=list(wp), observable=obs), 2, 3


def force_loss_gradients(prog: CompiledCircuit, W, X, *, n_atoms: int, seed: int) -> list:
    """The gradients w.r.t. the weights and readout of a force loss mean((y - 0.2)^2) + 0.7 mean((f - f_ref)^2),
    f = -dy/dx . J (J, f_ref random with ``seed``), for ``mode`` adjoint and autograd of a QNNRegressor: two tuples
    that must agree."""
    import torch

    from qnnff.qnn.engine import QNNRegressor

    B = X.shape[0]
    gen = torch.Generator().manual_seed(seed)
    jac = torch.randn(B, X.shape[1], n_atoms, 3, generator=gen, dtype=torch.float64)
    f_ref = torch.randn(B, n_atoms, 3, generator=gen, dtype=torch.float64)
    grads = []
    for mode in ("adjoint", "autograd"):
        reg = QNNRegressor(prog, W, readout=(0.8, 0.1), mode=mode)
        y, g = reg.value_and_input_grad(X)
        f = -torch.einsum("bd,bdnk->bnk", g, jac)
        loss = ((y - 0.2) ** 2).mean() + 0.7 * ((f - f_ref) ** 2).mean()
        grads.append(torch.autograd.grad(loss, list(reg.parameters())))
    return grads


def finite_difference_input_grad(prog: CompiledCircuit, X: torch.Tensor, W: torch.Tensor, h: float = 1e-6) -> torch.Tensor:
    """d<O>/dx [B, d] by central differences of the engine's values (step h in each input)."""
    fd = torch.zeros_like(X)
    for j in range(X.shape[1]):
        e = torch.zeros_like(X)
        e[:, j] = h
        fd[:, j] = (prog.expectation(X + e, W) - prog.expectation(X - e, W)) / (2 * h)
    return fd

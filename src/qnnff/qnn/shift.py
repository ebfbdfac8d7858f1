"""Input gradients of the QNN by the parameter-shift rule, evaluated with primitives (exact, shots, noise, Runtime).

The circuit of :mod:`qnnff.qnn.circuit` encodes feature ``x_j`` through rotations ``R_P(lambda_{r,j} x_j)`` at many
places (every layer re-uploads the inputs, every repetition once more). :func:`build_shift_circuit` binds the trained
weights and gives every such *occurrence* ``k`` its own parameter ``theta_k`` with ``theta_k = s_k x_{j(k)} + c_k``
(``s_k = lambda``, the slope read off the bound angle expression; ``c_k = 0`` for this circuit). Because
``R_P(theta) = exp(-i theta P / 2)`` with ``P^2 = 1``, the expectation value is a first-order trigonometric polynomial
in each ``theta_k`` and the two-term shift rule is exact (noise channels that do not depend on the angle included)::

    d<Z>/dtheta_k = [f(theta_k + pi/2) - f(theta_k - pi/2)] / 2,
    d<Z>/dx_j = sum_{k: j(k) = j} s_k d<Z>/dtheta_k.

:meth:`ShiftCircuit.parameter_values` lays out, for every input row ``b``, the unshifted angles (row 0) followed by
the ``+pi/2`` shifts of occurrences ``0..K-1`` and the ``-pi/2`` shifts: an array ``[B, 1 + 2K, K]`` that goes into a
single EstimatorV2/SamplerV2 pub, so all shifted circuits of all geometries are one primitive call.
:meth:`ShiftCircuit.gradients` turns the measured ``[B, 1 + 2K]`` values (and their standard errors) into
``<Z>``, ``d<Z>/dx`` and, given the feature Jacobian ``dx/dR``, the per-occurrence coefficients the caller needs for
the standard error of Cartesian forces.

Only ``rx``, ``ry``, ``rz`` occurrences whose angle is affine in exactly one input are supported (anything else is a
clear :class:`ValueError` naming the instruction).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter, ParameterExpression, ParameterVector

SHIFTABLE_GATES = ("rx", "ry", "rz")

__all__ = ["ShiftCircuit", "ShiftGradients", "build_shift_circuit"]


@dataclass
class ShiftGradients:
    """``value [B]`` = <O>, ``grad [B, d]`` = d<O>/dx and their standard errors (0 for exact evaluation);
    ``occurrence_grad [B, K]`` = d<O>/dtheta_k, ``occurrence_var [B, K]`` its variance."""

    value: np.ndarray
    value_stderr: np.ndarray
    grad: np.ndarray
    grad_stderr: np.ndarray
    occurrence_grad: np.ndarray
    occurrence_var: np.ndarray


@dataclass
class ShiftCircuit:
    """The weight-bound circuit with one parameter per input occurrence (see the module docstring)."""

    circuit: QuantumCircuit
    thetas: list[Parameter]
    feature: np.ndarray  # [K] int: the input j(k) of occurrence k
    slope: np.ndarray  # [K] d theta_k / d x_j(k)
    offset: np.ndarray  # [K]
    n_inputs: int

    @property
    def n_occurrences(self) -> int:
        return len(self.thetas)

    @property
    def circuits_per_input(self) -> int:
        """Circuits evaluated per geometry: the unshifted one and two shifts per occurrence."""
        return 1 + 2 * self.n_occurrences

    def angles(self, x: np.ndarray) -> np.ndarray:
        """``theta [B, K]`` for inputs ``x [B, d]``."""
        x = np.atleast_2d(np.asarray(x, dtype=float))
        if x.shape[1] != self.n_inputs:
            raise ValueError(f"x has {x.shape[1]} columns, the circuit has {self.n_inputs} inputs")
        return x[:, self.feature] * self.slope + self.offset

    def parameter_values(self, x: np.ndarray) -> np.ndarray:
        """``[B, 1 + 2K, K]``: unshifted angles, then ``+pi/2`` on occurrence k (rows 1..K), ``-pi/2`` (rows K+1..2K)."""
        th = self.angles(x)
        K = self.n_occurrences
        shift = np.concatenate([np.zeros((1, K)), 0.5 * math.pi * np.eye(K), -0.5 * math.pi * np.eye(K)])
        return th[:, None, :] + shift[None, :, :]

    def gradients(self, values: np.ndarray, stderr: np.ndarray | None = None) -> ShiftGradients:
        """Measured ``values [B, 1 + 2K]`` (layout of :meth:`parameter_values`) -> value and input gradient."""
        v = np.asarray(values, dtype=float)
        K, d = self.n_occurrences, self.n_inputs
        if v.ndim != 2 or v.shape[1] != 1 + 2 * K:
            raise ValueError(f"values must have shape [B, {1 + 2 * K}], got {v.shape}")
        s = np.zeros_like(v) if stderr is None else np.asarray(stderr, dtype=float).reshape(v.shape)
        occ = 0.5 * (v[:, 1:K + 1] - v[:, K + 1:])
        occ_var = 0.25 * (s[:, 1:K + 1] ** 2 + s[:, K + 1:] ** 2)
        onehot = np.zeros((K, d))
        onehot[np.arange(K), self.feature] = self.slope
        grad = occ @ onehot
        grad_var = occ_var @ onehot**2
        return ShiftGradients(value=v[:, 0], value_stderr=s[:, 0], grad=grad, grad_stderr=np.sqrt(grad_var),
                              occurrence_grad=occ, occurrence_var=occ_var)

    def cartesian(self, g: ShiftGradients, jac: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
        """``factor * d<O>/dR [B, n, 3]`` through the feature Jacobian ``jac [B, d, n, 3]``, and its standard error.

        Occurrences are independent measurements, so the variance is ``factor^2 sum_k (s_k J_{j(k)})^2 var_k``.
        """
        jac = np.asarray(jac, dtype=float)
        val = factor * np.einsum("bd,bdnk->bnk", g.grad, jac)
        coef = self.slope[None, :, None, None] * jac[:, self.feature]  # [B, K, n, 3]
        var = factor**2 * np.einsum("bk,bknc->bnc", g.occurrence_var, coef**2)
        return val, np.sqrt(var)


def _single_input(expr: ParameterExpression, col: dict[Parameter, int], where: str) -> Parameter:
    ins = [p for p in expr.parameters if p in col]
    if len(ins) != 1 or len(expr.parameters) != 1:
        raise ValueError(f"{where}: parameter shift needs an angle in exactly one input and no other free parameter, "
                         f"got {expr} (bind the weights first)")
    return ins[0]


def build_shift_circuit(
    circuit: QuantumCircuit,
    *,
    inputs: Sequence[Parameter],
    weights: Sequence[Parameter],
    weight_values: np.ndarray,
    theta_name: str = "theta",
) -> ShiftCircuit:
    """Bind ``weight_values`` and give every input occurrence its own parameter (see the module docstring)."""
    wv = np.asarray(weight_values, dtype=float).ravel()
    if wv.shape[0] != len(weights):
        raise ValueError(f"{wv.shape[0]} weight values for {len(weights)} weights")
    col = {p: j for j, p in enumerate(inputs)}
    bound = circuit.assign_parameters(dict(zip(weights, wv.tolist())), inplace=False)
    occ: list[tuple[int, int, float, float]] = []  # (instruction index, feature, slope, offset)
    for i, inst in enumerate(bound.data):
        exprs = [p for p in inst.operation.params if isinstance(p, ParameterExpression) and p.parameters]
        if not exprs:
            continue
        where = f"instruction {i} ({inst.operation.name})"
        if inst.operation.name not in SHIFTABLE_GATES or len(inst.operation.params) != 1:
            raise ValueError(f"{where}: parameter shift supports {SHIFTABLE_GATES} with one angle only")
        expr = exprs[0]
        xj = _single_input(expr, col, where)
        c = float(expr.bind({xj: 0.0}).numeric())
        s = float(expr.bind({xj: 1.0}).numeric()) - c
        probe = float(expr.bind({xj: 0.37}).numeric())
        if abs(probe - (c + 0.37 * s)) > 1e-12 * max(1.0, abs(s), abs(c)):
            raise ValueError(f"{where}: angle {expr} is not affine in {xj}; the two-term shift rule needs theta = s x + c")
        occ.append((i, col[xj], s, c))
    if not occ:
        raise ValueError("the circuit has no rotation that depends on an input: nothing to differentiate")
    thetas = ParameterVector(theta_name, len(occ))
    out = bound.copy_empty_like()
    k_of = {i: k for k, (i, *_rest) in enumerate(occ)}
    for i, inst in enumerate(bound.data):
        if i in k_of:
            op = inst.operation.copy()
            op.params = [thetas[k_of[i]]]
            out.append(op, inst.qubits, inst.clbits)
        else:
            out.append(inst.operation, inst.qubits, inst.clbits)
    return ShiftCircuit(circuit=out, thetas=list(thetas), feature=np.array([o[1] for o in occ], dtype=int),
                        slope=np.array([o[2] for o in occ]), offset=np.array([o[3] for o in occ]), n_inputs=len(inputs))

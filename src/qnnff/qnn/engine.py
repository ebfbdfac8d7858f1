"""Exact, batched, differentiable statevector simulator of the QNN circuits: one compiled program for training
(torch autograd, including the mixed second derivatives of a force loss), the per-sample parameter Jacobian of the
effective dimension (:mod:`qnnff.effdim`) and the frozen evaluator of molecular dynamics (:mod:`qnnff.qnn.frozen`).

A Qiskit :class:`~qiskit.circuit.QuantumCircuit` is *compiled once* (:class:`CompiledCircuit`) from its gates and
their parameter expressions, then executed on a batch of inputs in float64:

* every rotation angle must be a polynomial of degree <= 2 without squares in the circuit's parameters,
  ``c0 + sum c_p p + sum c_pq p q`` (the QNN's angles are ``w * x`` or ``w``); the coefficients are read from the
  :class:`~qiskit.circuit.ParameterExpression` by differentiation and checked at random points (:func:`parse_angle`,
  the project's one angle parser), anything else is rejected with :class:`~qnnff.errors.UnsupportedCircuitError`
  naming the gate; identical angles (the re-uploaded encoding, the same in every layer because the feature-map
  weights are shared) are one entry of the *angle layer* ``phi(x, w) [A, B]``, a few torch ops;
* runs of single-qubit gates on one qubit are fused into one SU(2) *block* per sample, the product of its elements'
  unit quaternions (``U = q0 I - i (q1 X + q2 Y + q3 Z)``; global phases do not change an expectation value); an
  element is a rotation about x, y or z by one angle, a fixed gate, or an ``rv`` gate (Qiskit's
  :class:`~qiskit.circuit.library.RVGate`, ``exp(-i v . sigma / 2)``, the rotation by ``|v|`` about ``v / |v|``,
  ``q = (cos(|v|/2), sin(|v|/2) v / |v|)``, smooth at ``v = 0``) whose three components are three angles;
* runs of CX / CZ / SWAP / other monomial gates are merged into one permutation-with-phases;
* a rotation about an involution, ``exp(-i theta M / 2)`` with ``M`` a Hermitian permutation-with-phases squaring to
  one, is one op (:func:`_involution_rotation`): the two-qubit Pauli rotations rxx, ryy, rzz, rzx (``M`` the Pauli
  string) and a :class:`~qiskit.circuit.library.PauliEvolutionGate` ``exp(-i t H)`` whose Hamiltonian has commuting
  terms and two eigenvalues ``l1 < l2`` (``M = (2 H - l1 - l2) / (l2 - l1)``, ``theta = (l2 - l1) t``; the
  Heisenberg exchange ``XX + YY + ZZ = 2 SWAP - 1`` of :mod:`qnnff.qnn.eqnn` is a rotation about the SWAP); its angle
  is one entry of the angle layer like any rotation's;
* gates outside the observable's light cone are dropped (e.g. the final rotations on qubits the CNOTs never
  carry back to qubit 0), which does not change any value or derivative;
* the observable is any Hermitian sum of Pauli strings (real coefficients), kept as permutations with phases.

Execution.  ``phi -> y`` and its derivatives run in the compiled kernels of :mod:`qnnff.qnn.kernels` (numba): the
values, the adjoint gradient ``dy/dphi`` (one forward and one backward sweep) and the exact Hessian-vector product
``(d^2 y/dphi^2) . v`` (tangent sweeps). :class:`_AdjointExpectation` is a ``torch.autograd.Function``
``phi -> (y, dy/dphi)`` whose backward is that Hessian-vector product, so ``dy/dx = (dy/dphi) . dphi/dx`` is a
differentiable torch expression and a loss containing forces ``f = -dE/dx . J`` gets its gradient w.r.t. the weights
(mixed second derivatives) from ``loss.backward()``; the backward is ``once_differentiable`` (enough for training on
forces); its forward keeps the block gradients dy/dq when dy/dphi will be differentiated, so the Hessian-vector
product does not sum them again, and the kernels share one scratch array per thread (:func:`_workspace`).
``mode="autograd"`` runs the same compiled program with plain differentiable torch ops (any order, the
reference in the tests). ``y`` is differentiated as the polynomial it is in the unconstrained quaternion entries, so
all derivatives are exact.

Performance (H3O+ circuit: 6 qubits, D = 10, batch 500, one thread): see ``benchmarks/bench_qnn.py`` and the
project's notes; the numbers printed there are the reference.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from qiskit.circuit import Parameter, ParameterExpression, QuantumCircuit
from qiskit.quantum_info import SparsePauliOp

from ..errors import UnsupportedCircuitError
from ..revision import Revisioned
from . import kernels

DTYPE = torch.float64
CDTYPE = torch.complex128

_AXES = {"rx": 0, "ry": 1, "rz": 2}
_IGNORED = {"barrier", "delay"}

__all__ = ["Angle", "CompiledCircuit", "QNNRegressor", "UnsupportedCircuitError", "parse_angle"]

# ---------------------------------------------------------------------------------------------------------------
# parameter expressions
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class Angle:
    """``const + sum_i lin[i] v_i + sum_(i,j) bil[(i,j)] v_i v_j`` over the engine's parameter vector ``v``."""

    const: float = 0.0
    lin: dict[int, float] = field(default_factory=dict)
    bil: dict[tuple[int, int], float] = field(default_factory=dict)

    def scaled(self, c: float) -> Angle:
        return Angle(self.const * c, {k: v * c for k, v in self.lin.items()}, {k: v * c for k, v in self.bil.items()})

    def depends_on(self, variables: Any) -> bool:
        """Whether any of the parameter indices ``variables`` appears in the angle."""
        v = set(variables)
        return any(i in v for i in self.lin) or any(i in v or j in v for i, j in self.bil)

    def evaluate(self, values: np.ndarray) -> float:
        return self.const + sum(c * values[i] for i, c in self.lin.items()) + sum(c * values[i] * values[j] for (i, j), c in self.bil.items())


def _numeric(expr: Any) -> float:
    if isinstance(expr, ParameterExpression):
        val = expr.numeric() if hasattr(expr, "numeric") else complex(expr)
    else:
        val = expr
    val = complex(val)
    if abs(val.imag) > 1e-12:
        raise UnsupportedCircuitError(f"complex gate parameter {expr}")
    return float(val.real)


def parse_angle(expr: Any, index: dict[Parameter, int], where: str = "gate") -> Angle:
    """Read ``expr`` as a polynomial of degree <= 2 (no squares) in the parameters of ``index``; reject the rest."""
    if not isinstance(expr, ParameterExpression):
        return Angle(const=_numeric(expr))
    params = list(expr.parameters)
    unknown = [p for p in params if p not in index]
    if unknown:
        raise UnsupportedCircuitError(f"{where}: parameter(s) {sorted(str(p) for p in unknown)} are neither inputs nor weights")
    if not params:
        return Angle(const=_numeric(expr))
    zero = {p: 0.0 for p in params}
    ang = Angle(const=_numeric(expr.bind(zero)))
    for a, p in enumerate(params):
        dp = expr.gradient(p)
        if isinstance(dp, ParameterExpression) and dp.parameters:
            c = _numeric(dp.bind({q: 0.0 for q in dp.parameters}))
            for q in params[a + 1:]:
                if q in dp.parameters:
                    dpq = dp.gradient(q)
                    cpq = _numeric(dpq.bind({r: 0.0 for r in dpq.parameters})) if isinstance(dpq, ParameterExpression) else _numeric(dpq)
                    if cpq != 0.0:
                        i, j = sorted((index[p], index[q]))
                        ang.bil[(i, j)] = ang.bil.get((i, j), 0.0) + cpq
        else:
            c = _numeric(dp)
        if c != 0.0:
            ang.lin[index[p]] = ang.lin.get(index[p], 0.0) + c
    # verify at random points: anything beyond c0 + c_p p + c_pq p q (squares, sin, ...) is rejected here
    rng = np.random.default_rng(1234)
    vals = np.zeros(max(index.values()) + 1)
    for _ in range(3):
        pt = {p: float(v) for p, v in zip(params, rng.uniform(-2.0, 2.0, len(params)))}
        for p, v in pt.items():
            vals[index[p]] = v
        exact = _numeric(expr.bind(pt))
        if not math.isclose(exact, ang.evaluate(vals), rel_tol=1e-9, abs_tol=1e-9):
            raise UnsupportedCircuitError(
                f"{where}: angle {expr} is not of the form c0 + sum c_p p + sum c_pq p q (p != q); "
                "the engine only executes such (bi)linear parameter expressions exactly"
            )
    return ang


# ---------------------------------------------------------------------------------------------------------------
# the compiled program
# ---------------------------------------------------------------------------------------------------------------
def _su2_quaternion(mat: np.ndarray) -> np.ndarray:
    """Unit quaternion of ``mat`` / sqrt(det mat) (drops the global phase)."""
    mat = np.asarray(mat, dtype=complex)
    u = mat / np.sqrt(np.linalg.det(mat))
    return np.array([u[0, 0].real, -u[1, 0].imag, u[1, 0].real, -u[0, 0].imag])


# Gates applied as one rotation about an involution, exp(-i theta M / 2) (op type 2 of the kernels): the two-qubit Pauli
# rotations and the evolution under a Hamiltonian with two distinct eigenvalues (PauliEvolutionGate, e.g. the Heisenberg
# exchange XX + YY + ZZ = 2 SWAP - 1 of qnnff.qnn.eqnn), when M is a permutation with phases.
_INVOLUTION_ROTATIONS = frozenset({"rxx", "ryy", "rzz", "rzx", "PauliEvolution"})


def _involution_rotation(op: Any, where: str) -> tuple[np.ndarray, float, Any]:
    """``(M, scale, angle expression)`` of a gate ``exp(-i t H)`` (up to a global phase) written as
    ``exp(-i (scale t) M / 2)`` with ``M`` a Hermitian monomial involution (Qiskit little-endian over the gate's qubits)."""
    if op.name == "PauliEvolution":
        ops = op.operator if isinstance(op.operator, (list, tuple)) else [op.operator]
        try:
            H = SparsePauliOp.sum([SparsePauliOp(o) for o in ops]).simplify()
        except Exception as exc:  # noqa: BLE001
            raise UnsupportedCircuitError(f"{where}: the operator of a PauliEvolutionGate must be Pauli sums ({exc})") from exc
        if np.any(np.abs(H.coeffs.imag) > 1e-12):
            raise UnsupportedCircuitError(f"{where}: the operator of a PauliEvolutionGate must be Hermitian (real coefficients)")
        paulis = H.paulis
        if not all(paulis[i].commutes(paulis[j]) for i in range(len(paulis)) for j in range(i)):
            raise UnsupportedCircuitError(f"{where}: the Pauli terms of a PauliEvolutionGate must commute (its synthesis is "
                                          "then exact); decompose it first, e.g. circuit.decompose()")
        mat = H.to_matrix()
        ev = np.linalg.eigvalsh(mat)
        lo, hi = float(ev[0]), float(ev[-1])
        if hi - lo < 1e-12 or not np.all((np.abs(ev - lo) < 1e-9) | (np.abs(ev - hi) < 1e-9)):
            raise UnsupportedCircuitError(f"{where}: the Hamiltonian of a PauliEvolutionGate must have two distinct "
                                          f"eigenvalues (got {np.unique(np.round(ev, 9)).tolist()}); decompose it first")
        M = (2.0 * mat - (lo + hi) * np.eye(len(mat))) / (hi - lo)
        scale, expr = hi - lo, op.params[0]
    else:
        g = op.copy()
        g.params = [math.pi]
        M = 1j * np.asarray(g.to_matrix(), dtype=complex)  # exp(-i pi M / 2) = -i M
        scale, expr = 1.0, op.params[0]
        g.params = [0.37]
        ref = math.cos(0.185) * np.eye(len(M)) - 1j * math.sin(0.185) * M
        if not np.allclose(np.asarray(g.to_matrix(), dtype=complex), ref, atol=1e-12):
            raise UnsupportedCircuitError(f"{where}: gate {op.name!r} is not exp(-i theta M / 2) for an involution M")
    if not (_is_monomial(M) and np.allclose(M @ M, np.eye(len(M)), atol=1e-9) and np.allclose(M, M.conj().T, atol=1e-9)):
        raise UnsupportedCircuitError(f"{where}: gate {op.name!r} is not a rotation about a permutation with phases "
                                      "(supported: rxx, ryy, rzz, rzx, PauliEvolutionGate of a two-eigenvalue Hamiltonian "
                                      "such as XX + YY + ZZ); decompose it first")
    return M, scale, expr


def _is_monomial(mat: np.ndarray) -> bool:
    nz = np.abs(mat) > 1e-12
    return bool(np.all(nz.sum(0) == 1) and np.all(nz.sum(1) == 1))


@dataclass
class _Gate:
    kind: str                      # "rot" (parametrised axis rotation), "rv" (parametrised rotation vector),
    qubits: tuple[int, ...]        # "fixed1" (constant 1q), "mono" (monomial), "mrot" (rotation about an involution)
    axis: int = -1                 # rot: 0 x, 1 y, 2 z
    angle: Angle | None = None     # rot, mrot
    angles: tuple[Angle, ...] = ()  # rv: v_x, v_y, v_z
    quat: np.ndarray | None = None  # fixed1
    matrix: np.ndarray | None = None  # mono (gate matrix), mrot (the involution M); Qiskit little-endian over ``qubits``
    diagonal: bool = False
    name: str = ""


def _monomial_full(mat: np.ndarray, qubits: Sequence[int], n: int) -> tuple[np.ndarray, np.ndarray]:
    """out = phase * in[perm] for a monomial gate acting on ``qubits`` of an n-qubit register."""
    dim = 1 << n
    perm = np.zeros(dim, dtype=np.int64)
    phase = np.zeros(dim, dtype=complex)
    for i in range(dim):
        s = sum(((i >> q) & 1) << m for m, q in enumerate(qubits))
        col = mat[:, s]
        s2 = int(np.flatnonzero(np.abs(col) > 1e-12)[0])
        j = i
        for m, q in enumerate(qubits):
            j = (j & ~(1 << q)) | (((s2 >> m) & 1) << q)
        perm[j] = i
        phase[j] = col[s2]
    return perm, phase



def _pauli_terms(obs: SparsePauliOp, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``O psi = sum_o factor[o] * psi[perm[o]]`` (one entry per distinct X/Y pattern), for a Hermitian Pauli sum."""
    if obs.num_qubits != n:
        raise UnsupportedCircuitError(f"observable acts on {obs.num_qubits} qubits, the circuit has {n}")
    idx = np.arange(1 << n)
    terms: dict[int, np.ndarray] = {}
    for lab, c in zip(obs.paulis.to_labels(), obs.coeffs):
        if abs(c.imag) > 1e-12:
            raise UnsupportedCircuitError(f"observable coefficient {c} is not real (the observable must be Hermitian)")
        xmask = 0
        fac = np.full(1 << n, complex(c.real))
        for q in range(n):
            p = lab[n - 1 - q]
            bit = (idx >> q) & 1
            if p in "XY":
                xmask |= 1 << q
            if p == "Y":  # <j|Y|j^1> = -i (j = 0), +i (j = 1)
                fac = fac * np.where(bit == 0, -1j, 1j)
            elif p == "Z":
                fac = fac * (1.0 - 2.0 * bit)
        terms[xmask] = terms.get(xmask, 0.0) + fac
    masks = sorted(terms)
    perm = np.stack([idx ^ m for m in masks]).astype(np.int64)
    factor = np.stack([terms[m] for m in masks])
    return perm, factor


class CompiledCircuit:
    """A QuantumCircuit compiled once: angle layer, fused SU(2) blocks, merged monomials, Pauli observable.

    ``inputs`` and ``weights`` are the circuit's Parameters in the order of the simulator's ``x`` columns and
    ``w`` entries; every circuit parameter must be one of them. ``observable``: a Hermitian SparsePauliOp (real
    coefficients; default Z on qubit 0).
    """

    def __init__(
        self,
        circuit: QuantumCircuit,
        *,
        inputs: Sequence[Parameter],
        weights: Sequence[Parameter],
        observable: SparsePauliOp | None = None,
        prune: bool = True,
    ) -> None:
        self.n_qubits = n = circuit.num_qubits
        if n < 1 or n > 20:
            raise UnsupportedCircuitError(f"the statevector simulator needs 1..20 qubits, got {n}")
        self.inputs = list(inputs)
        self.weights = list(weights)
        self.n_inputs, self.n_weights = len(self.inputs), len(self.weights)
        index: dict[Parameter, int] = {}
        for k, p in enumerate(self.inputs + self.weights):
            if p in index:
                raise UnsupportedCircuitError(f"parameter {p} is listed twice among inputs and weights")
            index[p] = k
        missing = [str(p) for p in circuit.parameters if p not in index]
        if missing:
            raise UnsupportedCircuitError(f"circuit parameters {missing} are neither inputs nor weights")
        if observable is None:
            observable = SparsePauliOp("I" * (n - 1) + "Z")
        self.observable = observable
        self.obs_perm, self.obs_factor = _pauli_terms(observable, n)
        light = {q: "out" for q in range(n)}
        for lab in observable.paulis.to_labels():
            for q in range(n):
                p = lab[n - 1 - q]
                if p in "XY":
                    light[q] = "full"
                elif p == "Z" and light[q] == "out":
                    light[q] = "diag"

        gates = self._parse(circuit, index)
        self.n_gates_total = len(gates)
        if prune:
            gates = self._light_cone(gates, light)
        self.n_gates_kept = len(gates)
        self._build_program(gates, n)

    # ---- parsing
    @staticmethod
    @staticmethod
    def _parse(circuit: QuantumCircuit, index: dict[Parameter, int]) -> list[_Gate]:
        out: list[_Gate] = []
        for k, inst in enumerate(circuit.data):
            op = inst.operation
            name = op.name
            qubits = tuple(circuit.find_bit(q).index for q in inst.qubits)
            where = f"instruction {k} ({name} on qubits {list(qubits)})"
            if name in _IGNORED:
                continue
            if inst.clbits or name in ("measure", "reset") or getattr(op, "condition", None) is not None:
                raise UnsupportedCircuitError(f"{where}: measurements, resets and classical control are not supported")
            symbolic = [p for p in op.params if isinstance(p, ParameterExpression) and p.parameters]
            if name in ("rx", "ry", "rz", "p", "u1") and symbolic:
                axis = _AXES.get(name, 2)
                out.append(_Gate("rot", qubits, axis=axis, angle=parse_angle(op.params[0], index, where),
                                 diagonal=axis == 2, name=name))
                continue
            if name == "rv" and symbolic:
                # RVGate(v_x, v_y, v_z) = exp(-i v . sigma / 2): one element, its components three angles
                out.append(_Gate("rv", qubits, angles=tuple(parse_angle(e, index, where) for e in op.params), name=name))
                continue
            if name in ("u", "u3", "u2") and symbolic:
                th, ph, la = (op.params if name != "u2" else [math.pi / 2, *op.params])
                # U(th, ph, la) = e^{i(ph+la)/2} RZ(ph) RY(th) RZ(la)
                for ax, e in ((2, la), (1, th), (2, ph)):
                    out.append(_Gate("rot", qubits, axis=ax, angle=parse_angle(e, index, where), diagonal=ax == 2, name=name))
                continue
            if name in _INVOLUTION_ROTATIONS and (symbolic or not _is_monomial(np.asarray(op.to_matrix(), dtype=complex))):
                M, scale, expr = _involution_rotation(op, where)
                out.append(_Gate("mrot", qubits, angle=parse_angle(expr, index, where).scaled(scale), matrix=M,
                                 diagonal=bool(np.allclose(M, np.diag(np.diag(M)))), name=name))
                continue
            if symbolic:
                raise UnsupportedCircuitError(
                    f"{where}: parametrised gate {name!r} is not supported (supported: rx, ry, rz, p, u, rv, rxx, ryy, rzz, "
                    f"rzx, PauliEvolutionGate and constant gates); decompose it first, e.g. "
                    f"circuit.decompose(gates_to_decompose=[{name!r}]) or qiskit.transpile(circuit, basis_gates=['rx', "
                    "'ry', 'rz', 'cx', 'h']) (which does not accept rv in basis_gates)")
            try:
                mat = np.asarray(op.to_matrix(), dtype=complex)
            except Exception as exc:  # noqa: BLE001
                raise UnsupportedCircuitError(f"{where}: gate {name!r} has no matrix ({exc})") from exc
            diagonal = bool(np.allclose(mat, np.diag(np.diag(mat))))
            if len(qubits) == 1:
                out.append(_Gate("fixed1", qubits, quat=_su2_quaternion(mat), diagonal=diagonal, name=name))
            elif _is_monomial(mat):
                out.append(_Gate("mono", qubits, matrix=mat, diagonal=diagonal, name=name))
            else:
                raise UnsupportedCircuitError(
                    f"{where}: multi-qubit gate {name!r} is not a permutation with phases (supported: cx, cy, cz, swap, ccx, ...)")
        return out


    @staticmethod
    def _light_cone(gates: list[_Gate], state: dict[int, str]) -> list[_Gate]:
        """Drop gates that commute with the (Heisenberg-evolved) observable. Per qubit: out / diag / full."""
        state = dict(state)
        kept: list[_Gate] = []
        for g in reversed(gates):
            st = [state[q] for q in g.qubits]
            if all(s == "out" for s in st):
                continue
            if g.diagonal and all(s != "full" for s in st):
                continue
            if g.kind == "mono" and g.name == "cx" and st[0] != "full" and st[1] == "out":
                continue
            kept.append(g)
            for q in g.qubits:
                state[q] = "full"
        return kept[::-1]

    # ---- program
    def _build_program(self, gates: list[_Gate], n: int) -> None:
        angle_ids: dict[tuple, int] = {}
        angles: list[Angle] = []
        # per block, in time order: ("rot", axis, angle_id) / ("fixed", quat) / ("rv", "xyz", (id_x, id_y, id_z));
        # an rv element's second entry is a string so that code reading ("fixed", quat) elements cannot take it for
        # a quaternion (the frozen evaluator, qnnff.qnn.frozen, does not specialise rv elements: it raises on them)
        blocks: list[list[tuple]] = []
        ops: list[tuple] = []              # ("u", block, qubit) / ("mono", perm, phase)
        pending: dict[int, list[tuple]] = {}
        mono: tuple[np.ndarray, np.ndarray] | None = None
        mono_q: set[int] = set()

        def angle_id(ang: Angle) -> int:
            key = (round(ang.const, 15), tuple(sorted(ang.lin.items())), tuple(sorted(ang.bil.items())))
            if key not in angle_ids:
                angle_ids[key] = len(angles)
                angles.append(ang)
            return angle_ids[key]

        def flush_block(q: int) -> None:
            els = pending.pop(q, None)
            if els:
                blocks.append(els)
                ops.append(("u", len(blocks) - 1, q))

        def flush_mono() -> None:
            nonlocal mono, mono_q
            if mono is not None:
                ops.append(("mono", mono[0], mono[1]))
            mono, mono_q = None, set()

        for g in gates:
            if g.kind in ("rot", "rv", "fixed1"):
                q = g.qubits[0]
                if q in mono_q:
                    flush_mono()
                if g.kind == "rot":
                    item = ("rot", g.axis, angle_id(g.angle))
                elif g.kind == "rv":
                    item = ("rv", "xyz", tuple(angle_id(a) for a in g.angles))
                else:
                    item = ("fixed", g.quat)
                pending.setdefault(q, []).append(item)
            elif g.kind == "mrot":
                for q in g.qubits:
                    flush_block(q)
                if mono_q & set(g.qubits):
                    flush_mono()  # (a pending monomial on other qubits commutes with it and may follow it)
                perm, phase = _monomial_full(g.matrix, g.qubits, n)
                ops.append(("mrot", perm, phase, angle_id(g.angle)))
            else:
                for q in g.qubits:
                    flush_block(q)
                perm, phase = _monomial_full(g.matrix, g.qubits, n)
                if mono is None:
                    mono = (perm, phase)
                else:  # apply g after the accumulated monomial
                    p1, ph1 = mono
                    mono = (p1[perm], phase * ph1[perm])
                mono_q |= set(g.qubits)
        for q in list(pending):
            flush_block(q)
        flush_mono()
        # two monomials with no block between them compose into one
        merged: list[tuple] = []
        for op in ops:
            if op[0] == "mono" and merged and merged[-1][0] == "mono":
                _, p1, ph1 = merged[-1]
                merged[-1] = ("mono", p1[op[1]], op[2] * ph1[op[1]])
            else:
                merged.append(op)
        self.ops = merged
        self.blocks = blocks
        self.n_blocks = len(blocks)
        self.angles = angles
        self.n_angles = len(angles)
        self.n_rotations = sum(1 for els in blocks for e in els if e[0] == "rot")
        self.n_rv = sum(1 for els in blocks for e in els if e[0] == "rv")
        self.n_mrot = sum(1 for op in merged if op[0] == "mrot")
        self._pack(angles, blocks, merged, n)

    def _pack(self, angles: list[Angle], blocks: list[list[tuple]], ops: list[tuple], n: int) -> None:
        """The angle layer as torch tensors, the rest as the flat arrays of the compiled kernels."""
        A, d = len(angles), self.n_inputs
        const = np.zeros(A)
        lin = np.zeros((A, d + self.n_weights))
        bi, bj, bc, ba = [], [], [], []
        for a, ang in enumerate(angles):
            const[a] = ang.const
            for i, c in ang.lin.items():
                lin[a, i] += c
            for (i, j), c in ang.bil.items():
                bi.append(i)
                bj.append(j)
                bc.append(c)
                ba.append(a)
        self.angle_const = torch.as_tensor(const, dtype=DTYPE)
        self.angle_lin_x = torch.as_tensor(lin[:, :d], dtype=DTYPE)
        self.angle_lin_w = torch.as_tensor(lin[:, d:], dtype=DTYPE)
        self.angle_bil = (torch.as_tensor(bi, dtype=torch.long), torch.as_tensor(bj, dtype=torch.long),
                          torch.as_tensor(bc, dtype=DTYPE), torch.as_tensor(ba, dtype=torch.long))
        dim = 1 << n
        kops = np.zeros((len(ops), 3), dtype=np.int64)
        mperm, mphase = [], []
        for t, op in enumerate(ops):
            if op[0] == "u":
                kops[t] = (0, op[1], op[2])
            elif op[0] == "mrot":  # the involution among the monomials, its angle index in the last column
                kops[t] = (2, len(mperm), op[3])
                mperm.append(op[1])
                mphase.append(op[2])
            else:
                kops[t] = (1, len(mperm), 0)
                mperm.append(op[1])
                mphase.append(op[2])
        mperm_a = np.array(mperm, dtype=np.int64).reshape(-1, dim)
        mphase_a = np.array(mphase, dtype=complex).reshape(-1, dim)
        bstart = np.zeros(len(blocks) + 1, dtype=np.int64)
        # element e: type 0 rotation (axis eaxis, angle eangle), 1 fixed (quaternion equat), 2 rv (its ordinal among
        # the rv elements in eaxis, its three angles in equat[e, :3], exact small integers as float64)
        etype, eaxis, eangle, equat = [], [], [], []
        n_rv = 0
        for k, els in enumerate(blocks):
            bstart[k + 1] = bstart[k] + len(els)
            for e in els:
                if e[0] == "rot":
                    etype.append(0)
                    eaxis.append(e[1])
                    eangle.append(e[2])
                    equat.append(np.zeros(4))
                elif e[0] == "rv":
                    etype.append(2)
                    eaxis.append(n_rv)
                    eangle.append(e[2][0])
                    equat.append(np.array([*e[2], 0.0], dtype=float))
                    n_rv += 1
                else:
                    etype.append(1)
                    eaxis.append(-1)
                    eangle.append(0)
                    equat.append(np.asarray(e[1], dtype=float))
        i64 = lambda v: np.ascontiguousarray(np.asarray(v, dtype=np.int64))  # noqa: E731
        # the angles whose cos and sin of the half angle the kernels need: those of rotation elements and involution
        # rotations (an angle read only by rv elements is flagged -1 and skipped by kernels._trig)
        trig = {e[2] for els in blocks for e in els if e[0] == "rot"} | {op[3] for op in ops if op[0] == "mrot"}
        self.kernel_args = (
            int(n), kops, mperm_a, np.ascontiguousarray(mphase_a.real), np.ascontiguousarray(mphase_a.imag),
            bstart, i64(etype), i64(eaxis), i64(eangle), np.ascontiguousarray(np.array(equat, dtype=float).reshape(-1, 4)),
            i64(self.obs_perm), np.ascontiguousarray(self.obs_factor.real), np.ascontiguousarray(self.obs_factor.imag),
            i64([ang.depends_on(range(d)) if a in trig else -1 for a, ang in enumerate(angles)]),
        )
        # per-sample weights ([P, B]) make every angle depend on the sample
        self.kernel_args_per_sample = self.kernel_args[:-1] + (np.where(self.kernel_args[-1] < 0, -1, 1).astype(np.int64),)
        # torch copies for the plain differentiable reference
        self._ref_ops = [("u", op[1], op[2]) if op[0] == "u" else
                         (op[0], torch.as_tensor(op[1]), torch.as_tensor(op[2], dtype=CDTYPE), *op[3:]) for op in ops]

    # ---- the angle layer
    def angles_of(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Angles ``phi [A, B]`` for inputs ``x [B, d]`` and weights ``w [P]`` (or per sample ``[P, B]``); differentiable."""
        B = x.shape[0]
        wb = w.dim() == 2
        lw = self.angle_lin_w @ w
        phi = self.angle_const.unsqueeze(-1) + (lw if wb else lw.unsqueeze(-1)) + self.angle_lin_x @ x.T
        if phi.shape[1] != B:
            phi = phi.expand(-1, B)
        bi, bj, bc, ba = self.angle_bil
        if bc.numel():
            v = torch.cat([x.T, w if wb else w.unsqueeze(-1).expand(-1, B)], 0)
            phi = phi.index_add(0, ba, v[bi] * v[bj] * bc.unsqueeze(-1))
        return phi

    # ---- kernels
    def _args(self, w: torch.Tensor) -> tuple:
        return self.kernel_args_per_sample if w.dim() == 2 else self.kernel_args

    def _values(self, phi: torch.Tensor, args: tuple) -> torch.Tensor:
        p = _np(phi)
        return torch.from_numpy(kernels.forward_ws(p, _workspace(p.shape, args), *args))

    def _values_and_grad(self, phi: torch.Tensor, args: tuple, keep_gq: bool = False):
        """y, dy/dphi and, with ``keep_gq``, the block gradients dy/dq [K, 4, B] (the sums :meth:`_hvp` can reuse)."""
        p = _np(phi)
        gq = np.empty((len(args[5]) - 1, 4, p.shape[1] if keep_gq else 0))
        y, G = kernels.value_grad_ws(p, _workspace(p.shape, args), gq, *args)
        if keep_gq:
            return torch.from_numpy(y), torch.from_numpy(G), gq
        return torch.from_numpy(y), torch.from_numpy(G)

    def _hvp(self, phi: torch.Tensor, v: torch.Tensor, args: tuple, gq: np.ndarray | None = None) -> torch.Tensor:
        p = _np(phi)
        if gq is None:
            gq = _NO_GQ
        return torch.from_numpy(kernels.hvp_ws(p, _np(v), gq, _workspace(p.shape, args), *args))

    # ---- execution
    def expectation(self, x: torch.Tensor, w: torch.Tensor, *, mode: str = "adjoint") -> torch.Tensor:
        """<O> ``[B]`` for inputs ``x [B, d]`` and weights ``w [P]`` (differentiable)."""
        phi = self.angles_of(x, w)
        if mode == "autograd":
            return _simulate_autograd(self, phi)
        if mode != "adjoint":
            raise ValueError(f"mode must be 'adjoint' or 'autograd', got {mode!r}")
        if not (torch.is_grad_enabled() and phi.requires_grad):
            return self._values(phi, self._args(w))
        y, _ = _AdjointExpectation.apply(phi, self, self._args(w), False)
        return y

    def expectation_and_input_grad(self, x: torch.Tensor, w: torch.Tensor, *, create_graph: bool = True,
                                   mode: str = "adjoint") -> tuple[torch.Tensor, torch.Tensor]:
        """<O> ``[B]`` and d<O>/dx ``[B, d]``; with ``create_graph`` both are differentiable w.r.t. ``w`` (and x)."""
        xin = x if x.requires_grad else x.detach().requires_grad_(True)
        with torch.enable_grad():
            phi = self.angles_of(xin, w)
            if mode == "autograd":
                y = _simulate_autograd(self, phi)
                (g,) = torch.autograd.grad(y.sum(), xin, create_graph=create_graph)
                return (y if create_graph else y.detach()), g
            if mode != "adjoint":
                raise ValueError(f"mode must be 'adjoint' or 'autograd', got {mode!r}")
            if create_graph:
                # G will be differentiated (a loss on dy/dx): keep the block gradients for the Hessian-vector product
                y, G = _AdjointExpectation.apply(phi, self, self._args(w), True)
            else:
                y, G = self._values_and_grad(phi, self._args(w))
            (g,) = torch.autograd.grad(phi, xin, grad_outputs=G, create_graph=create_graph)
        if not create_graph:
            y, g = y.detach(), g.detach()
        return y, g

    def expectation_and_weight_jacobian(self, x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """<O> ``[B]`` and the per-sample Jacobian d<O>/dw ``[B, P]`` (adjoint sweep + chain rule; no graph kept)."""
        x = torch.as_tensor(x, dtype=DTYPE).detach()
        w = torch.as_tensor(w, dtype=DTYPE).detach()
        with torch.no_grad():
            y, G = self._values_and_grad(self.angles_of(x, w), self.kernel_args)
        wb = w.unsqueeze(-1).expand(-1, x.shape[0]).clone().requires_grad_(True)
        with torch.enable_grad():
            phi = self.angles_of(x, wb)
            (jac,) = torch.autograd.grad(phi, wb, grad_outputs=G, allow_unused=True)
        if jac is None:
            jac = torch.zeros_like(wb)
        return y, jac.T.contiguous()

    def describe(self) -> dict[str, int]:
        out = {
            "qubits": self.n_qubits, "gates": self.n_gates_total, "gates_after_light_cone": self.n_gates_kept,
            "fused_blocks": self.n_blocks, "monomial_ops": sum(1 for o in self.ops if o[0] == "mono"),
            "rotations": self.n_rotations, "distinct_angles": self.n_angles, "inputs": self.n_inputs, "weights": self.n_weights,
        }
        if self.n_rv:  # (absent without rv gates: the descriptions of the other circuits stay as they were)
            out["rv_gates"] = self.n_rv
        if self.n_mrot:  # likewise
            out["involution_rotations"] = self.n_mrot
        return out


def _np(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().numpy(), dtype=np.float64)


_NO_GQ = np.empty((1, 4, 0))
_WORK = threading.local()  # per thread: one float64 scratch array for the kernels' tiles, grown as needed


def _workspace(phi_shape: tuple[int, int], args: tuple) -> np.ndarray:
    """The calling thread's kernel scratch (reused across calls: a fresh one, a few MB at batch 500, costs page faults
    on every call; the kernels run one at a time in a thread and keep nothing in it between calls)."""
    need = kernels.workspace_size(phi_shape, args[0], args[5], args[6])
    ws = getattr(_WORK, "ws", None)
    if ws is None or ws.shape[0] < need:
        raw = np.empty(need + 8)
        off = (-raw.ctypes.data % 64) // 8  # 64-byte aligned (numpy's 16 bytes made the vector loads ~20% slower)
        ws = _WORK.ws = raw[off:off + need]
    return ws


# ---------------------------------------------------------------------------------------------------------------
# autograd
# ---------------------------------------------------------------------------------------------------------------
class _AdjointExpectation(torch.autograd.Function):
    """phi [A, B] -> (y [B], dy/dphi [A, B]); backward = exact Hessian-vector product (once differentiable).

    ``keep_gq``: also keep the block gradients dy/dq of the forward sweep, which the Hessian-vector product would
    otherwise sum again (the same numbers; set it when dy/dphi is going to be differentiated)."""

    @staticmethod
    def forward(ctx, phi: torch.Tensor, prog: CompiledCircuit, args: tuple, keep_gq: bool = False):
        if keep_gq:
            y, G, ctx.gq = prog._values_and_grad(phi, args, keep_gq=True)
        else:
            y, G = prog._values_and_grad(phi, args)
            ctx.gq = None
        ctx.prog, ctx.args = prog, args
        ctx.save_for_backward(phi, G)
        ctx.set_materialize_grads(False)
        return y, G

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gy: torch.Tensor | None, gG: torch.Tensor | None):
        phi, G = ctx.saved_tensors
        out = None
        if gy is not None:
            out = gy.unsqueeze(0) * G
        if gG is not None:
            h = ctx.prog._hvp(phi, gG, ctx.args, ctx.gq)
            out = h if out is None else out + h
        if out is None:
            out = torch.zeros_like(G)
        return out, None, None, None


# ---------------------------------------------------------------------------------------------------------------
# plain differentiable torch reference (any order of derivatives; slow)
# ---------------------------------------------------------------------------------------------------------------
def _hamilton(a: tuple, b: tuple) -> tuple:
    a0, a1, a2, a3 = a
    b0, b1, b2, b3 = b
    return (a0 * b0 - a1 * b1 - a2 * b2 - a3 * b3, a0 * b1 + a1 * b0 + a2 * b3 - a3 * b2,
            a0 * b2 - a1 * b3 + a2 * b0 + a3 * b1, a0 * b3 + a1 * b2 - a2 * b1 + a3 * b0)


def _series(terms: int, odd: bool) -> list[float]:
    """Coefficients in z = u^2 of cos(u) (odd False) or sin(u) / u (odd True)."""
    return [(-1) ** k / math.factorial(2 * k + odd) for k in range(terms)]


_COS_SERIES, _SINC_SERIES = _series(14, False), _series(13, True)  # for z < 4: omitted terms below 1e-18


def _poly(c: list[float], z: torch.Tensor) -> torch.Tensor:
    p = torch.full_like(z, c[-1])
    for a in reversed(c[:-1]):
        p = p * z + a
    return p


def _rv_quaternion(vx: torch.Tensor, vy: torch.Tensor, vz: torch.Tensor) -> tuple:
    """q(v) = (cos(|v|/2), sin(|v|/2) v / |v|) in differentiable torch ops, smooth at v = 0 to any order: power series
    in u^2 = |v|^2 / 4 for u < 2 (a polynomial of v), the closed form above (the other branch's input is masked, so
    neither has an infinite or NaN derivative)."""
    z = 0.25 * (vx * vx + vy * vy + vz * vz)
    small = z < 4.0
    u = torch.sqrt(torch.where(small, torch.ones_like(z), z))
    zs = torch.where(small, z, torch.zeros_like(z))
    q0 = torch.where(small, _poly(_COS_SERIES, zs), torch.cos(u))
    f = torch.where(small, 0.5 * _poly(_SINC_SERIES, zs), 0.5 * torch.sin(u) / u)
    return q0, f * vx, f * vy, f * vz


def _simulate_autograd(prog: CompiledCircuit, phi: torch.Tensor) -> torch.Tensor:
    """The compiled program in differentiable torch ops: block quaternions, then the state [2**N, B]."""
    n = prog.n_qubits
    B = phi.shape[1]
    c, s = torch.cos(0.5 * phi), torch.sin(0.5 * phi)
    zero = torch.zeros(B, dtype=DTYPE)
    quats = []
    for els in prog.blocks:
        q = (torch.ones(B, dtype=DTYPE), zero, zero, zero)
        for e in els:
            if e[0] == "rot":
                r = (c[e[2]],) + tuple(s[e[2]] if m == e[1] else zero for m in range(3))
            elif e[0] == "rv":
                r = _rv_quaternion(*(phi[a] for a in e[2]))
            else:
                r = tuple(torch.full((B,), float(v), dtype=DTYPE) for v in e[1])
            q = _hamilton(r, q)
        quats.append(q)
    psi = torch.zeros(1 << n, B, dtype=CDTYPE)
    psi[0] = 1.0
    for op in prog._ref_ops:
        if op[0] == "u":
            q0, q1, q2, q3 = quats[op[1]]
            u00, u01 = torch.complex(q0, -q3), torch.complex(-q2, -q1)
            u10, u11 = torch.complex(q2, -q1), torch.complex(q0, q3)
            L, R = 1 << (n - 1 - op[2]), 1 << op[2]
            v = psi.view(L, 2, R, B)
            s0, s1 = v[:, 0], v[:, 1]
            psi = torch.stack((u00 * s0 + u01 * s1, u10 * s0 + u11 * s1), 1).reshape(-1, B)
        elif op[0] == "mrot":  # psi + (e^{i theta} - 1) (psi - M psi) / 2
            th = phi[op[3]]
            z = torch.complex(torch.cos(th) - 1.0, torch.sin(th))
            psi = psi + z * (0.5 * (psi - psi.index_select(0, op[1]) * op[2].unsqueeze(-1)))
        else:
            psi = psi.index_select(0, op[1]) * op[2].unsqueeze(-1)
    perm, fac = prog.obs_perm, torch.as_tensor(prog.obs_factor, dtype=CDTYPE)
    lam = sum(fac[o].unsqueeze(-1) * psi.index_select(0, torch.as_tensor(perm[o])) for o in range(len(perm)))
    return (psi.conj() * lam).real.sum(0)


# ---------------------------------------------------------------------------------------------------------------
# torch module
# ---------------------------------------------------------------------------------------------------------------
class QNNRegressor(Revisioned, torch.nn.Module):
    """``x [B, d] -> y = a <O>(x; w) + b`` with the circuit weights ``w`` and the readout ``a, b`` as Parameters.

    ``mode="adjoint"`` (default) uses the fast adjoint engine, ``"autograd"`` the plain differentiable simulation.
    Large batches are evaluated in chunks of ``chunk_size`` when no graph is recorded.
    """

    def __init__(self, program: CompiledCircuit, weights: torch.Tensor | np.ndarray, *, readout: tuple[float, float] = (1.0, 0.0),
                 mode: str = "adjoint", chunk_size: int = 2048) -> None:
        super().__init__()
        if mode not in ("adjoint", "autograd"):
            raise ValueError(f"mode must be 'adjoint' or 'autograd', got {mode!r}")
        w = torch.as_tensor(np.asarray(weights, dtype=float), dtype=DTYPE).reshape(-1)
        if w.numel() != program.n_weights:
            raise ValueError(f"{w.numel()} weight values for a circuit with {program.n_weights} weights")
        self.program = program
        self.mode = mode
        self.chunk_size = int(chunk_size)
        self.weights = torch.nn.Parameter(w.clone())
        self.a = torch.nn.Parameter(torch.tensor(float(readout[0]), dtype=DTYPE))
        self.b = torch.nn.Parameter(torch.tensor(float(readout[1]), dtype=DTYPE))

    def _chunks(self, x: torch.Tensor, recording: bool) -> list[torch.Tensor]:
        if recording or x.shape[0] <= self.chunk_size:
            return [x]
        return list(torch.split(x, self.chunk_size))

    def expectation(self, x: torch.Tensor) -> torch.Tensor:
        """<O> [B] (without the readout)."""
        x = torch.as_tensor(x, dtype=DTYPE)
        recording = torch.is_grad_enabled() and (x.requires_grad or self.weights.requires_grad)
        return torch.cat([self.program.expectation(c, self.weights, mode=self.mode) for c in self._chunks(x, recording)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a * self.expectation(x) + self.b

    def value_and_input_grad(self, x: torch.Tensor, *, create_graph: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """y [B] and dy/dx [B, d]; with ``create_graph`` both are differentiable w.r.t. the weights and readout."""
        x = torch.as_tensor(x, dtype=DTYPE)
        ys, gs = [], []
        for c in self._chunks(x, create_graph):
            z, g = self.program.expectation_and_input_grad(c, self.weights, create_graph=create_graph, mode=self.mode)
            ys.append(z)
            gs.append(g)
        z, g = torch.cat(ys), torch.cat(gs)
        if create_graph:
            return self.a * z + self.b, self.a * g
        with torch.no_grad():
            return self.a * z + self.b, self.a * g

    def value_and_parameter_jacobian(self, x: torch.Tensor, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """y [B] and dy/dtheta [B, P] at ``theta`` = the trainable parameters flattened in ``named_parameters`` order
        (hook used by :mod:`qnnff.effdim`; the adjoint engine gives all per-sample gradients in one sweep)."""
        named = [(k, p) for k, p in self.named_parameters() if p.requires_grad]
        theta = torch.as_tensor(theta, dtype=DTYPE).detach()
        if theta.numel() != sum(p.numel() for _, p in named):
            raise ValueError(f"theta has {theta.numel()} entries, the regressor has {sum(p.numel() for _, p in named)} trainable values")
        vals = dict(zip([k for k, _ in named], torch.split(theta, [p.numel() for _, p in named])))
        w = vals.get("weights", self.weights.detach())
        a = vals["a"].reshape(()) if "a" in vals else self.a.detach()
        b = vals["b"].reshape(()) if "b" in vals else self.b.detach()
        x = torch.as_tensor(x, dtype=DTYPE)
        z, jw = self.program.expectation_and_weight_jacobian(x, w)
        cols = {"weights": a * jw, "a": z.unsqueeze(-1), "b": torch.ones_like(z).unsqueeze(-1)}
        return a * z + b, torch.cat([cols[k] for k, _ in named], 1)

"""Exact, batched, differentiable statevector engine in torch for the QNN circuits.

A Qiskit :class:`~qiskit.circuit.QuantumCircuit` is *compiled once* (:class:`CompiledCircuit`) from its gates and
their parameter expressions, then executed on a batch of inputs in float64 / complex128:

* every rotation angle must be a polynomial of degree <= 2 without squares in the circuit's parameters,
  ``c0 + sum c_p p + sum c_pq p q`` (the QNN's angles are ``w * x`` or ``w``); the coefficients are read from the
  :class:`~qiskit.circuit.ParameterExpression` by differentiation and checked at random points, anything else is
  rejected with an error naming the gate;
* runs of single-qubit gates on one qubit are fused into one SU(2) *block* per sample, kept as a real unit
  quaternion ``(q0, q1, q2, q3)`` with ``U = q0 I - i (q1 X + q2 Y + q3 Z)`` (global phases do not change an
  expectation value); a rotation multiplies the quaternion, so the fused matrices cost a few small real ops. A block
  is the product of *runs* of input-dependent and weight-only rotations; identical input-dependent runs (the
  re-uploaded encoding, the same in every layer because the feature-map weights are shared) are built once, and
  weight-only runs carry no batch dimension;
* runs of CX / CZ / SWAP / other monomial gates are merged into one permutation-with-phases;
* gates outside the observable's light cone are dropped (e.g. the final rotations on qubits the CNOTs never
  carry back to qubit 0), which does not change any value or derivative;
* the state is a ``[2**N, B]`` complex tensor, batch last (Qiskit little-endian: qubit q is bit q of the index).

Differentiation.  ``y = <psi| O |psi>`` is a function of the block quaternions ``Q`` (``[K, 4, B]``), which are
cheap torch functions of the angles, hence of inputs ``x`` and weights ``w``. :class:`_AdjointExpectation` is a
``torch.autograd.Function`` ``Q -> (y, dy/dQ)``: the forward runs the state forward and the *adjoint* state
``lambda = O psi`` backward (the adjoint method), so one call gives the values and the gradient with respect to
every block; ``dy/dx`` then follows by the chain rule through the quaternion construction (a small vector-Jacobian
product with ``create_graph=True``). Its backward is an exact Hessian-vector product (forward-mode tangent sweep of
the state and the adjoint state along the incoming cotangent of ``dy/dQ``), so a loss containing forces
``f = -dE/dx . J`` gets its gradient w.r.t. the weights (the mixed second derivatives) from ``loss.backward()``.
The fast path is twice differentiable (enough for training on forces); ``mode="autograd"`` runs the same compiled
program with plain differentiable torch ops (any order, used as the reference in the tests). ``y`` is differentiated
as the polynomial it is in the unconstrained quaternion entries, so all derivatives are exact.

Performance (H3O+ circuit: 6 qubits, D = 10, batch 500, one torch thread; ``benchmarks/bench_qnn.py``): forward
about 7 ms, values + input gradients about 20 ms, gradient of a force loss about 75 ms, more than 10x faster than
PennyLane ``default.qubit`` with backprop. The state sweeps write into reused buffers (:class:`_Pool`); the engine is
not meant to be called from several threads at once.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from qiskit.circuit import Parameter, ParameterExpression, QuantumCircuit
from qiskit.quantum_info import SparsePauliOp

DTYPE = torch.float64
CDTYPE = torch.complex128

# rotation axis -> (index permutation, signs) of the left quaternion product with the unit axis quaternion e_k
_AXES = {"rx": 0, "ry": 1, "rz": 2}
_LEFT_PERM = {0: ([1, 0, 3, 2], [-1.0, 1.0, -1.0, 1.0]), 1: ([2, 3, 0, 1], [-1.0, 1.0, 1.0, -1.0]), 2: ([3, 2, 1, 0], [-1.0, -1.0, 1.0, 1.0])}
_IGNORED = {"barrier", "delay"}


class UnsupportedCircuitError(ValueError):
    """The circuit has a gate or a parameter expression the engine cannot execute exactly."""


# ---------------------------------------------------------------------------------------------------------------
# parameter expressions
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class Angle:
    """``const + sum_i lin[i] v_i + sum_(i,j) bil[(i,j)] v_i v_j`` over the engine's parameter vector ``v``."""

    const: float = 0.0
    lin: dict[int, float] = field(default_factory=dict)
    bil: dict[tuple[int, int], float] = field(default_factory=dict)

    def scaled(self, c: float) -> "Angle":
        return Angle(self.const * c, {k: v * c for k, v in self.lin.items()}, {k: v * c for k, v in self.bil.items()})

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


def _is_monomial(mat: np.ndarray) -> bool:
    nz = np.abs(mat) > 1e-12
    return bool(np.all(nz.sum(0) == 1) and np.all(nz.sum(1) == 1))


@dataclass
class _Gate:
    kind: str                      # "rot" (parametrised axis rotation), "fixed1" (constant 1q), "mono" (monomial)
    qubits: tuple[int, ...]
    axis: int = -1                 # rot: 0 x, 1 y, 2 z
    angle: Angle | None = None     # rot
    quat: np.ndarray | None = None  # fixed1
    matrix: np.ndarray | None = None  # mono (gate matrix, Qiskit little-endian over ``qubits``)
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


class CompiledCircuit:
    """A QuantumCircuit compiled for the torch engine: fused SU(2) blocks, merged monomials, angle layer.

    ``inputs`` and ``weights`` are the circuit's Parameters in the order of the engine's ``x`` columns and
    ``w`` entries; every circuit parameter must be one of them. ``observable`` must be diagonal (I/Z Paulis,
    real coefficients; default Z on qubit 0).
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
            raise UnsupportedCircuitError(f"the statevector engine needs 1..20 qubits, got {n}")
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
        self.obs_diag = self._diagonal_observable(observable, n)
        obs_qubits = {q for lab in observable.paulis.to_labels() for q in range(n) if lab[n - 1 - q] == "Z"}

        gates = self._parse(circuit, index)
        self.n_gates_total = len(gates)
        if prune:
            gates = self._light_cone(gates, obs_qubits, n)
        self.n_gates_kept = len(gates)
        self._build_program(gates, n)

    # ---- parsing
    @staticmethod
    def _diagonal_observable(obs: SparsePauliOp, n: int) -> torch.Tensor:
        if obs.num_qubits != n:
            raise UnsupportedCircuitError(f"observable acts on {obs.num_qubits} qubits, the circuit has {n}")
        diag = np.zeros(1 << n)
        idx = np.arange(1 << n)
        for lab, c in zip(obs.paulis.to_labels(), obs.coeffs):
            if set(lab) - {"I", "Z"}:
                raise UnsupportedCircuitError(f"observable term {lab} is not diagonal (only I and Z are supported)")
            if abs(c.imag) > 1e-12:
                raise UnsupportedCircuitError(f"observable coefficient {c} is not real")
            term = np.ones(1 << n)
            for q in range(n):
                if lab[n - 1 - q] == "Z":
                    term *= 1.0 - 2.0 * ((idx >> q) & 1)
            diag += c.real * term
        return torch.as_tensor(diag, dtype=DTYPE)

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
            if name in ("u", "u3", "u2") and symbolic:
                th, ph, la = (op.params if name != "u2" else [math.pi / 2, *op.params])
                # U(th, ph, la) = e^{i(ph+la)/2} RZ(ph) RY(th) RZ(la)
                for ax, e in ((2, la), (1, th), (2, ph)):
                    out.append(_Gate("rot", qubits, axis=ax, angle=parse_angle(e, index, where), diagonal=ax == 2, name=name))
                continue
            if symbolic:
                raise UnsupportedCircuitError(f"{where}: parametrised gate {name!r} is not supported (use rx, ry, rz, p, u)")
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
                raise UnsupportedCircuitError(f"{where}: multi-qubit gate {name!r} is not a permutation with phases (supported: cx, cy, cz, swap, ccx, ...)")
        return out

    @staticmethod
    def _light_cone(gates: list[_Gate], obs_qubits: set[int], n: int) -> list[_Gate]:
        """Drop gates that commute with the (Heisenberg-evolved) observable. Per qubit: out / diag / full."""
        state = {q: ("diag" if q in obs_qubits else "out") for q in range(n)}
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
        angles: list[Angle] = []
        blocks: list[list[tuple]] = []     # per block: elements ("rot", axis, angle_id) / ("fixed", quat)
        block_qubit: list[int] = []
        ops: list[tuple] = []              # ("u", block) / ("mono", perm, phase|None)
        pending: dict[int, list[tuple]] = {}
        mono: tuple[np.ndarray, np.ndarray] | None = None
        mono_q: set[int] = set()

        def flush_block(q: int) -> None:
            els = pending.pop(q, None)
            if els:
                blocks.append(els)
                block_qubit.append(q)
                ops.append(("u", len(blocks) - 1, q))

        def flush_mono() -> None:
            nonlocal mono, mono_q
            if mono is not None:
                perm, phase = mono
                ph = None if np.allclose(phase, 1.0) else torch.as_tensor(phase, dtype=CDTYPE)
                ops.append(("mono", torch.as_tensor(perm), ph, tuple(sorted(mono_q))))
            mono, mono_q = None, set()

        for g in gates:
            if g.kind in ("rot", "fixed1"):
                q = g.qubits[0]
                if q in mono_q:
                    flush_mono()
                if g.kind == "rot":
                    angles.append(g.angle)
                    pending.setdefault(q, []).append(("rot", g.axis, len(angles) - 1))
                else:
                    pending.setdefault(q, []).append(("fixed", g.quat))
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
        self.ops = _merge_adjacent_monomials(ops)
        self.blocks = blocks
        self.block_qubit = block_qubit
        self.n_blocks = len(blocks)
        self.n_angles = len(angles)
        self.angles = angles
        self._build_quaternion_plan(blocks, angles)

    def _angle_layer(self, angles: list[Angle], batched: bool) -> dict[str, torch.Tensor]:
        A, V = len(angles), self.n_inputs + self.n_weights
        const = np.zeros(A)
        lin = np.zeros((A, V))
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
        return {
            "const": torch.as_tensor(const, dtype=DTYPE),
            "lin_x": torch.as_tensor(lin[:, : self.n_inputs], dtype=DTYPE),
            "lin_w": torch.as_tensor(lin[:, self.n_inputs:], dtype=DTYPE),
            "bil_i": torch.as_tensor(bi, dtype=torch.long),
            "bil_j": torch.as_tensor(bj, dtype=torch.long),
            "bil_c": torch.as_tensor(bc, dtype=DTYPE),
            "bil_a": torch.as_tensor(ba, dtype=torch.long),
            "batched": batched,
        }

    def _build_quaternion_plan(self, blocks: list[list[tuple]], angles: list[Angle]) -> None:
        """Plan the block quaternions: each block is split into *runs* of input-dependent (batched) and
        weight-only (unbatched) elements; identical input-dependent runs are computed once (the re-uploaded
        encoding is the same in every layer), weight-only runs cost no batch dimension, and a block is the
        product of its runs. Runs with the same element signature are built in one batched sweep."""
        n_in = self.n_inputs

        def key(ang: Angle) -> tuple:
            return (round(ang.const, 15), tuple(sorted(ang.lin.items())), tuple(sorted(ang.bil.items())))

        def depends_on_x(ang: Angle) -> bool:
            return any(i < n_in for i in ang.lin) or any(i < n_in or j < n_in for i, j in ang.bil)

        x_angle_ids: dict[tuple, int] = {}
        x_angles: list[Angle] = []
        w_angles: list[Angle] = []
        x_run_ids: dict[tuple, int] = {}
        x_runs: list[list[tuple]] = []
        w_runs: list[list[tuple]] = []
        plans: list[list[tuple[str, int]]] = []
        for els in blocks:
            runs: list[tuple[str, list[tuple]]] = []
            for e in els:
                if e[0] == "rot" and depends_on_x(angles[e[2]]):
                    k = key(angles[e[2]])
                    if k not in x_angle_ids:
                        x_angle_ids[k] = len(x_angles)
                        x_angles.append(angles[e[2]])
                    item, kind = ("rot", e[1], x_angle_ids[k]), "x"
                elif e[0] == "rot":
                    w_angles.append(angles[e[2]])
                    item, kind = ("rot", e[1], len(w_angles) - 1), "w"
                else:
                    item, kind = ("fixed", e[1]), "w"
                if runs and runs[-1][0] == kind:
                    runs[-1][1].append(item)
                else:
                    runs.append((kind, [item]))
            plan = []
            for kind, items in runs:
                if kind == "x":
                    k = tuple((it[1], it[2]) for it in items)
                    if k not in x_run_ids:
                        x_run_ids[k] = len(x_runs)
                        x_runs.append(items)
                    plan.append(("x", x_run_ids[k]))
                else:
                    w_runs.append(items)
                    plan.append(("w", len(w_runs) - 1))
            plans.append(plan)
        self.n_x_angles, self.n_w_angles = len(x_angles), len(w_angles)
        self.x_layer = self._angle_layer(x_angles, True)
        self.w_layer = self._angle_layer(w_angles, False)
        self.has_x = bool(x_angles)
        self.x_chains = self._chain_groups(x_runs)
        self.w_chains = self._chain_groups(w_runs)
        # blocks grouped by run pattern
        groups: dict[tuple, list[int]] = {}
        for k, plan in enumerate(plans):
            groups.setdefault(tuple(kind for kind, _ in plan), []).append(k)
        self.block_groups = []
        for pattern, ks in groups.items():
            steps = [(kind, torch.as_tensor([plans[k][pos][1] for k in ks], dtype=torch.long)) for pos, kind in enumerate(pattern)]
            self.block_groups.append((torch.as_tensor(ks, dtype=torch.long), steps))
        order = torch.cat([g[0] for g in self.block_groups]) if self.block_groups else torch.zeros(0, dtype=torch.long)
        self.block_inverse = torch.argsort(order)

    @staticmethod
    def _chain_groups(runs: list[list[tuple]]) -> tuple[list, torch.Tensor]:
        groups: dict[tuple, list[int]] = {}
        for r, items in enumerate(runs):
            groups.setdefault(tuple((it[0], it[1]) if it[0] == "rot" else ("fixed",) for it in items), []).append(r)
        out = []
        for sig, rs in groups.items():
            steps = []
            for pos, sg in enumerate(sig):
                if sg[0] == "rot":
                    steps.append(("rot", sg[1], torch.as_tensor([runs[r][pos][2] for r in rs], dtype=torch.long)))
                else:
                    steps.append(("fixed", torch.as_tensor(np.stack([runs[r][pos][1] for r in rs]), dtype=DTYPE)))
            out.append((torch.as_tensor(rs, dtype=torch.long), steps))
        order = torch.cat([g[0] for g in out]) if out else torch.zeros(0, dtype=torch.long)
        return out, torch.argsort(order)

    # ---- differentiable pieces
    def _angles(self, layer: dict, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Angles of a layer: ``[A, B]`` if it depends on the inputs ``x [B, d]`` or the weights are per sample
        (``w [P, B]``), else ``[A]`` (weights ``w [P]``)."""
        wb = w.dim() == 2
        const = layer["const"].unsqueeze(-1) if wb else layer["const"]
        phi = const + layer["lin_w"] @ w
        if layer["batched"]:
            phi = (phi if wb else phi.unsqueeze(-1)) + layer["lin_x"] @ x.T
        if layer["bil_c"].numel():
            c = layer["bil_c"].unsqueeze(-1) if (wb or layer["batched"]) else layer["bil_c"]
            if layer["batched"]:
                wcols = w if wb else w.unsqueeze(-1).expand(-1, x.shape[0])
                v = torch.cat([x.T, wcols], 0)
                terms = v[layer["bil_i"]] * v[layer["bil_j"]] * c
            else:
                terms = w[layer["bil_i"] - self.n_inputs] * w[layer["bil_j"] - self.n_inputs] * c
            phi = phi.index_add(0, layer["bil_a"], terms)
        return phi

    @staticmethod
    def _chains(plan: tuple[list, torch.Tensor], phi: torch.Tensor) -> torch.Tensor:
        """Quaternion products of runs: ``[R, 4, B]`` for batched angles ``[A, B]``, ``[R, 4]`` for ``[A]``."""
        groups, inverse = plan
        extra = phi.dim() - 1
        tail = phi.shape[1:]
        half = 0.5 * phi
        c, s = torch.cos(half), torch.sin(half)
        parts = []
        for _rs, steps in groups:
            q = None
            for st in steps:
                if st[0] == "rot":
                    _, axis, ids = st
                    cc, ss = c[ids].unsqueeze(1), s[ids].unsqueeze(1)  # [G, 1, *tail]
                    if q is None:
                        q = torch.cat([cc] + [ss if m == axis else torch.zeros_like(ss) for m in range(3)], 1)
                    else:
                        perm, sign = _LEFT_PERM[axis]
                        sg = torch.tensor(sign, dtype=DTYPE).view(4, *([1] * extra))
                        q = cc * q + ss * (q[:, perm] * sg)
                else:
                    f = st[1].view(st[1].shape[0], 4, *([1] * extra))
                    q = f.expand(-1, -1, *tail) if q is None else _hamilton(f, q)
            parts.append(q)
        if not parts:
            return torch.zeros(0, 4, *tail, dtype=DTYPE)
        return torch.cat(parts, 0)[inverse]

    def quaternions(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Block quaternions ``[K, 4, B]`` for inputs ``x [B, d]`` and weights ``w [P]`` (or per sample ``[P, B]``)."""
        B = x.shape[0]
        XQ = self._chains(self.x_chains, self._angles(self.x_layer, x, w)) if self.n_x_angles else None
        WQ = self._chains(self.w_chains, self._angles(self.w_layer, x, w)) if self.w_chains[0] else None
        parts = []
        for _ks, steps in self.block_groups:
            q = None  # [G, 4, B] batched or [G, 4]
            for kind, ids in steps:
                r = XQ[ids] if kind == "x" else WQ[ids]
                if q is None:
                    q = r
                elif r.dim() == 2 and q.dim() == 3:
                    q = torch.bmm(_lmat(r), q)
                elif r.dim() == 2 and q.dim() == 2:
                    q = _hamilton(r, q)
                else:
                    q = _hamilton(r if r.dim() == 3 else r.unsqueeze(-1), q if q.dim() == 3 else q.unsqueeze(-1))
            if q.dim() == 2:
                q = q.unsqueeze(-1)
            parts.append(q.expand(-1, -1, B))
        if not parts:
            return torch.zeros(0, 4, B, dtype=DTYPE)
        return torch.cat(parts, 0)[self.block_inverse]

    # ---- execution
    def expectation(self, x: torch.Tensor, w: torch.Tensor, *, mode: str = "adjoint") -> torch.Tensor:
        """<O> ``[B]`` for inputs ``x [B, d]`` and weights ``w [P]`` (differentiable)."""
        Q = self.quaternions(x, w)
        if mode == "autograd":
            return _simulate_autograd(self, Q)
        if mode != "adjoint":
            raise ValueError(f"mode must be 'adjoint' or 'autograd', got {mode!r}")
        if not (torch.is_grad_enabled() and Q.requires_grad):
            return _simulate(self, _entries(Q.detach()))[0]
        y, _ = _AdjointExpectation.apply(Q, self)
        return y

    def expectation_and_input_grad(self, x: torch.Tensor, w: torch.Tensor, *, create_graph: bool = True,
                                   mode: str = "adjoint") -> tuple[torch.Tensor, torch.Tensor]:
        """<O> ``[B]`` and d<O>/dx ``[B, d]``; with ``create_graph`` both are differentiable w.r.t. ``w`` (and x)."""
        xin = x if x.requires_grad else x.detach().requires_grad_(True)
        with torch.enable_grad():
            if mode == "autograd":
                y = _simulate_autograd(self, self.quaternions(xin, w))
                (g,) = torch.autograd.grad(y.sum(), xin, create_graph=create_graph)
                return (y if create_graph else y.detach()), g
            if mode != "adjoint":
                raise ValueError(f"mode must be 'adjoint' or 'autograd', got {mode!r}")
            Q = self.quaternions(xin, w)
            if create_graph:
                y, G = _AdjointExpectation.apply(Q, self)
            else:
                with torch.no_grad():
                    y, G = _simulate(self, _entries(Q.detach()), want_grad=True)[:2]
            (g,) = torch.autograd.grad(Q, xin, grad_outputs=G, create_graph=create_graph)
        if not create_graph:
            y, g = y.detach(), g.detach()
        return y, g

    def expectation_and_weight_jacobian(self, x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """<O> ``[B]`` and the per-sample Jacobian d<O>/dw ``[B, P]`` (adjoint sweep + chain rule; no graph kept)."""
        x = torch.as_tensor(x, dtype=DTYPE).detach()
        w = torch.as_tensor(w, dtype=DTYPE).detach()
        with torch.no_grad():
            y, G = _simulate(self, _entries(self.quaternions(x, w)), want_grad=True)[:2]
        wb = w.unsqueeze(-1).expand(-1, x.shape[0]).clone().requires_grad_(True)
        with torch.enable_grad():
            Q = self.quaternions(x, wb)
            (jac,) = torch.autograd.grad(Q, wb, grad_outputs=G, allow_unused=True)
        if jac is None:
            jac = torch.zeros_like(wb)
        return y, jac.T.contiguous()

    def describe(self) -> dict[str, int]:
        return {
            "qubits": self.n_qubits, "gates": self.n_gates_total, "gates_after_light_cone": self.n_gates_kept,
            "fused_blocks": self.n_blocks, "monomial_ops": sum(1 for o in self.ops if o[0] == "mono"),
            "rotations": self.n_angles, "inputs": self.n_inputs, "weights": self.n_weights,
        }


def _merge_adjacent_monomials(ops: list[tuple]) -> list[tuple]:
    """Two monomials with no block between them compose into one (out = ph2 * ph1[p2] * in[p1[p2]])."""
    out: list[tuple] = []
    for op in ops:
        if op[0] == "mono" and out and out[-1][0] == "mono":
            _, p1, ph1, q1 = out[-1]
            _, p2, ph2, q2 = op
            one = lambda ph, p: torch.ones(len(p), dtype=CDTYPE) if ph is None else ph  # noqa: E731
            ph = one(ph2, p2) * one(ph1, p1)[p2]
            out[-1] = ("mono", p1[p2], None if (ph1 is None and ph2 is None) else ph, tuple(sorted(set(q1) | set(q2))))
        else:
            out.append(op)
    return out


def _lmat(a: torch.Tensor) -> torch.Tensor:
    """[G, 4] quaternions -> [G, 4, 4] matrices of left multiplication (a * b = _lmat(a) @ b)."""
    a0, a1, a2, a3 = a.unbind(1)
    return torch.stack(
        (torch.stack((a0, -a1, -a2, -a3), 1), torch.stack((a1, a0, -a3, a2), 1),
         torch.stack((a2, a3, a0, -a1), 1), torch.stack((a3, -a2, a1, a0), 1)), 1
    )


def _hamilton(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Quaternion product a*b along dim 1 (U_a U_b in the ``q0 I - i q.sigma`` convention)."""
    a0, a1, a2, a3 = a.unbind(1)
    b0, b1, b2, b3 = b.unbind(1)
    return torch.stack(
        (
            a0 * b0 - a1 * b1 - a2 * b2 - a3 * b3,
            a0 * b1 + a1 * b0 + a2 * b3 - a3 * b2,
            a0 * b2 - a1 * b3 + a2 * b0 + a3 * b1,
            a0 * b3 + a1 * b2 - a2 * b1 + a3 * b0,
        ),
        1,
    )


# ---------------------------------------------------------------------------------------------------------------
# simulation kernels (state [2**N, B], batch last; no autograd inside, buffers preallocated)
# ---------------------------------------------------------------------------------------------------------------
def _entries(Q: torch.Tensor) -> torch.Tensor:
    """SU(2) matrices of quaternions Q [K, 4, B] by columns: E[k, j, i] = U_ij, shape [K, 2, 2, B] (complex)."""
    q0, q1, q2, q3 = Q.unbind(1)
    return torch.stack(
        (torch.stack((torch.complex(q0, -q3), torch.complex(q2, -q1)), 1),
         torch.stack((torch.complex(-q2, -q1), torch.complex(q0, q3)), 1)), 1
    )


def _apply(psi: torch.Tensor, E: torch.Tensor, q: int, n: int, out: torch.Tensor) -> torch.Tensor:
    """out = U psi on qubit q (U by columns, E [2, 2, B])."""
    B = psi.shape[-1]
    L, R = 1 << (n - 1 - q), 1 << q
    s = psi.view(L, 2, R, B)
    o = out.view(L, 2, R, B)
    torch.mul(s[:, 0:1], E[0].unsqueeze(1), out=o)
    o.addcmul_(s[:, 1:2], E[1].unsqueeze(1))
    return out


def _apply_add(out: torch.Tensor, psi: torch.Tensor, E: torch.Tensor, q: int, n: int) -> None:
    """out += U psi on qubit q."""
    B = psi.shape[-1]
    L, R = 1 << (n - 1 - q), 1 << q
    s = psi.view(L, 2, R, B)
    o = out.view(L, 2, R, B)
    o.addcmul_(s[:, 0:1], E[0].unsqueeze(1)).addcmul_(s[:, 1:2], E[1].unsqueeze(1))


def _apply_diff(psi: torch.Tensor, E: torch.Tensor, q: int, n: int) -> torch.Tensor:
    """Differentiable U psi (reference path)."""
    B = psi.shape[-1]
    L, R = 1 << (n - 1 - q), 1 << q
    s = psi.view(L, 2, R, B)
    return (s[:, 0:1] * E[0].unsqueeze(1) + s[:, 1:2] * E[1].unsqueeze(1)).reshape(-1, B)


def _mono(psi: torch.Tensor, perm: torch.Tensor, phase: torch.Tensor | None, out: torch.Tensor | None = None) -> torch.Tensor:
    if out is None:
        out = psi.index_select(0, perm)
    else:
        torch.index_select(psi, 0, perm, out=out)
    if phase is not None:
        out.mul_(phase.unsqueeze(-1))
    return out


def _mono_transpose(mu: torch.Tensor, perm: torch.Tensor, phase: torch.Tensor | None, out: torch.Tensor) -> torch.Tensor:
    """out = P^T mu for the monomial P (out[perm[j]] = phase[j] mu[j])."""
    if phase is not None:
        mu = mu * phase.unsqueeze(-1)
    out.index_copy_(0, perm, mu)
    return out


def _transition(mu: torch.Tensor, psi: torch.Tensor, q: int, n: int, buf: torch.Tensor, out: torch.Tensor,
                accumulate: bool = False) -> None:
    """out[a, b] (+)= sum_rest mu[a, rest] psi[b, rest] on qubit q; out [2, 2, B], buf [2, 2, 2**(n-1), B]."""
    B = psi.shape[-1]
    L, R = 1 << (n - 1 - q), 1 << q
    mv = mu.view(L, 2, R, B).transpose(0, 1).unsqueeze(1)
    pv = psi.view(L, 2, R, B).transpose(0, 1).unsqueeze(0)
    torch.mul(mv, pv, out=buf.view(2, 2, L, R, B))
    if accumulate:
        out.add_(buf.sum(2))
    else:
        torch.sum(buf, 2, out=out)


def _quat_grad(Mt: torch.Tensor) -> torch.Tensor:
    """dy/dQ [K, 4, B] from Mt [K, 2, 2, B] with dy = 2 Re sum_ab dU_ab Mt[a, b] (Mt built with mu = conj(lambda))."""
    m00, m01, m10, m11 = Mt[:, 0, 0], Mt[:, 0, 1], Mt[:, 1, 0], Mt[:, 1, 1]
    return 2.0 * torch.stack(((m00 + m11).real, (m01 + m10).imag, (m10 - m01).real, (m00 - m11).imag), 1)


class _Pool:
    """Reusable big buffers (the states of a sweep). Fresh multi-MB allocations are returned to the OS when freed and
    page-faulted again on the next call, which costs more than the arithmetic here. A buffer is handed out again only
    when nothing but the pool references it (an autograd context keeps its saved states until it is freed); at most
    ``max_bytes`` are retained, least recently used shapes are dropped first."""

    def __init__(self, keep: int = 4, max_bytes: int = 1 << 29) -> None:
        self.free: dict[tuple, list[torch.Tensor]] = {}
        self.keep = keep
        self.max_bytes = max_bytes

    def _bytes(self) -> int:
        return sum(t.numel() * t.element_size() for lst in self.free.values() for t in lst)

    def take(self, *shape: int) -> torch.Tensor:
        lst = self.free.pop(shape, [])
        self.free[shape] = lst  # most recently used last
        for t in lst:
            if sys.getrefcount(t) <= 3:  # the list, the loop variable and getrefcount's argument
                return t
        t = torch.empty(shape, dtype=CDTYPE)
        size = t.numel() * t.element_size()
        if len(lst) < self.keep and size <= self.max_bytes:
            for other in list(self.free):
                if self._bytes() + size <= self.max_bytes:
                    break
                if other != shape:
                    del self.free[other]
            if self._bytes() + size <= self.max_bytes:
                lst.append(t)
        return t


_POOL = _Pool()


def _simulate(prog: CompiledCircuit, E: torch.Tensor, *, want_grad: bool = False, record: bool = False):
    """Forward state sweep, then (want_grad) the adjoint sweep with mu = conj(O psi) moving backwards.

    Returns (y [B], G = dy/dQ [K, 4, B] or None, saved) with saved = (states, mus) when ``record``:
    states[t] is the state before op t, mus[t] the conjugate adjoint state after op t.
    """
    n = prog.n_qubits
    B = E.shape[-1]
    T = len(prog.ops)
    dim = 1 << n
    S = _POOL.take(T + 1, dim, B) if want_grad else _POOL.take(2, dim, B)  # values only: two states suffice
    at = (lambda t: t) if want_grad else (lambda t: t % 2)  # noqa: E731
    S[0].zero_()
    S[0, 0] = 1.0
    for t, op in enumerate(prog.ops):
        if op[0] == "u":
            _apply(S[at(t)], E[op[1]], op[2], n, S[at(t + 1)])
        else:
            _mono(S[at(t)], op[1], op[2], S[at(t + 1)])
    psi = S[at(T)]
    obs = prog.obs_diag.unsqueeze(-1)
    y = (obs * (psi.real**2 + psi.imag**2)).sum(0)
    if not want_grad:
        return y, None, None
    Mu = _POOL.take(T + 1, dim, B) if record else _POOL.take(2, dim, B)
    slot = (lambda t: t) if record else (lambda t: t % 2)  # noqa: E731
    torch.mul(psi.conj(), obs, out=Mu[slot(T)])
    Mt = torch.zeros(prog.n_blocks, 2, 2, B, dtype=CDTYPE)
    buf = _POOL.take(2, 2, dim // 2, B)
    ET = E.transpose(1, 2).contiguous()
    for t in range(T - 1, -1, -1):
        op = prog.ops[t]
        mu = Mu[slot(t + 1)]
        if op[0] == "u":
            k, q = op[1], op[2]
            _transition(mu, S[t], q, n, buf, Mt[k])
            _apply(mu, ET[k], q, n, Mu[slot(t)])
        else:
            _mono_transpose(mu, op[1], op[2], Mu[slot(t)])
    G = _quat_grad(Mt)
    return y, G, ((S, Mu) if record else None)


def _hvp(prog: CompiledCircuit, E: torch.Tensor, Edot: torch.Tensor, S: torch.Tensor, Mu: torch.Tensor) -> torch.Tensor:
    """Directional derivative of G = dy/dQ along the block tangent with matrices ``Edot`` (by columns)."""
    n = prog.n_qubits
    B = E.shape[-1]
    T = len(prog.ops)
    dim = 1 << n
    dS = _POOL.take(T + 1, dim, B)
    first = next((t for t, op in enumerate(prog.ops) if op[0] == "u"), T)
    dS[: first + 1].zero_()
    for t in range(first, T):
        op = prog.ops[t]
        if op[0] == "u":
            k, q = op[1], op[2]
            if t == first:
                dS[t + 1].zero_()
            else:
                _apply(dS[t], E[k], q, n, dS[t + 1])
            _apply_add(dS[t + 1], S[t], Edot[k], q, n)
        else:
            _mono(dS[t], op[1], op[2], dS[t + 1])
    obs = prog.obs_diag.unsqueeze(-1)
    dMu = _POOL.take(2, dim, B)
    torch.mul(dS[T].conj(), obs, out=dMu[T % 2])
    Mt = torch.zeros(prog.n_blocks, 2, 2, B, dtype=CDTYPE)
    buf = _POOL.take(2, 2, dim // 2, B)
    ET, EdT = E.transpose(1, 2).contiguous(), Edot.transpose(1, 2).contiguous()
    for t in range(T - 1, -1, -1):
        op = prog.ops[t]
        dmu = dMu[(t + 1) % 2]
        if op[0] == "u":
            k, q = op[1], op[2]
            _transition(dmu, S[t], q, n, buf, Mt[k])
            if t > first:
                _transition(Mu[t + 1], dS[t], q, n, buf, Mt[k], accumulate=True)
            nxt = dMu[t % 2]
            _apply(dmu, ET[k], q, n, nxt)
            _apply_add(nxt, Mu[t + 1], EdT[k], q, n)
        else:
            _mono_transpose(dmu, op[1], op[2], dMu[t % 2])
    return _quat_grad(Mt)


class _AdjointExpectation(torch.autograd.Function):
    """Q [K, 4, B] -> (y [B], dy/dQ [K, 4, B]); backward = exact Hessian-vector product (once differentiable)."""

    @staticmethod
    def forward(ctx, Q: torch.Tensor, prog: CompiledCircuit):
        E = _entries(Q)
        y, G, saved = _simulate(prog, E, want_grad=True, record=True)
        ctx.prog = prog
        ctx.E = E
        ctx.saved = saved
        ctx.save_for_backward(G)
        ctx.set_materialize_grads(False)
        return y, G

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gy: torch.Tensor | None, gG: torch.Tensor | None):
        (G,) = ctx.saved_tensors
        out = None
        if gy is not None:
            out = gy.unsqueeze(0).unsqueeze(0) * G
        if gG is not None:
            S, Mu = ctx.saved
            h = _hvp(ctx.prog, ctx.E, _entries(gG), S, Mu)
            out = h if out is None else out + h
        if out is None:
            out = torch.zeros_like(G)
        return out, None


def _simulate_autograd(prog: CompiledCircuit, Q: torch.Tensor) -> torch.Tensor:
    """Plain differentiable statevector simulation (reference; arbitrary-order derivatives by autograd)."""
    n = prog.n_qubits
    E = _entries(Q)
    psi = torch.zeros(1 << n, Q.shape[-1], dtype=CDTYPE)
    psi[0] = 1.0
    for op in prog.ops:
        if op[0] == "u":
            psi = _apply_diff(psi, E[op[1]], op[2], n)
        else:
            psi = _mono(psi, op[1], op[2])
    return (prog.obs_diag.unsqueeze(-1) * (psi.real**2 + psi.imag**2)).sum(0)


# ---------------------------------------------------------------------------------------------------------------
# torch module
# ---------------------------------------------------------------------------------------------------------------
class QNNRegressor(torch.nn.Module):
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

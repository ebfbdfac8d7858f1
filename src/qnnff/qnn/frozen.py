"""Frozen evaluator of a trained QNN force field: exact energies and forces of one geometry at a time.

The simulator (:class:`qnnff.qnn.engine.CompiledCircuit` and its kernels :mod:`qnnff.qnn.kernels`) serves training
on batches; for molecular dynamics, one geometry per step, torch's per-call overhead dominates. :class:`FrozenQNN`
takes the model's *same compiled program* with its current weights as numbers and evaluates ``E`` and ``F = -dE/dR``
with a few numpy calls and one call of the compiled adjoint kernel. Nothing is approximated, and there is no second
simulator: the frozen path and the training path run the same program and the same kernel.

The circuit (:class:`FrozenCircuit`)
------------------------------------
* The program's angle layer ``phi(x, w)`` (polynomials of degree <= 2 in inputs and weights, read by the project's
  one angle parser :func:`qnnff.qnn.engine.parse_angle`) is evaluated at the frozen weights once: every angle is then
  ``phi = c + A x`` (plus ``x_i x_j`` terms if the circuit has products of inputs).
* ``y`` and ``dy/dphi`` come from :func:`qnnff.qnn.kernels.value_grad` with a batch of one (lanes = 1), and
  ``dy/dx = A^T dy/dphi`` (plus the product terms).

Energies and forces (:class:`FrozenQNN`)
----------------------------------------
``E = center + scale (a y + b)``; ``F = -dE/dR`` through the feature chain, written analytically in numpy
(:class:`NumpyFeaturizer`): bond, angle and dihedral gradients, the moment / sort symmetrisation, the scaling and the
``arcsin`` / ``pi_arcsin_arccos`` / ``identity`` maps, as a vector-Jacobian product (the same chain as the torch
:class:`~qnnff.features.Featurizer`, primitive by primitive; ``tests/test_qnn_frozen.py`` asserts they agree). A
diatomic with one bond (LiH) takes a scalar path in plain Python floats. A coordinate type this module does not know
falls back to the torch featurizer's autograd Jacobian. A scaled coordinate outside ``[-1, 1]`` raises
:class:`qnnff.errors.OutOfDomainError` with the same message as :class:`~qnnff.calculators.ModelCalculator`.

The weights are frozen at construction: :meth:`FrozenQNN.is_current` tells whether the model's parameters
(weights, readout, featurizer bounds, scaler) are still those (same objects, same values), and
:class:`~qnnff.calculators.ModelCalculator` recompiles when they are not. The values are compared at every call; the
objects are looked up again only after a structural change to one of the QNN's modules (:mod:`qnnff.revision`).

Agreement with ``QNNForceField.energy_and_forces`` (torch autograd through the same kernel): ~1e-13 eV and
eV/Angstrom for the paper's three circuits with random weights (``tests/test_qnn_frozen.py`` asserts 1e-12).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from qiskit.circuit import QuantumCircuit
from qiskit.quantum_info import SparsePauliOp

from .. import revision
from ..errors import OutOfDomainError, UnsupportedCircuitError, domain_error_message
from . import kernels
from .engine import CompiledCircuit

__all__ = ["FrozenCircuit", "FrozenQNN", "NumpyFeaturizer"]

_RAD2DEG = 180.0 / math.pi


# ---------------------------------------------------------------------------------------------------------------
# the circuit
# ---------------------------------------------------------------------------------------------------------------
def _hamilton(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Quaternion product a * b (U_a U_b in the ``q0 I - i q.sigma`` convention)."""
    a0, a1, a2, a3 = a
    b0, b1, b2, b3 = b
    return np.array([a0 * b0 - a1 * b1 - a2 * b2 - a3 * b3, a0 * b1 + a1 * b0 + a2 * b3 - a3 * b2,
                     a0 * b2 - a1 * b3 + a2 * b0 + a3 * b1, a0 * b3 + a1 * b2 - a2 * b1 + a3 * b0])


class FrozenCircuit:
    """``x -> (<O>, d<O>/dx)`` of a compiled circuit with its weights bound to numbers (see the module docstring).

    Either ``program`` (a :class:`~qnnff.qnn.engine.CompiledCircuit`, reused as is) or ``circuit`` with ``inputs``,
    ``weights`` and ``observable`` (compiled here); ``weight_values`` are the numbers bound to the weights.
    """

    def __init__(self, circuit: QuantumCircuit | None = None, *, inputs: Sequence[Any] = (), weights: Sequence[Any] = (),
                 weight_values: np.ndarray, observable: SparsePauliOp | None = None,
                 program: CompiledCircuit | None = None) -> None:
        if program is None:
            if circuit is None:
                raise ValueError("FrozenCircuit needs a circuit or a compiled program")
            program = CompiledCircuit(circuit, inputs=inputs, weights=weights, observable=observable)
        wv = np.asarray(weight_values, dtype=float).reshape(-1)
        if len(wv) != program.n_weights:
            raise ValueError(f"{len(wv)} weight values for {program.n_weights} weights")
        self.program = program
        self.n_qubits, self.n_features = program.n_qubits, program.n_inputs
        d = program.n_inputs
        c = program.angle_const.numpy() + program.angle_lin_w.numpy() @ wv
        A = program.angle_lin_x.numpy().copy()
        xx: list[tuple[int, int, int, float]] = []  # angle a += coef x_i x_j
        bi, bj, bc, ba = (t.numpy() for t in program.angle_bil)
        for i, j, coef, a in zip(bi.tolist(), bj.tolist(), bc.tolist(), ba.tolist()):
            if i >= d and j >= d:
                c[a] += coef * wv[i - d] * wv[j - d]
            elif i < d <= j:
                A[a, i] += coef * wv[j - d]
            elif j < d <= i:
                A[a, j] += coef * wv[i - d]
            else:
                xx.append((i, j, a, coef))
        self._xx = xx
        if xx:  # products of inputs: evaluate the program's own angle layer as is
            self._c, self._A, self._args = c, A, program.kernel_args
        elif program.n_mrot or program.n_rv:
            raise UnsupportedCircuitError(
                f"FrozenCircuit specialises rotation and fixed elements only; this circuit has {program.n_rv} rv gate(s) and "
                f"{program.n_mrot} rotation(s) about an involution (rxx, ryy, rzz, rzx, PauliEvolutionGate): evaluate it "
                "with qnnff.qnn.engine.QNNRegressor")
        else:
            self._c, self._A, self._args = self._specialise(program, c, A)
        self._c = np.ascontiguousarray(self._c)
        self._A = np.ascontiguousarray(self._A)
        self._AT = np.ascontiguousarray(self._A.T)

    @staticmethod
    def _specialise(program: CompiledCircuit, c: np.ndarray, A: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple]:
        """The program's blocks with the weights as numbers: rotations whose angle no longer depends on the inputs
        become fixed quaternions, neighbouring fixed elements are multiplied, neighbouring rotations about one axis
        are added (``R(a) R(b) = R(a + b)``); the ops, monomials and observable are the program's. Returns the angle
        rows ``phi = c' + A' x`` and the kernel arguments."""
        rows: dict[tuple, int] = {}
        cs: list[float] = []
        As: list[np.ndarray] = []
        bstart, etype, eaxis, eangle, equat = [0], [], [], [], []
        for els in program.blocks:
            items: list[list] = []  # ["rot", axis, c, a-row] / ["fixed", quat]
            for e in els:
                if e[0] == "rot" and np.any(A[e[2]] != 0.0):
                    it = ["rot", e[1], float(c[e[2]]), A[e[2]].copy()]
                    if items and items[-1][0] == "rot" and items[-1][1] == e[1]:
                        items[-1][2] += it[2]
                        items[-1][3] = items[-1][3] + it[3]
                        continue
                elif e[0] == "rot":
                    h = 0.5 * float(c[e[2]])
                    it = ["fixed", np.array([math.cos(h)] + [math.sin(h) if m == e[1] else 0.0 for m in range(3)])]
                else:
                    it = ["fixed", np.asarray(e[1], dtype=float)]
                if it[0] == "fixed" and items and items[-1][0] == "fixed":
                    items[-1][1] = _hamilton(it[1], items[-1][1])  # the later element multiplies from the left
                    continue
                items.append(it)
            for it in items:
                if it[0] == "rot":
                    key = (it[1], round(it[2], 15), tuple(np.round(it[3], 15)))
                    if key[1:] not in rows:
                        rows[key[1:]] = len(cs)
                        cs.append(it[2])
                        As.append(it[3])
                    etype.append(0)
                    eaxis.append(it[1])
                    eangle.append(rows[key[1:]])
                    equat.append(np.zeros(4))
                else:
                    etype.append(1)
                    eaxis.append(-1)
                    eangle.append(0)
                    equat.append(it[1])
            bstart.append(len(etype))
        d = program.n_inputs
        c_new = np.array(cs, dtype=float)
        A_new = np.array(As, dtype=float).reshape(-1, d)
        i64 = lambda v: np.ascontiguousarray(np.asarray(v, dtype=np.int64))  # noqa: E731
        n, ops, mperm, mpr, mpi, _, _, _, _, _, operm, opr, opi, _ = program.kernel_args
        args = (n, ops, mperm, mpr, mpi, i64(bstart), i64(etype), i64(eaxis), i64(eangle),
                np.ascontiguousarray(np.array(equat, dtype=float).reshape(-1, 4)), operm, opr, opi,
                np.ones(len(cs), dtype=np.int64))
        return c_new, A_new, args

    def angles(self, x: np.ndarray) -> np.ndarray:
        phi = self._c + self._A.dot(x)
        for i, j, a, coef in self._xx:
            phi[a] += coef * x[i] * x[j]
        return phi

    def value(self, x: np.ndarray) -> float:
        """<O> at inputs ``x [d]``."""
        x = np.asarray(x, dtype=float)
        return float(kernels.forward(self.angles(x).reshape(-1, 1), *self._args)[0])

    def value_and_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """<O> and d<O>/dx ``[d]`` at inputs ``x [d]``."""
        x = np.asarray(x, dtype=float)
        y, G = kernels.value_grad(self.angles(x).reshape(-1, 1), *self._args)
        G = G[:, 0]
        g = self._AT.dot(G)
        for i, j, a, coef in self._xx:
            g[i] += coef * x[j] * G[a]
            g[j] += coef * x[i] * G[a]
        return float(y[0]), g

    def describe(self) -> dict[str, int]:
        return self.program.describe()


# ---------------------------------------------------------------------------------------------------------------
# the feature chain
# ---------------------------------------------------------------------------------------------------------------
_C1, _C2 = np.array([1, 2, 0]), np.array([2, 0, 1])


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a x b over the last axis (numpy.cross costs ~10 us of axis bookkeeping for a few vectors)."""
    return a[..., _C1] * b[..., _C2] - a[..., _C2] * b[..., _C1]


def _bonds(P: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = P[idx[:, 0]] - P[idx[:, 1]]
    r = np.sqrt((d * d).sum(-1))
    u = d / r[:, None]
    return r, np.stack([u, -u], axis=1)


def _angles(P: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pj = P[idx[:, 1]]
    u = P[idx[:, 0]] - pj
    v = P[idx[:, 2]] - pj
    nrm = _cross(u, v)
    s = np.sqrt((nrm * nrm).sum(-1))
    c = (u * v).sum(-1)
    theta = np.arctan2(s, c) * _RAD2DEG
    # d theta = (c ds - s dc) / (s^2 + c^2), ds/du = (v x n) / s, ds/dv = (n x u) / s, dc/du = v, dc/dv = u
    # (at s = 0, a straight angle, ds/du is taken as 0, as torch's norm gradient does)
    k = _RAD2DEG / (s * s + c * c)
    cs = (c * np.divide(1.0, s, out=np.zeros_like(s), where=s > 0.0) * k)[:, None]
    sk = (s * k)[:, None]
    gu = cs * _cross(v, nrm) - sk * v
    gv = cs * _cross(nrm, u) - sk * u
    return theta, np.stack([gu, -(gu + gv), gv], axis=1)


def _dihedrals(P: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pi, pj, pk, pl = (P[idx[:, a]] for a in range(4))
    b0, b1, b2 = pj - pi, pk - pj, pl - pk
    n1, n2 = _cross(b0, b1), _cross(b1, b2)
    nb1 = np.sqrt((b1 * b1).sum(-1))[:, None]
    b1n = b1 / nb1
    m1 = _cross(n1, b1n)
    X = (n1 * n2).sum(-1)
    Y = (m1 * n2).sum(-1)
    phi = np.arctan2(Y, X) * _RAD2DEG
    val = np.remainder(-phi, 360.0)
    # reverse mode of val = -deg(atan2(Y, X)) (the remainder has slope 1)
    den = X * X + Y * Y
    gX = (Y / den * _RAD2DEG)[:, None]
    gY = (-X / den * _RAD2DEG)[:, None]
    g_n1 = gX * n2
    g_n2 = gX * n1 + gY * m1
    g_m1 = gY * n2
    g_n1 = g_n1 + _cross(b1n, g_m1)
    g_b1n = _cross(g_m1, n1)
    g_b1 = (g_b1n - (g_b1n * b1n).sum(-1, keepdims=True) * b1n) / nb1
    g_b0 = _cross(b1, g_n1)
    g_b1 = g_b1 + _cross(g_n1, b0) + _cross(b2, g_n2)
    g_b2 = _cross(g_n2, b1)
    return val, np.stack([-g_b0, g_b0 - g_b1, g_b1 - g_b2, g_b2], axis=1)


_NUMPY_PRIMITIVES = {"bond": _bonds, "angle": _angles, "dihedral": _dihedrals}


class NumpyFeaturizer:
    """The :class:`~qnnff.features.Featurizer` chain for one geometry ``P [n_atoms, 3]`` in numpy, with the
    vector-Jacobian product ``dE/dx -> dE/dP`` written analytically (torch autograd fallback for unknown types)."""

    def __init__(self, featurizer: Any) -> None:
        self.featurizer = featurizer
        self.labels = featurizer.coordinate_labels()
        self.lo = featurizer.lo.detach().cpu().numpy().astype(float)
        self.hi = featurizer.hi.detach().cpu().numpy().astype(float)
        self.width = self.hi - self.lo
        self.half = 1.0 - featurizer.margin
        self.dsdq = self.half * 2.0 / self.width
        self.map = featurizer.feature_map
        atoms = [a for f in featurizer.families for t in f.atoms for a in t]
        self.n_atoms = len(featurizer.symbols) if featurizer.symbols else 1 + max(atoms)
        self.families = []
        for f in featurizer.families:
            idx = np.asarray(f.atoms, dtype=np.intp)
            fn = _NUMPY_PRIMITIVES.get(f.type)
            # scatter matrix: dE/dP (flat atoms) += S . (per-primitive, per-atom gradient rows)
            S = np.zeros((self.n_atoms, idx.size))
            S[idx.reshape(-1), np.arange(idx.size)] = 1.0
            self.families.append((f, idx, fn, S))
        # unknown primitive types and coupled moments (two families at once) go through the torch featurizer
        self.torch_fallback = any(fn is None or f.couple_with for f, _, fn, _ in self.families)
        self.n_coordinates = featurizer.n_coordinates
        self.n_features = featurizer.n_features
        # the diatomic fast path: one family, one bond
        fams = featurizer.families
        self.scalar_bond = (len(fams) == 1 and fams[0].type == "bond" and len(fams[0].atoms) == 1) and not self.torch_fallback
        if self.scalar_bond:
            self._bi, self._bj = fams[0].atoms[0]
            self._lo0, self._w0, self._dsdq0 = float(self.lo[0]), float(self.width[0]), float(self.dsdq[0])

    # ---- coordinates with their gradients
    def coordinates(self, P: np.ndarray) -> tuple[np.ndarray, list]:
        """Internal coordinates q [m] and, per family, (dq/dv [k, k] or None, primitive gradients [k, arity, 3])."""
        if self.torch_fallback:
            return self._torch_coordinates(P)
        qs, cache = [], []
        for f, idx, fn, S in self.families:
            v, g = fn(P, idx)
            k = len(v)
            if k == 1:
                qs.append(v)
                cache.append((None, g, S))
            elif f.symmetrize == "sort":
                order = np.argsort(v, kind="stable")
                qs.append(v[order])
                J = np.zeros((k, k))
                J[np.arange(k), order] = 1.0
                cache.append((J, g, S))
            else:  # (sum / k: the bits of ndarray.mean, without its ~3 us of dispatch per call)
                mean = v.sum() / k
                dev = v - mean
                q = [mean]
                J = np.empty((k, k))
                J[0] = 1.0 / k
                for j in range(2, k + 1):
                    q.append((dev**j).sum() / k)
                    # d m_j / d v_i = (j / k) (dev_i^(j-1) - mean(dev^(j-1)))
                    pj1 = dev ** (j - 1)
                    J[j - 1] = (j / k) * (pj1 - pj1.sum() / k)
                qs.append(np.array(q))
                cache.append((J, g, S))
        return np.concatenate(qs), cache

    def _torch_coordinates(self, P: np.ndarray) -> tuple[np.ndarray, list]:
        import torch

        # the Jacobian in one backward pass: copy b of the geometry carries coordinate b's gradient (m copies, m the
        # number of coordinates), not m passes through one graph (15 of the 16 ms of an H3O+ MD step)
        m = self.lo.shape[0]
        pos = torch.as_tensor(P, dtype=torch.float64).unsqueeze(0).repeat(m, 1, 1).requires_grad_(True)
        with torch.enable_grad():
            q = self.featurizer.internal(pos)
            (rows,) = torch.autograd.grad(torch.diagonal(q).sum(), pos)
        return q[0].detach().numpy(), [("torch", rows.numpy())]

    def scale(self, q: np.ndarray) -> np.ndarray:
        return self.half * (2.0 * (q - self.lo) / self.width - 1.0)

    def features(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Features x [d] and dx/ds (per coordinate: [m] or [m, 3] for pi_arcsin_arccos; None for identity)."""
        if self.map == "arcsin":
            return np.arcsin(s), 1.0 / np.sqrt(1.0 - s * s)
        if self.map == "pi_arcsin_arccos":
            inv = 1.0 / np.sqrt(1.0 - s * s)
            x = np.stack([math.pi * s, np.arcsin(s), np.arccos(s)], axis=-1).reshape(-1)
            return x, np.stack([np.full_like(s, math.pi), inv, -inv], axis=-1)
        return s.copy(), None

    def vjp(self, cache: list, dxds: np.ndarray | None, gx: np.ndarray) -> np.ndarray:
        """dE/dP [n_atoms, 3] from dE/dx [d]."""
        if self.map == "pi_arcsin_arccos":
            gs = (gx.reshape(-1, 3) * dxds).sum(-1)
        elif dxds is not None:
            gs = gx * dxds
        else:
            gs = gx
        gq = gs * self.dsdq
        if self.torch_fallback:
            return np.tensordot(gq, cache[0][1], axes=1)
        out = np.zeros((self.n_atoms, 3))
        k0 = 0
        for (J, g, S) in cache:
            k = g.shape[0]
            gv = gq[k0:k0 + k] if J is None else J.T.dot(gq[k0:k0 + k])
            out += S.dot((gv[:, None, None] * g).reshape(-1, 3))
            k0 += k
        return out

    def jacobian(self, P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Features x [d] and dx/dP [d, n_atoms, 3] (for tests; forces use :meth:`vjp`)."""
        q, cache = self.coordinates(P)
        x, dxds = self.features(self.scale(q))
        eye = np.eye(len(x))
        return x, np.stack([self.vjp(cache, dxds, eye[i]) for i in range(len(x))])


# ---------------------------------------------------------------------------------------------------------------
# the force field
# ---------------------------------------------------------------------------------------------------------------
def _state(model: Any) -> tuple[tuple, tuple, list[bytes]]:
    """(objects the frozen numbers come from, their ids, the bytes of the tensors' values)."""
    reg, feat = model.regressor, model.featurizer
    tensors = (reg.weights, reg.a, reg.b, feat.lo, feat.hi)
    objs = tensors + (reg, feat, model.energy_scaler, model.quantum_circuit, model.observable, model.program)
    arrays = tuple(t.detach().numpy() for t in tensors)  # views: they see in-place changes
    return objs, arrays, [a.tobytes() for a in arrays]


class FrozenQNN:
    """Energies (eV) and forces (eV/Angstrom) of a :class:`~qnnff.models.qnn.QNNForceField` with its weights frozen.

    ``energy_and_forces(positions)``: ``[n_atoms, 3]`` -> ``(float, [n_atoms, 3])``; ``[B, n_atoms, 3]`` ->
    ``([B], [B, n_atoms, 3])`` (frame by frame). ``energy(positions)`` likewise without forces. Raises
    :class:`qnnff.errors.OutOfDomainError` outside the domain (a scaled coordinate beyond +-1).
    """

    def __init__(self, model: Any) -> None:
        reg = model.regressor
        self.kind = model.kind
        self.symbols = list(model.symbols)
        # the objects are kept alive, so their ids stay unique
        self._state_objects, self._state_arrays, self._state_bytes = _state(model)
        self._state_ids = tuple(map(id, self._state_objects))
        self._checked = (model, revision.current())  # is_current's fast path: this model, no structural change since
        self.circuit = FrozenCircuit(program=model.program, weight_values=reg.weights.detach().cpu().numpy())
        self.featurizer = NumpyFeaturizer(model.featurizer)
        if self.circuit.n_features != self.featurizer.n_features:
            raise ValueError(f"circuit has {self.circuit.n_features} inputs, the featurizer gives {self.featurizer.n_features}")
        a, b = float(reg.a.detach()), float(reg.b.detach())
        sc = model.energy_scaler
        self.center, self.scale = float(sc.center), float(sc.scale)
        self.e0 = self.center + self.scale * b  # E = e0 + ea * y
        self.ea = self.scale * a
        self.n_atoms = self.featurizer.n_atoms
        fz = self.featurizer
        if fz.scalar_bond and fz.map == "pi_arcsin_arccos":
            self._single = self._bond_pi_arcsin_arccos
        elif fz.scalar_bond and fz.map == "arcsin":
            self._single = self._bond_arcsin
        else:
            self._single = self._generic

    def is_current(self, model: Any) -> bool:
        """Whether ``model``'s weights, readout, featurizer bounds and scaler are still the frozen ones (same objects,
        same values). The objects are looked up only if a module was changed structurally since the last check
        (:mod:`qnnff.revision`); the values are compared every time."""
        if self._checked[0] is model and self._checked[1] == revision.current():
            return all(a.tobytes() == b for a, b in zip(self._state_arrays, self._state_bytes))
        count = revision.current()
        reg, feat = model.regressor, model.featurizer
        objs = (reg.weights, reg.a, reg.b, feat.lo, feat.hi, reg, feat, model.energy_scaler, model.quantum_circuit,
                model.observable, model.program)
        if tuple(map(id, objs)) != self._state_ids:
            return False
        self._checked = (model, count)
        return all(a.tobytes() == b for a, b in zip(self._state_arrays, self._state_bytes))

    # ---- errors
    def _domain_error(self, q: np.ndarray, s: np.ndarray) -> Exception:
        if not np.all(np.isfinite(q)):
            return ValueError("positions contain NaN or infinite values (or a coordinate is undefined there)")
        return OutOfDomainError(domain_error_message(self.kind, self.labels, q, s, self.featurizer.lo, self.featurizer.hi))

    @property
    def labels(self) -> list[str]:
        return self.featurizer.labels

    # ---- one geometry
    def _bond_pi_arcsin_arccos(self, P: np.ndarray) -> tuple[float, np.ndarray]:
        fz = self.featurizer
        d = P[fz._bi] - P[fz._bj]
        r = math.sqrt(d.dot(d))
        s = fz.half * (2.0 * (r - fz._lo0) / fz._w0 - 1.0)
        if not abs(s) <= 1.0:
            raise self._domain_error(np.array([r]), np.array([s]))
        y, g = self.circuit.value_and_grad(np.array([math.pi * s, math.asin(s), math.acos(s)]))
        inv = 1.0 / math.sqrt(1.0 - s * s) if abs(s) < 1.0 else math.inf
        dEdr = self.ea * (math.pi * g[0] + (g[1] - g[2]) * inv) * fz._dsdq0
        fj = d * (dEdr / r)  # force on atom j = -dE/dr * dr/dP_j = +dE/dr * d / r
        F = np.zeros((self.n_atoms, 3))
        F[fz._bi] = -fj
        F[fz._bj] = fj
        return self.e0 + self.ea * y, F

    def _bond_arcsin(self, P: np.ndarray) -> tuple[float, np.ndarray]:
        fz = self.featurizer
        d = P[fz._bi] - P[fz._bj]
        r = math.sqrt(d.dot(d))
        s = fz.half * (2.0 * (r - fz._lo0) / fz._w0 - 1.0)
        if not abs(s) <= 1.0:
            raise self._domain_error(np.array([r]), np.array([s]))
        y, g = self.circuit.value_and_grad(np.array([math.asin(s)]))
        inv = 1.0 / math.sqrt(1.0 - s * s) if abs(s) < 1.0 else math.inf
        dEdr = self.ea * g[0] * inv * fz._dsdq0
        fj = d * (dEdr / r)
        F = np.zeros((self.n_atoms, 3))
        F[fz._bi] = -fj
        F[fz._bj] = fj
        return self.e0 + self.ea * y, F

    def _generic(self, P: np.ndarray) -> tuple[float, np.ndarray]:
        fz = self.featurizer
        q, cache = fz.coordinates(P)
        s = fz.scale(q)
        if not np.all(np.abs(s) <= 1.0):
            raise self._domain_error(q, s)
        x, dxds = fz.features(s)
        y, g = self.circuit.value_and_grad(x)
        return self.e0 + self.ea * y, -fz.vjp(cache, dxds, self.ea * g)

    def _energy_single(self, P: np.ndarray) -> float:
        fz = self.featurizer
        q, _ = fz.coordinates(P)
        s = fz.scale(q)
        if not np.all(np.abs(s) <= 1.0):
            raise self._domain_error(q, s)
        x, _ = fz.features(s)
        return self.e0 + self.ea * self.circuit.value(x)

    # ---- public
    def energy_and_forces(self, positions: Any) -> tuple[Any, np.ndarray]:
        P = np.asarray(positions, dtype=float)
        if P.ndim == 2:
            self._check_shape(P)
            return self._single(P)
        if P.ndim != 3:
            raise ValueError(f"positions must have shape [n_atoms, 3] or [B, n_atoms, 3], got {P.shape}")
        self._check_shape(P[0])
        out = [self._single(p) for p in P]
        return np.array([e for e, _ in out]), np.array([f for _, f in out]).reshape(P.shape)

    def energy(self, positions: Any) -> Any:
        P = np.asarray(positions, dtype=float)
        if P.ndim == 2:
            self._check_shape(P)
            return self._energy_single(P)
        if P.ndim != 3:
            raise ValueError(f"positions must have shape [n_atoms, 3] or [B, n_atoms, 3], got {P.shape}")
        self._check_shape(P[0])
        return np.array([self._energy_single(p) for p in P])

    def _check_shape(self, P: np.ndarray) -> None:
        if P.shape != (self.n_atoms, 3):
            raise ValueError(f"{self.kind} model for {''.join(self.symbols)}: positions must have shape [{self.n_atoms}, 3], got {P.shape}")

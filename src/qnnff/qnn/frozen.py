"""Frozen evaluator of a trained QNN force field: exact energies and forces of one geometry at a time, in numpy.

The torch engine (:mod:`qnnff.qnn.engine`) is built for batches and for training (differentiable w.r.t. the weights);
for molecular dynamics, one geometry per step, its per-gate torch overhead dominates. :class:`FrozenQNN` compiles
the model once, with its current weights as numbers, and then evaluates ``E`` and ``F = -dE/dR`` with a few dozen
small numpy calls. Nothing is approximated: the circuit is the same unitary, only regrouped.

Compilation (:class:`FrozenCircuit`)
------------------------------------
* The weights are bound (``QuantumCircuit.assign_parameters``); every gate angle is then ``c + a . x``, affine in the
  inputs ``x`` (read from the ParameterExpression by differentiation, checked at a random point; anything else is
  rejected with :class:`UnsupportedFrozenCircuitError`).
* Consecutive single-qubit gates on a qubit form a *run*. Neighbouring rotations about the same axis are merged
  (``R_a(t1) R_a(t2) = R_a(t1 + t2)``, so the LiH encoding ``RY(l0 x0) RY(l1 x1) RY(l2 x2) RZ(..) RZ(..) RZ(..)`` is
  two rotations), constant gates at either end of a run are split off, constant gates inside it are multiplied into
  one 2x2 matrix. What is left, from the first to the last input-dependent rotation, is an *x-block* on that qubit.
* The circuit is scheduled as ``C_S K_S(x) ... C_1 K_1(x) C_0 |0>``: *x-layers* ``K_s = (x) U_{s,q}(x)`` (tensor
  products of x-blocks, identity on qubits without one) separated by *constant stretches* ``C_s``, each fused into
  one ``2^N x 2^N`` matrix (single-qubit constants and entanglers alike). ``C_0 |0>`` is a fixed vector and the last
  stretch is folded into the observable, ``O' = C_S^dagger O C_S``.
* Identical x-blocks (the paper's circuits re-upload the same encoding in every layer, with shared feature-map
  weights, and with the ``"full"`` map on every qubit) are evaluated once, and so are identical x-layers.

Evaluation of ``y = <O>`` and ``dy/dx``
----------------------------------------
* Unique x-blocks. A block is a product of ``L`` items ``M_k = cos(h_k) B0_k + sin(h_k) B1_k`` (``h = theta / 2``
  affine in ``x``; a rotation has ``B0 = I, B1 = -i sigma``, a constant ``B0 = matrix, B1 = 0``). Expanding every
  ``M_k`` in ``exp(+-i h_k)`` and pairing opposite sign patterns, ``U = sum_e cos(e.h) P_e + sin(e.h) Q_e`` over the
  ``2^(L-1)`` sign vectors ``e`` with ``e_0 = +1``: a trigonometric polynomial whose frequencies ``e.h`` are again
  affine in ``x``. So all unique blocks at once are ``U = W cos(t)`` and ``dU/dx = -W (sin(t) * A)`` with
  ``t = c + A x`` (``sin`` written as ``cos(. - pi/2)``) - two matrix products, exact (the coefficients are
  ``+-1/2^L``). Blocks of more than 6 items fall back to batched 2x2 prefix / suffix products.
* x-layers: ``K = (x)_q U_q`` by broadcasting (qubit 0 = least significant bit).
* Forward sweep over the states ``phi_s`` after each x-layer, ``phi_{s+1} = B_s phi_s`` with ``B_s = K_{s+1} C_s``
  (up to 4 qubits ``B_s`` is formed for all ``s`` in one matrix product and each step is one matrix-vector product;
  from 5 qubits on ``C_s`` and ``K_{s+1}`` are applied in turn, which avoids the ``O(S 8^N)`` products); adjoint
  sweep ``nu_{S-1} = O' phi_{S-1}``, ``nu_s = B_s^dagger nu_{s+1}`` (kept as ``conj(nu_s)`` so both sweeps are plain
  ``ndarray.dot`` calls, the cheapest numpy call for these sizes); ``y = phi^dagger O' phi``.
* Gradient: ``dK_j psi_s = sum_q (dU_{q,j} U_q^dagger on qubit q) phi_s``, so with ``R = sum_s conj(nu_s) phi_s^T``
  (over the layers sharing an x-layer) and ``R_q`` its partial trace onto qubit ``q``,
  ``dy/dx_j = 2 Re sum_s nu_s^dagger dK_j psi_s = 2 Re sum_q < dU_{q,j}, R_q conj(U_q) >``: one small product per
  unique x-layer, without ever forming ``dK/dx``.

Measured on this machine (one thread, while the pipeline ran on both cores): LiH (2 qubits, 10 x-layers) ~28 us for
``y`` and ``dy/dx``, ~32 us for energy and forces; H2O ~110 us; H3O+ (6 qubits) ~260 us. (Forward-mode over the
feature directions, explicit ``dK/dx``, and 2x2 prefix / suffix products for the blocks were the earlier versions:
~45 us for LiH.)

Energies and forces (:class:`FrozenQNN`)
----------------------------------------
``E = center + scale (a y + b)``; ``F = -dE/dR`` through the feature chain, written analytically in numpy
(:class:`NumpyFeaturizer`): bond, angle and dihedral gradients, the moment / sort symmetrisation, the scaling and the
``arcsin`` / ``pi_arcsin_arccos`` / ``identity`` maps, as a vector-Jacobian product. A diatomic with one bond (LiH)
takes a scalar path in plain Python floats. A coordinate type this module does not know falls back to the torch
featurizer's autograd Jacobian. A scaled coordinate outside ``[-1, 1]`` raises
:class:`qnnff.calculators.OutOfDomainError` with the same message as :class:`~qnnff.calculators.ModelCalculator`.

The weights are frozen at construction: :meth:`FrozenQNN.is_current` tells whether the model's parameters
(weights, readout, featurizer bounds) are still those (tensor identity and version counter), and
:class:`~qnnff.calculators.ModelCalculator` recompiles when they are not.

Agreement with ``QNNForceField.energy_and_forces`` (torch engine): below 1e-12 eV and eV/Angstrom for the paper's
three circuits with random weights (``tests/test_qnn_frozen.py`` asserts 1e-10).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from qiskit.circuit import ParameterExpression, QuantumCircuit
from qiskit.quantum_info import Operator, SparsePauliOp

__all__ = ["FrozenCircuit", "FrozenQNN", "NumpyFeaturizer", "UnsupportedFrozenCircuitError", "frozen_qnn_supported"]

_RAD2DEG = 180.0 / math.pi
_I2 = np.eye(2, dtype=complex)
_PAULI = {
    "rx": np.array([[0, 1], [1, 0]], dtype=complex),
    "ry": np.array([[0, -1j], [1j, 0]], dtype=complex),
    "rz": np.array([[1, 0], [0, -1]], dtype=complex),
}
_ROTATIONS = {"rx": "rx", "ry": "ry", "rz": "rz", "p": "rz", "u1": "rz"}  # p / u1 = rz up to a global phase
_IGNORED = {"barrier", "delay"}


class UnsupportedFrozenCircuitError(ValueError):
    """The circuit has a gate with input-dependent parameters that the frozen evaluator cannot execute exactly."""


# ---------------------------------------------------------------------------------------------------------------
# the circuit
# ---------------------------------------------------------------------------------------------------------------
def _num(v: Any) -> float:
    if isinstance(v, ParameterExpression):
        v = v.numeric() if hasattr(v, "numeric") else complex(v)
    c = complex(v)
    if abs(c.imag) > 1e-12:
        raise UnsupportedFrozenCircuitError(f"complex gate parameter {v}")
    return float(c.real)


def _affine(expr: Any, index: dict, n: int, where: str) -> tuple[float, np.ndarray]:
    """``expr`` (weights bound) as ``c + a . x``; anything not affine in the inputs is rejected."""
    a = np.zeros(n)
    if not isinstance(expr, ParameterExpression) or not expr.parameters:
        return _num(expr), a
    params = list(expr.parameters)
    unknown = [str(p) for p in params if p not in index]
    if unknown:
        raise UnsupportedFrozenCircuitError(f"{where}: parameter(s) {sorted(unknown)} are neither inputs nor bound weights")
    for p in params:
        d = expr.gradient(p)
        if isinstance(d, ParameterExpression) and d.parameters:
            raise UnsupportedFrozenCircuitError(f"{where}: angle {expr} is not affine in the inputs")
        a[index[p]] += _num(d)
    c = _num(expr.bind({p: 0.0 for p in params}))
    probe = np.random.default_rng(12345).uniform(-2.0, 2.0, len(params))
    want = _num(expr.bind({p: float(v) for p, v in zip(params, probe)}))
    got = c + sum(a[index[p]] * v for p, v in zip(params, probe))
    if abs(want - got) > 1e-9 * (1.0 + abs(want)):
        raise UnsupportedFrozenCircuitError(f"{where}: angle {expr} is not affine in the inputs")
    return c, a


def _embed(op: Operator, mat: Any, qubits: Sequence[int]) -> Operator:
    return op.compose(mat if not isinstance(mat, np.ndarray) else Operator(mat), qargs=list(qubits))


class FrozenCircuit:
    """``x -> (<O>, d<O>/dx)`` of a circuit whose weights are bound to numbers (see the module docstring).

    ``circuit``: the QNN circuit with inputs ``inputs`` and weights ``weights`` (Parameters), bound here to
    ``weight_values``; ``observable``: a Hermitian SparsePauliOp (default Z on qubit 0).
    """

    def __init__(self, circuit: QuantumCircuit, *, inputs: Sequence[Any], weights: Sequence[Any], weight_values: np.ndarray,
                 observable: SparsePauliOp | None = None) -> None:
        wv = np.asarray(weight_values, dtype=float).reshape(-1)
        if len(wv) != len(weights):
            raise ValueError(f"{len(wv)} weight values for {len(weights)} weights")
        n = circuit.num_qubits
        self.n_qubits, self.n_features = n, len(inputs)
        if observable is None:
            from .circuit import z_observable

            observable = z_observable(n)
        bound = circuit.assign_parameters({p: float(v) for p, v in zip(weights, wv)}, inplace=False, strict=False)
        index = {p: j for j, p in enumerate(inputs)}
        nf = self.n_features

        # ---- 1. runs of single-qubit gates, split into constant ops and x-blocks, scheduled into segments
        segs: list[list] = [[]]  # even index: constant ops [(matrix or Operation, qubits)]; odd: {qubit: block}
        lev = [0] * n
        pending: list[list] = [[] for _ in range(n)]

        def ensure(k: int) -> None:
            while len(segs) <= k:
                segs.append({} if len(segs) % 2 else [])

        def place_const(op: Any, qubits: Sequence[int]) -> None:
            k = max(lev[q] for q in qubits)
            k += k % 2
            ensure(k)
            segs[k].append((op, tuple(qubits)))
            for q in qubits:
                lev[q] = k

        def place_block(q: int, block: tuple) -> None:
            k = lev[q] + (1 if lev[q] % 2 == 0 else 2)
            ensure(k)
            segs[k][q] = block
            lev[q] = k

        def const_matrix(items: list) -> np.ndarray:
            m = _I2
            for it in items:  # time order: later gates multiply from the left
                m = (_rot(it[1], it[2]) if it[0] == "rot" else it[1]) @ m
            return m

        def flush(q: int) -> None:
            run, pending[q] = pending[q], []
            merged: list = []
            for it in run:  # merge neighbouring rotations about one axis
                if it[0] == "rot" and merged and merged[-1][0] == "rot" and merged[-1][1] == it[1]:
                    merged[-1] = ("rot", it[1], merged[-1][2] + it[2], merged[-1][3] + it[3])
                else:
                    merged.append(it)
            xdep = [i for i, it in enumerate(merged) if it[0] == "rot" and np.any(it[3] != 0.0)]
            if not xdep:
                if merged:
                    place_const(const_matrix(merged), (q,))
                return
            lo, hi = xdep[0], xdep[-1]
            if lo > 0:
                place_const(const_matrix(merged[:lo]), (q,))
            items: list = []
            consts: list = []
            for it in merged[lo:hi + 1]:
                if it[0] == "rot" and np.any(it[3] != 0.0):
                    if consts:
                        items.append(("const", const_matrix(consts)))
                        consts = []
                    items.append(it)
                else:
                    consts.append(it)
            place_block(q, tuple(items))
            if hi + 1 < len(merged):
                place_const(const_matrix(merged[hi + 1:]), (q,))

        for pos, inst in enumerate(bound.data):
            op = inst.operation
            name = op.name
            qubits = [bound.find_bit(b).index for b in inst.qubits]
            where = f"gate {pos} ({name} on qubits {qubits})"
            if name in _IGNORED:
                continue
            if inst.clbits or name in ("measure", "reset"):
                raise UnsupportedFrozenCircuitError(f"{where}: measurements and resets are not supported")
            xdep = any(isinstance(p, ParameterExpression) and p.parameters for p in op.params)
            if len(qubits) == 1 and name in _ROTATIONS:
                c, a = _affine(op.params[0], index, nf, where)
                pending[qubits[0]].append(("rot", _ROTATIONS[name], c, a))
                continue
            if xdep:
                raise UnsupportedFrozenCircuitError(f"{where}: input-dependent parameters are supported on rx, ry, rz, p only")
            if len(qubits) == 1:
                pending[qubits[0]].append(("const", Operator(op).data))
                continue
            for q in qubits:
                flush(q)
            place_const(op, qubits)
        for q in range(n):
            flush(q)
        if len(segs) % 2 == 0:
            segs.append([])

        # ---- 2. constant stretches -> matrices; x-layers -> unique blocks and unique layers
        def stretch(ops: list) -> np.ndarray:
            m = Operator(np.eye(2**n, dtype=complex))
            for op, qubits in ops:
                m = _embed(m, op, qubits)
            return np.asarray(m.data, dtype=complex)

        consts: list[np.ndarray] = [stretch(segs[0])]
        layers: list[dict] = []
        for k in range(1, len(segs), 2):
            if segs[k]:
                layers.append(segs[k])
                consts.append(stretch(segs[k + 1]))
            else:  # an empty x-layer: merge the stretches around it
                consts[-1] = stretch(segs[k + 1]) @ consts[-1]
        block_ids: dict = {}
        blocks: list[tuple] = []
        layer_keys: dict = {}
        self.layer_key: list[int] = []
        for lay in layers:
            key = []
            for q in range(n):
                if q not in lay:
                    key.append(-1)
                    continue
                sig = tuple((it[0], it[1], float(it[2]), tuple(it[3].tolist())) if it[0] == "rot" else ("const", it[1].tobytes())
                            for it in lay[q])
                if sig not in block_ids:
                    block_ids[sig] = len(blocks)
                    blocks.append(lay[q])
                key.append(block_ids[sig])
            key = tuple(key)
            if key not in layer_keys:
                layer_keys[key] = len(layer_keys)
            self.layer_key.append(layer_keys[key])
        self.keys = list(layer_keys)
        self.n_layers = len(layers)
        self.n_blocks = len(blocks)

        # items of each unique block as M_k = cos(h_k) B0_k + sin(h_k) B1_k, ordered so that U = M_0 M_1 ... M_{L-1}
        L = max((len(b) for b in blocks), default=1)
        nb = max(len(blocks), 1)
        B = np.zeros((nb, L, 2, 4), dtype=complex)
        B[:, :, 0] = _I2.reshape(4)
        ch = np.zeros((nb, L))
        Ah = np.zeros((nb, L, nf))
        for u, blk in enumerate(blocks):
            for k, it in enumerate(reversed(blk)):
                if it[0] == "rot":
                    B[u, k, 1] = (-1j * _PAULI[it[1]]).reshape(4)
                    ch[u, k] = 0.5 * it[2]
                    Ah[u, k] = 0.5 * it[3]
                else:
                    B[u, k, 0] = it[1].reshape(4)
        self._L, self._nb = L, nb
        # short blocks (L <= 6 items): U is a trigonometric polynomial; with M_k = sum_(e = +-1) exp(i e h_k) G_(k,e),
        # G_(k,+-) = (B0_k -+ i B1_k) / 2, U = sum_(e in {+-1}^L) exp(i e.h) G_e, G_e = prod_k G_(k,e_k), and pairing e
        # with -e: U = sum_(e_0 = +1) cos(e.h) (G_e + G_-e) + sin(e.h) i (G_e - G_-e). The angles e.h are affine in x,
        # so U = W cos(t), t = c + A x (sin written as cos(. - pi/2)), and dU/dx = -W (sin(t) * A): exact, two products.
        self._fourier = L <= 6
        if self._fourier:
            cols, consts_t, rows_t = [], [], []
            for u, blk in enumerate(blocks):
                Lu = len(blk)
                G = np.empty((Lu, 2, 2, 2), dtype=complex)  # [k, e in (+, -), 2, 2]
                for k in range(Lu):
                    b0, b1 = B[u, k, 0].reshape(2, 2), B[u, k, 1].reshape(2, 2)
                    G[k, 0] = 0.5 * b0 - 0.5j * b1
                    G[k, 1] = 0.5 * b0 + 0.5j * b1
                for m in range(2 ** (Lu - 1)):
                    e = np.array([1] + [1 - 2 * ((m >> (Lu - 2 - k)) & 1) for k in range(Lu - 1)])
                    gp, gm = _I2, _I2
                    for k in range(Lu):
                        gp = gp @ G[k, 0 if e[k] > 0 else 1]
                        gm = gm @ G[k, 1 if e[k] > 0 else 0]
                    ce, ae = float(e.dot(ch[u, :Lu])), e.dot(Ah[u, :Lu])
                    for col, shift in (((gp + gm), 0.0), (1j * (gp - gm), -0.5 * math.pi)):
                        c4 = np.zeros(4 * nb, dtype=complex)
                        c4[4 * u:4 * u + 4] = col.reshape(4)
                        cols.append(c4)
                        consts_t.append(ce + shift)
                        rows_t.append(ae)
            self._W = np.ascontiguousarray(np.array(cols).T)  # [4 nb, n_angles]
            self._mW = -self._W
            self._tc = np.array(consts_t)
            self._tA = np.ascontiguousarray(np.array(rows_t))  # [n_angles, nf]
        else:
            self._B = B.reshape(nb * L, 2, 4)
            self._ch = ch.reshape(-1)
            self._Ah2 = Ah.reshape(nb * L, nf)
            self._Ah = Ah
        obs = np.asarray(observable.to_matrix(), dtype=complex)
        if obs.shape != (2**n, 2**n):
            raise ValueError(f"observable on {int(np.log2(obs.shape[0]))} qubits for a {n}-qubit circuit")
        CS = consts[-1]
        self._obs = np.ascontiguousarray(CS.conj().T @ obs @ CS)
        self._psi0 = np.ascontiguousarray(consts[0][:, 0])
        mids = consts[1:-1]  # C_s between x-layer s and s+1
        dim = 2**n
        self._dim = dim
        # B_s = K_{s+1} C_s carries phi_s (after x-layer s) to phi_{s+1}; stored transposed: B_s^T = C_s^T K_{s+1}^T.
        # Small registers multiply B_s out once per evaluation (one matrix product for all s, then one matrix-vector
        # product per layer and sweep); from 5 qubits on, C_s and K_{s+1} are applied one after the other instead.
        self._CT2 = np.ascontiguousarray(np.concatenate([c.T for c in mids], axis=0)) if mids else np.zeros((0, dim), dtype=complex)
        self._CT = self._CT2.reshape(len(mids), dim, dim)
        self._fuse = dim <= 16
        self._single_key = len(self.keys) == 1
        self._next_key = np.asarray(self.layer_key[1:], dtype=np.intp)
        self._next_key_list = [int(k) for k in self.layer_key[1:]]
        self._key_layers = [np.flatnonzero(np.asarray(self.layer_key) == k) for k in range(len(self.keys))]
        # partial traces: for each unique x-layer, the flat indices of R[a, b] with a, b equal except at bit q, for the
        # qubits q with a block ([n_q, 4, 2^(N-1)]: R_q = R.flat[idx].sum(-1)), and G [nb, n_q] summing them per block
        rest = np.arange(2 ** (n - 1))
        self._ptrace = []
        for key in self.keys:
            qs = [q for q in range(n) if key[q] >= 0]
            idx = np.empty((len(qs), 4, len(rest)), dtype=np.intp)
            for i, q in enumerate(qs):
                low, high = rest & ((1 << q) - 1), (rest >> q) << (q + 1)
                for a_ in range(2):
                    for b_ in range(2):
                        idx[i, 2 * a_ + b_] = (high | (a_ << q) | low) * dim + (high | (b_ << q) | low)
            G = np.zeros((self._nb, len(qs)))  # sums the partial traces of the qubits that carry the same block
            G[[key[q] for q in qs], np.arange(len(qs))] = 1.0
            # small registers: the whole map R -> (sum over the qubits of block u of R_q) as one dense matrix
            P = None
            if dim <= 16:
                P = np.zeros((self._nb, 4, dim * dim), dtype=complex)
                for i, q in enumerate(qs):
                    for m_ in range(4):
                        P[key[q], m_, idx[i, m_]] += 1.0
                P = P.reshape(self._nb * 4, dim * dim)
            self._ptrace.append((G, idx, P))
        if self.n_layers == 0:  # no input dependence at all
            self._const_value = float(np.vdot(self._psi0, self._obs @ self._psi0).real)

    # ---- pieces
    def _blocks(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Unique x-blocks U [nb, 2, 2] and dU/dx [nb, 4, nf] (the 2x2 entries flattened)."""
        nb, nf = self._nb, self.n_features
        if self._fourier:
            t = self._tc + self._tA.dot(x)
            U = self._W.dot(np.cos(t)).reshape(nb, 2, 2)
            dU = self._mW.dot(np.sin(t)[:, None] * self._tA).reshape(nb, 4, nf)
            return U, dU
        L = self._L
        h = self._ch + self._Ah2.dot(x)
        c, s = np.cos(h), np.sin(h)
        W = np.empty((len(h), 2, 2))
        W[:, 0, 0] = c
        W[:, 0, 1] = s
        W[:, 1, 0] = -s
        W[:, 1, 1] = c
        MM = np.matmul(W, self._B).reshape(nb, L, 2, 2, 2)  # [u, k, (M, dM/dh), 2, 2]
        M, dM = MM[:, :, 0], MM[:, :, 1]
        pre = [M[:, 0]]
        for k in range(1, L):
            pre.append(np.matmul(pre[-1], M[:, k]))
        suf = [M[:, L - 1]]
        for k in range(L - 2, -1, -1):
            suf.append(np.matmul(M[:, k], suf[-1]))
        suf = suf[::-1]  # suf[k] = M_k ... M_{L-1}
        d = [np.matmul(dM[:, 0], suf[1])]
        for k in range(1, L - 1):
            d.append(np.matmul(np.matmul(pre[k - 1], dM[:, k]), suf[k + 1]))
        d.append(np.matmul(pre[L - 2], dM[:, L - 1]))
        dUh = np.stack(d, axis=-1).reshape(nb, 4, L)  # dU/dh_k
        return pre[-1], np.matmul(dUh, self._Ah)

    def _kron(self, U: np.ndarray) -> list[np.ndarray]:
        """K = (x)_q U_q [2^N, 2^N] of each unique x-layer (qubit 0 = least significant bit of the index)."""
        Ks = []
        for key in self.keys:
            K = None
            for q in range(self.n_qubits - 1, -1, -1):
                Uq = _I2 if key[q] < 0 else U[key[q]]
                if K is None:
                    K = Uq
                else:
                    a = K.shape[0]
                    K = (K[:, None, :, None] * Uq[None, :, None, :]).reshape(2 * a, 2 * a)
            Ks.append(K)
        return Ks

    def _transfer(self, Ks: list) -> np.ndarray:
        """B_s^T = C_s^T K_{s+1}^T [S - 1, 2^N, 2^N]."""
        dim, S = self._dim, self.n_layers
        if self._single_key:
            return self._CT2.dot(Ks[0].T).reshape(S - 1, dim, dim)
        KT = np.array([k.T for k in Ks])
        return np.matmul(self._CT, KT[self._next_key])

    def _forward(self, x: np.ndarray, Phi: np.ndarray | None) -> tuple:
        """phi_s (the state after x-layer s) for all s (into Phi if given); returns (phi_last, U, dU, Ks, BT or KT)."""
        U, dU = self._blocks(np.asarray(x, dtype=float))
        Ks = self._kron(U)
        phi = Ks[self.layer_key[0]].dot(self._psi0)
        S = self.n_layers
        if Phi is not None:
            Phi[0] = phi
        if self._fuse:
            BT = self._transfer(Ks)
            for s in range(S - 1):
                phi = phi.dot(BT[s])
                if Phi is not None:
                    Phi[s + 1] = phi
            return phi, U, dU, Ks, BT
        KT = [np.ascontiguousarray(K.T) for K in Ks]
        CT, nk = self._CT, self._next_key_list
        for s in range(S - 1):
            phi = phi.dot(CT[s]).dot(KT[nk[s]])
            if Phi is not None:
                Phi[s + 1] = phi
        return phi, U, dU, Ks, KT

    # ---- public
    def value(self, x: np.ndarray) -> float:
        """``<O>`` at the features ``x`` [n_features]."""
        if self.n_layers == 0:
            return self._const_value
        phi = self._forward(x, None)[0]
        return float(np.vdot(phi, self._obs.dot(phi)).real)

    def value_and_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """``<O>`` and ``d<O>/dx`` [n_features] at the features ``x`` [n_features]."""
        if self.n_layers == 0:
            return self._const_value, np.zeros(self.n_features)
        S, dim, nf = self.n_layers, self._dim, self.n_features
        Phi = np.empty((S, dim), dtype=complex)
        phi, U, dU, Ks, T = self._forward(x, Phi)
        nu = self._obs.dot(phi)
        y = float(np.vdot(phi, nu).real)
        # adjoint: nu_s = B_s^dagger nu_{s+1}; kept as omega_s = conj(nu_s) = B_s^T omega_{s+1}
        Om = np.empty((S, dim), dtype=complex)
        w = nu.conj()
        Om[S - 1] = w
        if self._fuse:
            for s in range(S - 2, -1, -1):
                w = T[s].dot(w)
                Om[s] = w
        else:
            CT, nk = self._CT, self._next_key_list
            for s in range(S - 2, -1, -1):
                w = CT[s].dot(T[nk[s]].dot(w))
                Om[s] = w
        # dK_j psi_s = sum_q (dU_{q,j} U_q^dagger on qubit q) phi_s, so with R = sum_s omega_s phi_s^T (over the layers
        # sharing the x-layer) and R_q its partial trace onto qubit q:
        # dy/dx_j = 2 Re sum_s nu_s^dagger dK_j psi_s = 2 Re sum_q < dU_{q,j} U_q^dagger, R_q > = 2 Re sum_u < dU_{u,j}, Y_u >,
        # Y_u = (sum_{q with block u} R_q) conj(U_u)
        g = np.zeros(nf)
        Uc = U.conj()
        for kid, (G, idx, P) in enumerate(self._ptrace):
            if self._single_key:
                R = Om.T.dot(Phi)
            else:
                sel = self._key_layers[kid]
                R = Om[sel].T.dot(Phi[sel])
            if P is not None:
                Rs = P.dot(R.reshape(-1))  # [nb * 4]
            else:
                Rs = G.dot(R.reshape(-1)[idx].sum(-1))  # [nb, 4]
            if self._nb == 1:
                g += 2.0 * Rs.reshape(2, 2).dot(Uc[0]).reshape(4).dot(dU[0]).real
            else:
                Y = np.matmul(Rs.reshape(-1, 2, 2), Uc)  # [nb, 2, 2]
                g += 2.0 * np.einsum("um,umj->j", Y.reshape(-1, 4), dU).real
        return y, g

    def describe(self) -> dict[str, int]:
        return {"n_qubits": self.n_qubits, "n_features": self.n_features, "x_layers": self.n_layers,
                "unique_x_layers": len(self.keys), "unique_x_blocks": self.n_blocks, "items_per_block": self._L}


def _rot(axis: str, theta: float) -> np.ndarray:
    return math.cos(0.5 * theta) * _I2 - 1j * math.sin(0.5 * theta) * _PAULI[axis]


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
        self.torch_fallback = any(fn is None for _, _, fn, _ in self.families)
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
            else:
                mean = v.mean()
                dev = v - mean
                q = [mean]
                J = np.empty((k, k))
                J[0] = 1.0 / k
                for j in range(2, k + 1):
                    q.append(np.mean(dev**j))
                    # d m_j / d v_i = (j / k) (dev_i^(j-1) - mean(dev^(j-1)))
                    pj1 = dev ** (j - 1)
                    J[j - 1] = (j / k) * (pj1 - pj1.mean())
                qs.append(np.array(q))
                cache.append((J, g, S))
        return np.concatenate(qs), cache

    def _torch_coordinates(self, P: np.ndarray) -> tuple[np.ndarray, list]:
        import torch

        pos = torch.as_tensor(P, dtype=torch.float64).unsqueeze(0).requires_grad_(True)
        with torch.enable_grad():
            q = self.featurizer.internal(pos)[0]
            rows = [torch.autograd.grad(q[i], pos, retain_graph=True)[0][0].numpy() for i in range(q.shape[0])]
        return q.detach().numpy(), [("torch", np.array(rows))]

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
def frozen_qnn_supported(model: Any) -> bool:
    """True for a stock :class:`~qnnff.models.qnn.QNNForceField` (its energy is exactly the chain frozen here)."""
    from ..features import Featurizer
    from ..models.base import FeatureForceField, ForceField
    from ..models.qnn import QNNForceField
    from .engine import QNNRegressor

    if not isinstance(model, QNNForceField) or type(model.featurizer) is not Featurizer or type(model.regressor) is not QNNRegressor:
        return False
    cls = type(model)
    return (cls.energy is ForceField.energy and cls.energy_and_forces is ForceField.energy_and_forces
            and cls.scaled_energy is FeatureForceField.scaled_energy)


def _state(model: Any) -> tuple[tuple, tuple]:
    """(objects the frozen numbers come from, their ids and tensor version counters). Read through the modules'
    dictionaries (``nn.Module.__getattr__`` costs more than the rest of the check)."""
    reg, feat = model._modules["regressor"], model._modules["featurizer"]
    p, b, d = reg._parameters, feat._buffers, model.__dict__
    tensors = (p["weights"], p["a"], p["b"], b["lo"], b["hi"])
    objs = tensors + (reg, feat, d["energy_scaler"], d["quantum_circuit"], d["observable"])
    return objs, tuple(map(id, objs)) + tuple(t._version for t in tensors)


class FrozenQNN:
    """Energies (eV) and forces (eV/Angstrom) of a :class:`~qnnff.models.qnn.QNNForceField` with its weights frozen.

    ``energy_and_forces(positions)``: ``[n_atoms, 3]`` -> ``(float, [n_atoms, 3])``; ``[B, n_atoms, 3]`` ->
    ``([B], [B, n_atoms, 3])`` (frame by frame). ``energy(positions)`` likewise without forces. Raises
    :class:`qnnff.calculators.OutOfDomainError` outside the domain (a scaled coordinate beyond +-1).
    """

    def __init__(self, model: Any) -> None:
        reg = model.regressor
        self.kind = model.kind
        self.symbols = list(model.symbols)
        self._state_objects, self._state_key = _state(model)  # the objects are kept alive, so their ids stay unique
        self.circuit = FrozenCircuit(model.quantum_circuit, inputs=model.inputs, weights=model.weight_parameters,
                                     weight_values=reg.weights.detach().cpu().numpy(), observable=model.observable)
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
        tensors not modified in place since: torch's version counter)."""
        return _state(model)[1] == self._state_key

    # ---- errors
    def _domain_error(self, q: np.ndarray, s: np.ndarray) -> Exception:
        from ..calculators import OutOfDomainError, domain_error_message

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

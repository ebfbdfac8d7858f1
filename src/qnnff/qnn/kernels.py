"""Compiled (numba) statevector kernels of :class:`qnnff.qnn.engine.CompiledCircuit`: values, adjoint gradients and
Hessian-vector products with respect to the rotation angles, for a batch of samples.

The program is a fixed list of ops on ``n`` qubits: ``u`` ops apply a fused single-qubit *block* ``U(q)`` (the SU(2)
matrix of the unit quaternion ``q = q_L * ... * q_1`` of the block's elements, each a rotation ``R_axis(phi_a)``
about x, y or z by one of the angles ``phi_a`` or a fixed quaternion), ``mono`` ops a permutation with phases (runs of
CX / CZ / SWAP ...). ``U(q) = [[q0 - i q3, -q2 - i q1], [q2 - i q1, q0 + i q3]]`` is *linear* in ``q`` and
``U(q)^dagger = U(conj q)``, so one real 16-multiply routine applies a block, its adjoint and its tangent. The
observable is a Hermitian sum of Pauli strings, each a permutation with complex factors (``lambda = O psi``).

Kernels (``phi`` is ``[A, B]``, batch last; samples are processed in tiles of ``LANES`` samples, batch innermost, so the
amplitude loops vectorise and a tile's states stay in cache):

* :func:`forward`: ``y [B]``;
* :func:`value_grad`: ``y`` and ``G = dy/dphi [A, B]`` by the adjoint method (states of the forward sweep kept per
  tile, the adjoint state ``lambda`` swept backwards; ``dy/dq`` of each block from ``2 Re sum conj(lambda_a) psi_b``,
  then through the quaternion product of the block to its angles);
* :func:`hvp`: ``H = (d^2 y / dphi^2) . phidot [A, B]``, the exact Hessian-vector product (forward-mode tangents of
  the block quaternions, the state and the adjoint state along ``phidot``; one extra sweep each way).

Nothing is approximated: these are the same sums the plain torch reference (``mode="autograd"``) computes, regrouped.

Memory traffic and vectorisation, more than arithmetic, bound these loops. :func:`value_grad`'s backward step over a
block is one pass (:func:`_back`: un-compute, transition, adjoint step) instead of three; the monomial ops swap
buffers instead of copying; :func:`_transition_tangent` runs its two accumulator sets in two loops (in one, LLVM did
not vectorise it: no packed multiplies in its assembly, 44 after the split). Each change keeps every operation and its
order, so the results are bit-identical to the kernels before it (checked on three circuits, batches 1, 7, 130 and
500). Measured on this machine (H3O+ batch 500, min of 60 interleaved calls, a noisy shared VM): value_grad 7.5-9 ->
6.4 ms, hvp 36-43 -> 29-30 ms. Fusing the Hessian-vector step into one pass was slower (not vectorised either).

No kernel uses ``fastmath``: with it, LLVM may reassociate sums and fuse multiply-adds differently in each compilation,
and a kernel numba compiled in one process gave other last bits than the same kernel loaded from its cache in the
next (``tests/test_determinism.py``), which Adam amplified into different trained models. Strict IEEE arithmetic
costs about 10% (H3O+ batch 500, best of 40: force-loss gradient 35-38 -> 39-42 ms, dE/dtheta 7.7 -> 8.2 ms), because
the loops run over independent samples (the batch is innermost) and vectorise without reassociation.
"""

from __future__ import annotations

import numpy as np
from numba import njit

LANES = 64  # samples per tile (the innermost loop, vectorised by LLVM; a 6-qubit tile state is 64 kB)


# States are [dim, 2, lanes] arrays (real, imaginary part; lanes innermost).
@njit(cache=True)
def _apply(X, Q, k, sign, qb, dim):
    """X <- U(q) X on qubit qb in place, q = Q[k, :, lane] (sign = -1: U(conj q) = U^dagger)."""
    nl = X.shape[2]
    step = 1 << qb
    for hi in range(0, dim, 2 * step):
        for i0 in range(hi, hi + step):
            i1 = i0 + step
            for b in range(nl):
                q0 = Q[k, 0, b]
                q1 = sign * Q[k, 1, b]
                q2 = sign * Q[k, 2, b]
                q3 = sign * Q[k, 3, b]
                s0r, s0i, s1r, s1i = X[i0, 0, b], X[i0, 1, b], X[i1, 0, b], X[i1, 1, b]
                X[i0, 0, b] = q0 * s0r + q3 * s0i - q2 * s1r + q1 * s1i
                X[i0, 1, b] = q0 * s0i - q3 * s0r - q2 * s1i - q1 * s1r
                X[i1, 0, b] = q2 * s0r + q1 * s0i + q0 * s1r - q3 * s1i
                X[i1, 1, b] = q2 * s0i - q1 * s0r + q0 * s1i + q3 * s1r


@njit(cache=True)
def _mono(S, X, perm, pr, pi, dim):
    """X[j] = phase[j] S[perm[j]]."""
    nl = S.shape[2]
    for j in range(dim):
        p = perm[j]
        a, c = pr[j], pi[j]
        for b in range(nl):
            xr, xi = S[p, 0, b], S[p, 1, b]
            X[j, 0, b] = a * xr - c * xi
            X[j, 1, b] = a * xi + c * xr


@njit(cache=True)
def _mono_adjoint(S, X, perm, pr, pi, dim):
    """X = P^dagger S: X[perm[j]] = conj(phase[j]) S[j]."""
    nl = S.shape[2]
    for j in range(dim):
        p = perm[j]
        a, c = pr[j], pi[j]
        for b in range(nl):
            xr, xi = S[j, 0, b], S[j, 1, b]
            X[p, 0, b] = a * xr + c * xi
            X[p, 1, b] = a * xi - c * xr


@njit(cache=True)
def _observe(S, Lam, operm, opr, opi, dim, y):
    """Lam = O S and y = Re <S|Lam> per lane."""
    nl = S.shape[2]
    Lam[:] = 0.0
    for b in range(nl):
        y[b] = 0.0
    for o in range(operm.shape[0]):
        for j in range(dim):
            p = operm[o, j]
            a, c = opr[o, j], opi[o, j]
            for b in range(nl):
                xr, xi = S[p, 0, b], S[p, 1, b]
                Lam[j, 0, b] += a * xr - c * xi
                Lam[j, 1, b] += a * xi + c * xr
    for j in range(dim):
        for b in range(nl):
            y[b] += S[j, 0, b] * Lam[j, 0, b] + S[j, 1, b] * Lam[j, 1, b]


@njit(cache=True)
def _back(X, L, Q, k, qb, dim, acc):
    """One backward step of the adjoint sweep over block k on qubit qb, in one pass over the amplitude pairs:
    X <- U^dag X (un-compute the state before the block), acc[:, lane] += dy/dq of the block
    (2 Re sum_ab conj(l_a) dU_ab p_b with p the un-computed state; components 2 Re(M00 + M11), 2 Im(M01 + M10),
    2 Re(M10 - M01), 2 Im(M00 - M11) with M_ab = conj(l_a) p_b), then L <- U^dag L.

    The same operations in the same order as three separate passes (un-compute, transition, adjoint step), so the
    numbers are bit-identical; one pass reads and writes each amplitude once instead of three times."""
    nl = X.shape[2]
    step = 1 << qb
    a0 = np.zeros(nl)  # local accumulators: provably not aliased, so the lane loop vectorises
    a1 = np.zeros(nl)
    a2 = np.zeros(nl)
    a3 = np.zeros(nl)
    for hi in range(0, dim, 2 * step):
        for i0 in range(hi, hi + step):
            i1 = i0 + step
            for b in range(nl):
                q0 = Q[k, 0, b]
                q1 = -1.0 * Q[k, 1, b]
                q2 = -1.0 * Q[k, 2, b]
                q3 = -1.0 * Q[k, 3, b]
                s0r, s0i, s1r, s1i = X[i0, 0, b], X[i0, 1, b], X[i1, 0, b], X[i1, 1, b]
                p0r = q0 * s0r + q3 * s0i - q2 * s1r + q1 * s1i
                p0i = q0 * s0i - q3 * s0r - q2 * s1i - q1 * s1r
                p1r = q2 * s0r + q1 * s0i + q0 * s1r - q3 * s1i
                p1i = q2 * s0i - q1 * s0r + q0 * s1i + q3 * s1r
                X[i0, 0, b] = p0r
                X[i0, 1, b] = p0i
                X[i1, 0, b] = p1r
                X[i1, 1, b] = p1i
                l0r, l0i, l1r, l1i = L[i0, 0, b], L[i0, 1, b], L[i1, 0, b], L[i1, 1, b]
                a0[b] += l0r * p0r + l0i * p0i + l1r * p1r + l1i * p1i
                a1[b] += l0r * p1i - l0i * p1r + l1r * p0i - l1i * p0r
                a2[b] += l1r * p0r + l1i * p0i - l0r * p1r - l0i * p1i
                a3[b] += l0r * p0i - l0i * p0r - l1r * p1i + l1i * p1r
                L[i0, 0, b] = q0 * l0r + q3 * l0i - q2 * l1r + q1 * l1i
                L[i0, 1, b] = q0 * l0i - q3 * l0r - q2 * l1i - q1 * l1r
                L[i1, 0, b] = q2 * l0r + q1 * l0i + q0 * l1r - q3 * l1i
                L[i1, 1, b] = q2 * l0i - q1 * l0r + q0 * l1i + q3 * l1r
    for b in range(nl):
        acc[0, b] += 2.0 * a0[b]
        acc[1, b] += 2.0 * a1[b]
        acc[2, b] += 2.0 * a2[b]
        acc[3, b] += 2.0 * a3[b]


@njit(cache=True)
def _fwd_tangent(X, D, Q, Qd, k, qb, dim):
    """One pass: D <- U D + dU X, X <- U X (U = U(q), dU = U(qdot) of block k) on qubit qb."""
    nl = X.shape[2]
    step = 1 << qb
    for hi in range(0, dim, 2 * step):
        for i0 in range(hi, hi + step):
            i1 = i0 + step
            for b in range(nl):
                q0, q1, q2, q3 = Q[k, 0, b], Q[k, 1, b], Q[k, 2, b], Q[k, 3, b]
                e0, e1, e2, e3 = Qd[k, 0, b], Qd[k, 1, b], Qd[k, 2, b], Qd[k, 3, b]
                s0r, s0i, s1r, s1i = X[i0, 0, b], X[i0, 1, b], X[i1, 0, b], X[i1, 1, b]
                t0r, t0i, t1r, t1i = D[i0, 0, b], D[i0, 1, b], D[i1, 0, b], D[i1, 1, b]
                D[i0, 0, b] = q0 * t0r + q3 * t0i - q2 * t1r + q1 * t1i + e0 * s0r + e3 * s0i - e2 * s1r + e1 * s1i
                D[i0, 1, b] = q0 * t0i - q3 * t0r - q2 * t1i - q1 * t1r + e0 * s0i - e3 * s0r - e2 * s1i - e1 * s1r
                D[i1, 0, b] = q2 * t0r + q1 * t0i + q0 * t1r - q3 * t1i + e2 * s0r + e1 * s0i + e0 * s1r - e3 * s1i
                D[i1, 1, b] = q2 * t0i - q1 * t0r + q0 * t1i + q3 * t1r + e2 * s0i - e1 * s0r + e0 * s1i + e3 * s1r
                X[i0, 0, b] = q0 * s0r + q3 * s0i - q2 * s1r + q1 * s1i
                X[i0, 1, b] = q0 * s0i - q3 * s0r - q2 * s1i - q1 * s1r
                X[i1, 0, b] = q2 * s0r + q1 * s0i + q0 * s1r - q3 * s1i
                X[i1, 1, b] = q2 * s0i - q1 * s0r + q0 * s1i + q3 * s1r


@njit(cache=True)
def _undo_tangent(X, D, Q, Qd, k, qb, dim):
    """One pass, the inverse of _fwd_tangent: X <- U^dag X, then D <- U^dag (D - dU X)."""
    nl = X.shape[2]
    step = 1 << qb
    for hi in range(0, dim, 2 * step):
        for i0 in range(hi, hi + step):
            i1 = i0 + step
            for b in range(nl):
                q0, q1, q2, q3 = Q[k, 0, b], -Q[k, 1, b], -Q[k, 2, b], -Q[k, 3, b]
                e0, e1, e2, e3 = Qd[k, 0, b], Qd[k, 1, b], Qd[k, 2, b], Qd[k, 3, b]
                s0r, s0i, s1r, s1i = X[i0, 0, b], X[i0, 1, b], X[i1, 0, b], X[i1, 1, b]
                x0r = q0 * s0r + q3 * s0i - q2 * s1r + q1 * s1i
                x0i = q0 * s0i - q3 * s0r - q2 * s1i - q1 * s1r
                x1r = q2 * s0r + q1 * s0i + q0 * s1r - q3 * s1i
                x1i = q2 * s0i - q1 * s0r + q0 * s1i + q3 * s1r
                t0r = D[i0, 0, b] - (e0 * x0r + e3 * x0i - e2 * x1r + e1 * x1i)
                t0i = D[i0, 1, b] - (e0 * x0i - e3 * x0r - e2 * x1i - e1 * x1r)
                t1r = D[i1, 0, b] - (e2 * x0r + e1 * x0i + e0 * x1r - e3 * x1i)
                t1i = D[i1, 1, b] - (e2 * x0i - e1 * x0r + e0 * x1i + e3 * x1r)
                D[i0, 0, b] = q0 * t0r + q3 * t0i - q2 * t1r + q1 * t1i
                D[i0, 1, b] = q0 * t0i - q3 * t0r - q2 * t1i - q1 * t1r
                D[i1, 0, b] = q2 * t0r + q1 * t0i + q0 * t1r - q3 * t1i
                D[i1, 1, b] = q2 * t0i - q1 * t0r + q0 * t1i + q3 * t1r
                X[i0, 0, b] = x0r
                X[i0, 1, b] = x0i
                X[i1, 0, b] = x1r
                X[i1, 1, b] = x1i


@njit(cache=True)
def _adjoint_tangent(L, M, Q, Qd, k, qb, dim):
    """One pass: M <- U^dag M + dU^dag L, L <- U^dag L."""
    nl = L.shape[2]
    step = 1 << qb
    for hi in range(0, dim, 2 * step):
        for i0 in range(hi, hi + step):
            i1 = i0 + step
            for b in range(nl):
                q0, q1, q2, q3 = Q[k, 0, b], -Q[k, 1, b], -Q[k, 2, b], -Q[k, 3, b]
                e0, e1, e2, e3 = Qd[k, 0, b], -Qd[k, 1, b], -Qd[k, 2, b], -Qd[k, 3, b]
                s0r, s0i, s1r, s1i = L[i0, 0, b], L[i0, 1, b], L[i1, 0, b], L[i1, 1, b]
                t0r, t0i, t1r, t1i = M[i0, 0, b], M[i0, 1, b], M[i1, 0, b], M[i1, 1, b]
                M[i0, 0, b] = q0 * t0r + q3 * t0i - q2 * t1r + q1 * t1i + e0 * s0r + e3 * s0i - e2 * s1r + e1 * s1i
                M[i0, 1, b] = q0 * t0i - q3 * t0r - q2 * t1i - q1 * t1r + e0 * s0i - e3 * s0r - e2 * s1i - e1 * s1r
                M[i1, 0, b] = q2 * t0r + q1 * t0i + q0 * t1r - q3 * t1i + e2 * s0r + e1 * s0i + e0 * s1r - e3 * s1i
                M[i1, 1, b] = q2 * t0i - q1 * t0r + q0 * t1i + q3 * t1r + e2 * s0i - e1 * s0r + e0 * s1i + e3 * s1r
                L[i0, 0, b] = q0 * s0r + q3 * s0i - q2 * s1r + q1 * s1i
                L[i0, 1, b] = q0 * s0i - q3 * s0r - q2 * s1i - q1 * s1r
                L[i1, 0, b] = q2 * s0r + q1 * s0i + q0 * s1r - q3 * s1i
                L[i1, 1, b] = q2 * s0i - q1 * s0r + q0 * s1i + q3 * s1r


@njit(cache=True)
def _transition_tangent(L, M, X, D, acc, accd, qb, dim):
    """acc += T(L, X), accd += T(M, X) + T(L, D) with T the block gradient of :func:`_back`, in two passes (one per
    accumulator set: eight lane accumulators and sixteen loads in one loop do not vectorise, four do)."""
    nl = L.shape[2]
    step = 1 << qb
    a0 = np.zeros(nl)
    a1 = np.zeros(nl)
    a2 = np.zeros(nl)
    a3 = np.zeros(nl)
    c0 = np.zeros(nl)
    c1 = np.zeros(nl)
    c2 = np.zeros(nl)
    c3 = np.zeros(nl)
    for hi in range(0, dim, 2 * step):
        for i0 in range(hi, hi + step):
            i1 = i0 + step
            for b in range(nl):
                l0r, l0i, l1r, l1i = L[i0, 0, b], L[i0, 1, b], L[i1, 0, b], L[i1, 1, b]
                p0r, p0i, p1r, p1i = X[i0, 0, b], X[i0, 1, b], X[i1, 0, b], X[i1, 1, b]
                a0[b] += l0r * p0r + l0i * p0i + l1r * p1r + l1i * p1i
                a1[b] += l0r * p1i - l0i * p1r + l1r * p0i - l1i * p0r
                a2[b] += l1r * p0r + l1i * p0i - l0r * p1r - l0i * p1i
                a3[b] += l0r * p0i - l0i * p0r - l1r * p1i + l1i * p1r
    for hi in range(0, dim, 2 * step):
        for i0 in range(hi, hi + step):
            i1 = i0 + step
            for b in range(nl):
                l0r, l0i, l1r, l1i = L[i0, 0, b], L[i0, 1, b], L[i1, 0, b], L[i1, 1, b]
                m0r, m0i, m1r, m1i = M[i0, 0, b], M[i0, 1, b], M[i1, 0, b], M[i1, 1, b]
                p0r, p0i, p1r, p1i = X[i0, 0, b], X[i0, 1, b], X[i1, 0, b], X[i1, 1, b]
                d0r, d0i, d1r, d1i = D[i0, 0, b], D[i0, 1, b], D[i1, 0, b], D[i1, 1, b]
                c0[b] += m0r * p0r + m0i * p0i + m1r * p1r + m1i * p1i + l0r * d0r + l0i * d0i + l1r * d1r + l1i * d1i
                c1[b] += m0r * p1i - m0i * p1r + m1r * p0i - m1i * p0r + l0r * d1i - l0i * d1r + l1r * d0i - l1i * d0r
                c2[b] += m1r * p0r + m1i * p0i - m0r * p1r - m0i * p1i + l1r * d0r + l1i * d0i - l0r * d1r - l0i * d1i
                c3[b] += m0r * p0i - m0i * p0r - m1r * p1i + m1i * p1r + l0r * d0i - l0i * d0r - l1r * d1i + l1i * d1r
    for b in range(nl):
        acc[0, b] += 2.0 * a0[b]
        acc[1, b] += 2.0 * a1[b]
        acc[2, b] += 2.0 * a2[b]
        acc[3, b] += 2.0 * a3[b]
        accd[0, b] += 2.0 * c0[b]
        accd[1, b] += 2.0 * c1[b]
        accd[2, b] += 2.0 * c2[b]
        accd[3, b] += 2.0 * c3[b]


@njit(cache=True)
def _trig(phi, b0, nb, abatch, C, Sn):
    """cos, sin of the half angles of the tile's samples (lanes past nb repeat the last sample); angles that do
    not depend on the sample (``abatch[a] == 0``) are evaluated once."""
    nl = C.shape[1]
    for a in range(phi.shape[0]):
        if abatch[a]:
            for b in range(nl):
                h = 0.5 * phi[a, b0 + (b if b < nb else nb - 1)]
                C[a, b] = np.cos(h)
                Sn[a, b] = np.sin(h)
        else:
            h = 0.5 * phi[a, b0]
            c, s = np.cos(h), np.sin(h)
            for b in range(nl):
                C[a, b] = c
                Sn[a, b] = s


@njit(cache=True)
def _rot_left(q, C, Sn, a, ax, sign):
    """q [4, lanes] <- r * q with r = (cos, sign * sin * e_ax) of angle a (sign = -1: the conjugate rotation)."""
    nl = q.shape[1]
    if ax == 0:
        for b in range(nl):
            c, s = C[a, b], sign * Sn[a, b]
            q0, q1, q2, q3 = q[0, b], q[1, b], q[2, b], q[3, b]
            q[0, b] = c * q0 - s * q1
            q[1, b] = c * q1 + s * q0
            q[2, b] = c * q2 - s * q3
            q[3, b] = c * q3 + s * q2
    elif ax == 1:
        for b in range(nl):
            c, s = C[a, b], sign * Sn[a, b]
            q0, q1, q2, q3 = q[0, b], q[1, b], q[2, b], q[3, b]
            q[0, b] = c * q0 - s * q2
            q[1, b] = c * q1 + s * q3
            q[2, b] = c * q2 + s * q0
            q[3, b] = c * q3 - s * q1
    else:
        for b in range(nl):
            c, s = C[a, b], sign * Sn[a, b]
            q0, q1, q2, q3 = q[0, b], q[1, b], q[2, b], q[3, b]
            q[0, b] = c * q0 - s * q3
            q[1, b] = c * q1 - s * q2
            q[2, b] = c * q2 + s * q1
            q[3, b] = c * q3 + s * q0


@njit(cache=True)
def _fixed_left(q, f0, f1, f2, f3):
    """q [4, lanes] <- f * q for a constant quaternion f."""
    nl = q.shape[1]
    for b in range(nl):
        q0, q1, q2, q3 = q[0, b], q[1, b], q[2, b], q[3, b]
        q[0, b] = f0 * q0 - f1 * q1 - f2 * q2 - f3 * q3
        q[1, b] = f0 * q1 + f1 * q0 + f2 * q3 - f3 * q2
        q[2, b] = f0 * q2 - f1 * q3 + f2 * q0 + f3 * q1
        q[3, b] = f0 * q3 + f1 * q2 - f2 * q1 + f3 * q0


@njit(cache=True)
def _blocks(C, Sn, bstart, etype, eaxis, eangle, equat, Q):
    """Block quaternions of the tile: Q[k] = q_L * ... * q_1 over the block's elements in time order."""
    for k in range(bstart.shape[0] - 1):
        Q[k] = 0.0
        Q[k, 0] = 1.0
        for e in range(bstart[k], bstart[k + 1]):
            if etype[e] == 0:
                _rot_left(Q[k], C, Sn, eangle[e], eaxis[e], 1.0)
            else:
                _fixed_left(Q[k], equat[e, 0], equat[e, 1], equat[e, 2], equat[e, 3])


@njit(cache=True)
def _block_backprop(GQk, s, t, C, Sn, etype, eaxis, eangle, equat, P, Tq, Gt):
    """Gt[angle, lane] += dy/dphi through the quaternion product of one block (elements s..t-1), given dy/dq = GQk:
    dy/dq_m = conj(S_m) GQk conj(P_m) with prefix P_m = q_(m-1) ... q_1 and suffix S_m = q_L ... q_(m+1)."""
    nl = Tq.shape[1]
    P[0] = 0.0
    P[0, 0] = 1.0
    for e in range(s, t - 1):
        m = e - s
        P[m + 1] = P[m]
        if etype[e] == 0:
            _rot_left(P[m + 1], C, Sn, eangle[e], eaxis[e], 1.0)
        else:
            _fixed_left(P[m + 1], equat[e, 0], equat[e, 1], equat[e, 2], equat[e, 3])
    Tq[:] = GQk
    for e in range(t - 1, s - 1, -1):
        m = e - s
        if etype[e] == 0:
            a, ax = eangle[e], eaxis[e]
            for b in range(nl):
                a0, a1, a2, a3 = Tq[0, b], Tq[1, b], Tq[2, b], Tq[3, b]
                p0, p1, p2, p3 = P[m, 0, b], P[m, 1, b], P[m, 2, b], P[m, 3, b]
                g0 = a0 * p0 + a1 * p1 + a2 * p2 + a3 * p3
                if ax == 0:
                    gx = -a0 * p1 + a1 * p0 - a2 * p3 + a3 * p2
                elif ax == 1:
                    gx = -a0 * p2 + a1 * p3 + a2 * p0 - a3 * p1
                else:
                    gx = -a0 * p3 - a1 * p2 + a2 * p1 + a3 * p0
                # dq/dphi = (-sin/2, cos/2 e_ax)
                Gt[a, b] += 0.5 * (C[a, b] * gx - Sn[a, b] * g0)
            _rot_left(Tq, C, Sn, a, ax, -1.0)
        else:
            _fixed_left(Tq, equat[e, 0], -equat[e, 1], -equat[e, 2], -equat[e, 3])


@njit(cache=True)
def _rl(out, q, c, s, ax):
    """out [4, lanes] = (c, s e_ax) * q per lane (c, s: lane vectors; out may be q)."""
    nl = q.shape[1]
    for b in range(nl):
        cb, sb = c[b], s[b]
        q0, q1, q2, q3 = q[0, b], q[1, b], q[2, b], q[3, b]
        if ax == 0:
            out[0, b] = cb * q0 - sb * q1
            out[1, b] = cb * q1 + sb * q0
            out[2, b] = cb * q2 - sb * q3
            out[3, b] = cb * q3 + sb * q2
        elif ax == 1:
            out[0, b] = cb * q0 - sb * q2
            out[1, b] = cb * q1 + sb * q3
            out[2, b] = cb * q2 + sb * q0
            out[3, b] = cb * q3 - sb * q1
        else:
            out[0, b] = cb * q0 - sb * q3
            out[1, b] = cb * q1 - sb * q2
            out[2, b] = cb * q2 + sb * q1
            out[3, b] = cb * q3 + sb * q0


@njit(cache=True)
def _fl(out, q, f0, f1, f2, f3):
    """out [4, lanes] = f * q for a constant quaternion f (out may be q)."""
    nl = q.shape[1]
    for b in range(nl):
        q0, q1, q2, q3 = q[0, b], q[1, b], q[2, b], q[3, b]
        out[0, b] = f0 * q0 - f1 * q1 - f2 * q2 - f3 * q3
        out[1, b] = f0 * q1 + f1 * q0 + f2 * q3 - f3 * q2
        out[2, b] = f0 * q2 - f1 * q3 + f2 * q0 + f3 * q1
        out[3, b] = f0 * q3 + f1 * q2 - f2 * q1 + f3 * q0


@njit(cache=True)
def _tangent_step(e, q, qd, W, C, Sn, CD, SD, etype, eaxis, eangle, equat):
    """(q, qd) <- (r q, r qd + (dr/dphi . phidot) q) for element e."""
    if etype[e] == 0:
        a, ax = eangle[e], eaxis[e]
        _rl(W, q, CD[a], SD[a], ax)
        _rl(qd, qd, C[a], Sn[a], ax)
        qd += W
        _rl(q, q, C[a], Sn[a], ax)
    else:
        _fl(qd, qd, equat[e, 0], equat[e, 1], equat[e, 2], equat[e, 3])
        _fl(q, q, equat[e, 0], equat[e, 1], equat[e, 2], equat[e, 3])


@njit(cache=True)
def _hvp_backprop(GQk, GQdk, s, t, C, Sn, NS, CD, SD, NSD, V, etype, eaxis, eangle, equat, P, Pd, Tq, Td, W, Ht):
    """Ht[angle, lane] += tangent of dy/dphi through one block's quaternion product (value_grad's
    _block_backprop differentiated along phidot)."""
    nl = Tq.shape[1]
    P[0] = 0.0
    P[0, 0] = 1.0
    Pd[0] = 0.0
    for e in range(s, t - 1):
        m = e - s
        P[m + 1] = P[m]
        Pd[m + 1] = Pd[m]
        _tangent_step(e, P[m + 1], Pd[m + 1], W, C, Sn, CD, SD, etype, eaxis, eangle, equat)
    Tq[:] = GQk
    Td[:] = GQdk
    for e in range(t - 1, s - 1, -1):
        m = e - s
        if etype[e] == 0:
            a, ax = eangle[e], eaxis[e]
            for b in range(nl):
                a0, a1, a2, a3 = Tq[0, b], Tq[1, b], Tq[2, b], Tq[3, b]
                d0, d1, d2, d3 = Td[0, b], Td[1, b], Td[2, b], Td[3, b]
                p0, p1, p2, p3 = P[m, 0, b], P[m, 1, b], P[m, 2, b], P[m, 3, b]
                r0, r1, r2, r3 = Pd[m, 0, b], Pd[m, 1, b], Pd[m, 2, b], Pd[m, 3, b]
                g0 = a0 * p0 + a1 * p1 + a2 * p2 + a3 * p3
                h0 = d0 * p0 + d1 * p1 + d2 * p2 + d3 * p3 + a0 * r0 + a1 * r1 + a2 * r2 + a3 * r3
                if ax == 0:
                    gx = -a0 * p1 + a1 * p0 - a2 * p3 + a3 * p2
                    hx = -d0 * p1 + d1 * p0 - d2 * p3 + d3 * p2 - a0 * r1 + a1 * r0 - a2 * r3 + a3 * r2
                elif ax == 1:
                    gx = -a0 * p2 + a1 * p3 + a2 * p0 - a3 * p1
                    hx = -d0 * p2 + d1 * p3 + d2 * p0 - d3 * p1 - a0 * r2 + a1 * r3 + a2 * r0 - a3 * r1
                else:
                    gx = -a0 * p3 - a1 * p2 + a2 * p1 + a3 * p0
                    hx = -d0 * p3 - d1 * p2 + d2 * p1 + d3 * p0 - a0 * r3 - a1 * r2 + a2 * r1 + a3 * r0
                c, sn = C[a, b], Sn[a, b]
                Ht[a, b] += 0.5 * (c * hx - sn * h0) - 0.25 * V[a, b] * (sn * gx + c * g0)
            # Td <- conj(r) Td + conj(dr . phidot) Tq ; Tq <- conj(r) Tq
            _rl(W, Tq, CD[a], NSD[a], ax)
            _rl(Td, Td, C[a], NS[a], ax)
            Td += W
            _rl(Tq, Tq, C[a], NS[a], ax)
        else:
            _fl(Td, Td, equat[e, 0], -equat[e, 1], -equat[e, 2], -equat[e, 3])
            _fl(Tq, Tq, equat[e, 0], -equat[e, 1], -equat[e, 2], -equat[e, 3])


@njit(cache=True)
def _forward_sweep(X, Y, ops, Q, mperm, mpr, mpi, dim):
    """The final state from |0>, in X or Y (both are scratch): returns (state, the other buffer)."""
    X[:] = 0.0
    X[0, 0, :] = 1.0
    for t in range(ops.shape[0]):
        if ops[t, 0] == 0:
            _apply(X, Q, ops[t, 1], 1.0, ops[t, 2], dim)
        else:
            m = ops[t, 1]
            _mono(X, Y, mperm[m], mpr[m], mpi[m], dim)
            X, Y = Y, X
    return X, Y


@njit(cache=True)
def forward(phi, n, ops, mperm, mpr, mpi, bstart, etype, eaxis, eangle, equat, operm, opr, opi, abatch):
    """<O> [B] for angles phi [A, B]."""
    B = phi.shape[1]
    dim = 1 << n
    BT = min(LANES, B)
    K = bstart.shape[0] - 1
    X = np.empty((dim, 2, BT))
    Y = np.empty((dim, 2, BT))
    Lam = np.empty((dim, 2, BT))
    Q = np.empty((max(K, 1), 4, BT))
    C = np.empty((phi.shape[0], BT))
    Sn = np.empty((phi.shape[0], BT))
    yt = np.empty(BT)
    y = np.empty(B)
    for b0 in range(0, B, BT):
        nb = min(BT, B - b0)
        _trig(phi, b0, nb, abatch, C, Sn)
        _blocks(C, Sn, bstart, etype, eaxis, eangle, equat, Q)
        X, Y = _forward_sweep(X, Y, ops, Q, mperm, mpr, mpi, dim)
        _observe(X, Lam, operm, opr, opi, dim, yt)
        for b in range(nb):
            y[b0 + b] = yt[b]
    return y


@njit(cache=True)
def value_grad(phi, n, ops, mperm, mpr, mpi, bstart, etype, eaxis, eangle, equat, operm, opr, opi, abatch):
    """(<O> [B], d<O>/dphi [A, B]) by the adjoint method (the forward state is un-computed on the way back, so a
    tile's sweeps stay in cache)."""
    A, B = phi.shape
    dim = 1 << n
    BT = min(LANES, B)
    T = ops.shape[0]
    K = bstart.shape[0] - 1
    Lmax = 1
    for k in range(K):
        Lmax = max(Lmax, bstart[k + 1] - bstart[k])
    X = np.empty((dim, 2, BT))
    X2 = np.empty((dim, 2, BT))
    L = np.empty((dim, 2, BT))
    L2 = np.empty((dim, 2, BT))
    Q = np.empty((max(K, 1), 4, BT))
    GQ = np.empty((max(K, 1), 4, BT))
    P = np.empty((Lmax, 4, BT))
    Tq = np.empty((4, BT))
    C = np.empty((A, BT))
    Sn = np.empty((A, BT))
    Gt = np.empty((A, BT))
    yt = np.empty(BT)
    y = np.empty(B)
    G = np.empty((A, B))
    for b0 in range(0, B, BT):
        nb = min(BT, B - b0)
        _trig(phi, b0, nb, abatch, C, Sn)
        _blocks(C, Sn, bstart, etype, eaxis, eangle, equat, Q)
        X, X2 = _forward_sweep(X, X2, ops, Q, mperm, mpr, mpi, dim)
        _observe(X, L, operm, opr, opi, dim, yt)
        for b in range(nb):
            y[b0 + b] = yt[b]
        GQ[:] = 0.0
        for t in range(T - 1, -1, -1):
            if ops[t, 0] == 0:
                k, qb = ops[t, 1], ops[t, 2]
                _back(X, L, Q, k, qb, dim, GQ[k])  # X: the state before op t; L: the adjoint state after it
            elif t > 0:
                m = ops[t, 1]
                _mono_adjoint(X, X2, mperm[m], mpr[m], mpi[m], dim)
                _mono_adjoint(L, L2, mperm[m], mpr[m], mpi[m], dim)
                X, X2 = X2, X
                L, L2 = L2, L
        Gt[:] = 0.0
        for k in range(K):
            _block_backprop(GQ[k], bstart[k], bstart[k + 1], C, Sn, etype, eaxis, eangle, equat, P, Tq, Gt)
        for a in range(A):
            for b in range(nb):
                G[a, b0 + b] = Gt[a, b]
    return y, G


@njit(cache=True)
def hvp(phi, phidot, n, ops, mperm, mpr, mpi, bstart, etype, eaxis, eangle, equat, operm, opr, opi, abatch):
    """(d^2<O>/dphi^2) . phidot [A, B] (per sample): tangents of the blocks, the state and the adjoint state."""
    A, B = phi.shape
    dim = 1 << n
    BT = min(LANES, B)
    T = ops.shape[0]
    K = bstart.shape[0] - 1
    Kp = max(K, 1)
    Lmax = 1
    for k in range(K):
        Lmax = max(Lmax, bstart[k + 1] - bstart[k])
    X = np.empty((dim, 2, BT))
    X2 = np.empty((dim, 2, BT))
    D = np.empty((dim, 2, BT))
    D2 = np.empty((dim, 2, BT))
    L = np.empty((dim, 2, BT))
    L2 = np.empty((dim, 2, BT))
    M = np.empty((dim, 2, BT))
    M2 = np.empty((dim, 2, BT))
    Q = np.empty((Kp, 4, BT))
    Qd = np.empty((Kp, 4, BT))
    GQ = np.empty((Kp, 4, BT))
    GQd = np.empty((Kp, 4, BT))
    P = np.empty((Lmax, 4, BT))
    Pd = np.empty((Lmax, 4, BT))
    Tq = np.empty((4, BT))
    Td = np.empty((4, BT))
    W = np.empty((4, BT))
    C = np.empty((A, BT))
    Sn = np.empty((A, BT))
    NS = np.empty((A, BT))
    CD = np.empty((A, BT))
    SD = np.empty((A, BT))
    NSD = np.empty((A, BT))
    V = np.empty((A, BT))
    Ht = np.empty((A, BT))
    yt = np.empty(BT)
    ytd = np.empty(BT)
    H = np.empty((A, B))
    for b0 in range(0, B, BT):
        nb = min(BT, B - b0)
        _trig(phi, b0, nb, abatch, C, Sn)
        # block quaternions and their tangents
        for a in range(A):
            for b in range(BT):
                v = phidot[a, b0 + (b if b < nb else nb - 1)]
                V[a, b] = v
                CD[a, b] = -0.5 * v * Sn[a, b]
                SD[a, b] = 0.5 * v * C[a, b]
                NS[a, b] = -Sn[a, b]
                NSD[a, b] = -SD[a, b]
        for k in range(K):
            Q[k] = 0.0
            Q[k, 0] = 1.0
            Qd[k] = 0.0
            for e in range(bstart[k], bstart[k + 1]):
                _tangent_step(e, Q[k], Qd[k], W, C, Sn, CD, SD, etype, eaxis, eangle, equat)
        # forward: psi and its tangent dpsi (dpsi <- U dpsi + dU psi)
        X[:] = 0.0
        X[0, 0, :] = 1.0
        D[:] = 0.0
        for t in range(T):
            if ops[t, 0] == 0:
                k, qb = ops[t, 1], ops[t, 2]
                _fwd_tangent(X, D, Q, Qd, k, qb, dim)
            else:
                m = ops[t, 1]
                _mono(X, X2, mperm[m], mpr[m], mpi[m], dim)
                _mono(D, D2, mperm[m], mpr[m], mpi[m], dim)
                X, X2 = X2, X
                D, D2 = D2, D
        _observe(X, L, operm, opr, opi, dim, yt)
        _observe(D, M, operm, opr, opi, dim, ytd)
        GQ[:] = 0.0
        GQd[:] = 0.0
        for t in range(T - 1, -1, -1):
            if ops[t, 0] == 0:
                k, qb = ops[t, 1], ops[t, 2]
                # un-compute: psi_t = U^dag psi_t+1, dpsi_t = U^dag (dpsi_t+1 - dU psi_t)
                # un-compute: psi_t = U^dag psi_t+1, dpsi_t = U^dag (dpsi_t+1 - dU psi_t)
                _undo_tangent(X, D, Q, Qd, k, qb, dim)
                _transition_tangent(L, M, X, D, GQ[k], GQd[k], qb, dim)
                if t > 0:
                    _adjoint_tangent(L, M, Q, Qd, k, qb, dim)
            elif t > 0:
                m = ops[t, 1]
                _mono_adjoint(X, X2, mperm[m], mpr[m], mpi[m], dim)
                _mono_adjoint(D, D2, mperm[m], mpr[m], mpi[m], dim)
                _mono_adjoint(L, L2, mperm[m], mpr[m], mpi[m], dim)
                _mono_adjoint(M, M2, mperm[m], mpr[m], mpi[m], dim)
                X, X2 = X2, X
                D, D2 = D2, D
                L, L2 = L2, L
                M, M2 = M2, M
        # back through the quaternion products, with tangents
        Ht[:] = 0.0
        for k in range(K):
            _hvp_backprop(GQ[k], GQd[k], bstart[k], bstart[k + 1], C, Sn, NS, CD, SD, NSD, V, etype, eaxis, eangle, equat,
                          P, Pd, Tq, Td, W, Ht)
        for a in range(A):
            for b in range(nb):
                H[a, b0 + b] = Ht[a, b]
    return H

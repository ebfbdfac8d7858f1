"""Compiled (numba) statevector kernels of :class:`qnnff.qnn.engine.CompiledCircuit`: values, adjoint gradients and
Hessian-vector products with respect to the rotation angles, for a batch of samples.

The program is a fixed list of ops on ``n`` qubits: ``u`` ops apply a fused single-qubit *block* ``U(q)`` (the SU(2)
matrix of the unit quaternion ``q = q_L * ... * q_1`` of the block's elements, each a rotation ``R_axis(phi_a)``
about x, y or z by one of the angles ``phi_a``, a fixed quaternion, or an *rv* element), ``mono`` ops a permutation
with phases (runs of CX / CZ / SWAP ...), type-2 ops a rotation ``exp(-i theta M / 2)`` about a Hermitian monomial
involution ``M`` (stored among the monomials; its angle index in the op's last column; see the comment above
:func:`_mrot_apply`: applied as ``I + (e^{i theta} - 1) (I - M) / 2``, differentiated through the states after it).
``U(q) = [[q0 - i q3, -q2 - i q1], [q2 - i q1, q0 + i q3]]`` is *linear* in ``q`` and ``U(q)^dagger = U(conj q)``,
so one real 16-multiply routine applies a block, its adjoint and its tangent. The
observable is a Hermitian sum of Pauli strings, each a permutation with complex factors (``lambda = O psi``).

Kernels (``phi`` is ``[A, B]``, batch last; samples are processed in tiles of at most ``LANES`` samples
(:func:`_tile_width`), batch innermost, so the amplitude loops vectorise and a tile's states stay in cache):

* :func:`forward`: ``y [B]``;
* :func:`value_grad`: ``y`` and ``G = dy/dphi [A, B]`` by the adjoint method (states of the forward sweep kept per
  tile, the adjoint state ``lambda`` swept backwards; ``dy/dq`` of each block from ``2 Re sum conj(lambda_a) psi_b``,
  then through the quaternion product of the block to its angles);
* :func:`hvp`: ``H = (d^2 y / dphi^2) . phidot [A, B]``, the exact Hessian-vector product (forward-mode tangents of
  the block quaternions, the state and the adjoint state along ``phidot``; one extra sweep each way);
* :func:`forward_ws`, :func:`value_grad_ws`, :func:`hvp_ws`: the same with a caller's work array (the engine keeps one
  per thread, :func:`workspace_size`), ``value_grad_ws`` optionally writing the block gradients ``dy/dq [K, 4, B]``
  and ``hvp_ws`` optionally reading them instead of summing them again (the force loss: value_grad in the forward
  pass, hvp in the backward pass at the same ``phi``).

Nothing is approximated: these are the same sums the plain torch reference (``mode="autograd"``) computes, regrouped.

Elements (``etype``): 0 a rotation about axis ``eaxis`` by angle ``eangle``; 1 the fixed quaternion ``equat``; 2 an
*rv* element (Qiskit's RVGate), ``q(v) = (cos(|v|/2), sin(|v|/2) v / |v|)`` with ``v = (phi_i, phi_j, phi_k)``, its
three angle indices in ``equat[e, :3]`` (exact small integers as float64) and its ordinal among the rv elements in
``eaxis[e]``. Per tile, :func:`_rv_prep` evaluates ``v``, ``q`` and the smooth functions ``f, g, h`` of ``|v|^2`` that
give ``dq/dv`` and ``d^2 q/dv^2`` in closed form (power series near ``v = 0``, so the values and both derivatives are
exact there too); :func:`_rv_tangent` the tangent quaternion along ``phidot``. They enter the block products
(:func:`_ql`), the gradient (:func:`_rv_grad`) and the Hessian-vector product (:func:`_rv_tangent_step`,
:func:`_rv_ht`, :func:`_rv_suffix`); nothing else in the sweeps changes, and programs without rv elements run the
same operations as before (bit-identical results; the work array grows by the rv rows only when there are some).

Memory traffic and vectorisation, more than arithmetic, bound these loops. :func:`value_grad`'s backward step over a
block is one pass (:func:`_back`: un-compute, transition, adjoint step) instead of three; the monomial ops swap
buffers instead of copying; :func:`_transition_tangent` runs its two accumulator sets in two loops (in one, LLVM did
not vectorise it: no packed multiplies in its assembly, 44 after the split). Each change keeps every operation and its
order, so the results are bit-identical to the kernels before it (checked on three circuits, batches 1, 7, 130 and
500). Measured on this machine (H3O+ batch 500, min of 60 interleaved calls, a noisy shared VM): value_grad 7.5-9 ->
6.4 ms, hvp 36-43 -> 29-30 ms. Fusing the Hessian-vector step into one pass was slower (not vectorised either).

Issue 12 (force-loss gradient <= 20 ms). The arithmetic of the sweeps is now the bound: at 4 doubles per vector and
no fused multiply-adds (see below) the backward sweep of hvp runs at ~28 Gflop/s, about the two vector ports' peak,
so what was left to remove was everything around it. Where the 27 ms of ``bench_qnn.py``'s force-loss gradient went
(H3O+ batch 500): value_grad 5.1, hvp 17.4 (trig and block tangents 0.9, forward tangent sweep 3.2, backward sweep
10.3, quaternion back-propagation 2.6), torch 4 (1.8 with warm caches: the kernels evict torch's data). Changes, each
keeping every operation on every nonzero number and its order (bit-identical y, G, H and end-to-end force-loss and
energy gradients, checked with ``np.array_equal`` against the previous kernels on the H3O+ circuit, a 4-qubit QNN and
a circuit with CZ / CY / S / fixed gates and a Pauli-sum observable, batches 1, 7, 130, 500, 513, shared and
per-sample weights; ``tests/test_kernels_fast_paths.py``):

* ``LANES`` 64 -> 256, tiles of equal width (a multiple of 8) when ``B > LANES``: longer lane loops amortise the
  per-loop overhead (runtime alias checks, remainders). Kernel time vs LANES (old kernels): 8: 3.6 / 12.8 / 44.9
  ms (forward / value_grad / hvp), 16: 2.1 / 13.2 / 41.1, 32: 1.5 / 6.2 / 22.7, 64: 1.4 / 5.1 / 17.6, 128: 1.2 /
  4.4 / 15.2, 256: 1.1 / 4.4 / 15.3, 512: 1.1 / 5.5 / 18.1 (L2 overflow). The force-loss gradient is about equal
  at 192, 256 and 384 (+-0.5 ms, noise), 1 ms slower at 128. Later 256 -> 512 (issue 28): on the invariant QNN
  of H3O+ (342 angles, 78 rv blocks, 324 involution rotations, 1000 lanes: 2 tiles of 504 instead of 4 of 256)
  value_grad 28-30 -> 25-27 ms and hvp 75-80 -> 66-69 ms (four interleaved pairs of processes, min of 80 calls
  each); on the paper's H3O+ QNN (batch 500: 1 tile of 500 instead of 2 of 256) the force-loss gradient is the same
  within the noise (21.8 +- 1.1 ms against 21.1 +- 0.7, three pairs). Results are bit-identical (lanes are
  independent: y, G, H at batches 1-1300 and both end-to-end force-loss gradients compared with ``np.array_equal``).
* One work array, reused: at 256 lanes each tile state is 256 kB, and the ~20 scratch arrays allocated per call
  page-faulted (~1400 faults and 1.5-3 ms of system time per hvp). It must be 64-byte aligned: numpy's 16-byte
  aligned array made every kernel ~20% slower (cache-line-split vector loads).
* value_grad keeps the block gradients dy/dq and hvp reads them: the first of :func:`_transition_tangent`'s two
  passes (32 of the ~270 flops per amplitude pair of the backward step) is skipped: hvp 11.8 -> 10.8 ms.
* Monomial ops relabel rows instead of moving data (:func:`_permute`: a logical -> physical row map ``rw`` that the
  pair loops read), and multiply by their phases in place only if some phase is not exactly 1 (CX / SWAP chains:
  never; skipping ``1 * x - 0 * y`` changes at most the sign of a zero). Removes every copy pass (6 per monomial op
  in hvp, 3 in value_grad) and halves the scratch: hvp -1.0 ms, value_grad -0.3 ms, and torch after the kernels gets
  warmer caches.
* Angles whose direction ``phidot`` is zero on the whole tile (the force loss's ``v = dL/dG`` vanishes on the 101
  ansatz-only angles of H3O+'s 119) skip their tangent terms in the quaternion products (adding them changed at most
  the sign of a zero). Only the last of the 51 blocks has no input-dependent angle, so skipping zero-tangent blocks
  in the state sweeps would save ~2% and was not done.
* Quaternion products of hvp: one pass per element instead of four (three rotations and an add), and every lane loop
  vectorised: the axis and the zero-tangent flag are constants in inlined copies of each loop (:func:`_tangent_step`,
  :func:`_ht_step`, :func:`_suffix_step`; with the axis branch inside, or the Ht update and the suffix step in one
  loop, LLVM emitted scalar code only), and the block tangents ping-pong between two rows (in place, the source and
  target arrays were the same and the runtime alias check sent the loop to its scalar version). 2.6 -> 1.3 ms.

Kernels alone (bench inputs, min of 60 interleaved calls, shared VM under load ~3): forward 1.33 -> 1.02 ms,
value_grad 5.21 -> 3.93 ms (4.05 keeping dy/dq), hvp 17.4 -> 10.8 ms (11.8 without dy/dq). Batch 1 (the frozen MD
evaluator): forward 19-20 -> 17-19 us, value_grad 67-70 -> 66-69 us. ``bench_qnn.py --quick`` (best / median of 9
per run): before (two runs, load 0.9), force-loss gradient 25.8 / 26.7 and 26.2 / 26.4 ms, dE/dtheta 6.4 / 6.6 and
6.3 / 6.6 ms, forward 1.6 / 1.8 and 1.6 / 1.7 ms; after (three runs, load 3.3: another job on both cores),
force-loss gradient 17.4 / 18.6, 18.1 / 19.2 and 18.6 / 19.3 ms, dE/dtheta 5.0 / 5.4, 5.1 / 5.6 and 5.1 / 5.4 ms,
forward 1.4-1.5 / 1.5 ms; chi = 1 training 27 -> 20 ms per Adam iteration. Not done: fusing hvp's backward step
into one pass (not vectorised: no packed multiplies even without the accumulators, 30 vs 17 ms), AVX-512
(``-prefer-256-bit``: hvp 15.3 -> 14.8 ms, value_grad 4.4 -> 4.7 ms; one 512-bit FMA port here), constant lane
counts (~5%, needs a second compilation per kernel), changes to the torch angle layer (they would change the
summation order of the weight gradient).

No kernel uses ``fastmath``: with it, LLVM may reassociate sums and fuse multiply-adds differently in each compilation,
and a kernel numba compiled in one process gave other last bits than the same kernel loaded from its cache in the
next (``tests/test_determinism.py``), which Adam amplified into different trained models. Strict IEEE arithmetic
costs about 10% (H3O+ batch 500, best of 40: force-loss gradient 35-38 -> 39-42 ms, dE/dtheta 7.7 -> 8.2 ms), because
the loops run over independent samples (the batch is innermost) and vectorise without reassociation.
"""

from __future__ import annotations

import numpy as np
from numba import njit

LANES = 512  # at most this many samples per tile (the innermost loop, vectorised by LLVM; a 6-qubit tile state is 512 kB)
RV_ROWS = 10  # per rv element and lane: v (3), f, g, h, q (4)  (see _rv_prep)
RV_ROWS_HVP = 18  # hvp: also vdot (3), v . vdot, qdot = dq/dv . vdot (4)  (see _rv_tangent)


def _bessel_series(n, terms=13):
    """Coefficients in z = u^2 of j_n(u) / u^n = sum_k (-z/2)^k / (k! (2n+2k+1)!!) (spherical Bessel function);
    for z < 4 the first omitted term is below 1e-18 of the sum."""
    out = []
    fac, dfac = 1, 1
    for m in range(1, 2 * n + 2, 2):
        dfac *= m
    for k in range(terms):
        if k:
            fac *= k
            dfac *= 2 * n + 2 * k + 1
        out.append((-1) ** k / (2 ** k * fac * dfac))
    return np.array(out)


_J0, _J1, _J2 = _bessel_series(0), _bessel_series(1), _bessel_series(2)


@njit(cache=True)
def _tile_width(B):
    """Samples per tile: B if B <= LANES, else the batch split into ceil(B / LANES) tiles of equal width rounded up to
    a multiple of 8 (the last tile repeats its last sample in the spare lanes), so little work is spent on padding."""
    if B <= LANES:
        return B
    nt = (B + LANES - 1) // LANES
    w = (B + nt - 1) // nt
    return min(LANES, (w + 7) // 8 * 8)


@njit(cache=True)
def _pad8(m):
    return (m + 7) // 8 * 8


@njit(cache=True)
def _ws_size(kind, A, B, n, bstart, R):
    """Float64 entries of the scratch of a tile: kind 0 forward, 1 value_grad, 2 hvp (R: the number of rv elements,
    whose per-lane quantities come last, see :func:`_rv_prep`)."""
    BT = _tile_width(B)
    K = bstart.shape[0] - 1
    Kp = max(K, 1)
    Lmax = 1
    for k in range(K):
        Lmax = max(Lmax, bstart[k + 1] - bstart[k])
    st = _pad8((1 << n) * 2 * BT)
    kq = _pad8(Kp * 4 * BT)
    pl = _pad8(Lmax * 4 * BT)
    pl2 = _pad8(max(Lmax, 2) * 4 * BT)  # hvp's P, Pd: at least two rows (the block tangents ping-pong in them)
    q4 = _pad8(4 * BT)
    ab = _pad8(A * BT)
    ln = _pad8(BT)
    if kind == 0:
        return 2 * st + kq + 2 * ab + ln + _pad8(R * RV_ROWS * BT)
    if kind == 1:
        return 2 * st + 2 * kq + pl + q4 + 3 * ab + ln + _pad8(R * RV_ROWS * BT)
    return 4 * st + 4 * kq + 2 * pl2 + 2 * q4 + 8 * ab + 2 * ln + _pad8(R * RV_ROWS_HVP * BT)


def workspace_size(phi_shape, n, bstart, etype=None):
    """Entries of a float64 work array large enough for :func:`forward_ws`, :func:`value_grad_ws` and :func:`hvp_ws`
    on ``phi`` of this shape (a caller that keeps one avoids allocating and page-faulting the tile scratch, a few MB
    at LANES = 512, in every call). ``etype``: the program's element types, needed to count its rv elements (without
    it, a program with rv elements gets a new work array in every call)."""
    A, B = phi_shape
    R = 0 if etype is None else int(np.count_nonzero(np.asarray(etype) == 2))
    return int(max(_ws_size(k, A, B, n, bstart, R) for k in range(3)))


@njit(cache=True)
def _n_rv(etype):
    """Number of rv elements (type 2) of the program."""
    R = 0
    for e in range(etype.shape[0]):
        R += etype[e] == 2
    return R


@njit(cache=True)
def _scratch(ws, kind, A, B, n, bstart, R):
    """ws if it is large enough, else a new array."""
    m = _ws_size(kind, A, B, n, bstart, R)
    if ws.shape[0] >= m:
        return ws
    return np.empty(m)


@njit(cache=True)
def _v3(ws, o, a, b, c):
    """(ws[o:...] as an [a, b, c] array, the next offset)."""
    return ws[o:o + a * b * c].reshape((a, b, c)), o + _pad8(a * b * c)


@njit(cache=True)
def _v2(ws, o, a, b):
    return ws[o:o + a * b].reshape((a, b)), o + _pad8(a * b)


@njit(cache=True)
def _v1(ws, o, a):
    return ws[o:o + a], o + _pad8(a)


# States are [dim, 2, lanes] arrays (real, imaginary part; lanes innermost).
@njit(cache=True)
def _apply(X, Q, k, sign, qb, rw, dim):
    """X <- U(q) X on qubit qb in place, q = Q[k, :, lane] (sign = -1: U(conj q) = U^dagger)."""
    nl = X.shape[2]
    step = 1 << qb
    for hi in range(0, dim, 2 * step):
        for i0 in range(hi, hi + step):
            r0, r1 = rw[i0], rw[i0 + step]  # the pair's rows (logical -> physical, see _permute)
            for b in range(nl):
                q0 = Q[k, 0, b]
                q1 = sign * Q[k, 1, b]
                q2 = sign * Q[k, 2, b]
                q3 = sign * Q[k, 3, b]
                s0r, s0i, s1r, s1i = X[r0, 0, b], X[r0, 1, b], X[r1, 0, b], X[r1, 1, b]
                X[r0, 0, b] = q0 * s0r + q3 * s0i - q2 * s1r + q1 * s1i
                X[r0, 1, b] = q0 * s0i - q3 * s0r - q2 * s1i - q1 * s1r
                X[r1, 0, b] = q2 * s0r + q1 * s0i + q0 * s1r - q3 * s1i
                X[r1, 1, b] = q2 * s0i - q1 * s0r + q0 * s1i + q3 * s1r


@njit(cache=True)
def _permute(rw, rw2, perm, adjoint):
    """The permutation of a monomial op as a relabelling of rows, without moving data: rw [dim] maps each logical
    amplitude index to its row of the state arrays. P: X'[j] = X[perm[j]]; P^dagger: X'[perm[j]] = X[j]. Returns the
    new map in rw2 (and the old one as the scratch)."""
    if adjoint:
        for j in range(rw.shape[0]):
            rw2[perm[j]] = rw[j]
    else:
        for j in range(rw.shape[0]):
            rw2[j] = rw[perm[j]]
    return rw2, rw


@njit(cache=True)
def _phases(X, rw, pr, pi, conj, dim):
    """X[row j] <- phase[j] X[row j] in place (conj: the conjugate phase), the phases of a monomial op after
    :func:`_permute` (P) or before it (P^dagger); the same products and sums as a copy X'[j] = phase[j] X[perm[j]]."""
    nl = X.shape[2]
    for j in range(dim):
        r = rw[j]
        a, c = pr[j], pi[j]
        if conj:
            for b in range(nl):
                xr, xi = X[r, 0, b], X[r, 1, b]
                X[r, 0, b] = a * xr + c * xi
                X[r, 1, b] = a * xi - c * xr
        else:
            for b in range(nl):
                xr, xi = X[r, 0, b], X[r, 1, b]
                X[r, 0, b] = a * xr - c * xi
                X[r, 1, b] = a * xi + c * xr


@njit(cache=True)
def _trivial_phases(mpr, mpi):
    """Per monomial op: all its phases are exactly 1 (a pure permutation, e.g. CX / SWAP runs), so multiplying by them
    changes nothing (at most the sign of a zero) and is skipped."""
    out = np.empty(mpr.shape[0], dtype=np.bool_)
    for m in range(mpr.shape[0]):
        bad = 0
        for j in range(mpr.shape[1]):
            bad += (mpr[m, j] != 1.0) | (mpi[m, j] != 0.0)
        out[m] = bad == 0
    return out


@njit(cache=True)
def _observe(S, Lam, operm, opr, opi, rw, dim, y):
    """Lam = O S and y = Re <S|Lam> per lane (both states in the rows rw)."""
    nl = S.shape[2]
    Lam[:] = 0.0
    for b in range(nl):
        y[b] = 0.0
    for o in range(operm.shape[0]):
        for j in range(dim):
            p = rw[operm[o, j]]
            r = rw[j]
            a, c = opr[o, j], opi[o, j]
            for b in range(nl):
                xr, xi = S[p, 0, b], S[p, 1, b]
                Lam[r, 0, b] += a * xr - c * xi
                Lam[r, 1, b] += a * xi + c * xr
    for j in range(dim):
        r = rw[j]
        for b in range(nl):
            y[b] += S[r, 0, b] * Lam[r, 0, b] + S[r, 1, b] * Lam[r, 1, b]


@njit(cache=True, inline='always')
def _back_pair(X, L, r0, r1, b, q0, q1, q2, q3):
    """:func:`_back` on one amplitude pair (rows r0, r1) of lane b, (q0, q1, q2, q3) the block's conjugate
    quaternion: un-computes X and steps L back in place, returns the pair's four transition terms."""
    s0r, s0i, s1r, s1i = X[r0, 0, b], X[r0, 1, b], X[r1, 0, b], X[r1, 1, b]
    p0r = q0 * s0r + q3 * s0i - q2 * s1r + q1 * s1i
    p0i = q0 * s0i - q3 * s0r - q2 * s1i - q1 * s1r
    p1r = q2 * s0r + q1 * s0i + q0 * s1r - q3 * s1i
    p1i = q2 * s0i - q1 * s0r + q0 * s1i + q3 * s1r
    X[r0, 0, b] = p0r
    X[r0, 1, b] = p0i
    X[r1, 0, b] = p1r
    X[r1, 1, b] = p1i
    l0r, l0i, l1r, l1i = L[r0, 0, b], L[r0, 1, b], L[r1, 0, b], L[r1, 1, b]
    t0 = l0r * p0r + l0i * p0i + l1r * p1r + l1i * p1i
    t1 = l0r * p1i - l0i * p1r + l1r * p0i - l1i * p0r
    t2 = l1r * p0r + l1i * p0i - l0r * p1r - l0i * p1i
    t3 = l0r * p0i - l0i * p0r - l1r * p1i + l1i * p1r
    L[r0, 0, b] = q0 * l0r + q3 * l0i - q2 * l1r + q1 * l1i
    L[r0, 1, b] = q0 * l0i - q3 * l0r - q2 * l1i - q1 * l1r
    L[r1, 0, b] = q2 * l0r + q1 * l0i + q0 * l1r - q3 * l1i
    L[r1, 1, b] = q2 * l0i - q1 * l0r + q0 * l1i + q3 * l1r
    return t0, t1, t2, t3


@njit(cache=True)
def _back(X, L, Q, k, qb, rw, dim, acc):
    """One backward step of the adjoint sweep over block k on qubit qb, in one pass over the amplitude pairs:
    X <- U^dag X (un-compute the state before the block), acc[:, lane] += dy/dq of the block
    (2 Re sum_ab conj(l_a) dU_ab p_b with p the un-computed state; components 2 Re(M00 + M11), 2 Im(M01 + M10),
    2 Re(M10 - M01), 2 Im(M00 - M11) with M_ab = conj(l_a) p_b), then L <- U^dag L.

    The same operations in the same order as three separate passes (un-compute, transition, adjoint step), so the
    numbers are bit-identical; one pass reads and writes each amplitude once instead of three times. One lane (MD's
    single geometry) sums in scalars: the same sums, without allocating the lane accumulators of every block."""
    nl = X.shape[2]
    step = 1 << qb
    if nl == 1:
        q0, q1, q2, q3 = Q[k, 0, 0], -1.0 * Q[k, 1, 0], -1.0 * Q[k, 2, 0], -1.0 * Q[k, 3, 0]
        s0 = s1 = s2 = s3 = 0.0
        for hi in range(0, dim, 2 * step):
            for i0 in range(hi, hi + step):
                t0, t1, t2, t3 = _back_pair(X, L, rw[i0], rw[i0 + step], 0, q0, q1, q2, q3)
                s0 += t0
                s1 += t1
                s2 += t2
                s3 += t3
        acc[0, 0] += 2.0 * s0
        acc[1, 0] += 2.0 * s1
        acc[2, 0] += 2.0 * s2
        acc[3, 0] += 2.0 * s3
        return
    a0 = np.zeros(nl)  # local accumulators: provably not aliased, so the lane loop vectorises
    a1 = np.zeros(nl)
    a2 = np.zeros(nl)
    a3 = np.zeros(nl)
    for hi in range(0, dim, 2 * step):
        for i0 in range(hi, hi + step):
            r0, r1 = rw[i0], rw[i0 + step]  # the pair's rows (logical -> physical, see _permute)
            for b in range(nl):
                t0, t1, t2, t3 = _back_pair(X, L, r0, r1, b, Q[k, 0, b], -1.0 * Q[k, 1, b], -1.0 * Q[k, 2, b],
                                            -1.0 * Q[k, 3, b])
                a0[b] += t0
                a1[b] += t1
                a2[b] += t2
                a3[b] += t3
    for b in range(nl):
        acc[0, b] += 2.0 * a0[b]
        acc[1, b] += 2.0 * a1[b]
        acc[2, b] += 2.0 * a2[b]
        acc[3, b] += 2.0 * a3[b]


@njit(cache=True)
def _fwd_tangent(X, D, Q, Qd, k, qb, rw, dim):
    """One pass: D <- U D + dU X, X <- U X (U = U(q), dU = U(qdot) of block k) on qubit qb."""
    nl = X.shape[2]
    step = 1 << qb
    for hi in range(0, dim, 2 * step):
        for i0 in range(hi, hi + step):
            r0, r1 = rw[i0], rw[i0 + step]  # the pair's rows (logical -> physical, see _permute)
            for b in range(nl):
                q0, q1, q2, q3 = Q[k, 0, b], Q[k, 1, b], Q[k, 2, b], Q[k, 3, b]
                e0, e1, e2, e3 = Qd[k, 0, b], Qd[k, 1, b], Qd[k, 2, b], Qd[k, 3, b]
                s0r, s0i, s1r, s1i = X[r0, 0, b], X[r0, 1, b], X[r1, 0, b], X[r1, 1, b]
                t0r, t0i, t1r, t1i = D[r0, 0, b], D[r0, 1, b], D[r1, 0, b], D[r1, 1, b]
                D[r0, 0, b] = q0 * t0r + q3 * t0i - q2 * t1r + q1 * t1i + e0 * s0r + e3 * s0i - e2 * s1r + e1 * s1i
                D[r0, 1, b] = q0 * t0i - q3 * t0r - q2 * t1i - q1 * t1r + e0 * s0i - e3 * s0r - e2 * s1i - e1 * s1r
                D[r1, 0, b] = q2 * t0r + q1 * t0i + q0 * t1r - q3 * t1i + e2 * s0r + e1 * s0i + e0 * s1r - e3 * s1i
                D[r1, 1, b] = q2 * t0i - q1 * t0r + q0 * t1i + q3 * t1r + e2 * s0i - e1 * s0r + e0 * s1i + e3 * s1r
                X[r0, 0, b] = q0 * s0r + q3 * s0i - q2 * s1r + q1 * s1i
                X[r0, 1, b] = q0 * s0i - q3 * s0r - q2 * s1i - q1 * s1r
                X[r1, 0, b] = q2 * s0r + q1 * s0i + q0 * s1r - q3 * s1i
                X[r1, 1, b] = q2 * s0i - q1 * s0r + q0 * s1i + q3 * s1r


@njit(cache=True)
def _undo_tangent(X, D, Q, Qd, k, qb, rw, dim):
    """One pass, the inverse of _fwd_tangent: X <- U^dag X, then D <- U^dag (D - dU X)."""
    nl = X.shape[2]
    step = 1 << qb
    for hi in range(0, dim, 2 * step):
        for i0 in range(hi, hi + step):
            r0, r1 = rw[i0], rw[i0 + step]  # the pair's rows (logical -> physical, see _permute)
            for b in range(nl):
                q0, q1, q2, q3 = Q[k, 0, b], -Q[k, 1, b], -Q[k, 2, b], -Q[k, 3, b]
                e0, e1, e2, e3 = Qd[k, 0, b], Qd[k, 1, b], Qd[k, 2, b], Qd[k, 3, b]
                s0r, s0i, s1r, s1i = X[r0, 0, b], X[r0, 1, b], X[r1, 0, b], X[r1, 1, b]
                x0r = q0 * s0r + q3 * s0i - q2 * s1r + q1 * s1i
                x0i = q0 * s0i - q3 * s0r - q2 * s1i - q1 * s1r
                x1r = q2 * s0r + q1 * s0i + q0 * s1r - q3 * s1i
                x1i = q2 * s0i - q1 * s0r + q0 * s1i + q3 * s1r
                t0r = D[r0, 0, b] - (e0 * x0r + e3 * x0i - e2 * x1r + e1 * x1i)
                t0i = D[r0, 1, b] - (e0 * x0i - e3 * x0r - e2 * x1i - e1 * x1r)
                t1r = D[r1, 0, b] - (e2 * x0r + e1 * x0i + e0 * x1r - e3 * x1i)
                t1i = D[r1, 1, b] - (e2 * x0i - e1 * x0r + e0 * x1i + e3 * x1r)
                D[r0, 0, b] = q0 * t0r + q3 * t0i - q2 * t1r + q1 * t1i
                D[r0, 1, b] = q0 * t0i - q3 * t0r - q2 * t1i - q1 * t1r
                D[r1, 0, b] = q2 * t0r + q1 * t0i + q0 * t1r - q3 * t1i
                D[r1, 1, b] = q2 * t0i - q1 * t0r + q0 * t1i + q3 * t1r
                X[r0, 0, b] = x0r
                X[r0, 1, b] = x0i
                X[r1, 0, b] = x1r
                X[r1, 1, b] = x1i


@njit(cache=True)
def _adjoint_tangent(L, M, Q, Qd, k, qb, rw, dim):
    """One pass: M <- U^dag M + dU^dag L, L <- U^dag L."""
    nl = L.shape[2]
    step = 1 << qb
    for hi in range(0, dim, 2 * step):
        for i0 in range(hi, hi + step):
            r0, r1 = rw[i0], rw[i0 + step]  # the pair's rows (logical -> physical, see _permute)
            for b in range(nl):
                q0, q1, q2, q3 = Q[k, 0, b], -Q[k, 1, b], -Q[k, 2, b], -Q[k, 3, b]
                e0, e1, e2, e3 = Qd[k, 0, b], -Qd[k, 1, b], -Qd[k, 2, b], -Qd[k, 3, b]
                s0r, s0i, s1r, s1i = L[r0, 0, b], L[r0, 1, b], L[r1, 0, b], L[r1, 1, b]
                t0r, t0i, t1r, t1i = M[r0, 0, b], M[r0, 1, b], M[r1, 0, b], M[r1, 1, b]
                M[r0, 0, b] = q0 * t0r + q3 * t0i - q2 * t1r + q1 * t1i + e0 * s0r + e3 * s0i - e2 * s1r + e1 * s1i
                M[r0, 1, b] = q0 * t0i - q3 * t0r - q2 * t1i - q1 * t1r + e0 * s0i - e3 * s0r - e2 * s1i - e1 * s1r
                M[r1, 0, b] = q2 * t0r + q1 * t0i + q0 * t1r - q3 * t1i + e2 * s0r + e1 * s0i + e0 * s1r - e3 * s1i
                M[r1, 1, b] = q2 * t0i - q1 * t0r + q0 * t1i + q3 * t1r + e2 * s0i - e1 * s0r + e0 * s1i + e3 * s1r
                L[r0, 0, b] = q0 * s0r + q3 * s0i - q2 * s1r + q1 * s1i
                L[r0, 1, b] = q0 * s0i - q3 * s0r - q2 * s1i - q1 * s1r
                L[r1, 0, b] = q2 * s0r + q1 * s0i + q0 * s1r - q3 * s1i
                L[r1, 1, b] = q2 * s0i - q1 * s0r + q0 * s1i + q3 * s1r


@njit(cache=True)
def _transition_tangent(L, M, X, D, acc, accd, qb, rw, dim):
    """acc += T(L, X), accd += T(M, X) + T(L, D) with T the block gradient of :func:`_back`, in two passes (one per
    accumulator set: eight lane accumulators and sixteen loads in one loop do not vectorise, four do); the second
    pass is :func:`_transition_tangent_d`."""
    nl = L.shape[2]
    step = 1 << qb
    a0 = np.zeros(nl)
    a1 = np.zeros(nl)
    a2 = np.zeros(nl)
    a3 = np.zeros(nl)
    for hi in range(0, dim, 2 * step):
        for i0 in range(hi, hi + step):
            r0, r1 = rw[i0], rw[i0 + step]  # the pair's rows (logical -> physical, see _permute)
            for b in range(nl):
                l0r, l0i, l1r, l1i = L[r0, 0, b], L[r0, 1, b], L[r1, 0, b], L[r1, 1, b]
                p0r, p0i, p1r, p1i = X[r0, 0, b], X[r0, 1, b], X[r1, 0, b], X[r1, 1, b]
                a0[b] += l0r * p0r + l0i * p0i + l1r * p1r + l1i * p1i
                a1[b] += l0r * p1i - l0i * p1r + l1r * p0i - l1i * p0r
                a2[b] += l1r * p0r + l1i * p0i - l0r * p1r - l0i * p1i
                a3[b] += l0r * p0i - l0i * p0r - l1r * p1i + l1i * p1r
    for b in range(nl):
        acc[0, b] += 2.0 * a0[b]
        acc[1, b] += 2.0 * a1[b]
        acc[2, b] += 2.0 * a2[b]
        acc[3, b] += 2.0 * a3[b]
    _transition_tangent_d(L, M, X, D, accd, qb, rw, dim)


@njit(cache=True)
def _transition_tangent_d(L, M, X, D, accd, qb, rw, dim):
    """accd += T(M, X) + T(L, D): the second pass of :func:`_transition_tangent` alone (for :func:`hvp_ws` given
    value_grad's block gradients, whose acc = T(L, X) sums they are)."""
    nl = L.shape[2]
    step = 1 << qb
    c0 = np.zeros(nl)
    c1 = np.zeros(nl)
    c2 = np.zeros(nl)
    c3 = np.zeros(nl)
    for hi in range(0, dim, 2 * step):
        for i0 in range(hi, hi + step):
            r0, r1 = rw[i0], rw[i0 + step]  # the pair's rows (logical -> physical, see _permute)
            for b in range(nl):
                l0r, l0i, l1r, l1i = L[r0, 0, b], L[r0, 1, b], L[r1, 0, b], L[r1, 1, b]
                m0r, m0i, m1r, m1i = M[r0, 0, b], M[r0, 1, b], M[r1, 0, b], M[r1, 1, b]
                p0r, p0i, p1r, p1i = X[r0, 0, b], X[r0, 1, b], X[r1, 0, b], X[r1, 1, b]
                d0r, d0i, d1r, d1i = D[r0, 0, b], D[r0, 1, b], D[r1, 0, b], D[r1, 1, b]
                c0[b] += m0r * p0r + m0i * p0i + m1r * p1r + m1i * p1i + l0r * d0r + l0i * d0i + l1r * d1r + l1i * d1i
                c1[b] += m0r * p1i - m0i * p1r + m1r * p0i - m1i * p0r + l0r * d1i - l0i * d1r + l1r * d0i - l1i * d0r
                c2[b] += m1r * p0r + m1i * p0i - m0r * p1r - m0i * p1i + l1r * d0r + l1i * d0i - l0r * d1r - l0i * d1i
                c3[b] += m0r * p0i - m0i * p0r - m1r * p1i + m1i * p1r + l0r * d0i - l0i * d0r - l1r * d1i + l1i * d1r
    for b in range(nl):
        accd[0, b] += 2.0 * c0[b]
        accd[1, b] += 2.0 * c1[b]
        accd[2, b] += 2.0 * c2[b]
        accd[3, b] += 2.0 * c3[b]


# ---- rotations about a Hermitian monomial involution M (op type 2): U = exp(-i theta M / 2), applied as
# U' = e^{i theta / 2} U = I + (e^{i theta} - 1) P with P = (I - M) / 2 (the projector on M's -1 eigenspace; the global
# phase changes no expectation value and no derivative of one). M = perm + phases m (M psi)_j = m_j psi_perm[j]; an
# involution pairs j with k = perm[j] (m_j m_k = 1, m_k = conj m_j) or fixes j (m_j = +-1): (P psi)_j =
# (psi_j - m_j psi_k) / 2 and (P psi)_k = -m_k (P psi)_j on a pair, psi_j on a fixed point with m_j = -1, 0 on one
# with m_j = +1. The angle is phi[a]; C, Sn hold cos and sin of its half, e^{i theta} - 1 = -2 Sn^2 + 2 i C Sn.
# Derivatives from the states *after* the op: dU'/dtheta psi = i P U' psi, so dy/dtheta = -2 Im <lambda'|P|psi'>
# (lambda', psi' the adjoint state and the state after the op), and its tangent along phidot is
# -2 Im (<M'|P|psi'> + <lambda'|P|D'>) with M', D' their tangents: no explicit dependence on theta is left.
@njit(cache=True, inline='always')
def _pm(X, rj, rk, b, ar, ai):
    """(P X)_j of the pair (j, k) in lane b, m_j = ar + i ai."""
    xkr, xki = X[rk, 0, b], X[rk, 1, b]
    return 0.5 * (X[rj, 0, b] - (ar * xkr - ai * xki)), 0.5 * (X[rj, 1, b] - (ar * xki + ai * xkr))


@njit(cache=True, inline='always')
def _cmul(zr, zi, dr, di):
    return zr * dr - zi * di, zr * di + zi * dr


@njit(cache=True, inline='always')
def _pm_add(X, rj, rk, b, tr, ti, br, bi):
    """X += t P-shaped on the pair: X_j += t, X_k -= m_k t (m_k = br + i bi)."""
    X[rj, 0, b] += tr
    X[rj, 1, b] += ti
    X[rk, 0, b] -= br * tr - bi * ti
    X[rk, 1, b] -= br * ti + bi * tr


@njit(cache=True, inline='always')
def _phase_mul(X, r, b, er, ei):
    xr, xi = X[r, 0, b], X[r, 1, b]
    X[r, 0, b] = er * xr - ei * xi
    X[r, 1, b] = er * xi + ei * xr


@njit(cache=True)
def _mrot_apply(X, perm, mr, mi, C, Sn, a, sg, rw, dim):
    """X <- U' X in place (sg = -1: U'^dagger)."""
    nl = X.shape[2]
    for j in range(dim):
        k = perm[j]
        if k > j:
            rj, rk = rw[j], rw[k]
            ar, ai, br, bi = mr[j], mi[j], mr[k], mi[k]
            for b in range(nl):
                s, c = Sn[a, b], C[a, b]
                dr, di = _pm(X, rj, rk, b, ar, ai)
                tr, ti = _cmul(-2.0 * s * s, sg * 2.0 * c * s, dr, di)
                _pm_add(X, rj, rk, b, tr, ti, br, bi)
        elif k == j and mr[j] < 0.0:
            r = rw[j]
            for b in range(nl):
                s, c = Sn[a, b], C[a, b]
                _phase_mul(X, r, b, 1.0 - 2.0 * s * s, sg * 2.0 * c * s)


@njit(cache=True)
def _mrot_back(X, L, perm, mr, mi, C, Sn, a, rw, dim, Gt):
    """One backward step of the adjoint sweep over an op of type 2: Gt[a] += dy/dtheta = -2 Im <L|P|X> (X, L the
    state and the adjoint state after the op), then X <- U'^dagger X, L <- U'^dagger L, in one pass."""
    nl = X.shape[2]
    g = np.zeros(nl)
    for j in range(dim):
        k = perm[j]
        if k > j:
            rj, rk = rw[j], rw[k]
            ar, ai, br, bi = mr[j], mi[j], mr[k], mi[k]
            for b in range(nl):
                s, c = Sn[a, b], C[a, b]
                zr, zi = -2.0 * s * s, -2.0 * c * s
                dxr, dxi = _pm(X, rj, rk, b, ar, ai)
                dlr, dli = _pm(L, rj, rk, b, ar, ai)
                g[b] += dlr * dxi - dli * dxr  # Im(conj(dL) dX), twice per pair (j and k)
                tr, ti = _cmul(zr, zi, dxr, dxi)
                _pm_add(X, rj, rk, b, tr, ti, br, bi)
                tr, ti = _cmul(zr, zi, dlr, dli)
                _pm_add(L, rj, rk, b, tr, ti, br, bi)
        elif k == j and mr[j] < 0.0:
            r = rw[j]
            for b in range(nl):
                s, c = Sn[a, b], C[a, b]
                er, ei = 1.0 - 2.0 * s * s, -2.0 * c * s
                g[b] += 0.5 * (L[r, 0, b] * X[r, 1, b] - L[r, 1, b] * X[r, 0, b])
                _phase_mul(X, r, b, er, ei)
                _phase_mul(L, r, b, er, ei)
    for b in range(nl):
        Gt[a, b] += -4.0 * g[b]


@njit(cache=True)
def _mrot_tangent(X, D, perm, mr, mi, C, Sn, V, a, sg, tangent, rw, dim):
    """sg = +1: D <- U' D + dU' X, X <- U' X (the forward tangent sweep); sg = -1: X <- U'^dagger X, D <-
    U'^dagger D - i thetadot e^{-i theta} P X (the inverse of the forward step, and the same map steps the adjoint
    state and its tangent back: L <- U'^dagger L, M <- U'^dagger M + dU'^dagger L). thetadot = V[a]; without
    ``tangent`` (thetadot = 0 on the tile) its terms are skipped."""
    nl = X.shape[2]
    for j in range(dim):
        k = perm[j]
        if k > j:
            rj, rk = rw[j], rw[k]
            ar, ai, br, bi = mr[j], mi[j], mr[k], mi[k]
            for b in range(nl):
                s, c = Sn[a, b], C[a, b]
                zr, zi = -2.0 * s * s, sg * 2.0 * c * s
                dxr, dxi = _pm(X, rj, rk, b, ar, ai)
                ddr, ddi = _pm(D, rj, rk, b, ar, ai)
                wr, wi = _cmul(zr, zi, ddr, ddi)
                if tangent:
                    # + sg i thetadot (1 + z) dX  (forward: i thetadot e^{i theta} P X; back: -i thetadot e^{-i theta} P X')
                    v = sg * V[a, b]
                    pr, pi = _cmul(1.0 + zr, zi, dxr, dxi)
                    wr -= v * pi
                    wi += v * pr
                _pm_add(D, rj, rk, b, wr, wi, br, bi)
                tr, ti = _cmul(zr, zi, dxr, dxi)
                _pm_add(X, rj, rk, b, tr, ti, br, bi)
        elif k == j and mr[j] < 0.0:
            r = rw[j]
            for b in range(nl):
                s, c = Sn[a, b], C[a, b]
                er, ei = 1.0 - 2.0 * s * s, sg * 2.0 * c * s
                nr, ni = _cmul(er, ei, D[r, 0, b], D[r, 1, b])
                if tangent:
                    v = sg * V[a, b]
                    pr, pi = _cmul(er, ei, X[r, 0, b], X[r, 1, b])
                    nr -= v * pi
                    ni += v * pr
                D[r, 0, b] = nr
                D[r, 1, b] = ni
                _phase_mul(X, r, b, er, ei)


@njit(cache=True)
def _mrot_hess(X, D, L, M, perm, mr, mi, a, rw, dim, Ht):
    """Ht[a] += the tangent of dy/dtheta, -2 Im (<M|P|X> + <L|P|D>), all four states after the op."""
    nl = X.shape[2]
    g = np.zeros(nl)
    for j in range(dim):
        k = perm[j]
        if k > j:
            rj, rk = rw[j], rw[k]
            ar, ai = mr[j], mi[j]
            for b in range(nl):
                dxr, dxi = _pm(X, rj, rk, b, ar, ai)
                ddr, ddi = _pm(D, rj, rk, b, ar, ai)
                dlr, dli = _pm(L, rj, rk, b, ar, ai)
                dmr, dmi = _pm(M, rj, rk, b, ar, ai)
                g[b] += (dmr * dxi - dmi * dxr) + (dlr * ddi - dli * ddr)
        elif k == j and mr[j] < 0.0:
            r = rw[j]
            for b in range(nl):
                g[b] += 0.5 * ((M[r, 0, b] * X[r, 1, b] - M[r, 1, b] * X[r, 0, b])
                               + (L[r, 0, b] * D[r, 1, b] - L[r, 1, b] * D[r, 0, b]))
    for b in range(nl):
        Ht[a, b] += -4.0 * g[b]


# The same for an involution that is a pure permutation (all phases exactly 1, e.g. the SWAP of the Heisenberg exchange:
# no fixed point changes, (P psi)_j = (psi_j - psi_k) / 2 = -(P psi)_k): the general kernels' arithmetic without the
# factors 1 and 0, and with the 1/2 of P folded into z (about half the flops). Each lane loop stays a loop of its own:
# fused into one loop (the hvp's backward step over X, D, L and M) it was not vectorised and 40% slower than three
# passes; :func:`_swap_hvp_back` runs the three loops pair by pair instead.
@njit(cache=True)
def _swap_z(C, Sn, a, sg, nl):
    """(e^{i sg theta} - 1) / 2 per lane: (real parts, imaginary parts) of the first nl lanes."""
    zr = np.empty(nl)
    zi = np.empty(nl)
    for b in range(nl):
        s, c = Sn[a, b], C[a, b]
        zr[b] = -s * s
        zi[b] = sg * c * s
    return zr, zi


@njit(cache=True, inline='always')
def _sd(X, rj, rk, b):
    """2 (P X)_j of a pure-permutation pair (j, k) in lane b."""
    return X[rj, 0, b] - X[rk, 0, b], X[rj, 1, b] - X[rk, 1, b]


@njit(cache=True, inline='always')
def _sd_add(X, rj, rk, b, tr, ti):
    X[rj, 0, b] += tr
    X[rj, 1, b] += ti
    X[rk, 0, b] -= tr
    X[rk, 1, b] -= ti


@njit(cache=True)
def _swap_apply(X, perm, C, Sn, a, sg, rw, dim):
    """:func:`_mrot_apply` for a pure permutation."""
    nl = X.shape[2]
    zr, zi = _swap_z(C, Sn, a, sg, nl)
    for j in range(dim):
        k = perm[j]
        if k > j:
            rj, rk = rw[j], rw[k]
            for b in range(nl):
                dr, di = _sd(X, rj, rk, b)
                tr, ti = _cmul(zr[b], zi[b], dr, di)
                _sd_add(X, rj, rk, b, tr, ti)


@njit(cache=True)
def _swap_back(X, L, perm, C, Sn, a, rw, dim, Gt):
    """:func:`_mrot_back` for a pure permutation."""
    nl = X.shape[2]
    zr, zi = _swap_z(C, Sn, a, -1.0, nl)
    g = np.zeros(nl)
    for j in range(dim):
        k = perm[j]
        if k > j:
            rj, rk = rw[j], rw[k]
            for b in range(nl):
                dxr, dxi = _sd(X, rj, rk, b)
                dlr, dli = _sd(L, rj, rk, b)
                g[b] += dlr * dxi - dli * dxr
                tr, ti = _cmul(zr[b], zi[b], dxr, dxi)
                _sd_add(X, rj, rk, b, tr, ti)
                tr, ti = _cmul(zr[b], zi[b], dlr, dli)
                _sd_add(L, rj, rk, b, tr, ti)
    for b in range(nl):
        Gt[a, b] += -g[b]  # -4 Im(conj(dL) dX) of the halved differences


@njit(cache=True, inline='always')
def _swap_tangent_pair(X, D, rj, rk, zr, zi, V, a, sg, tangent):
    """The lane loop of :func:`_swap_tangent` on one pair of rows (the tangent flag selects one of two loops: with the
    branch inside, LLVM does not vectorise it)."""
    nl = X.shape[2]
    if tangent:
        for b in range(nl):
            dxr, dxi = _sd(X, rj, rk, b)
            ddr, ddi = _sd(D, rj, rk, b)
            v = sg * V[a, b]
            er = 0.5 + zr[b]  # e^{i sg theta} / 2
            wr = zr[b] * ddr - zi[b] * ddi - v * (er * dxi + zi[b] * dxr)
            wi = zr[b] * ddi + zi[b] * ddr + v * (er * dxr - zi[b] * dxi)
            _sd_add(D, rj, rk, b, wr, wi)
            tr, ti = _cmul(zr[b], zi[b], dxr, dxi)
            _sd_add(X, rj, rk, b, tr, ti)
    else:
        for b in range(nl):
            dxr, dxi = _sd(X, rj, rk, b)
            ddr, ddi = _sd(D, rj, rk, b)
            wr, wi = _cmul(zr[b], zi[b], ddr, ddi)
            _sd_add(D, rj, rk, b, wr, wi)
            tr, ti = _cmul(zr[b], zi[b], dxr, dxi)
            _sd_add(X, rj, rk, b, tr, ti)


@njit(cache=True)
def _swap_tangent(X, D, perm, C, Sn, V, a, sg, tangent, rw, dim):
    """:func:`_mrot_tangent` for a pure permutation."""
    nl = X.shape[2]
    zr, zi = _swap_z(C, Sn, a, sg, nl)
    for j in range(dim):
        k = perm[j]
        if k > j:
            _swap_tangent_pair(X, D, rw[j], rw[k], zr, zi, V, a, sg, tangent)


@njit(cache=True, inline='always')
def _swap_hess_pair(X, D, L, M, rj, rk, g):
    """g[lane] += Im(conj(dM) dX) + Im(conj(dL) dD) on one pair of rows (d: the differences of the pair): the
    Hessian term of :func:`_mrot_hess` for a pure permutation, -4 times the sum over pairs with the 1/2 of P
    folded in."""
    for b in range(X.shape[2]):
        dxr, dxi = _sd(X, rj, rk, b)
        ddr, ddi = _sd(D, rj, rk, b)
        dlr, dli = _sd(L, rj, rk, b)
        dmr, dmi = _sd(M, rj, rk, b)
        g[b] += (dmr * dxi - dmi * dxr) + (dlr * ddi - dli * ddr)


@njit(cache=True)
def _swap_hvp_back(X, D, L, M, perm, C, Sn, V, a, tangent, step_l, rw, dim, Ht):
    """hvp's backward step over a pure-permutation involution rotation: the Hessian term (``Ht[a] += -g``), then
    :func:`_swap_tangent` back on (X, D) and, if ``step_l``, on (L, M), pair by pair: three lane loops per pair of
    rows, so that the pair's rows of the four states stay in L1 between them instead of being read from L2 by three
    passes. The pairs are disjoint rows and ``g`` runs over them in the same order, so every lane sees the same
    operations in the same order as the three passes (bit-identical). (Fused into one lane loop, it was not
    vectorised: 4 states x 2 rows, read and written, are more pointers than LLVM checks for aliasing at run time.)
    One 6-qubit exchange at 512 lanes (2 MB of states, the size of L2), min of 200 calls: three passes 121 ns per
    lane, pair by pair 95; on the invariant H3O+ QNN, hvp 71-74 -> 69-70 ms (three interleaved pairs of processes).
    The same for the blocks' three backward passes (:func:`_undo_tangent`, :func:`_transition_tangent_d`,
    :func:`_adjoint_tangent`) gained nothing measurable (paper QNN hvp 12.2-12.7 ms either way: those loops are
    bound by arithmetic, not by L2) and was not kept."""
    nl = X.shape[2]
    zr, zi = _swap_z(C, Sn, a, -1.0, nl)
    g = np.zeros(nl)
    for j in range(dim):
        k = perm[j]
        if k > j:
            rj, rk = rw[j], rw[k]
            _swap_hess_pair(X, D, L, M, rj, rk, g)
            _swap_tangent_pair(X, D, rj, rk, zr, zi, V, a, -1.0, tangent)
            if step_l:
                _swap_tangent_pair(L, M, rj, rk, zr, zi, V, a, -1.0, tangent)
    for b in range(nl):
        Ht[a, b] += -g[b]  # -4 Im(...) of the halved differences


@njit(cache=True)
def _trig(phi, b0, nb, abatch, C, Sn):
    """cos, sin of the half angles of the tile's samples (lanes past nb repeat the last sample); angles that do
    not depend on the sample (``abatch[a] == 0``) are evaluated once; angles that no rotation uses (``abatch[a] < 0``:
    only rv elements read them, through :func:`_rv_prep`) get cos 1, sin 0 without evaluating anything."""
    nl = C.shape[1]
    for a in range(phi.shape[0]):
        if abatch[a] < 0:
            for b in range(nl):
                C[a, b] = 1.0
                Sn[a, b] = 0.0
        elif abatch[a]:
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
def _blocks(C, Sn, RV, bstart, etype, eaxis, eangle, equat, Q):
    """Block quaternions of the tile: Q[k] = q_L * ... * q_1 over the block's elements in time order."""
    for k in range(bstart.shape[0] - 1):
        Q[k] = 0.0
        Q[k, 0] = 1.0
        for e in range(bstart[k], bstart[k + 1]):
            if etype[e] == 0:
                _rot_left(Q[k], C, Sn, eangle[e], eaxis[e], 1.0)
            elif etype[e] == 2:
                _ql(Q[k], Q[k], RV[eaxis[e]], 6, 1.0)
            else:
                _fixed_left(Q[k], equat[e, 0], equat[e, 1], equat[e, 2], equat[e, 3])


@njit(cache=True)
def _block_backprop(GQk, s, t, C, Sn, RV, etype, eaxis, eangle, equat, P, Tq, Gt):
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
        elif etype[e] == 2:
            _ql(P[m + 1], P[m + 1], RV[eaxis[e]], 6, 1.0)
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
        elif etype[e] == 2:
            _rv_grad(Gt, int(equat[e, 0]), int(equat[e, 1]), int(equat[e, 2]), Tq, P[m], RV[eaxis[e]])
            _ql(Tq, Tq, RV[eaxis[e]], 6, -1.0)
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
def _rq(c, s, ax, q0, q1, q2, q3):
    """(c, s e_ax) * q for scalars (the products and sums of :func:`_rl`, in its order)."""
    if ax == 0:
        return c * q0 - s * q1, c * q1 + s * q0, c * q2 - s * q3, c * q3 + s * q2
    elif ax == 1:
        return c * q0 - s * q2, c * q1 + s * q3, c * q2 + s * q0, c * q3 - s * q1
    return c * q0 - s * q3, c * q1 - s * q2, c * q2 + s * q1, c * q3 + s * q0


@njit(cache=True, inline='always')
def _tangent_loop(qs, qds, q, qd, c, sn, cd, sd, ax, tangent):
    """The lane loop of :func:`_tangent_step` for a rotation about axis ax."""
    for b in range(q.shape[1]):
        q0, q1, q2, q3 = qs[0, b], qs[1, b], qs[2, b], qs[3, b]
        d0, d1, d2, d3 = qds[0, b], qds[1, b], qds[2, b], qds[3, b]
        cb, sb = c[b], sn[b]
        n0, n1, n2, n3 = _rq(cb, sb, ax, d0, d1, d2, d3)
        if tangent:
            w0, w1, w2, w3 = _rq(cd[b], sd[b], ax, q0, q1, q2, q3)
            n0, n1, n2, n3 = n0 + w0, n1 + w1, n2 + w2, n3 + w3
        r0, r1, r2, r3 = _rq(cb, sb, ax, q0, q1, q2, q3)
        qd[0, b], qd[1, b], qd[2, b], qd[3, b] = n0, n1, n2, n3
        q[0, b], q[1, b], q[2, b], q[3, b] = r0, r1, r2, r3


@njit(cache=True)
def _tangent_step(e, qs, qds, q, qd, C, Sn, CD, SD, RV, etype, eaxis, eangle, equat, vz):
    """(q, qd) <- (r qs, r qds + (dr/dphi . phidot) qs) for element e, in one pass over the lanes (q, qd: other
    arrays than qs, qds, else the lane loop is not vectorised). vz[angle]: phidot = 0 on the tile, the second term
    is zero and skipped (adding it changed at most the sign of a zero). The axis and vz are constants in each of six
    inlined copies of the loop (so LLVM vectorises it). An rv element (type 2) always has its tangent term."""
    if etype[e] == 0:
        a, ax = eangle[e], eaxis[e]
        c, sn, cd, sd = C[a], Sn[a], CD[a], SD[a]
        if vz[a]:
            if ax == 0:
                _tangent_loop(qs, qds, q, qd, c, sn, cd, sd, 0, False)
            elif ax == 1:
                _tangent_loop(qs, qds, q, qd, c, sn, cd, sd, 1, False)
            else:
                _tangent_loop(qs, qds, q, qd, c, sn, cd, sd, 2, False)
        else:
            if ax == 0:
                _tangent_loop(qs, qds, q, qd, c, sn, cd, sd, 0, True)
            elif ax == 1:
                _tangent_loop(qs, qds, q, qd, c, sn, cd, sd, 1, True)
            else:
                _tangent_loop(qs, qds, q, qd, c, sn, cd, sd, 2, True)
    elif etype[e] == 2:
        _rv_tangent_step(qs, qds, q, qd, RV[eaxis[e]])
    else:
        _fl(qd, qds, equat[e, 0], equat[e, 1], equat[e, 2], equat[e, 3])
        _fl(q, qs, equat[e, 0], equat[e, 1], equat[e, 2], equat[e, 3])


@njit(cache=True, inline='always')
def _suffix_loop(Tq, Td, c, ns, cd, nsd, ax, tangent):
    """Td <- conj(r) Td + conj(dr . phidot) Tq (tangent; else without the second term), Tq <- conj(r) Tq, in one pass."""
    nl = Tq.shape[1]
    if tangent:
        for b in range(nl):
            a0, a1, a2, a3 = Tq[0, b], Tq[1, b], Tq[2, b], Tq[3, b]
            d0, d1, d2, d3 = Td[0, b], Td[1, b], Td[2, b], Td[3, b]
            w0, w1, w2, w3 = _rq(cd[b], nsd[b], ax, a0, a1, a2, a3)
            n0, n1, n2, n3 = _rq(c[b], ns[b], ax, d0, d1, d2, d3)
            u0, u1, u2, u3 = _rq(c[b], ns[b], ax, a0, a1, a2, a3)
            Td[0, b], Td[1, b], Td[2, b], Td[3, b] = n0 + w0, n1 + w1, n2 + w2, n3 + w3
            Tq[0, b], Tq[1, b], Tq[2, b], Tq[3, b] = u0, u1, u2, u3
    else:
        for b in range(nl):
            a0, a1, a2, a3 = Tq[0, b], Tq[1, b], Tq[2, b], Tq[3, b]
            d0, d1, d2, d3 = Td[0, b], Td[1, b], Td[2, b], Td[3, b]
            n0, n1, n2, n3 = _rq(c[b], ns[b], ax, d0, d1, d2, d3)
            u0, u1, u2, u3 = _rq(c[b], ns[b], ax, a0, a1, a2, a3)
            Td[0, b], Td[1, b], Td[2, b], Td[3, b] = n0, n1, n2, n3
            Tq[0, b], Tq[1, b], Tq[2, b], Tq[3, b] = u0, u1, u2, u3


@njit(cache=True)
def _suffix_step(Tq, Td, c, ns, cd, nsd, ax, tangent):
    """:func:`_suffix_loop` with the axis a constant in each of three inlined copies (a loop of its own and without
    the axis branch inside, so LLVM vectorises it)."""
    if tangent:
        if ax == 0:
            _suffix_loop(Tq, Td, c, ns, cd, nsd, 0, True)
        elif ax == 1:
            _suffix_loop(Tq, Td, c, ns, cd, nsd, 1, True)
        else:
            _suffix_loop(Tq, Td, c, ns, cd, nsd, 2, True)
    else:
        if ax == 0:
            _suffix_loop(Tq, Td, c, ns, cd, nsd, 0, False)
        elif ax == 1:
            _suffix_loop(Tq, Td, c, ns, cd, nsd, 1, False)
        else:
            _suffix_loop(Tq, Td, c, ns, cd, nsd, 2, False)


@njit(cache=True, inline='always')
def _ht_loop(ht, Tq, Td, Pm, Pdm, c, sn, v, ax, tangent):
    """ht[lane] += the tangent of dy/dphi of one rotation element (tangent: with the term in phidot of its angle)."""
    for b in range(Tq.shape[1]):
        a0, a1, a2, a3 = Tq[0, b], Tq[1, b], Tq[2, b], Tq[3, b]
        d0, d1, d2, d3 = Td[0, b], Td[1, b], Td[2, b], Td[3, b]
        p0, p1, p2, p3 = Pm[0, b], Pm[1, b], Pm[2, b], Pm[3, b]
        r0, r1, r2, r3 = Pdm[0, b], Pdm[1, b], Pdm[2, b], Pdm[3, b]
        h0 = d0 * p0 + d1 * p1 + d2 * p2 + d3 * p3 + a0 * r0 + a1 * r1 + a2 * r2 + a3 * r3
        if ax == 0:
            hx = -d0 * p1 + d1 * p0 - d2 * p3 + d3 * p2 - a0 * r1 + a1 * r0 - a2 * r3 + a3 * r2
        elif ax == 1:
            hx = -d0 * p2 + d1 * p3 + d2 * p0 - d3 * p1 - a0 * r2 + a1 * r3 + a2 * r0 - a3 * r1
        else:
            hx = -d0 * p3 - d1 * p2 + d2 * p1 + d3 * p0 - a0 * r3 - a1 * r2 + a2 * r1 + a3 * r0
        if tangent:
            g0 = a0 * p0 + a1 * p1 + a2 * p2 + a3 * p3
            if ax == 0:
                gx = -a0 * p1 + a1 * p0 - a2 * p3 + a3 * p2
            elif ax == 1:
                gx = -a0 * p2 + a1 * p3 + a2 * p0 - a3 * p1
            else:
                gx = -a0 * p3 - a1 * p2 + a2 * p1 + a3 * p0
            cb, sb = c[b], sn[b]
            ht[b] += 0.5 * (cb * hx - sb * h0) - 0.25 * v[b] * (sb * gx + cb * g0)
        else:
            ht[b] += 0.5 * (c[b] * hx - sn[b] * h0)


@njit(cache=True)
def _ht_step(ht, Tq, Td, Pm, Pdm, c, sn, v, ax, tangent):
    """:func:`_ht_loop` with the axis and the tangent flag constants in six inlined copies (so LLVM vectorises it)."""
    if tangent:
        if ax == 0:
            _ht_loop(ht, Tq, Td, Pm, Pdm, c, sn, v, 0, True)
        elif ax == 1:
            _ht_loop(ht, Tq, Td, Pm, Pdm, c, sn, v, 1, True)
        else:
            _ht_loop(ht, Tq, Td, Pm, Pdm, c, sn, v, 2, True)
    else:
        if ax == 0:
            _ht_loop(ht, Tq, Td, Pm, Pdm, c, sn, v, 0, False)
        elif ax == 1:
            _ht_loop(ht, Tq, Td, Pm, Pdm, c, sn, v, 1, False)
        else:
            _ht_loop(ht, Tq, Td, Pm, Pdm, c, sn, v, 2, False)


@njit(cache=True)
def _hvp_backprop(GQk, GQdk, s, t, C, Sn, NS, CD, SD, NSD, V, RV, etype, eaxis, eangle, equat, P, Pd, Tq, Td, Ht, vz):
    """Ht[angle, lane] += tangent of dy/dphi through one block's quaternion product (value_grad's
    _block_backprop differentiated along phidot; the terms in phidot[angle] are skipped where vz[angle], see
    :func:`_tangent_step`). Two passes over the lanes per element: the Ht update, and the suffix step
    Td <- conj(r) Td + conj(dr . phidot) Tq, Tq <- conj(r) Tq (one pass instead of four; in the Ht loop, LLVM did
    not vectorise it)."""
    P[0] = 0.0
    P[0, 0] = 1.0
    Pd[0] = 0.0
    for e in range(s, t - 1):
        m = e - s
        _tangent_step(e, P[m], Pd[m], P[m + 1], Pd[m + 1], C, Sn, CD, SD, RV, etype, eaxis, eangle, equat, vz)
    Tq[:] = GQk
    Td[:] = GQdk
    for e in range(t - 1, s - 1, -1):
        m = e - s
        if etype[e] == 0:
            a, ax = eangle[e], eaxis[e]
            tangent = not vz[a]
            _ht_step(Ht[a], Tq, Td, P[m], Pd[m], C[a], Sn[a], V[a], ax, tangent)
            _suffix_step(Tq, Td, C[a], NS[a], CD[a], NSD[a], ax, tangent)
        elif etype[e] == 2:
            R = RV[eaxis[e]]
            _rv_ht(Ht, int(equat[e, 0]), int(equat[e, 1]), int(equat[e, 2]), Tq, Td, P[m], Pd[m], R)
            _rv_suffix(Tq, Td, R)
        else:
            _fl(Td, Td, equat[e, 0], -equat[e, 1], -equat[e, 2], -equat[e, 3])
            _fl(Tq, Tq, equat[e, 0], -equat[e, 1], -equat[e, 2], -equat[e, 3])


# rv elements (type 2): q(v) = (cos(t/2), sin(t/2) v / t), t = |v|, v = (phi_ax, phi_ay, phi_az) (Qiskit's RVGate,
# exp(-i v . sigma / 2)). With f = sin(t/2) / t, g = f'(t) / t, h = g'(t) / t (all smooth in t^2):
#   dq0/dv_j = -f v_j / 2,          dq_i/dv_j = f delta_ij + g v_i v_j,
#   d2q0/dv_j dv_k = -(f delta_jk + g v_j v_k) / 2,
#   d2q_i/dv_j dv_k = g (delta_ij v_k + delta_ik v_j + delta_jk v_i) + h v_i v_j v_k.
@njit(cache=True, inline='always')
def _horner(c, z):
    p = c[c.shape[0] - 1]
    for k in range(c.shape[0] - 2, -1, -1):
        p = p * z + c[k]
    return p


@njit(cache=True, inline='always')
def _rv_coef(vv):
    """(q0, f, g, h) of an rv element at |v|^2 = vv: with u = |v| / 2, q0 = cos(u), f = j0(u) / 2, g = -j1(u) / (8 u),
    h = j2(u) / (32 u^2) (spherical Bessel functions), as power series in u^2 for u < 2 (exact at v = 0; the closed
    forms lose digits to cancellation at small u: h by ~40x at u = 1, ~2x at u = 2) and in closed form above."""
    z = 0.25 * vv
    u = np.sqrt(z)
    c = np.cos(u)
    if z < 4.0:
        return c, 0.5 * _horner(_J0, z), -0.125 * _horner(_J1, z), _horner(_J2, z) / 32.0
    s = np.sin(u)
    return c, 0.5 * s / u, (u * c - s) / (8.0 * u * z), ((3.0 - z) * s - 3.0 * u * c) / (32.0 * u * z * z)


@njit(cache=True)
def _rv_prep(phi, b0, nb, etype, eaxis, equat, RV):
    """RV[r, :10, lane] of the tile's samples (lanes past nb repeat the last sample) for every rv element e (its
    ordinal r = eaxis[e], its angles equat[e, :3]): v, f, g, h and the quaternion q = (q0, f v)."""
    nl = RV.shape[2]
    for e in range(etype.shape[0]):
        if etype[e] == 2:
            R = RV[eaxis[e]]
            ax, ay, az = int(equat[e, 0]), int(equat[e, 1]), int(equat[e, 2])
            for b in range(nl):
                col = b0 + (b if b < nb else nb - 1)
                vx, vy, vz = phi[ax, col], phi[ay, col], phi[az, col]
                q0, f, g, h = _rv_coef(vx * vx + vy * vy + vz * vz)
                R[0, b], R[1, b], R[2, b] = vx, vy, vz
                R[3, b], R[4, b], R[5, b] = f, g, h
                R[6, b], R[7, b], R[8, b], R[9, b] = q0, f * vx, f * vy, f * vz


@njit(cache=True)
def _rv_tangent(V, etype, eaxis, equat, RV):
    """RV[r, 10:18, lane]: vdot (the direction phidot of the rv element's angles, from V), v . vdot and the tangent
    quaternion qdot = dq/dv . vdot = (-f (v . vdot) / 2, f vdot + g (v . vdot) v)."""
    nl = RV.shape[2]
    for e in range(etype.shape[0]):
        if etype[e] == 2:
            R = RV[eaxis[e]]
            ax, ay, az = int(equat[e, 0]), int(equat[e, 1]), int(equat[e, 2])
            for b in range(nl):
                dx, dy, dz = V[ax, b], V[ay, b], V[az, b]
                vx, vy, vz, f, g = R[0, b], R[1, b], R[2, b], R[3, b], R[4, b]
                s = vx * dx + vy * dy + vz * dz
                R[10, b], R[11, b], R[12, b], R[13, b] = dx, dy, dz, s
                R[14, b] = -0.5 * f * s
                R[15, b] = f * dx + g * s * vx
                R[16, b] = f * dy + g * s * vy
                R[17, b] = f * dz + g * s * vz


@njit(cache=True, inline='always')
def _hq(a0, a1, a2, a3, b0, b1, b2, b3):
    """The quaternion product a * b of scalars."""
    return (a0 * b0 - a1 * b1 - a2 * b2 - a3 * b3, a0 * b1 + a1 * b0 + a2 * b3 - a3 * b2,
            a0 * b2 - a1 * b3 + a2 * b0 + a3 * b1, a0 * b3 + a1 * b2 - a2 * b1 + a3 * b0)


@njit(cache=True)
def _ql(out, q, R, o, sign):
    """out [4, lanes] = (R[o], sign R[o+1:o+4]) * q per lane (sign = -1: the conjugate; out may be q)."""
    for b in range(q.shape[1]):
        n0, n1, n2, n3 = _hq(R[o, b], sign * R[o + 1, b], sign * R[o + 2, b], sign * R[o + 3, b],
                             q[0, b], q[1, b], q[2, b], q[3, b])
        out[0, b], out[1, b], out[2, b], out[3, b] = n0, n1, n2, n3


@njit(cache=True, inline='always')
def _rv_dv(R, b, g0, g1, g2, g3):
    """(dq/dv)^T g of an rv element: the gradient w.r.t. (v_x, v_y, v_z) of <g, q(v)>."""
    vx, vy, vz, f, g = R[0, b], R[1, b], R[2, b], R[3, b], R[4, b]
    c = g * (vx * g1 + vy * g2 + vz * g3) - 0.5 * f * g0
    return f * g1 + c * vx, f * g2 + c * vy, f * g3 + c * vz


@njit(cache=True)
def _rv_grad(Gt, ax, ay, az, Tq, Pm, R):
    """Gt[angle, lane] += dy/dv of one rv element (angles ax, ay, az, possibly equal), given Tq = conj(suffix) dy/dQ
    and the prefix Pm: dy/dq = Tq conj(Pm), then through dq/dv."""
    for b in range(Tq.shape[1]):
        g0, g1, g2, g3 = _hq(Tq[0, b], Tq[1, b], Tq[2, b], Tq[3, b], Pm[0, b], -Pm[1, b], -Pm[2, b], -Pm[3, b])
        dx, dy, dz = _rv_dv(R, b, g0, g1, g2, g3)
        Gt[ax, b] += dx
        Gt[ay, b] += dy
        Gt[az, b] += dz


@njit(cache=True)
def _rv_tangent_step(qs, qds, q, qd, R):
    """(q, qd) <- (r qs, r qds + qdot qs) for an rv element (r = R[6:10], qdot = R[14:18])."""
    for b in range(q.shape[1]):
        r0, r1, r2, r3 = R[6, b], R[7, b], R[8, b], R[9, b]
        a0, a1, a2, a3 = qs[0, b], qs[1, b], qs[2, b], qs[3, b]
        n0, n1, n2, n3 = _hq(r0, r1, r2, r3, qds[0, b], qds[1, b], qds[2, b], qds[3, b])
        w0, w1, w2, w3 = _hq(R[14, b], R[15, b], R[16, b], R[17, b], a0, a1, a2, a3)
        u0, u1, u2, u3 = _hq(r0, r1, r2, r3, a0, a1, a2, a3)
        qd[0, b], qd[1, b], qd[2, b], qd[3, b] = n0 + w0, n1 + w1, n2 + w2, n3 + w3
        q[0, b], q[1, b], q[2, b], q[3, b] = u0, u1, u2, u3


@njit(cache=True)
def _rv_suffix(Tq, Td, R):
    """Td <- conj(r) Td + conj(qdot) Tq, Tq <- conj(r) Tq for an rv element, in one pass."""
    for b in range(Tq.shape[1]):
        r0, r1, r2, r3 = R[6, b], -R[7, b], -R[8, b], -R[9, b]
        a0, a1, a2, a3 = Tq[0, b], Tq[1, b], Tq[2, b], Tq[3, b]
        n0, n1, n2, n3 = _hq(r0, r1, r2, r3, Td[0, b], Td[1, b], Td[2, b], Td[3, b])
        w0, w1, w2, w3 = _hq(R[14, b], -R[15, b], -R[16, b], -R[17, b], a0, a1, a2, a3)
        u0, u1, u2, u3 = _hq(r0, r1, r2, r3, a0, a1, a2, a3)
        Td[0, b], Td[1, b], Td[2, b], Td[3, b] = n0 + w0, n1 + w1, n2 + w2, n3 + w3
        Tq[0, b], Tq[1, b], Tq[2, b], Tq[3, b] = u0, u1, u2, u3


@njit(cache=True)
def _rv_ht(Ht, ax, ay, az, Tq, Td, Pm, Pdm, R):
    """Ht[angle, lane] += the tangent along phidot of dy/dv of one rv element (_rv_grad differentiated): with
    g = Tq conj(Pm) (dy/dq) and its tangent h = Td conj(Pm) + Tq conj(Pdm),
    (dq/dv)^T h + (d2q/dv2 . vdot)^T g."""
    for b in range(Tq.shape[1]):
        a0, a1, a2, a3 = Tq[0, b], Tq[1, b], Tq[2, b], Tq[3, b]
        p0, p1, p2, p3 = Pm[0, b], -Pm[1, b], -Pm[2, b], -Pm[3, b]
        g0, g1, g2, g3 = _hq(a0, a1, a2, a3, p0, p1, p2, p3)
        h0, h1, h2, h3 = _hq(Td[0, b], Td[1, b], Td[2, b], Td[3, b], p0, p1, p2, p3)
        k0, k1, k2, k3 = _hq(a0, a1, a2, a3, Pdm[0, b], -Pdm[1, b], -Pdm[2, b], -Pdm[3, b])
        h0, h1, h2, h3 = h0 + k0, h1 + k1, h2 + k2, h3 + k3
        hx, hy, hz = _rv_dv(R, b, h0, h1, h2, h3)
        vx, vy, vz, f, g, h = R[0, b], R[1, b], R[2, b], R[3, b], R[4, b], R[5, b]
        dx, dy, dz, s = R[10, b], R[11, b], R[12, b], R[13, b]
        vg = vx * g1 + vy * g2 + vz * g3
        dg = dx * g1 + dy * g2 + dz * g3
        cd = g * vg - 0.5 * f * g0                 # along vdot
        cv = g * dg + h * vg * s - 0.5 * g * s * g0  # along v
        gs = g * s                                 # along g
        Ht[ax, b] += hx + gs * g1 + cd * dx + cv * vx
        Ht[ay, b] += hy + gs * g2 + cd * dy + cv * vy
        Ht[az, b] += hz + gs * g3 + cd * dz + cv * vz


@njit(cache=True)
def _forward_sweep(X, rw, rw2, ops, Q, mperm, mpr, mpi, triv, dim, C, Sn):
    """The final state from |0> in X, in the rows rw (rw, rw2: row maps, rw the identity on entry): returns
    (rw, rw2) of the final state."""
    X[:] = 0.0
    X[0, 0, :] = 1.0
    for t in range(ops.shape[0]):
        if ops[t, 0] == 0:
            _apply(X, Q, ops[t, 1], 1.0, ops[t, 2], rw, dim)
        elif ops[t, 0] == 2:
            m = ops[t, 1]
            if triv[m]:
                _swap_apply(X, mperm[m], C, Sn, ops[t, 2], 1.0, rw, dim)
            else:
                _mrot_apply(X, mperm[m], mpr[m], mpi[m], C, Sn, ops[t, 2], 1.0, rw, dim)
        else:
            m = ops[t, 1]
            rw, rw2 = _permute(rw, rw2, mperm[m], False)
            if not triv[m]:
                _phases(X, rw, mpr[m], mpi[m], False, dim)
    return rw, rw2


@njit(cache=True)
def _identity_rows(rw):
    for j in range(rw.shape[0]):
        rw[j] = j


@njit(cache=True)
def forward_ws(phi, ws, n, ops, mperm, mpr, mpi, bstart, etype, eaxis, eangle, equat, operm, opr, opi, abatch):
    """<O> [B] for angles phi [A, B]; ``ws``: a float64 work array (see :func:`workspace_size`; too small: allocated)."""
    A, B = phi.shape
    dim = 1 << n
    BT = _tile_width(B)
    K = bstart.shape[0] - 1
    R = _n_rv(etype)
    ws = _scratch(ws, 0, A, B, n, bstart, R)
    X, o = _v3(ws, 0, dim, 2, BT)
    Lam, o = _v3(ws, o, dim, 2, BT)
    Q, o = _v3(ws, o, max(K, 1), 4, BT)
    C, o = _v2(ws, o, A, BT)
    Sn, o = _v2(ws, o, A, BT)
    yt, o = _v1(ws, o, BT)
    RV, o = _v3(ws, o, R, RV_ROWS, BT)
    y = np.empty(B)
    triv = _trivial_phases(mpr, mpi)
    rw = np.empty(dim, dtype=np.int64)
    rw2 = np.empty(dim, dtype=np.int64)
    for b0 in range(0, B, BT):
        nb = min(BT, B - b0)
        _trig(phi, b0, nb, abatch, C, Sn)
        if R:
            _rv_prep(phi, b0, nb, etype, eaxis, equat, RV)
        _blocks(C, Sn, RV, bstart, etype, eaxis, eangle, equat, Q)
        _identity_rows(rw)
        rw, rw2 = _forward_sweep(X, rw, rw2, ops, Q, mperm, mpr, mpi, triv, dim, C, Sn)
        _observe(X, Lam, operm, opr, opi, rw, dim, yt)
        for b in range(nb):
            y[b0 + b] = yt[b]
    return y


@njit(cache=True)
def forward(phi, n, ops, mperm, mpr, mpi, bstart, etype, eaxis, eangle, equat, operm, opr, opi, abatch):
    """<O> [B] for angles phi [A, B]."""
    return forward_ws(phi, np.empty(0), n, ops, mperm, mpr, mpi, bstart, etype, eaxis, eangle, equat, operm, opr, opi, abatch)


@njit(cache=True)
def value_grad_ws(phi, ws, GQall, n, ops, mperm, mpr, mpi, bstart, etype, eaxis, eangle, equat, operm, opr, opi, abatch):
    """:func:`value_grad` with a work array ``ws`` (see :func:`forward_ws`); if ``GQall`` is [K, 4, B] (not empty), the
    block gradients dy/dq are written to it (for :func:`hvp_ws`)."""
    A, B = phi.shape
    dim = 1 << n
    BT = _tile_width(B)
    T = ops.shape[0]
    K = bstart.shape[0] - 1
    Lmax = 1
    for k in range(K):
        Lmax = max(Lmax, bstart[k + 1] - bstart[k])
    keep = GQall.shape[2] > 0
    R = _n_rv(etype)
    ws = _scratch(ws, 1, A, B, n, bstart, R)
    X, o = _v3(ws, 0, dim, 2, BT)
    L, o = _v3(ws, o, dim, 2, BT)
    Q, o = _v3(ws, o, max(K, 1), 4, BT)
    GQ, o = _v3(ws, o, max(K, 1), 4, BT)
    P, o = _v3(ws, o, Lmax, 4, BT)
    Tq, o = _v2(ws, o, 4, BT)
    C, o = _v2(ws, o, A, BT)
    Sn, o = _v2(ws, o, A, BT)
    Gt, o = _v2(ws, o, A, BT)
    yt, o = _v1(ws, o, BT)
    RV, o = _v3(ws, o, R, RV_ROWS, BT)
    y = np.empty(B)
    G = np.empty((A, B))
    triv = _trivial_phases(mpr, mpi)
    rw = np.empty(dim, dtype=np.int64)
    rw2 = np.empty(dim, dtype=np.int64)
    for b0 in range(0, B, BT):
        nb = min(BT, B - b0)
        _trig(phi, b0, nb, abatch, C, Sn)
        if R:
            _rv_prep(phi, b0, nb, etype, eaxis, equat, RV)
        _blocks(C, Sn, RV, bstart, etype, eaxis, eangle, equat, Q)
        _identity_rows(rw)
        rw, rw2 = _forward_sweep(X, rw, rw2, ops, Q, mperm, mpr, mpi, triv, dim, C, Sn)
        _observe(X, L, operm, opr, opi, rw, dim, yt)
        for b in range(nb):
            y[b0 + b] = yt[b]
        GQ[:] = 0.0
        Gt[:] = 0.0
        for t in range(T - 1, -1, -1):
            if ops[t, 0] == 0:
                k, qb = ops[t, 1], ops[t, 2]
                _back(X, L, Q, k, qb, rw, dim, GQ[k])  # X: the state before op t; L: the adjoint state after it
            elif ops[t, 0] == 2:
                m = ops[t, 1]
                if triv[m]:
                    _swap_back(X, L, mperm[m], C, Sn, ops[t, 2], rw, dim, Gt)
                else:
                    _mrot_back(X, L, mperm[m], mpr[m], mpi[m], C, Sn, ops[t, 2], rw, dim, Gt)
            elif t > 0:
                m = ops[t, 1]
                if not triv[m]:
                    _phases(X, rw, mpr[m], mpi[m], True, dim)
                    _phases(L, rw, mpr[m], mpi[m], True, dim)
                rw, rw2 = _permute(rw, rw2, mperm[m], True)
        if keep:
            for k in range(K):
                for c in range(4):
                    for b in range(nb):
                        GQall[k, c, b0 + b] = GQ[k, c, b]
        for k in range(K):
            _block_backprop(GQ[k], bstart[k], bstart[k + 1], C, Sn, RV, etype, eaxis, eangle, equat, P, Tq, Gt)
        for a in range(A):
            for b in range(nb):
                G[a, b0 + b] = Gt[a, b]
    return y, G


@njit(cache=True)
def value_grad(phi, n, ops, mperm, mpr, mpi, bstart, etype, eaxis, eangle, equat, operm, opr, opi, abatch):
    """(<O> [B], d<O>/dphi [A, B]) by the adjoint method (the forward state is un-computed on the way back, so a
    tile's sweeps stay in cache)."""
    return value_grad_ws(phi, np.empty(0), np.empty((1, 4, 0)), n, ops, mperm, mpr, mpi, bstart, etype, eaxis, eangle,
                         equat, operm, opr, opi, abatch)


@njit(cache=True)
def hvp_ws(phi, phidot, GQin, ws, n, ops, mperm, mpr, mpi, bstart, etype, eaxis, eangle, equat, operm, opr, opi, abatch):
    """:func:`hvp` with a work array ``ws`` (see :func:`forward_ws`); if ``GQin`` is [K, 4, B] (not empty), the block
    gradients dy/dq are read from it (value_grad_ws's at the same phi: the same numbers) instead of being summed again."""
    A, B = phi.shape
    dim = 1 << n
    BT = _tile_width(B)
    T = ops.shape[0]
    K = bstart.shape[0] - 1
    Kp = max(K, 1)
    Lmax = 1
    for k in range(K):
        Lmax = max(Lmax, bstart[k + 1] - bstart[k])
    have_gq = GQin.shape[2] > 0
    R = _n_rv(etype)
    ws = _scratch(ws, 2, A, B, n, bstart, R)
    X, o = _v3(ws, 0, dim, 2, BT)
    D, o = _v3(ws, o, dim, 2, BT)
    L, o = _v3(ws, o, dim, 2, BT)
    M, o = _v3(ws, o, dim, 2, BT)
    Q, o = _v3(ws, o, Kp, 4, BT)
    Qd, o = _v3(ws, o, Kp, 4, BT)
    GQ, o = _v3(ws, o, Kp, 4, BT)
    GQd, o = _v3(ws, o, Kp, 4, BT)
    P, o = _v3(ws, o, max(Lmax, 2), 4, BT)
    Pd, o = _v3(ws, o, max(Lmax, 2), 4, BT)
    Tq, o = _v2(ws, o, 4, BT)
    Td, o = _v2(ws, o, 4, BT)
    C, o = _v2(ws, o, A, BT)
    Sn, o = _v2(ws, o, A, BT)
    NS, o = _v2(ws, o, A, BT)
    CD, o = _v2(ws, o, A, BT)
    SD, o = _v2(ws, o, A, BT)
    NSD, o = _v2(ws, o, A, BT)
    V, o = _v2(ws, o, A, BT)
    Ht, o = _v2(ws, o, A, BT)
    yt, o = _v1(ws, o, BT)
    ytd, o = _v1(ws, o, BT)
    RV, o = _v3(ws, o, R, RV_ROWS_HVP, BT)
    vz = np.empty(A, dtype=np.bool_)
    H = np.empty((A, B))
    triv = _trivial_phases(mpr, mpi)
    rw = np.empty(dim, dtype=np.int64)
    rw2 = np.empty(dim, dtype=np.int64)
    for b0 in range(0, B, BT):
        nb = min(BT, B - b0)
        _trig(phi, b0, nb, abatch, C, Sn)
        if R:
            _rv_prep(phi, b0, nb, etype, eaxis, equat, RV)
        # block quaternions and their tangents
        for a in range(A):
            for b in range(nb):
                V[a, b] = phidot[a, b0 + b]
            for b in range(nb, BT):
                V[a, b] = phidot[a, b0 + nb - 1]
            nz = 0
            for b in range(BT):
                v = V[a, b]
                CD[a, b] = -0.5 * v * Sn[a, b]
                SD[a, b] = 0.5 * v * C[a, b]
                NS[a, b] = -Sn[a, b]
                NSD[a, b] = -SD[a, b]
                nz += v != 0.0
            vz[a] = nz == 0  # phidot[a] = 0 on the whole tile (e.g. an angle without inputs in a force loss)
        if R:
            _rv_tangent(V, etype, eaxis, equat, RV)
        for k in range(K):
            # ping-pong between two rows of the prefix scratch (in place, source and target would be the same
            # arrays, which defeats the vectorised path of the lane loop)
            P[0] = 0.0
            P[0, 0] = 1.0
            Pd[0] = 0.0
            i = 0
            for e in range(bstart[k], bstart[k + 1]):
                _tangent_step(e, P[i], Pd[i], P[1 - i], Pd[1 - i], C, Sn, CD, SD, RV, etype, eaxis, eangle, equat, vz)
                i = 1 - i
            Q[k] = P[i]
            Qd[k] = Pd[i]
        # forward: psi and its tangent dpsi (dpsi <- U dpsi + dU psi)
        X[:] = 0.0
        X[0, 0, :] = 1.0
        D[:] = 0.0
        _identity_rows(rw)
        for t in range(T):
            if ops[t, 0] == 0:
                k, qb = ops[t, 1], ops[t, 2]
                _fwd_tangent(X, D, Q, Qd, k, qb, rw, dim)
            elif ops[t, 0] == 2:
                m, a = ops[t, 1], ops[t, 2]
                if triv[m]:
                    _swap_tangent(X, D, mperm[m], C, Sn, V, a, 1.0, not vz[a], rw, dim)
                else:
                    _mrot_tangent(X, D, mperm[m], mpr[m], mpi[m], C, Sn, V, a, 1.0, not vz[a], rw, dim)
            else:
                m = ops[t, 1]
                rw, rw2 = _permute(rw, rw2, mperm[m], False)
                if not triv[m]:
                    _phases(X, rw, mpr[m], mpi[m], False, dim)
                    _phases(D, rw, mpr[m], mpi[m], False, dim)
        _observe(X, L, operm, opr, opi, rw, dim, yt)
        _observe(D, M, operm, opr, opi, rw, dim, ytd)
        if have_gq:
            for k in range(K):
                for c in range(4):
                    for b in range(nb):
                        GQ[k, c, b] = GQin[k, c, b0 + b]
                    for b in range(nb, BT):
                        GQ[k, c, b] = GQin[k, c, b0 + nb - 1]
        else:
            GQ[:] = 0.0
        GQd[:] = 0.0
        Ht[:] = 0.0
        for t in range(T - 1, -1, -1):
            if ops[t, 0] == 0:
                k, qb = ops[t, 1], ops[t, 2]
                # un-compute: psi_t = U^dag psi_t+1, dpsi_t = U^dag (dpsi_t+1 - dU psi_t)
                _undo_tangent(X, D, Q, Qd, k, qb, rw, dim)
                if have_gq:
                    _transition_tangent_d(L, M, X, D, GQd[k], qb, rw, dim)
                else:
                    _transition_tangent(L, M, X, D, GQ[k], GQd[k], qb, rw, dim)
                if t > 0:
                    _adjoint_tangent(L, M, Q, Qd, k, qb, rw, dim)
            elif ops[t, 0] == 2:
                m, a = ops[t, 1], ops[t, 2]
                if triv[m]:
                    _swap_hvp_back(X, D, L, M, mperm[m], C, Sn, V, a, not vz[a], t > 0, rw, dim, Ht)
                else:
                    _mrot_hess(X, D, L, M, mperm[m], mpr[m], mpi[m], a, rw, dim, Ht)
                    _mrot_tangent(X, D, mperm[m], mpr[m], mpi[m], C, Sn, V, a, -1.0, not vz[a], rw, dim)
                    if t > 0:
                        _mrot_tangent(L, M, mperm[m], mpr[m], mpi[m], C, Sn, V, a, -1.0, not vz[a], rw, dim)
            elif t > 0:
                m = ops[t, 1]
                if not triv[m]:
                    _phases(X, rw, mpr[m], mpi[m], True, dim)
                    _phases(D, rw, mpr[m], mpi[m], True, dim)
                    _phases(L, rw, mpr[m], mpi[m], True, dim)
                    _phases(M, rw, mpr[m], mpi[m], True, dim)
                rw, rw2 = _permute(rw, rw2, mperm[m], True)
        # back through the quaternion products, with tangents
        for k in range(K):
            _hvp_backprop(GQ[k], GQd[k], bstart[k], bstart[k + 1], C, Sn, NS, CD, SD, NSD, V, RV, etype, eaxis, eangle, equat,
                          P, Pd, Tq, Td, Ht, vz)
        for a in range(A):
            for b in range(nb):
                H[a, b0 + b] = Ht[a, b]
    return H


@njit(cache=True)
def hvp(phi, phidot, n, ops, mperm, mpr, mpi, bstart, etype, eaxis, eangle, equat, operm, opr, opi, abatch):
    """(d^2<O>/dphi^2) . phidot [A, B] (per sample): tangents of the blocks, the state and the adjoint state."""
    return hvp_ws(phi, phidot, np.empty((1, 4, 0)), np.empty(0), n, ops, mperm, mpr, mpi, bstart, etype, eaxis, eangle,
                  equat, operm, opr, opi, abatch)

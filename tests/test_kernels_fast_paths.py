"""The fast paths of the compiled kernels give the same bits as the plain ones: a kept work array, the block gradients
of value_grad reused by the Hessian-vector product, tiles of several widths (lanes are independent), the row map
that replaces the monomial copies (pure permutations and ones with phases), and directions that vanish on some
angles (the force loss)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from circuit_helpers import mixed_program

from qnnff.qnn import kernels
from qnnff.qnn.circuit import build_qnn_circuit
from qnnff.qnn.engine import CompiledCircuit


def _qnn():
    """A small QNN of the paper's family (CX chains: monomials that are pure permutations)."""
    qc, x, w = build_qnn_circuit(n_qubits=4, n_features=4, depth=3, feature_map="linear", feature_map_reps=2,
                                 trainable_feature_map="linear", trainable_feature_map_reps=2)
    return CompiledCircuit(qc, inputs=list(x), weights=list(w)), len(x), len(w)


@pytest.fixture(scope="module", params=["mixed", "qnn"])
def case(request):
    prog, d, p = mixed_program() if request.param == "mixed" else _qnn()
    rng = np.random.default_rng(11)
    B = 2 * kernels.LANES + 13  # three tiles
    x = torch.tensor(rng.uniform(-1, 1, (B, d)))
    w = torch.tensor(rng.uniform(-2, 2, p))
    phi = np.ascontiguousarray(prog.angles_of(x, w).numpy())
    v = rng.normal(size=phi.shape)
    v[~prog.kernel_args[-1].astype(bool)] = 0.0  # zero on the angles without inputs, as in a force loss
    return prog, phi, np.ascontiguousarray(v)


def test_tile_width():
    L = kernels.LANES
    assert kernels._tile_width(1) == 1 and kernels._tile_width(500) == min(500, L) and kernels._tile_width(L) == L
    for B in (L + 1, L + 13, 2 * L + 1, 3000):
        bt = kernels._tile_width(B)
        nt = -(-B // bt)
        assert bt <= kernels.LANES and bt % 8 == 0 and nt == -(-B // kernels.LANES) and nt * bt - B < 8 * nt


@pytest.mark.parametrize("args_kind", ["shared", "per-sample"])
def test_fast_paths_are_bit_identical(case, args_kind):
    prog, phi, v = case
    args = prog.kernel_args if args_kind == "shared" else prog.kernel_args_per_sample
    A, B = phi.shape
    K = len(args[5]) - 1
    y, G = kernels.value_grad(phi, *args)
    H = kernels.hvp(phi, v, *args)
    ws = np.empty(kernels.workspace_size(phi.shape, args[0], args[5]))
    GQ = np.empty((K, 4, B))
    y2, G2 = kernels.value_grad_ws(phi, ws, GQ, *args)
    assert np.array_equal(y, y2) and np.array_equal(G, G2)
    assert np.array_equal(y, kernels.forward_ws(phi, ws, *args)) and np.array_equal(y, kernels.forward(phi, *args))
    assert np.array_equal(H, kernels.hvp_ws(phi, v, GQ, ws, *args))
    vd = np.random.default_rng(3).normal(size=phi.shape)  # a dense direction too
    assert np.array_equal(kernels.hvp(phi, vd, *args), kernels.hvp_ws(phi, vd, GQ, ws, *args))
    # the work array is reused by calls of other batch sizes; lanes are independent: a sample alone gives its bits
    for b in (0, 1, kernels.LANES - 1, kernels.LANES, B - 1):
        p1, v1 = np.ascontiguousarray(phi[:, b:b + 1]), np.ascontiguousarray(v[:, b:b + 1])
        g1 = np.empty((K, 4, 1))
        y1, G1 = kernels.value_grad_ws(p1, ws, g1, *args)
        assert y1[0] == y[b] and np.array_equal(G1[:, 0], G[:, b]) and np.array_equal(g1[..., 0], GQ[..., b])
        assert np.array_equal(kernels.hvp_ws(p1, v1, g1, ws, *args)[:, 0], H[:, b])
    sub = np.ascontiguousarray(phi[:, 5:5 + 37])
    assert np.array_equal(kernels.value_grad_ws(sub, ws, np.empty((K, 4, 0)), *args)[1], G[:, 5:5 + 37])

"""Atom-centred symmetry functions: against an independent loop implementation, derivatives, symmetry, cutoff."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from geometry_helpers import random_rotation

from qnnff.acsf import ACSF, DEFAULT_SYMMETRY_FUNCTIONS, SymmetryFunctionSet, cutoff_function, sort_elements

CUSTOM = {
    "cutoff": 2.2,
    "radial": [{"eta": 0.5, "rs": 0.0}, {"eta": 4.0, "rs": 1.0}, {"eta": 2.0, "rs": 1.6}],
    "angular": [
        {"eta": 0.1, "zeta": 1, "lambda": 1},
        {"eta": 0.1, "zeta": 2, "lambda": -1},
        {"eta": 0.3, "zeta": 4, "lambda": 1},
        {"eta": 0.05, "zeta": 3.5, "lambda": -1},
    ],
}


def reference_acsf(pos: np.ndarray, symbols: list[str], params: dict) -> np.ndarray:
    """Plain-Python loops straight from the formulas (cos from the law of cosines), one frame [n, 3] -> [n, g]."""
    rc = params["cutoff"]
    elements = sorted(set(symbols), key=["H", "He", "Li", "Be", "B", "C", "N", "O"].index)
    pairs = [(a, b) for a in range(len(elements)) for b in range(a, len(elements))]

    def fc(r: float) -> float:
        return 0.5 * (math.cos(math.pi * r / rc) + 1.0) if r < rc else 0.0

    def dist(a: int, b: int) -> float:
        return math.sqrt(sum((pos[a][c] - pos[b][c]) ** 2 for c in range(3)))

    out = []
    n = len(symbols)
    for i in range(n):
        row = []
        for e in elements:
            for f in params["radial"]:
                s = 0.0
                for j in range(n):
                    if j != i and symbols[j] == e:
                        r = dist(i, j)
                        s += math.exp(-f["eta"] * (r - f["rs"]) ** 2) * fc(r)
                row.append(s)
        for a, b in pairs:
            for f in params["angular"]:
                s = 0.0
                for j in range(n):
                    for k in range(j + 1, n):
                        if i in (j, k):
                            continue
                        ej, ek = sorted((elements.index(symbols[j]), elements.index(symbols[k])))
                        if (ej, ek) != (a, b):
                            continue
                        rij, rik, rjk = dist(i, j), dist(i, k), dist(j, k)
                        cos = (rij**2 + rik**2 - rjk**2) / (2 * rij * rik)
                        s += (
                            2 ** (1 - f["zeta"])
                            * max(1 + f["lambda"] * cos, 0.0) ** f["zeta"]
                            * math.exp(-f["eta"] * (rij**2 + rik**2 + rjk**2))
                            * fc(rij) * fc(rik) * fc(rjk)
                        )
                row.append(s)
        out.append(row)
    return np.array(out)


def random_molecule(rng: np.random.Generator, n: int, spread: float = 1.0) -> np.ndarray:
    while True:
        pos = rng.normal(scale=spread, size=(n, 3))
        d = np.linalg.norm(pos[:, None] - pos[None], axis=-1) + np.eye(n) * 10
        if d.min() > 0.5:
            return pos


@pytest.mark.parametrize("symbols", [["O", "H", "H"], ["O", "H", "H", "H"], ["Li", "H"], ["C", "H", "O", "H", "N"]])
@pytest.mark.parametrize("params", [DEFAULT_SYMMETRY_FUNCTIONS, CUSTOM], ids=["default", "custom"])
def test_matches_loop_reference(symbols, params):
    rng = np.random.default_rng(1)
    acsf = ACSF(symbols, params)
    frames = np.stack([random_molecule(rng, len(symbols)) for _ in range(4)])
    got = acsf(torch.as_tensor(frames)).numpy()
    want = np.stack([reference_acsf(f, symbols, params) for f in frames])
    assert got.shape == (4, len(symbols), acsf.size) == want.shape
    assert acsf.size == len(acsf.labels())
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
    if params is CUSTOM:  # the small cutoff puts some pairs outside: some zeros, not all
        assert (want == 0).any() and (want != 0).any()


def test_size_and_layout():
    sf = SymmetryFunctionSet.from_dict(None)
    assert sf.size(2) == 2 * 6 + 3 * 2 == 18
    acsf = ACSF(["O", "H", "H"])
    assert acsf.elements == ("H", "O")
    assert acsf.labels()[0].startswith("G2[H]") and acsf.labels()[6].startswith("G2[O]")
    assert [lab[:7] for lab in acsf.labels()[12::2]] == ["G3[H-H]", "G3[H-O]", "G3[O-O]"]
    assert SymmetryFunctionSet.from_dict(sf.to_dict()) == sf
    assert sort_elements(["O", "Li", "H"]) == ("H", "Li", "O")


def test_jacobian_matches_autograd_and_finite_differences():
    rng = np.random.default_rng(2)
    symbols = ["O", "H", "H", "H"]
    acsf = ACSF(symbols, CUSTOM | {"cutoff": 3.0})
    pos = torch.as_tensor(np.stack([random_molecule(rng, 4, 0.7) for _ in range(3)]))
    G, J = acsf.values_and_jacobian(pos)
    assert J.shape == (3, 4, acsf.size, 4, 3)
    np.testing.assert_allclose(G.numpy(), acsf(pos).numpy(), rtol=0, atol=0)
    h = 1e-5
    for a, c in itertools.product(range(4), range(3)):
        dp = torch.zeros_like(pos)
        dp[:, a, c] = h
        fd = (acsf(pos + dp) - acsf(pos - dp)) / (2 * h)
        np.testing.assert_allclose(J[:, :, :, a, c].numpy(), fd.numpy(), atol=1e-8)
    # and the Jacobian's columns sum to zero over atoms (translation invariance)
    np.testing.assert_allclose(J.sum(3).numpy(), 0.0, atol=1e-12)


def test_invariances():
    rng = np.random.default_rng(3)
    symbols = ["O", "H", "H", "H"]
    acsf = ACSF(symbols)
    pos = random_molecule(rng, 4, 0.8)
    g0 = acsf(torch.as_tensor(pos[None]))[0].numpy()
    rot = random_rotation(rng)
    moved = pos @ rot.T + rng.normal(size=3) * 5
    np.testing.assert_allclose(acsf(torch.as_tensor(moved[None]))[0].numpy(), g0, atol=1e-12)
    perm = [0, 3, 1, 2]  # permute the like (H) atoms: descriptors permute with them
    gp = acsf(torch.as_tensor(pos[perm][None]))[0].numpy()
    np.testing.assert_allclose(gp, g0[perm], atol=1e-13)


def test_cutoff_is_smooth():
    rc = 3.0
    r = torch.linspace(rc - 0.01, rc + 0.01, 2001, dtype=torch.float64).requires_grad_(True)
    f = cutoff_function(r, rc)
    (df,) = torch.autograd.grad(f.sum(), r)
    f = f.detach()
    assert f[-1] == 0 and df[-1] == 0
    assert float(f.max()) < 1e-4 and float(df.abs().max()) < 0.011  # |fc'| <= (pi/rc)^2/2 * |R - Rc|
    # a pair of atoms moved across Rc: every descriptor and its gradient go continuously to 0
    acsf = ACSF(["O", "H"], {"cutoff": rc, "radial": [{"eta": 0.1, "rs": 0.0}, {"eta": 1.0, "rs": 2.9}], "angular": []})
    d = torch.linspace(rc - 1e-3, rc + 1e-3, 201, dtype=torch.float64)
    pos = torch.zeros(len(d), 2, 3, dtype=torch.float64)
    pos[:, 1, 2] = d
    G, J = acsf.values_and_jacobian(pos)
    inside = d < rc
    assert torch.all(G[~inside] == 0) and torch.all(J[~inside] == 0)
    assert G[inside].abs().max() < 1e-6 and J[inside].abs().max() < 1e-2
    assert torch.diff(G, dim=0).abs().max() < 1e-7  # no jump across Rc


def test_triple_cutoff_removes_angular_contribution():
    """An angular term dies when any side of the triangle passes Rc."""
    acsf = ACSF(["O", "H", "H"], {"cutoff": 2.0, "radial": [], "angular": [{"eta": 0.0, "zeta": 1, "lambda": 1}]})
    pos = torch.tensor([[[0.0, 0, 0], [1.0, 0, 0], [-1.0 + t, 0.0, 0.5]] for t in (0.0, 0.2)], dtype=torch.float64)
    G = acsf(pos)
    # frame 0: the H-H distance ~2.06 > Rc -> no angular term anywhere; frame 1: it is inside.
    # columns: (H-H, H-O, O-O) neighbour pairs; O sees an H-H pair, each H an H-O pair
    assert torch.all(G[0] == 0)
    assert G[1, 0, 0] > 0 and torch.all(G[1, 1:, 1] > 0)
    assert G[1, 0, 1:].eq(0).all() and G[1, 1:, [0, 2]].eq(0).all()


def test_bad_input_is_reported():
    with pytest.raises(ValueError, match="unknown chemical symbol"):
        ACSF(["O", "Hx"])
    with pytest.raises(ValueError, match="lambda"):
        SymmetryFunctionSet.from_dict({"angular": [{"eta": 0.1, "zeta": 1, "lambda": 0.5}]})
    with pytest.raises(ValueError, match="unknown key"):
        SymmetryFunctionSet.from_dict({"rcut": 5.0})
    with pytest.raises(ValueError, match="cutoff"):
        SymmetryFunctionSet.from_dict({"cutoff": -1})
    with pytest.raises(ValueError, match=r"\[B, 3, 3\]"):
        ACSF(["O", "H", "H"])(torch.zeros(2, 4, 3, dtype=torch.float64))

"""Features of the paper: internal coordinates, scaled to [-1, 1], then a classical map W.

The whole chain positions (Angstrom) -> internal coordinates -> scaled coordinates -> features is written
in torch, so the Jacobian d(features)/d(positions) comes from autograd and a model's dE/d(features)
turns into Cartesian forces.

Permutation symmetry: a coordinate *family* lists one or more atom tuples, e.g. both O-H bonds of water.
With k > 1 tuples the family's k values v_i are replaced by permutation-invariant combinations:

* ``symmetrize: moments`` (default): the mean and the central moments m_j = mean((v - mean)^j), j = 2..k.
  They are smooth (polynomials), invariant, and determine the multiset {v_i} for k <= 3 (Newton's identities).
  Near a symmetric geometry the energy is even in the antisymmetric displacement, i.e. a smooth function of
  m_2, as physics demands; forces are smooth, so NVE dynamics conserves energy to O(dt^2).
* ``symmetrize: sort``: the sorted values; continuous but with a kink where two values cross, so forces jump
  there (kept for comparison with the paper's raw coordinates).

Moments of two families separately lose which value of one belongs with which of the other: for H3O+ the three
O-H bonds and the three H-O-H angles determine the geometry only together with the pairing of each bond with the
angle opposite it. ``couple_with: <family>`` on a moments family adds the mixed central moments of the pairs
(tuple i of this family with tuple i of the other; list the tuples in matching order):
mean(du dv), mean(du^2 dv) and mean(du dv^2) with du, dv the deviations from each family's mean. They are
invariant under permutations of like atoms (which permute the pairs together) and smooth.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .geometry import ARITY, COUPLED_MOMENTS, CoordinateFamily
from .revision import Revisioned

FEATURE_MAPS = ("arcsin", "pi_arcsin_arccos", "identity")


# --------------------------------------------------------------------------------------------------
# primitive internal coordinates on torch batches (positions: [..., n_atoms, 3])


def bond(pos: torch.Tensor, i: int, j: int) -> torch.Tensor:
    """Distance |r_i - r_j| (Angstrom)."""
    return torch.linalg.vector_norm(pos[..., i, :] - pos[..., j, :], dim=-1)


def angle(pos: torch.Tensor, i: int, j: int, k: int) -> torch.Tensor:
    """Angle i-j-k in degrees (vertex j), via atan2 so the derivative stays finite near 0 and 180."""
    u = pos[..., i, :] - pos[..., j, :]
    v = pos[..., k, :] - pos[..., j, :]
    cross = torch.linalg.vector_norm(torch.linalg.cross(u, v, dim=-1), dim=-1)
    dot = (u * v).sum(-1)
    return torch.rad2deg(torch.atan2(cross, dot))


def dihedral(pos: torch.Tensor, i: int, j: int, k: int, m: int) -> torch.Tensor:
    """Dihedral i-j-k-m in degrees, IUPAC sign, mapped into [0, 360) so that planar (180) is interior."""
    b0 = pos[..., j, :] - pos[..., i, :]
    b1 = pos[..., k, :] - pos[..., j, :]
    b2 = pos[..., m, :] - pos[..., k, :]
    n1 = torch.linalg.cross(b0, b1, dim=-1)
    n2 = torch.linalg.cross(b1, b2, dim=-1)
    b1n = b1 / torch.linalg.vector_norm(b1, dim=-1, keepdim=True)
    m1 = torch.linalg.cross(n1, b1n, dim=-1)
    x = (n1 * n2).sum(-1)
    y = (m1 * n2).sum(-1)
    phi = torch.rad2deg(torch.atan2(y, x))
    return torch.remainder(-phi, 360.0)


PRIMITIVES = {"bond": (bond, ARITY["bond"]), "angle": (angle, ARITY["angle"]), "dihedral": (dihedral, ARITY["dihedral"])}


def family_primitives(family: CoordinateFamily, pos: torch.Tensor) -> torch.Tensor:
    """[..., n_atoms, 3] -> [..., k]: the family's k primitive values, in the order of its atom tuples."""
    fn, _ = PRIMITIVES[family.type]
    return torch.stack([fn(pos, *t) for t in family.atoms], dim=-1)


def coupled_moments(family: CoordinateFamily, partner: CoordinateFamily, pos: torch.Tensor) -> torch.Tensor:
    """Mixed central moments of the pairs (tuple i of ``family``, tuple i of ``partner``)."""
    u, v = family_primitives(family, pos), family_primitives(partner, pos)
    du, dv = u - u.mean(dim=-1, keepdim=True), v - v.mean(dim=-1, keepdim=True)
    return torch.stack([(du**a * dv**b).mean(dim=-1) for a, b in COUPLED_MOMENTS], dim=-1)


def family_values(family: CoordinateFamily, pos: torch.Tensor) -> torch.Tensor:
    """The family's own coordinates: its one primitive, its sorted values or its mean and central moments."""
    vals = family_primitives(family, pos)
    if len(family.atoms) > 1:
        if family.symmetrize == "sort":
            return torch.sort(vals, dim=-1).values
        mean = vals.mean(dim=-1, keepdim=True)
        dev = vals - mean
        vals = torch.cat([mean] + [(dev**j).mean(dim=-1, keepdim=True) for j in range(2, len(family.atoms) + 1)], dim=-1)
    return vals


def extend_to_symmetric_point(families: Sequence[CoordinateFamily], lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Widen the ranges of moment features so the fully symmetric geometry (all equivalent values equal) is inside.

    Even central moments are >= 0 and vanish there: their range starts at 0. Odd central moments change sign under
    a mirror-image distribution of values: their range becomes symmetric, [-max|m|, max|m|]. Without this, a
    symmetric molecule (equal O-H bonds), which a finite training set never hits exactly, would be out of domain.
    """
    lo, hi = np.array(lo, dtype=float), np.array(hi, dtype=float)
    k = 0
    for f in families:
        n = len(f.atoms)
        if n > 1 and f.symmetrize == "moments":
            for j in range(2, n + 1):
                i = k + j - 1
                if j % 2 == 0:
                    lo[i] = min(lo[i], 0.0)
                else:
                    m = max(abs(lo[i]), abs(hi[i]))
                    lo[i], hi[i] = -m, m
            for i in range(k + n, k + len(f)):  # coupled moments change sign under mirrored deviations
                m = max(abs(lo[i]), abs(hi[i]))
                lo[i], hi[i] = -m, m
        k += len(f)
    return lo, hi


def internal_coordinates(families: Sequence[CoordinateFamily], positions: torch.Tensor) -> torch.Tensor:
    """[B, n_atoms, 3] -> [B, m] internal coordinates (Angstrom, degrees; coupled moments in their products)."""
    by_name = {f.name: f for f in families}
    out = []
    for f in families:
        out.append(family_values(f, positions))
        if f.couple_with:
            if f.couple_with not in by_name:
                raise ValueError(f"coordinate family {f.name!r}: couple_with names no family ({sorted(by_name)})")
            partner = by_name[f.couple_with]
            if len(partner.atoms) != len(f.atoms):
                raise ValueError(f"coordinate family {f.name!r}: couple_with {partner.name!r} has {len(partner.atoms)} tuples, "
                                 f"not {len(f.atoms)}")
            out.append(coupled_moments(f, partner, positions))
    return torch.cat(out, dim=-1)


def coordinate_labels(families: Sequence[CoordinateFamily]) -> list[str]:
    """Labels of the internal coordinates, in the order of :func:`internal_coordinates`."""
    return [lab for f in families for lab in f.labels()]


def coordinate_values(families: Sequence[CoordinateFamily], positions: np.ndarray) -> dict[str, float]:
    """``{label: value}`` of one geometry's internal coordinates ([n_atoms, 3] Angstrom), coupled moments included,
    in the order of :func:`internal_coordinates` (the ``ic_<label>`` columns of the data sets)."""
    labels = coordinate_labels(families)
    values = internal_coordinates(families, torch.as_tensor(np.asarray(positions, dtype=float)[None]))[0].tolist()
    if len(values) != len(labels):
        raise RuntimeError(f"{len(values)} internal coordinates for {len(labels)} labels {labels}")
    return dict(zip(labels, values))


class Featurizer(Revisioned, torch.nn.Module):
    """positions [B, n, 3] (Angstrom, float64) -> features [B, d].

    ``lo``/``hi`` are the training set's coordinate ranges; they map onto ``[-(1-margin), 1-margin]``
    (margin keeps arcsin/arccos derivatives finite at the edges of the training set and gives MD a little room).
    """

    def __init__(
        self,
        *,
        families: Sequence[CoordinateFamily],
        feature_map: str,
        lo: Sequence[float],
        hi: Sequence[float],
        margin: float = 0.05,
        symbols: Sequence[str] = (),
    ) -> None:
        super().__init__()
        if feature_map not in FEATURE_MAPS:
            raise ValueError(f"feature_map: unknown map {feature_map!r} (use one of {FEATURE_MAPS})")
        if not 0.0 <= margin < 1.0:
            raise ValueError(f"features.margin must lie in [0, 1), got {margin}")
        self.families = list(families)
        self.feature_map = feature_map
        self.margin = float(margin)
        self.symbols = list(symbols)
        lo_t = torch.as_tensor(np.asarray(lo, dtype=float), dtype=torch.float64)
        hi_t = torch.as_tensor(np.asarray(hi, dtype=float), dtype=torch.float64)
        m = sum(len(f) for f in self.families)
        if lo_t.shape != (m,) or hi_t.shape != (m,):
            raise ValueError(f"scaler needs {m} lower and upper bounds, got {tuple(lo_t.shape)} and {tuple(hi_t.shape)}")
        if not torch.all(hi_t > lo_t):
            bad = [lab for lab, a, b in zip(self.coordinate_labels(), lo_t.tolist(), hi_t.tolist()) if not b > a]
            raise ValueError(f"scaler: coordinate(s) {bad} have an empty training range (hi <= lo)")
        self.register_buffer("lo", lo_t)
        self.register_buffer("hi", hi_t)

    # ---- description
    def coordinate_labels(self) -> list[str]:
        return coordinate_labels(self.families)

    @property
    def n_coordinates(self) -> int:
        return sum(len(f) for f in self.families)

    @property
    def n_features(self) -> int:
        return self.n_coordinates * (3 if self.feature_map == "pi_arcsin_arccos" else 1)

    # ---- the chain
    def internal(self, positions: torch.Tensor) -> torch.Tensor:
        return internal_coordinates(self.families, positions)

    def scale(self, q: torch.Tensor) -> torch.Tensor:
        half = 1.0 - self.margin
        return half * (2.0 * (q - self.lo) / (self.hi - self.lo) - 1.0)

    def map(self, s: torch.Tensor) -> torch.Tensor:
        if self.feature_map == "arcsin":
            return torch.arcsin(s)
        if self.feature_map == "pi_arcsin_arccos":
            return torch.stack([math.pi * s, torch.arcsin(s), torch.arccos(s)], dim=-1).flatten(-2)
        return s

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return self.map(self.scale(self.internal(positions)))

    def out_of_domain(self, positions: torch.Tensor) -> torch.Tensor:
        """Boolean [B]: a scaled coordinate left [-1, 1], where the arcsin map is undefined."""
        with torch.no_grad():
            s = self.scale(self.internal(positions))
        return (s.abs() > 1.0).any(dim=-1)

    def features_and_jacobian(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features [B, d] and their Jacobian d(features)/d(positions) [B, d, n, 3] (per frame)."""
        pos = positions.detach().clone().requires_grad_(True)
        x = self.forward(pos)
        jac = []
        for k in range(x.shape[-1]):
            (g,) = torch.autograd.grad(x[:, k].sum(), pos, retain_graph=k + 1 < x.shape[-1])
            jac.append(g)
        return x.detach(), torch.stack(jac, dim=1)

    # ---- persistence
    def to_dict(self) -> dict[str, Any]:
        return {
            "families": [{"name": f.name, "type": f.type, "atoms": [list(t) for t in f.atoms], "symmetrize": f.symmetrize,
                          **({"couple_with": f.couple_with} if f.couple_with else {})} for f in self.families],
            "feature_map": self.feature_map,
            "lo": self.lo.tolist(),
            "hi": self.hi.tolist(),
            "margin": self.margin,
            "symbols": self.symbols,
            "coordinate_labels": self.coordinate_labels(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Featurizer:
        n_atoms = len(d["symbols"]) if d.get("symbols") else 1 + max(a for f in d["families"] for t in f["atoms"] for a in t)
        fams = [CoordinateFamily.from_config(f, n_atoms, f"features.coordinates[{i}]") for i, f in enumerate(d["families"])]
        return cls(families=fams, feature_map=d["feature_map"], lo=d["lo"], hi=d["hi"], margin=d["margin"], symbols=d.get("symbols", ()))


@dataclass(frozen=True)
class EnergyScaler:
    """Maps energies (eV) affinely onto [-1, 1] over the training set: y = (E - center) / scale."""

    center: float
    scale: float

    @classmethod
    def fit(cls, energies: np.ndarray) -> EnergyScaler:
        e = np.asarray(energies, dtype=float)
        lo, hi = float(e.min()), float(e.max())
        if not hi > lo:
            raise ValueError("energy scaler: all training energies are equal; nothing to learn")
        return cls(center=0.5 * (lo + hi), scale=0.5 * (hi - lo))

    def to_dict(self) -> dict[str, float]:
        return {"center": self.center, "scale": self.scale}

    @classmethod
    def from_dict(cls, d: dict[str, float]) -> EnergyScaler:
        return cls(center=float(d["center"]), scale=float(d["scale"]))


def load_scalers(path: str | Path) -> tuple[Featurizer, EnergyScaler]:
    """The featurizer and energy scaler of a ``scalers.json`` (written by the ``featurize`` rule)."""
    d = json.loads(Path(path).read_text())
    return Featurizer.from_dict(d["featurizer"]), EnergyScaler.from_dict(d["energy_scaler"])

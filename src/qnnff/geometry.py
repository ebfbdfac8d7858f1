"""Internal coordinates <-> Cartesian geometries.

* :func:`zmatrix_to_cartesian` builds Cartesian positions (Angstrom) from a Z-matrix whose entries are
  numbers or names of sampled variables (bond lengths in Angstrom, angles and dihedrals in degrees).
* :class:`CoordinateFamily` names which atoms form which primitive internal coordinates (bonds, angles,
  dihedrals) and how a family of equivalent ones is made permutation-invariant; :mod:`qnnff.features` evaluates
  them on torch batches, so their Jacobians come from autograd.

This module imports numpy only (no torch): the config layer (:func:`qnnff.config.system_spec`) builds its
specs from it, and the workflow's rule files import the config layer every time Snakemake parses them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ZRow:
    """One Z-matrix row: an element and up to three (reference atom, value) pairs."""

    element: str
    bond: tuple[int, str | float] | None = None
    angle: tuple[int, str | float] | None = None
    dihedral: tuple[int, str | float] | None = None

    @classmethod
    def parse(cls, row: Sequence, index: int) -> ZRow:
        """Parse ``[El]``, ``[El, a, r]``, ``[El, a, r, b, theta]`` or ``[El, a, r, b, theta, c, phi]``."""
        if not isinstance(row, (list, tuple)) or len(row) not in (1, 3, 5, 7):
            raise ValueError(
                f"zmatrix row {index}: expected [element] or [element, atom, value, ...] with 1, 3, 5 or 7 "
                f"entries, got {row!r}"
            )
        need = {0: 1, 1: 3, 2: 5}.get(index, 7)
        if len(row) != need:
            raise ValueError(f"zmatrix row {index}: needs {need} entries (row {index} of a Z-matrix), got {row!r}")
        pairs = []
        for k in range(1, len(row), 2):
            ref, val = row[k], row[k + 1]
            if not isinstance(ref, int) or isinstance(ref, bool) or not 0 <= ref < index:
                raise ValueError(f"zmatrix row {index}: reference atom {ref!r} must be an index of an earlier row")
            if isinstance(val, bool) or not isinstance(val, (int, float, str)):
                raise ValueError(f"zmatrix row {index}: value {val!r} must be a number or a variable name")
            if isinstance(val, float) and not math.isfinite(val):
                raise ValueError(f"zmatrix row {index}: value {val!r} is not finite")
            pairs.append((ref, val))
        refs = [p[0] for p in pairs]
        if len(set(refs)) != len(refs):
            raise ValueError(f"zmatrix row {index}: reference atoms {refs} must be distinct")
        return cls(str(row[0]), *pairs)

    def variables(self) -> list[str]:
        return [v for p in (self.bond, self.angle, self.dihedral) if p is not None for v in [p[1]] if isinstance(v, str)]


def _value(v: str | float, values: Mapping[str, float]) -> float:
    if isinstance(v, str):
        return float(values[v])
    return float(v)


def zmatrix_to_cartesian(rows: Sequence[ZRow], values: Mapping[str, float]) -> np.ndarray:
    """Cartesian positions (n_atoms, 3) in Angstrom of a Z-matrix for the given variable values.

    Atom 0 sits at the origin, atom 1 on +z, atom 2 in the xz plane; later atoms use the natural
    extension reference frame (NeRF). Dihedral angles follow the IUPAC sign convention.
    """
    n = len(rows)
    pos = np.zeros((n, 3))
    for i, row in enumerate(rows):
        if i == 0:
            continue
        a, rv = row.bond
        r = _value(rv, values)
        if i == 1:
            pos[1] = pos[a] + np.array([0.0, 0.0, r])
            continue
        b, tv = row.angle
        theta = math.radians(_value(tv, values))
        if i == 2:
            # place in the xz plane: angle (i, a, b) = theta
            u = pos[b] - pos[a]
            u /= np.linalg.norm(u)
            perp = np.cross(u, [0.0, 1.0, 0.0])
            if np.linalg.norm(perp) < 1e-12:
                perp = np.cross(u, [1.0, 0.0, 0.0])
            perp /= np.linalg.norm(perp)
            pos[2] = pos[a] + r * (math.cos(theta) * u + math.sin(theta) * perp)
            continue
        c, pv = row.dihedral
        phi = math.radians(_value(pv, values))
        # NeRF: new atom D bonded to A=pos[a], angle D-A-B = theta, dihedral D-A-B-C = phi
        A, B, C = pos[a], pos[b], pos[c]
        bc = A - B
        bc /= np.linalg.norm(bc)
        nrm = np.cross(B - C, bc)
        if np.linalg.norm(nrm) < 1e-10:
            raise ValueError(f"zmatrix row {i}: reference atoms {a}, {b}, {c} are collinear; the dihedral is undefined")
        nrm /= np.linalg.norm(nrm)
        m = np.cross(nrm, bc)
        pos[i] = A + r * (-math.cos(theta) * bc + math.sin(theta) * (math.cos(phi) * m + math.sin(phi) * nrm))
    return pos


ARITY = {"bond": 2, "angle": 3, "dihedral": 4}  # atoms per primitive internal coordinate
SYMMETRIZE = ("moments", "sort")
COUPLED_MOMENTS = ((1, 1), (2, 1), (1, 2))  # (power of this family's deviation, power of the partner's)


@dataclass(frozen=True)
class CoordinateFamily:
    """A named family of primitive internal coordinates of one type (bond, angle or dihedral)."""

    name: str
    type: str
    atoms: tuple[tuple[int, ...], ...]
    symmetrize: str = "moments"
    couple_with: str | None = None

    @classmethod
    def from_config(cls, spec: dict, n_atoms: int, where: str) -> CoordinateFamily:
        typ = spec["type"]
        if typ not in ARITY:
            raise ValueError(f"{where}.type: unknown coordinate type {typ!r} (use one of {sorted(ARITY)})")
        arity = ARITY[typ]
        tuples = spec["atoms"]
        if tuples and isinstance(tuples[0], int):
            tuples = [tuples]
        out = []
        for t in tuples:
            t = tuple(t)
            if len(t) != arity:
                raise ValueError(f"{where}.atoms: a {typ} needs {arity} atom indices, got {list(t)}")
            for a in t:
                if not 0 <= a < n_atoms:
                    raise ValueError(f"{where}.atoms: atom index {a} out of range for {n_atoms} atoms")
            if len(set(t)) != arity:
                raise ValueError(f"{where}.atoms: repeated atom index in {list(t)}")
            out.append(t)
        sym = spec.get("symmetrize", "moments")
        if sym not in SYMMETRIZE:
            raise ValueError(f"{where}.symmetrize: unknown method {sym!r} (use one of {SYMMETRIZE})")
        couple = spec.get("couple_with")
        if couple is not None and (sym != "moments" or len(out) < 2):
            raise ValueError(f"{where}.couple_with: only a moments family of two or more tuples can be coupled")
        return cls(spec["name"], typ, tuple(out), sym, couple)

    def __len__(self) -> int:
        """Number of coordinates the family contributes."""
        return len(self.atoms) + (len(COUPLED_MOMENTS) if self.couple_with else 0)

    def labels(self) -> list[str]:
        if len(self.atoms) == 1:
            return [self.name]
        if self.symmetrize == "sort":
            return [f"{self.name}[{k}]" for k in range(len(self.atoms))]
        own = [f"{self.name}.mean"] + [f"{self.name}.m{j}" for j in range(2, len(self.atoms) + 1)]
        return own + [f"{self.name}~{self.couple_with}.m{a}{b}" for a, b in COUPLED_MOMENTS] if self.couple_with else own


def inverse_distances(positions):
    """The inverse interatomic distances 1/|r_i - r_j| [B, N(N-1)/2] of positions [B, N, 3] (torch), pairs i > j in
    row order of the lower triangle (sGDML's descriptor): a complete description of a geometry up to rotations,
    reflections and translations."""
    import torch

    pos = torch.as_tensor(positions, dtype=torch.float64)
    i, j = torch.tril_indices(pos.shape[1], pos.shape[1], offset=-1)
    return 1.0 / torch.linalg.vector_norm(pos[:, i] - pos[:, j], dim=-1)

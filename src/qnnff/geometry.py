"""Internal coordinates <-> Cartesian geometries.

* :func:`zmatrix_to_cartesian` builds Cartesian positions (Angstrom) from a Z-matrix whose entries are
  numbers or names of sampled variables (bond lengths in Angstrom, angles and dihedrals in degrees).
* :func:`bond`, :func:`angle`, :func:`dihedral` evaluate primitive internal coordinates on batches
  of Cartesian positions in torch, so their Jacobians come from autograd.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch


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


PRIMITIVES = {"bond": (bond, 2), "angle": (angle, 3), "dihedral": (dihedral, 4)}

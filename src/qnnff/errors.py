"""Error types shared across qnnff's layers (a neutral module: it imports nothing from the project, so the QNN
simulator, the calculators and the models can all raise and catch them without import circles)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["MIN_DISTANCE_A", "NonFiniteGeometryError", "OutOfDomainError", "OverlappingAtomsError", "UnsupportedCircuitError",
           "check_geometry", "domain_error_message"]


class OutOfDomainError(ValueError):
    """The geometry lies outside the region the model was built for."""


class UnsupportedCircuitError(ValueError):
    """The circuit has a gate or a parameter expression the QNN simulator cannot execute exactly."""


def domain_error_message(kind: str, labels: Sequence[str], q: Sequence[float], s: Sequence[float], lo: Sequence[float],
                         hi: Sequence[float]) -> str:
    """The OutOfDomainError text: every coordinate whose scaled value left [-1, 1], with its training range."""
    bad = [
        f"{lab} = {float(qv):.4f} (training range [{float(lov):.4f}, {float(hiv):.4f}], scaled {float(sv):+.3f})"
        for lab, qv, sv, lov, hiv in zip(labels, q, s, lo, hi)
        if abs(float(sv)) > 1.0
    ]
    return (f"geometry outside the {kind} model's domain: {'; '.join(bad)} "
            f"(bonds in Angstrom, angles in degrees; scaled coordinates must stay in [-1, 1])")


class NonFiniteGeometryError(OutOfDomainError):
    """Positions contain NaN or infinity."""


class OverlappingAtomsError(OutOfDomainError):
    """Two atoms are closer than the ``min_distance`` of the check (:func:`check_geometry`)."""


MIN_DISTANCE_A = 0.3  # Angstrom; no qnnff system has atoms this close, and no calculator gives a meaningful number there


def check_geometry(positions: np.ndarray, who: str, min_distance: float = MIN_DISTANCE_A) -> None:
    """Raise (before any evaluation) for an empty geometry, NaN/inf positions, or two atoms closer than ``min_distance``
    Angstrom. Costs a few microseconds for the small molecules of qnnff (called at every MD step)."""
    pos = np.asarray(positions, dtype=float)
    if pos.ndim != 2 or pos.shape[0] == 0:
        raise ValueError(f"{who}: empty Atoms (no atoms to evaluate)")
    if not np.isfinite(pos).all():
        bad = sorted({int(i) for i in np.nonzero(~np.isfinite(pos))[0]})
        raise NonFiniteGeometryError(f"{who}: positions of atom(s) {bad} are NaN or infinite")
    if len(pos) == 2:  # a diatomic (every MD step of LiH): one distance, without the pair matrix
        d = pos[1] - pos[0]
        r2 = float(d @ d)
        if r2 < min_distance * min_distance:
            raise OverlappingAtomsError(f"{who}: atoms 0 and 1 are {math.sqrt(r2):.4f} A apart, closer than "
                                        f"{min_distance} A (overlapping atoms)")
    elif len(pos) > 2:
        d = pos[:, None, :] - pos[None, :, :]
        r2 = np.einsum("ijk,ijk->ij", d, d)
        r2[np.diag_indices(len(pos))] = np.inf
        k = int(np.argmin(r2))
        if r2.flat[k] < min_distance * min_distance:
            i, j = divmod(k, len(pos))
            raise OverlappingAtomsError(f"{who}: atoms {i} and {j} are {np.sqrt(r2.flat[k]):.4f} A apart, closer than "
                                        f"{min_distance} A (overlapping atoms)")

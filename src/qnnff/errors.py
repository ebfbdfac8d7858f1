"""Error types shared across qnnff's layers (a neutral module: it imports nothing from the project, so the QNN
simulator, the calculators and the models can all raise and catch them without import circles)."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["OutOfDomainError", "UnsupportedCircuitError", "domain_error_message"]


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

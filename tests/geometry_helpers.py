"""Random geometries shared by the model tests."""

import numpy as np


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random proper rotation matrix (det = +1)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q


def water_positions(rng: np.random.Generator, n: int) -> np.ndarray:
    """O at the origin, O-H bonds 0.9-1.1 A, H-O-H angle 100-110 deg, random orientation and offset."""
    out = np.empty((n, 3, 3))
    for b in range(n):
        r1, r2 = rng.uniform(0.9, 1.1, size=2)
        th = np.radians(rng.uniform(100.0, 110.0))
        pos = np.array([[0.0, 0, 0], [r1, 0, 0], [r2 * np.cos(th), r2 * np.sin(th), 0]])
        out[b] = pos @ random_rotation(rng).T + rng.normal(size=3)
    return out

"""Random geometries shared by the model tests."""

import numpy as np
import torch


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


def water_batch(n: int, seed: int = 0, *, oriented: bool = True) -> torch.Tensor:
    """[n, 3, 3] water-like frames (float64 tensor): O at the origin, O-H 0.9..1.2 A, H-O-H 95..120 degrees, the first
    H on +z; ``oriented`` then rotates each frame randomly and moves it by a random offset (the same draws either way
    up to that point, so both variants of one seed share their internal coordinates)."""
    rng = np.random.default_rng(seed)
    r1, r2, th = rng.uniform(0.9, 1.2, n), rng.uniform(0.9, 1.2, n), np.radians(rng.uniform(95, 120, n))
    pos = np.zeros((n, 3, 3))
    pos[:, 1, 2] = r1
    pos[:, 2, 0], pos[:, 2, 2] = r2 * np.sin(th), r2 * np.cos(th)
    if oriented:
        q, _ = np.linalg.qr(rng.normal(size=(n, 3, 3)))
        pos = pos @ q + rng.normal(size=(n, 1, 3))
    return torch.tensor(pos)


def assert_jacobian_matches_finite_differences(feat, pos: torch.Tensor, *, h: float = 1e-6, atol: float = 1e-6) -> None:
    """A featurizer's d(features)/d(positions) against central differences, every atom and axis of ``pos`` [B, n, 3]."""
    _, jac = feat.features_and_jacobian(pos)
    for a in range(pos.shape[1]):
        for k in range(3):
            dp = torch.zeros_like(pos)
            dp[:, a, k] = h
            fd = (feat(pos + dp) - feat(pos - dp)) / (2 * h)
            assert torch.allclose(jac[:, :, a, k], fd, atol=atol), (a, k)

"""Sampling designs over a system's Z-matrix variables, and the chunk plan for DFT jobs.

Points inside a chunk are ordered along a greedy nearest-neighbour path (in range-normalised variables),
so that each SCF starts from its neighbour's density matrix.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from .config import SPLITS, SystemSpec
from .seeding import derive_seed


def sample_unit(design: str, n: int, k: int, seed: int) -> np.ndarray:
    """n points in [0, 1]^k."""
    if design == "grid":
        side = round(n ** (1.0 / k))
        axes = [np.linspace(0.0, 1.0, side)] * k
        return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, k)
    if design in ("sobol", "lhs"):
        from scipy.stats import qmc  # 0.5 s to import: not paid by the DFT and assembly jobs, which import this module

    if design == "sobol":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "balance properties ... not a power of 2"
            return qmc.Sobol(k, scramble=True, seed=seed).random(n)
    if design == "lhs":
        return qmc.LatinHypercube(k, seed=seed).random(n)
    if design == "random":
        return np.random.default_rng(seed).random((n, k))
    raise ValueError(f"unknown sampling design {design!r}")


def sample_values(spec: SystemSpec, split: str, seed: int) -> np.ndarray:
    """[n, k] variable values (Angstrom / degrees) of one split."""
    s = spec.sampling[split]
    lo = np.array([r[0] for r in spec.variables.values()])
    hi = np.array([r[1] for r in spec.variables.values()])
    u = sample_unit(s["design"], int(s["n"]), len(lo), derive_seed(seed, "sampling", spec.name, split))
    return lo + u * (hi - lo)


def path_order(u: np.ndarray) -> np.ndarray:
    """Greedy nearest-neighbour ordering of points (rows of u), starting from the lexicographic minimum."""
    n = len(u)
    if n == 0:
        return np.zeros(0, dtype=int)
    left = np.ones(n, dtype=bool)
    cur = int(np.lexsort(u.T[::-1])[0])
    order = [cur]
    left[cur] = False
    for _ in range(n - 1):
        d = np.sum((u - u[cur]) ** 2, axis=1)
        d[~left] = np.inf
        cur = int(np.argmin(d))
        order.append(cur)
        left[cur] = False
    return np.asarray(order)


def plan_points(spec: SystemSpec, seed: int) -> pd.DataFrame:
    """One row per point: split, point id, chunk id, position in the chunk's path, variable values."""
    frames = []
    lo = np.array([r[0] for r in spec.variables.values()])
    hi = np.array([r[1] for r in spec.variables.values()])
    size = int(spec.dft["chunk_size"])
    for split in SPLITS:
        vals = sample_values(spec, split, seed)
        order = path_order((vals - lo) / (hi - lo))
        df = pd.DataFrame(vals[order], columns=spec.variable_names)
        df.insert(0, "split", split)
        df.insert(1, "point", [f"{split}-{i:05d}" for i in order])
        df.insert(2, "chunk", [f"{split}-{k // size:03d}" for k in range(len(order))])
        frames.append(df)
    out = pd.concat(frames, ignore_index=True)
    # sanity: every point becomes a finite geometry without clashes
    for row in out.itertuples(index=False):
        pos = spec.geometry({v: getattr(row, v) for v in spec.variable_names})
        d = np.linalg.norm(pos[:, None] - pos[None], axis=-1) + np.eye(len(pos)) * 1e9
        if not np.all(np.isfinite(pos)) or d.min() < 0.5:
            raise ValueError(
                f"systems.{spec.name}: point {row.point} gives atoms closer than 0.5 Angstrom "
                f"({d.min():.3f}); narrow the variables' ranges"
            )
    return out

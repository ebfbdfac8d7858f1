"""Reference datasets as extended XYZ that ``ase.io.read`` opens.

Per frame: energy in eV under ``info['REF_energy']``, forces in eV/Angstrom under ``arrays['REF_forces']``,
the Z-matrix variables (``zmat_<name>``), the internal coordinates the models see (``ic_<label>``), the
point id, and the provenance (level of theory, basis, grid, PySCF version, config hash).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from ase import Atoms

from .io import atomic_path


def make_frame(
    symbols: Sequence[str],
    positions: np.ndarray,
    energy_ev: float,
    forces_ev_ang: np.ndarray,
    info: dict,
) -> Atoms:
    atoms = Atoms(symbols=list(symbols), positions=np.asarray(positions, dtype=float))
    atoms.info.update(info)
    atoms.info["REF_energy"] = float(energy_ev)
    atoms.new_array("REF_forces", np.asarray(forces_ev_ang, dtype=float))
    return atoms


def write_frames(path: str | Path, frames: Sequence[Atoms]) -> None:
    """Atomically write frames as extxyz (an empty list writes an empty file)."""
    from ase.io import write

    with atomic_path(path) as tmp:
        if frames:
            write(tmp, list(frames), format="extxyz")
        else:
            tmp.write_text("")


def read_frames(path: str | Path) -> list[Atoms]:
    from ase.io import read

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dataset {path} does not exist")
    if path.stat().st_size == 0:
        return []
    return read(path, index=":", format="extxyz")


def to_arrays(frames: Sequence[Atoms]) -> dict[str, np.ndarray]:
    """positions [B, n, 3] (A), energy [B] (eV), forces [B, n, 3] (eV/A)."""
    if not frames:
        raise ValueError("empty dataset")
    return {
        "positions": np.stack([a.get_positions() for a in frames]),
        "energy": np.array([a.info["REF_energy"] for a in frames], dtype=float),
        "forces": np.stack([a.arrays["REF_forces"] for a in frames]),
    }

"""Reference datasets as extended XYZ that ``ase.io.read`` opens.

Per frame: energy in eV under ``info['REF_energy']``, forces in eV/Angstrom under ``arrays['REF_forces']``,
the Z-matrix variables (``zmat_<name>``), the internal coordinates the models see (``ic_<label>``), the
point id, and the provenance (level of theory, basis, grid, PySCF version, config hash).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from ase import Atoms

from .integrity import TOKEN, IntegrityError, fail, rebuild_hint, stamp_extxyz, verify_extxyz
from .io import atomic_path

# an empty frame list (a DFT chunk whose every point failed): no extxyz frame, but a record, so that a 0-byte file
# (truncated, or not written by qnnff) is told apart from it
EMPTY_RECORD = f"# {TOKEN}=0 (no frames)\n"


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
    """Atomically write frames as extxyz with an integrity record (frame count and sha256, see
    :mod:`qnnff.integrity`); an empty list writes its record alone (:data:`EMPTY_RECORD`), never a 0-byte file."""
    from ase.io import write

    text = EMPTY_RECORD
    if frames:
        buf = io.StringIO()
        write(buf, list(frames), format="extxyz")
        text = stamp_extxyz(buf.getvalue(), len(frames))
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def read_frames(path: str | Path, *, allow_empty: bool = False) -> list[Atoms]:
    """Frames of an extxyz written by :func:`write_frames`, verified against its integrity record: a truncated or
    edited file raises :class:`~qnnff.integrity.IntegrityError` naming the file, expected and found. A 0-byte (or
    blank) file is such an error; an empty frame list written by :func:`write_frames` is returned as ``[]`` with
    ``allow_empty`` (a DFT chunk), else a ValueError naming the file."""
    from ase.io import read

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dataset {path} does not exist")
    text = path.read_text()
    if text == EMPTY_RECORD:
        if allow_empty:
            return []
        raise ValueError(f"{path}: holds no frames (its writer had none to write), but a dataset with at least one frame "
                         f"is needed here; {rebuild_hint(path)}")
    if not text.strip():
        raise IntegrityError(f"{path}: the file is empty ({len(text.encode())} bytes): no frames and no integrity record "
                             f"(qnnff writes even an empty frame list with its record), so it was truncated or not written "
                             f"by qnnff; {rebuild_hint(path)}")
    n, original = verify_extxyz(path, text)
    try:
        frames = read(io.StringIO(original), index=":", format="extxyz")
    except Exception as exc:  # noqa: BLE001 - the hash matched, so this is not truncation: say what ASE said
        raise IntegrityError(f"{path}: ASE cannot parse it ({type(exc).__name__}: {exc})") from exc
    if n is not None and len(frames) != n:
        raise fail(path, "number of frames", n, len(frames))
    return frames


def to_arrays(frames: Sequence[Atoms]) -> dict[str, np.ndarray]:
    """positions [B, n, 3] (A), energy [B] (eV), forces [B, n, 3] (eV/A)."""
    if not frames:
        raise ValueError("empty dataset")
    return {
        "positions": np.stack([a.get_positions() for a in frames]),
        "energy": np.array([a.info["REF_energy"] for a in frames], dtype=float),
        "forces": np.stack([a.arrays["REF_forces"] for a in frames]),
    }

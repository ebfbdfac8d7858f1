"""Reference energies and analytic Cartesian forces with PySCF, with a convergence fallback chain.

Every SCF is checked for convergence (PySCF returns unconverged energies without raising). The chain:

1. DIIS SCF, started from the previous point's density matrix when there is one;
2. damped SCF (damping 0.5, DIIS started late, small level shift);
3. second-order SCF (``mf.newton()``), accepted only if its energy is continuous with the last converged
   neighbour: ``|E - (E_nb - F_nb . (x - x_nb))| <= continuity_tol`` (first-order Taylor model of the
   neighbour), because Newton always "converges" but may land on another state.

A point that fails all three is returned with ``converged=False`` and the reasons; callers record it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .units import ANGSTROM_TO_BOHR

METHODS = ("dft", "hf", "ccsd(t)")


@dataclass(frozen=True)
class LevelOfTheory:
    """Level of theory. ``xc`` and ``grid_level`` apply to DFT only."""

    method: str = "dft"
    xc: str = "b3lyp"
    basis: str = "def2-svp"
    grid_level: int = 2
    conv_tol: float = 1e-10
    max_cycle: int = 100
    continuity_tol: float = 0.02  # Hartree

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"dft.method: unknown method {self.method!r} (use one of {METHODS})")

    def describe(self) -> str:
        if self.method == "dft":
            return f"RKS-{self.xc.upper()}/{self.basis} (grid level {self.grid_level}, grid response)"
        if self.method == "hf":
            return f"RHF/{self.basis}"
        return f"CCSD(T)/{self.basis}"


@dataclass
class PointResult:
    energy: float  # Hartree
    gradient: np.ndarray  # Hartree/Bohr, (n_atoms, 3)
    converged: bool
    attempts: list[str] = field(default_factory=list)
    dm: np.ndarray | None = None
    seconds: float = 0.0


def set_threads(n: int) -> None:
    """PySCF's number of OpenMP threads (``pyscf.lib.num_threads``)."""
    from pyscf import lib

    lib.num_threads(int(n))


def pyscf_version() -> str:
    """The version of PySCF that computes the reference data (recorded in every frame)."""
    from pyscf import __version__

    return __version__


def build_mol(symbols: Sequence[str], positions: np.ndarray, *, charge: int, spin: int, basis: str):
    """A PySCF ``Mole`` from symbols and positions in Angstrom. ``spin`` is 2S (multiplicity - 1)."""
    from pyscf import gto

    atom = [(s, tuple(map(float, p))) for s, p in zip(symbols, np.asarray(positions, dtype=float))]
    mol = gto.Mole()
    mol.atom = atom
    mol.unit = "Angstrom"
    mol.basis = basis
    mol.charge = int(charge)
    mol.spin = int(spin)
    mol.verbose = 0
    mol.build()
    return mol


def _make_mf(mol, level: LevelOfTheory):
    from pyscf import dft, scf

    if level.method == "dft":
        mf = dft.RKS(mol) if mol.spin == 0 else dft.UKS(mol)
        mf.xc = level.xc
        mf.grids.level = level.grid_level
    else:
        mf = scf.RHF(mol) if mol.spin == 0 else scf.UHF(mol)
    mf.conv_tol = level.conv_tol
    mf.max_cycle = level.max_cycle
    mf.verbose = 0
    return mf


def _gradient(mf, level: LevelOfTheory) -> tuple[float, np.ndarray]:
    """Total energy (Ha) and its analytic nuclear gradient (Ha/Bohr) at the converged ``mf``."""
    if level.method == "ccsd(t)":
        from pyscf import cc
        from pyscf.grad import ccsd_t as ccsd_t_grad

        mycc = cc.CCSD(mf)
        mycc.conv_tol = max(level.conv_tol, 1e-10)
        mycc.verbose = 0
        mycc.kernel()
        if not mycc.converged:
            raise RuntimeError("CCSD amplitudes did not converge")
        e_t = mycc.ccsd_t()
        g = ccsd_t_grad.Gradients(mycc)
        g.verbose = 0
        grad = g.kernel()
        return float(mycc.e_tot + e_t), np.asarray(grad)
    g = mf.nuc_grad_method()
    g.verbose = 0
    if level.method == "dft":
        g.grid_response = True
    grad = g.kernel()
    return float(mf.e_tot), np.asarray(grad)


def single_point(
    symbols: Sequence[str],
    positions: np.ndarray,
    *,
    charge: int,
    spin: int,
    level: LevelOfTheory,
    dm0: np.ndarray | None = None,
    neighbour: tuple[np.ndarray, float, np.ndarray] | None = None,
) -> PointResult:
    """Energy and gradient at one geometry (Angstrom) with the fallback chain.

    ``neighbour`` = (positions in Angstrom, energy in Ha, gradient in Ha/Bohr) of the last converged point,
    used for the continuity check of the second-order fallback.
    """
    t0 = time.perf_counter()
    mol = build_mol(symbols, positions, charge=charge, spin=spin, basis=level.basis)
    attempts: list[str] = []

    # 1. plain DIIS
    mf = _make_mf(mol, level)
    mf.kernel(dm0=dm0)
    if mf.converged:
        attempts.append("diis: converged")
    else:
        attempts.append(f"diis: not converged in {level.max_cycle} cycles (E={mf.e_tot:.10f})")
        # 2. damping
        mf = _make_mf(mol, level)
        mf.damp = 0.5
        mf.diis_start_cycle = 6
        mf.level_shift = 0.1
        mf.kernel(dm0=dm0)
        if mf.converged:
            # a level shift changes the convergence path, not the solution; polish without it
            dm = mf.make_rdm1()
            mf = _make_mf(mol, level)
            mf.kernel(dm0=dm)
        if mf.converged:
            attempts.append("damped: converged")
        else:
            attempts.append("damped: not converged")
            # 3. second-order solver, with a continuity check
            mf = _make_mf(mol, level).newton()
            mf.kernel(dm0=dm0)
            if not mf.converged:
                attempts.append("newton: not converged")
            elif neighbour is None:
                attempts.append(f"newton: converged (E={mf.e_tot:.10f}) but rejected: no converged neighbour to check continuity")
                mf.converged = False
            else:
                x_nb, e_nb, g_nb = neighbour
                dx = (np.asarray(positions) - np.asarray(x_nb)) * ANGSTROM_TO_BOHR
                e_pred = e_nb + float(np.sum(g_nb * dx))
                if abs(mf.e_tot - e_pred) <= level.continuity_tol:
                    attempts.append(f"newton: converged, continuous with neighbour (|dE|={abs(mf.e_tot - e_pred):.2e} Ha)")
                else:
                    attempts.append(
                        f"newton: converged but rejected: E={mf.e_tot:.8f} vs {e_pred:.8f} Ha extrapolated from the neighbour "
                        f"(tolerance {level.continuity_tol} Ha): probably another SCF state"
                    )
                    mf.converged = False
    if not mf.converged:
        return PointResult(float("nan"), np.full((len(symbols), 3), np.nan), False, attempts, None, time.perf_counter() - t0)
    try:
        energy, grad = _gradient(mf, level)
    except RuntimeError as exc:
        attempts.append(f"gradient: {exc}")
        return PointResult(float("nan"), np.full((len(symbols), 3), np.nan), False, attempts, None, time.perf_counter() - t0)
    return PointResult(energy, grad, True, attempts, mf.make_rdm1(), time.perf_counter() - t0)


def run_path(
    symbols: Sequence[str],
    geometries: Sequence[np.ndarray],
    *,
    charge: int,
    spin: int,
    level: LevelOfTheory,
    progress=None,
) -> list[PointResult]:
    """Single points along an ordered path; each SCF starts from the last converged density matrix."""
    results: list[PointResult] = []
    dm = None
    neighbour = None
    for k, pos in enumerate(geometries):
        res = single_point(symbols, pos, charge=charge, spin=spin, level=level, dm0=dm, neighbour=neighbour)
        if res.converged:
            dm = res.dm
            neighbour = (np.asarray(pos), res.energy, res.gradient)
        res.dm = None  # do not keep density matrices around
        results.append(res)
        if progress is not None:
            progress(k, res)
    return results

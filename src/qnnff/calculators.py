"""ASE calculators: a trained qnnff force field, and the PySCF reference it was trained on.

* :class:`ModelCalculator` wraps any :class:`~qnnff.models.base.ForceField` (or the path of its artifact, loaded
  with :func:`qnnff.models.load_model`). Energy in eV, forces in eV/Angstrom, from the model's
  ``energy_and_forces`` (forces = -dE/dR by autograd). It refuses atoms whose chemical symbols differ from the
  model's (in order), and geometries outside the model's domain: for a
  :class:`~qnnff.models.base.FeatureForceField`, a scaled internal coordinate outside [-1, 1]
  (``featurizer.out_of_domain``), where the arcsin feature map is undefined; a model without a featurizer may
  expose its own ``out_of_domain(positions [1, n, 3]) -> bool [1]``. Per-call overhead is kept small for MD: the
  symbol check runs only when the atomic numbers change; ``check_state`` compares positions, numbers, cell and pbc
  exactly with ``numpy.array_equal`` (ASE's generic ``compare_atoms`` with ``allclose`` cost as much as the model);
  and for a plain :class:`~qnnff.models.base.FeatureForceField` (one that does not override ``energy``,
  ``energy_and_forces`` or ``scaled_energy``, with a stock :class:`~qnnff.features.Featurizer`) the domain check reuses
  the scaled coordinates of the energy evaluation instead of computing the internal coordinates twice. Any other
  model goes through its own ``energy_and_forces``.
* :class:`PySCFCalculator` runs :func:`qnnff.dft.single_point` at a :class:`~qnnff.dft.LevelOfTheory`, starting each SCF
  from the previous converged density matrix (and handing the previous point to the second-order fallback's
  continuity check); it raises :class:`SCFNotConvergedError` when the fallback chain fails.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes

from .dft import LevelOfTheory, single_point
from .units import HA_PER_BOHR_TO_EV_PER_ANG, HARTREE_TO_EV

__all__ = ["ModelCalculator", "OutOfDomainError", "PySCFCalculator", "SCFNotConvergedError", "SpeciesMismatchError"]


class OutOfDomainError(ValueError):
    """The geometry lies outside the region the model was built for."""


class SpeciesMismatchError(ValueError):
    """The Atoms' chemical symbols are not the model's."""


class SCFNotConvergedError(RuntimeError):
    """PySCF's fallback chain did not converge at this geometry."""


class ModelCalculator(Calculator):
    """ASE calculator for a qnnff ForceField (energy eV, forces eV/Angstrom)."""

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, model: Any, **kwargs: Any) -> None:
        from .models.base import ForceField, load_model

        if isinstance(model, (str, Path)):
            model = load_model(model)
        if not isinstance(model, ForceField):
            raise TypeError(f"ModelCalculator needs a qnnff ForceField or the path of its artifact, got {type(model).__name__}")
        super().__init__(**kwargs)
        self.model = model
        self.symbols = list(model.symbols)
        featurizer = getattr(model, "featurizer", None)
        self._domain = getattr(featurizer, "out_of_domain", None) or getattr(model, "out_of_domain", None)
        self._checked_numbers: np.ndarray | None = None
        self._fused = _fusable(model)

    def _check_species(self, atoms) -> None:
        numbers = atoms.numbers
        if self._checked_numbers is not None and np.array_equal(numbers, self._checked_numbers):
            return
        got = atoms.get_chemical_symbols()
        if got != self.symbols:
            raise SpeciesMismatchError(
                f"the {self.model.kind} model was built for atoms {self.symbols} (in this order), got {got}: "
                f"reorder the Atoms or use the model of this system"
            )
        self._checked_numbers = numbers.copy()

    def _domain_error(self, pos: torch.Tensor) -> OutOfDomainError:
        featurizer = getattr(self.model, "featurizer", None)
        if featurizer is None:
            return OutOfDomainError(f"geometry outside the {self.model.kind} model's domain")
        with torch.no_grad():
            q = featurizer.internal(pos)[0]
            s = featurizer.scale(q.unsqueeze(0))[0]
        bad = [
            f"{lab} = {qv:.4f} (training range [{lo:.4f}, {hi:.4f}], scaled {sv:+.3f})"
            for lab, qv, sv, lo, hi in zip(featurizer.coordinate_labels(), q.tolist(), s.tolist(), featurizer.lo.tolist(), featurizer.hi.tolist())
            if abs(sv) > 1.0
        ]
        return OutOfDomainError(
            f"geometry outside the {self.model.kind} model's domain: {'; '.join(bad)} "
            f"(bonds in Angstrom, angles in degrees; scaled coordinates must stay in [-1, 1])"
        )

    def check_state(self, atoms, tol: float = 1e-15) -> list[str]:
        """Exact comparison of what the model depends on (and cell/pbc), cheaper than ASE's ``compare_atoms``."""
        old = self.atoms
        if old is None:
            return list(all_changes)
        changes = []
        if not np.array_equal(old.numbers, atoms.numbers):
            changes.append("numbers")
        if not np.array_equal(old.positions, atoms.positions):
            changes.append("positions")
        if not np.array_equal(old.cell.array, atoms.cell.array):
            changes.append("cell")
        if not np.array_equal(old.pbc, atoms.pbc):
            changes.append("pbc")
        return changes

    def calculate(self, atoms=None, properties: Sequence[str] = ("energy",), system_changes: Sequence[str] = all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        self._check_species(self.atoms)
        pos = torch.from_numpy(np.array(self.atoms.positions, dtype=np.float64)).unsqueeze(0)
        if self._fused:
            e, f = self._fused_energy_and_forces(pos)
        else:
            if self._domain is not None and bool(self._domain(pos)[0]):
                raise self._domain_error(pos)
            e, f = self.model.energy_and_forces(pos)
        energy = float(e[0])
        self.results = {"energy": energy, "free_energy": energy, "forces": f[0].detach().numpy().copy()}

    def _fused_energy_and_forces(self, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """FeatureForceField.energy_and_forces with the domain check on the same scaled coordinates."""
        model, feat = self.model, self.model.featurizer
        pos = pos.requires_grad_(True)
        with torch.enable_grad():
            s = feat.scale(feat.internal(pos))
            if bool((s.detach().abs() > 1.0).any()):
                raise self._domain_error(pos.detach())
            e = model.energy_scaler.center + model.energy_scaler.scale * model.regressor(feat.map(s))
            (g,) = torch.autograd.grad(e.sum(), pos)
        return e.detach(), -g


def _fusable(model: Any) -> bool:
    """True if ``model.energy_and_forces`` is exactly the stock FeatureForceField chain (see the module docstring)."""
    from .features import Featurizer
    from .models.base import FeatureForceField, ForceField

    if not isinstance(model, FeatureForceField) or type(model.featurizer) is not Featurizer:
        return False
    cls = type(model)
    return (cls.energy is ForceField.energy and cls.energy_and_forces is ForceField.energy_and_forces
            and cls.scaled_energy is FeatureForceField.scaled_energy)


class PySCFCalculator(Calculator):
    """ASE calculator for the PySCF reference (energy eV, forces eV/Angstrom) with density-matrix reuse."""

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, *, level: LevelOfTheory, charge: int = 0, spin: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.level = level
        self.charge = int(charge)
        self.spin = int(spin)
        self.last_attempts: list[str] = []
        self._dm: np.ndarray | None = None
        self._neighbour: tuple[np.ndarray, float, np.ndarray] | None = None
        self._numbers: np.ndarray | None = None

    def reset(self) -> None:
        super().reset()
        self._dm = None
        self._neighbour = None

    def calculate(self, atoms=None, properties: Sequence[str] = ("energy",), system_changes: Sequence[str] = all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        numbers = self.atoms.numbers
        if self._numbers is None or not np.array_equal(numbers, self._numbers):
            self._dm, self._neighbour, self._numbers = None, None, numbers.copy()
        pos = np.array(self.atoms.positions, dtype=float)
        res = single_point(self.atoms.get_chemical_symbols(), pos, charge=self.charge, spin=self.spin, level=self.level,
                           dm0=self._dm, neighbour=self._neighbour)
        self.last_attempts = list(res.attempts)
        if not res.converged:
            raise SCFNotConvergedError(
                f"{self.level.describe()} did not converge for {self.atoms.get_chemical_formula()} "
                f"(charge {self.charge}, 2S {self.spin}): {'; '.join(res.attempts)}"
            )
        self._dm = res.dm
        self._neighbour = (pos, res.energy, res.gradient)
        energy = res.energy * HARTREE_TO_EV
        self.results = {"energy": energy, "free_energy": energy, "forces": -np.asarray(res.gradient) * HA_PER_BOHR_TO_EV_PER_ANG}

"""ASE calculators: a trained qnnff force field, and the PySCF reference it was trained on.

* :class:`ModelCalculator` wraps any :class:`~qnnff.models.base.ForceField` (or the path of its artifact, loaded
  with :func:`qnnff.models.load_model`). Energy in eV, forces in eV/Angstrom, from the model's
  ``energy_and_forces`` (forces = -dE/dR by autograd). It refuses atoms whose chemical symbols differ from the
  model's (in order), and geometries outside the model's domain: for a
  :class:`~qnnff.models.base.FeatureForceField`, a scaled internal coordinate outside [-1, 1]
  (``featurizer.out_of_domain``), where the arcsin feature map is undefined; a model without a featurizer may
  expose its own ``out_of_domain(positions [1, n, 3]) -> bool [1]`` (the BPNN does: every element pair's interatomic
  distances must stay within their training range, stored in its artifact). Before any of that, every backend
  rejects NaN/inf positions (:class:`NonFiniteGeometryError`) and atoms closer than 0.3 A
  (:class:`OverlappingAtomsError`), both subclasses of :class:`OutOfDomainError` (:func:`check_geometry`).

  Evaluation (``calc.backend``):

  - ``"frozen"``: a stock :class:`~qnnff.models.qnn.QNNForceField` (kind ``"qnn"``) is evaluated by
    :class:`~qnnff.qnn.frozen.FrozenQNN`, an exact numpy evaluation of the circuit compiled once with the current
    weights, and an analytic feature Jacobian (same energies and forces as the torch engine to ~1e-12; LiH MD runs
    at ~16,000 velocity-Verlet steps per second instead of ~1,200 on the torch path, see ``benchmarks/bench_md.py``).
    If the model's weights, readout, featurizer bounds or scaler are changed later, in place (e.g. further training)
    or by replacing them, the next calculation recompiles. ``ModelCalculator(model, frozen=False)`` keeps the torch
    path; ``frozen=True`` insists on the frozen one (an error for other models).
  - ``"fused"``: any other plain :class:`~qnnff.models.base.FeatureForceField` (one that does not override
    ``energy``, ``energy_and_forces`` or ``scaled_energy``, with a stock :class:`~qnnff.features.Featurizer`) runs the
    torch chain with the domain check on the scaled coordinates of the energy evaluation itself.
  - ``"model"``: any other model goes through its own ``energy_and_forces``.

  Per-call overhead is kept small for MD: the symbol check runs only when the atomic numbers change;
  ``check_state`` compares positions, numbers, cell and pbc exactly by their raw bytes (ASE's generic
  ``compare_atoms`` with ``allclose`` cost as much as the model; four ``numpy.array_equal`` calls still cost ~6 us a
  check, three checks a velocity-Verlet step); ``calculate`` does not create ``self.directory`` (nothing is written).
* :class:`PySCFCalculator` runs :func:`qnnff.dft.single_point` at a :class:`~qnnff.dft.LevelOfTheory`, starting each SCF
  from the previous converged density matrix (and handing the previous point to the second-order fallback's
  continuity check); it raises :class:`SCFNotConvergedError` when the fallback chain fails. Empty Atoms, NaN/inf
  positions and atoms closer than ``min_distance`` (0.3 A) are errors raised before PySCF runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes

from .dft import LevelOfTheory, single_point
from .errors import (  # noqa: F401
    MIN_DISTANCE_A,
    NonFiniteGeometryError,
    OutOfDomainError,
    OverlappingAtomsError,
    UnsupportedCircuitError,
    check_geometry,
    domain_error_message,
)
from .units import HA_PER_BOHR_TO_EV_PER_ANG, HARTREE_TO_EV

__all__ = ["ModelCalculator", "NonFiniteGeometryError", "OutOfDomainError", "OverlappingAtomsError", "PySCFCalculator",
           "SCFNotConvergedError", "SpeciesMismatchError", "check_geometry", "domain_error_message"]


class SpeciesMismatchError(ValueError):
    """The Atoms' chemical symbols are not the model's."""


class SCFNotConvergedError(RuntimeError):
    """PySCF's fallback chain did not converge at this geometry."""


class ModelCalculator(Calculator):
    """ASE calculator for a qnnff ForceField (energy eV, forces eV/Angstrom)."""

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, model: Any, *, frozen: bool | None = None, **kwargs: Any) -> None:
        from .models.base import ForceField
        from .models.factory import load_model

        if isinstance(model, (str, Path)):
            model = load_model(model)
        if not isinstance(model, ForceField):
            raise TypeError(f"ModelCalculator needs a qnnff ForceField or the path of its artifact, got {type(model).__name__}")
        super().__init__(**kwargs)
        self.model = model
        self.symbols = list(model.symbols)
        self._domain = model.out_of_domain
        self._checked_numbers: bytes | None = None
        self._fused = _fusable(model)
        self._frozen = None
        if frozen is not False and model.kind == "qnn" and self._fused:  # (other models never import qiskit here)
            from .models.qnn import QNNForceField
            from .qnn.engine import QNNRegressor
            from .qnn.frozen import FrozenQNN

            if isinstance(model, QNNForceField) and type(model.regressor) is QNNRegressor:
                try:
                    self._frozen = FrozenQNN(model)
                except UnsupportedCircuitError:
                    if frozen:
                        raise
        if frozen and self._frozen is None:
            raise ValueError(f"frozen=True needs a stock qnn model (QNNForceField with its own energy chain), got {type(model).__name__}")

    @property
    def backend(self) -> str:
        """How energies are evaluated: ``"frozen"`` (numpy, QNN), ``"fused"`` (torch chain) or ``"model"``."""
        return "frozen" if self._frozen is not None else ("fused" if self._fused else "model")

    def _check_species(self, atoms) -> None:
        numbers = atoms.arrays["numbers"]
        if self._checked_numbers is not None and numbers.tobytes() == self._checked_numbers:
            return
        got = atoms.get_chemical_symbols()
        if got != self.symbols:
            raise SpeciesMismatchError(
                f"the {self.model.kind} model was built for atoms {self.symbols} (in this order), got {got}: "
                f"reorder the Atoms or use the model of this system"
            )
        self._checked_numbers = numbers.tobytes()

    def _domain_error(self, pos: torch.Tensor) -> OutOfDomainError:
        return OutOfDomainError(self.model.domain_message(pos))

    def check_state(self, atoms, tol: float = 1e-15) -> list[str]:
        """Exact comparison of what the model depends on (and cell/pbc), cheaper than ASE's ``compare_atoms``: the raw
        bytes of the arrays (a bitwise change, even 0.0 -> -0.0, counts as a change and only costs a recomputation)."""
        old = self.atoms
        if old is None:
            return list(all_changes)
        changes = []
        oa, na = old.arrays, atoms.arrays
        if oa["numbers"].tobytes() != na["numbers"].tobytes():
            changes.append("numbers")
        if oa["positions"].tobytes() != na["positions"].tobytes():
            changes.append("positions")
        if old.cell.array.tobytes() != atoms.cell.array.tobytes():
            changes.append("cell")
        if old.pbc.tobytes() != atoms.pbc.tobytes():
            changes.append("pbc")
        return changes

    def calculate(self, atoms=None, properties: Sequence[str] = ("energy",), system_changes: Sequence[str] = all_changes) -> None:
        # what Calculator.calculate does, minus creating self.directory (this calculator writes no files)
        if atoms is not None:
            self.atoms = atoms.copy()
        self._check_species(self.atoms)
        check_geometry(self.atoms.positions, f"{self.model.kind} model")
        frozen = self._frozen
        if frozen is not None:
            if not frozen.is_current(self.model):  # the model was changed in place (e.g. trained further): refreeze
                from .qnn.frozen import FrozenQNN

                frozen = self._frozen = FrozenQNN(self.model)
            energy, forces = frozen.energy_and_forces(self.atoms.positions)
            self.results = {"energy": energy, "free_energy": energy, "forces": forces}
            return
        pos = torch.from_numpy(np.array(self.atoms.positions, dtype=np.float64)).unsqueeze(0)
        if self._fused:
            e, f = self._fused_energy_and_forces(pos)
        else:
            if bool(self._domain(pos)[0]):
                raise self._domain_error(pos)
            e, f = self.model.energy_and_forces(pos, check=False)  # (checked above)
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

    def __init__(self, *, level: LevelOfTheory, charge: int = 0, spin: int = 0, min_distance: float = MIN_DISTANCE_A,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.min_distance = float(min_distance)
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
        if atoms is not None and len(atoms) == 0 or atoms is None and (self.atoms is None or len(self.atoms) == 0):
            raise ValueError("PySCFCalculator: empty Atoms (no atoms to compute)")
        super().calculate(atoms, properties, system_changes)
        check_geometry(self.atoms.positions, f"PySCFCalculator ({self.atoms.get_chemical_formula()})", self.min_distance)
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

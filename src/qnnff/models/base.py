"""One model interface for QNN, NN and BPNN force fields.

Contract (like ASE's ``Calculator``, but batched and differentiable):

* ``energy(positions)``: positions ``[B, n_atoms, 3]`` in Angstrom (float64) -> energies ``[B]`` in eV;
* ``energy_and_forces(positions)`` -> (eV ``[B]``, eV/Angstrom ``[B, n_atoms, 3]``), forces = -dE/dR;
* ``scaled_energy_and_forces(batch, create_graph=True)`` -> predictions on the *scaled* targets used by
  the loss (y = (E - center)/scale, f = F/scale), differentiable w.r.t. the trainable parameters;
* ``to_artifact()`` / ``from_artifact()``: one file per trained model (see :mod:`qnnff.models.artifact`).

Feature-based models (QNN, NN) are a :class:`FeatureForceField`: a fixed :class:`~qnnff.features.Featurizer`,
a trainable *regressor* ``features [B, d] -> y [B]`` and an :class:`~qnnff.features.EnergyScaler`.
For training, features and their Jacobians are precomputed once per dataset, so the loss only needs
the regressor's value and input gradient: ``f = -einsum('bd,bdnk->bnk', dy/dx, J)``.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from ..errors import OutOfDomainError, check_geometry, domain_error_message
from ..features import EnergyScaler, Featurizer
from . import artifact as _artifact

_REGISTRY: dict[str, type[ForceField]] = {}


def register_model(cls: type[ForceField]) -> type[ForceField]:
    """Class decorator: the class of artifact ``kind`` ``cls.kind`` (:func:`qnnff.models.factory.load_model` imports the
    module that :data:`qnnff.kinds.KINDS` names for a kind, which registers its class)."""
    _REGISTRY[cls.kind] = cls
    return cls


def registered_model_class(kind: str) -> type[ForceField] | None:
    """The class registered for ``kind`` (None if its module has not been imported)."""
    return _REGISTRY.get(kind)


@dataclass
class TrainingBatch:
    """Everything a loss needs for a set of frames (all float64 tensors).

    positions [B, n, 3] Angstrom; y [B] scaled energies; f [B, n, 3] scaled forces (F/scale);
    x [B, d] features and jac [B, d, n, 3] their Jacobian (feature models only; None otherwise).
    """

    positions: torch.Tensor
    y: torch.Tensor
    f: torch.Tensor
    x: torch.Tensor | None = None
    jac: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.positions.shape[0]

    def subset(self, idx: torch.Tensor) -> TrainingBatch:
        pick = lambda t: None if t is None else t[idx]  # noqa: E731
        return TrainingBatch(pick(self.positions), pick(self.y), pick(self.f), pick(self.x), pick(self.jac))


class ForceField(torch.nn.Module, abc.ABC):
    """Abstract force field on Cartesian positions. Subclasses set ``kind`` and implement the hooks."""

    kind: ClassVar[str] = ""

    def __init__(self, *, symbols: list[str], energy_scaler: EnergyScaler) -> None:
        super().__init__()
        self.symbols = list(symbols)
        self.energy_scaler = energy_scaler

    # ---- to implement
    @abc.abstractmethod
    def scaled_energy(self, positions: torch.Tensor) -> torch.Tensor:
        """positions [B, n, 3] -> scaled energy y [B] (differentiable w.r.t. positions)."""

    @abc.abstractmethod
    def scaled_energy_and_forces(self, batch: TrainingBatch, *, create_graph: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Scaled (y [B], f [B, n, 3]) for the loss; differentiable w.r.t. the weights if create_graph."""

    @abc.abstractmethod
    def to_artifact(self) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, bytes]]:
        """(arrays, JSON metadata, binary blobs) that ``from_artifact`` turns back into this model."""

    @classmethod
    @abc.abstractmethod
    def from_artifact(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any], blobs: dict[str, bytes]) -> ForceField:
        ...

    @classmethod
    def from_settings(cls, settings: Any, *, seed: int, featurizer: Featurizer, energy_scaler: EnergyScaler,
                      train_positions: np.ndarray) -> ForceField:
        """A fresh model of the architecture ``settings`` (the kind's class in :mod:`qnnff.settings`), initial weights
        from ``seed``; ``train_positions`` [B, n, 3] for a kind that fits anything on the training geometries. Every
        kind registered in :data:`qnnff.kinds.KINDS` implements it (a model built by hand need not)."""
        raise NotImplementedError(f"{cls.__name__}: no from_settings, so the pipeline cannot build it (qnnff.kinds)")

    def model_inputs(self, positions: torch.Tensor) -> torch.Tensor:
        """positions [B, n, 3] -> [B, m]: what the model sees of each geometry, one fixed-length vector per frame (the
        inputs whose information floor, :func:`qnnff.floor.information_floor`, its errors are held against, unless
        :meth:`floor_inputs` gives an invariant description of the same information)."""
        raise NotImplementedError(f"{self.kind} model: no model_inputs; its information floor cannot be measured")

    def floor_inputs(self, positions: torch.Tensor) -> torch.Tensor:
        """What the information floor (:func:`qnnff.floor.model_floor`) is measured on: :meth:`model_inputs`, unless a
        model's inputs carry a frame that its built-in symmetries remove (then an invariant description of the same
        information, named by ``floor_inputs_label``)."""
        return self.model_inputs(positions)

    # ---- shared
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def _shaped(self, positions: torch.Tensor | np.ndarray) -> torch.Tensor:
        pos = torch.as_tensor(positions, dtype=torch.float64)
        if pos.ndim == 2:
            pos = pos.unsqueeze(0)
        n = len(self.symbols)
        if pos.ndim != 3 or pos.shape[1:] != (n, 3):
            raise ValueError(f"{self.kind} model for {''.join(self.symbols)}: positions must have shape [B, {n}, 3], got {tuple(pos.shape)}")
        return pos

    def check_positions(self, positions: torch.Tensor | np.ndarray) -> torch.Tensor:
        """``positions`` as a [B, n, 3] tensor of this model's atom count, all finite (a ValueError otherwise)."""
        pos = self._shaped(positions)
        if not torch.isfinite(pos).all():
            raise ValueError("positions contain NaN or infinite values")
        return pos

    def check_symbols(self, symbols: list[str]) -> None:
        if list(symbols) != self.symbols:
            raise ValueError(f"{self.kind} model was trained for species {self.symbols}, got {list(symbols)}")

    def out_of_domain(self, positions: torch.Tensor) -> torch.Tensor:
        """bool [B]: the geometry lies outside the region the model was built for (the base: nowhere)."""
        return torch.zeros(torch.as_tensor(positions).shape[0], dtype=torch.bool)

    def domain_message(self, positions: torch.Tensor) -> str:
        """Why the first geometry of ``positions`` lies outside the domain (the text of the OutOfDomainError)."""
        return f"geometry outside the {self.kind} model's domain"

    def check_domain(self, positions: torch.Tensor | np.ndarray) -> torch.Tensor:
        """``positions`` as a [B, n, 3] tensor, checked as the ASE calculators check them: an OutOfDomainError
        (:class:`~qnnff.errors.NonFiniteGeometryError`, :class:`~qnnff.errors.OverlappingAtomsError`) for NaN or
        infinite positions, two atoms closer than :data:`~qnnff.errors.MIN_DISTANCE_A`, or a geometry outside the
        model's domain; each names the geometry's index in the batch."""
        pos = self._shaped(positions)
        arr = pos.detach().numpy()
        for b in range(arr.shape[0]):
            check_geometry(arr[b], f"{self.kind} model, geometry {b}")
        bad = self.out_of_domain(pos)
        if bool(bad.any()):
            b = int(torch.nonzero(bad)[0, 0])
            raise OutOfDomainError(f"geometry {b} of {len(bad)}: {self.domain_message(pos[b:b + 1])}")
        return pos

    def energy(self, positions: torch.Tensor | np.ndarray, *, check: bool = True) -> torch.Tensor:
        """Energies [B] in eV. ``check=False`` skips :meth:`check_domain` (NaN, overlapping atoms, the domain): the
        model then returns whatever its formula gives there, NaN or an extrapolation."""
        pos = self.check_domain(positions) if check else self.check_positions(positions)
        return self.energy_scaler.center + self.energy_scaler.scale * self.scaled_energy(pos)

    def energy_and_forces(self, positions: torch.Tensor | np.ndarray, *, create_graph: bool = False,
                          check: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """(energies [B] eV, forces [B, n, 3] eV/Angstrom). ``check`` as for :meth:`energy`."""
        pos = (self.check_domain(positions) if check else self.check_positions(positions)).detach().requires_grad_(True)
        with torch.enable_grad():
            e = self.energy(pos, check=False)
            (g,) = torch.autograd.grad(e.sum(), pos, create_graph=create_graph)
        return (e if create_graph else e.detach()), -g

    def save(self, path: str | Path, *, provenance: dict[str, Any] | None = None) -> None:
        arrays, meta, blobs = self.to_artifact()
        meta = {"kind": self.kind, "symbols": self.symbols, "energy_scaler": self.energy_scaler.to_dict(), **meta}
        if provenance is not None:
            meta["provenance"] = provenance
        _artifact.save_artifact(path, arrays=arrays, meta=meta, blobs=blobs)


class FeatureForceField(ForceField):
    """Featurizer (fixed) + regressor (trainable) + energy scaler. Subclasses set ``self.regressor``."""

    regressor: torch.nn.Module

    def __init__(self, *, featurizer: Featurizer, energy_scaler: EnergyScaler) -> None:
        super().__init__(symbols=featurizer.symbols, energy_scaler=energy_scaler)
        self.featurizer = featurizer

    def regressor_value_and_input_grad(self, x: torch.Tensor, *, create_graph: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """y [B] and dy/dx [B, d]; override with something faster than double autograd if you have it."""
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            y = self.regressor(x)
            (g,) = torch.autograd.grad(y.sum(), x, create_graph=create_graph)
        return y, g

    def scaled_energy(self, positions: torch.Tensor) -> torch.Tensor:
        return self.regressor(self.featurizer(positions))

    def model_inputs(self, positions: torch.Tensor) -> torch.Tensor:
        """The features (internal coordinates, scaled, mapped): the regressor sees nothing else."""
        return self.featurizer(positions)

    def out_of_domain(self, positions: torch.Tensor) -> torch.Tensor:
        """bool [B]: a scaled internal coordinate left [-1, 1] (the featurizer's training range with its margin)."""
        return self.featurizer.out_of_domain(positions)

    def domain_message(self, positions: torch.Tensor) -> str:
        feat = self.featurizer
        with torch.no_grad():
            q = feat.internal(positions)[0]
            s = feat.scale(q.unsqueeze(0))[0]
        return domain_error_message(self.kind, feat.coordinate_labels(), q.tolist(), s.tolist(), feat.lo.tolist(), feat.hi.tolist())

    def scaled_energy_and_forces(self, batch: TrainingBatch, *, create_graph: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        if batch.x is None or batch.jac is None:
            x, jac = self.featurizer.features_and_jacobian(batch.positions)
        else:
            x, jac = batch.x, batch.jac
        y, g = self.regressor_value_and_input_grad(x, create_graph=create_graph)
        f = -torch.einsum("bd,bdnk->bnk", g, jac)
        return y, f

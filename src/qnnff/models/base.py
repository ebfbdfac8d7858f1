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
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from ..features import EnergyScaler, Featurizer
from . import artifact as _artifact

_REGISTRY: dict[str, type[ForceField]] = {}


def register_model(cls: type[ForceField]) -> type[ForceField]:
    """Class decorator: make ``load_model`` able to rebuild ``cls`` from its artifact ``kind``."""
    _REGISTRY[cls.kind] = cls
    return cls


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

    def model_inputs(self, positions: torch.Tensor) -> torch.Tensor:
        """positions [B, n, 3] -> [B, m]: what the model sees of each geometry, one fixed-length vector per frame (the
        inputs whose information floor, :func:`qnnff.floor.information_floor`, its errors are held against)."""
        raise NotImplementedError(f"{self.kind} model: no model_inputs; its information floor cannot be measured")

    # ---- shared
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def check_positions(self, positions: torch.Tensor | np.ndarray) -> torch.Tensor:
        pos = torch.as_tensor(positions, dtype=torch.float64)
        if pos.ndim == 2:
            pos = pos.unsqueeze(0)
        n = len(self.symbols)
        if pos.ndim != 3 or pos.shape[1:] != (n, 3):
            raise ValueError(f"{self.kind} model for {''.join(self.symbols)}: positions must have shape [B, {n}, 3], got {tuple(pos.shape)}")
        if not torch.isfinite(pos).all():
            raise ValueError("positions contain NaN or infinite values")
        return pos

    def check_symbols(self, symbols: list[str]) -> None:
        if list(symbols) != self.symbols:
            raise ValueError(f"{self.kind} model was trained for species {self.symbols}, got {list(symbols)}")

    def energy(self, positions: torch.Tensor | np.ndarray) -> torch.Tensor:
        pos = self.check_positions(positions)
        return self.energy_scaler.center + self.energy_scaler.scale * self.scaled_energy(pos)

    def energy_and_forces(self, positions: torch.Tensor | np.ndarray, *, create_graph: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        pos = self.check_positions(positions).detach().requires_grad_(True)
        with torch.enable_grad():
            e = self.energy(pos)
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

    def scaled_energy_and_forces(self, batch: TrainingBatch, *, create_graph: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        if batch.x is None or batch.jac is None:
            x, jac = self.featurizer.features_and_jacobian(batch.positions)
        else:
            x, jac = batch.x, batch.jac
        y, g = self.regressor_value_and_input_grad(x, create_graph=create_graph)
        f = -torch.einsum("bd,bdnk->bnk", g, jac)
        return y, f


_BUILTIN_KINDS = ("qnn", "nn", "bpnn")  # kind -> module qnnff.models.<kind>


def load_model(path: str | Path) -> ForceField:
    """Rebuild any registered model from its artifact file (no training code involved)."""
    arrays, meta, blobs = _artifact.load_artifact(path)
    kind = meta.get("kind")
    if kind not in _REGISTRY:  # the model modules register themselves when imported: only the artifact's kind is
        # imported (an NN's MD or effective-dimension job then starts without Qiskit and the QNN kernels)
        for module in (kind,) if kind in _BUILTIN_KINDS else _BUILTIN_KINDS:
            importlib.import_module(f"{__package__}.{module}")
    if kind not in _REGISTRY:
        raise ValueError(f"{path}: unknown model kind {kind!r} (known: {sorted(_REGISTRY)})")
    return _REGISTRY[kind].from_artifact(arrays, meta, blobs)

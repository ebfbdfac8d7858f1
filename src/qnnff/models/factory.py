"""Models from the config and from files: the layer above every model kind.

:func:`build_model_from` builds a fresh model from its typed architecture (the kind's settings class in
:mod:`qnnff.settings`, e.g. a :class:`qnnff.jobs.TrainJob`'s) and initial seed: the ``train_*`` rules
(:func:`qnnff.stages.train.train`) and the studies start from it. :func:`build_model` does the same from a config
dict (the architecture parsed by :func:`qnnff.settings.model_settings_of`). :func:`load_model` rebuilds any saved
model from its artifact.

Neither names a kind: :func:`model_class` looks the kind up in :data:`qnnff.kinds.KINDS` and imports its module only
(an NN's MD or effective-dimension job starts without Qiskit and the QNN kernels), whose class registers itself
(:func:`qnnff.models.base.register_model`) and builds (``from_settings``) and loads (``from_artifact``) itself.
:func:`qnn_circuit_config` and :func:`qnn_parameter_count` live in the torch-free :mod:`qnnff.protocols` (the settings
layer sizes the NN at workflow start-up) and are re-exported.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np

from ..config import ConfigError
from ..features import EnergyScaler, Featurizer
from ..kinds import KINDS, model_kind
from ..protocols import QNN_CIRCUIT_KEYS, init_seed, qnn_circuit_config, qnn_parameter_count
from ..settings import ModelSettings, model_settings_of
from . import artifact as _artifact
from .base import ForceField, registered_model_class

MODEL_KINDS = tuple(KINDS)
__all__ = ["MODEL_KINDS", "QNN_CIRCUIT_KEYS", "build_model", "build_model_from", "load_model", "model_class",
           "qnn_circuit_config", "qnn_parameter_count"]


def model_class(kind: str) -> type[ForceField]:
    """The :class:`~qnnff.models.base.ForceField` class of ``kind``: a kind of :data:`qnnff.kinds.KINDS` (its module
    imported on first use), or a class registered by hand with :func:`~qnnff.models.base.register_model`."""
    cls = registered_model_class(kind)
    if cls is None and kind in KINDS:
        importlib.import_module(KINDS[kind].module)
        cls = registered_model_class(kind)
    if cls is None:
        model_kind(kind)  # an unknown kind: the error lists the registered ones
        raise ValueError(f"model kind {kind!r}: {KINDS[kind].module} registers no class for it (qnnff.kinds.KINDS)")
    if kind in KINDS and cls.__name__ != KINDS[kind].model_class:
        raise ValueError(f"model kind {kind!r}: {cls.__name__} is registered, qnnff.kinds.KINDS names {KINDS[kind].model_class}")
    return cls


def build_model(cfg: dict, system: str, kind: str, featurizer: Featurizer, scaler: EnergyScaler,
                train_positions: np.ndarray, *, protocol: str | None = None, seed_index: int = 0) -> ForceField:
    """A fresh model of ``kind`` for ``system`` as the config describes it, initialised from seed ``seed_index``
    (:func:`qnnff.protocols.init_seed`); a QNN takes its initialisation from ``protocol`` (default: the first)."""
    if kind not in KINDS:
        raise ConfigError(f"unknown model kind {kind!r} (use one of {MODEL_KINDS})")
    return build_model_from(model_settings_of(cfg, system, kind, protocol), init_seed(cfg, system, kind, seed_index), featurizer,
                            scaler, train_positions)


def build_model_from(model: ModelSettings, seed: int, featurizer: Featurizer, scaler: EnergyScaler,
                     train_positions: np.ndarray) -> ForceField:
    """A fresh model of the architecture ``model`` (a settings class of :mod:`qnnff.settings`, which names its
    ``kind``) with initial weights from ``seed``; a BPNN fits its descriptor standardisation on ``train_positions``."""
    kind = getattr(model, "kind", None)
    if kind not in KINDS:
        raise TypeError(f"no model kind has the settings {model!r}")
    return model_class(kind).from_settings(model, seed=seed, featurizer=featurizer, energy_scaler=scaler,
                                           train_positions=train_positions)


def load_model(path: str | Path) -> ForceField:
    """Rebuild any registered model from its artifact file (no training code involved)."""
    arrays, meta, blobs = _artifact.load_artifact(path)
    kind = meta.get("kind")
    try:
        cls = model_class(kind)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return cls.from_artifact(arrays, meta, blobs)

"""Models from the config: a fresh QNN, NN or BPNN of a system as its ``models`` section describes it.

:func:`build_model_from` builds a model from its typed architecture (:class:`qnnff.settings.QNNSettings`,
:class:`~qnnff.settings.NNSettings`, :class:`~qnnff.settings.BPNNSettings`) and initial seed: the ``train_*`` rules
(:func:`qnnff.stages.train.train`) and the studies start from it, with a :class:`qnnff.jobs.TrainJob`'s.
:func:`build_model` does the same from a config dict (the architecture parsed by
:func:`qnnff.settings.model_settings_of`).
:func:`qnn_circuit_config` (a system's QNN circuit keys as the pipeline reads them) and :func:`qnn_parameter_count`
(the QNN's number of trainable weights: an NN without ``hidden`` or ``target_parameters`` is sized to match it) live
in the torch-free :mod:`qnnff.protocols` (the settings layer sizes the NN at workflow start-up) and are re-exported.
"""

from __future__ import annotations

import numpy as np

from ..config import ConfigError
from ..features import EnergyScaler, Featurizer
from ..protocols import QNN_CIRCUIT_KEYS, init_seed, qnn_circuit_config, qnn_parameter_count
from ..settings import BPNNSettings, ModelSettings, NNSettings, QNNSettings, model_settings_of
from .base import ForceField
from .bpnn import BPNNForceField
from .nn import NNForceField

MODEL_KINDS = ("qnn", "nn", "bpnn")
__all__ = ["MODEL_KINDS", "QNN_CIRCUIT_KEYS", "build_model", "build_model_from", "qnn_circuit_config", "qnn_parameter_count"]


def build_model(cfg: dict, system: str, kind: str, featurizer: Featurizer, scaler: EnergyScaler,
                train_positions: np.ndarray, *, protocol: str | None = None, seed_index: int = 0) -> ForceField:
    """A fresh model of ``kind`` for ``system`` as the config describes it, initialised from seed ``seed_index``
    (:func:`qnnff.protocols.init_seed`); a QNN takes its initialisation from ``protocol`` (default: the first)."""
    if kind not in MODEL_KINDS:
        raise ConfigError(f"unknown model kind {kind!r} (use one of {MODEL_KINDS})")
    return build_model_from(model_settings_of(cfg, system, kind, protocol), init_seed(cfg, system, kind, seed_index), featurizer,
                            scaler, train_positions)


def build_model_from(model: ModelSettings, seed: int, featurizer: Featurizer, scaler: EnergyScaler,
                     train_positions: np.ndarray) -> ForceField:
    """A fresh model of the architecture ``model`` (:class:`~qnnff.settings.QNNSettings`, :class:`~qnnff.settings.NNSettings`
    or :class:`~qnnff.settings.BPNNSettings`, e.g. a :class:`qnnff.jobs.TrainJob`'s) with initial weights from ``seed``;
    a BPNN fits its descriptor standardisation on ``train_positions``."""
    if isinstance(model, QNNSettings):
        # Qiskit and the numba engine are loaded for a QNN only (qnn_parameter_count needs neither)
        from .qnn import QNNForceField

        return QNNForceField(featurizer=featurizer, energy_scaler=scaler, circuit=dict(model.circuit), seed=seed,
                             init_scale=model.init_rotations, feature_map_init=model.feature_map_weights)
    if isinstance(model, NNSettings):
        return NNForceField(featurizer=featurizer, energy_scaler=scaler, hidden=model.hidden, target_parameters=model.target_parameters,
                            activation=model.activation, seed=seed)
    if isinstance(model, BPNNSettings):
        return BPNNForceField.from_training_data(
            train_positions, symbols=featurizer.symbols, energy_scaler=scaler, hidden=model.hidden,
            symmetry_functions=model.symmetry_functions, activation=model.activation, seed=seed)
    raise TypeError(f"no model kind has the settings {model!r}")

"""Models from the config: a fresh QNN, NN or BPNN of a system as its ``models`` section describes it.

:func:`build_model` is what the ``train_*`` rules (:func:`qnnff.stages.train.train`) and the studies start from.
:func:`qnn_circuit_config` (a system's QNN circuit keys as the pipeline reads them) and :func:`qnn_parameter_count`
(the QNN's number of trainable weights: an NN without ``hidden`` or ``target_parameters`` is sized to match it) live
in the torch-free :mod:`qnnff.protocols` (the settings layer sizes the NN at workflow start-up) and are re-exported.
"""

from __future__ import annotations

import numpy as np

from ..config import ConfigError, schema_defaults
from ..features import EnergyScaler, Featurizer
from ..protocols import QNN_CIRCUIT_KEYS, init_seed, model_config, protocols, qnn_circuit_config, qnn_init, qnn_parameter_count
from .base import ForceField
from .bpnn import BPNNForceField
from .nn import NNForceField

MODEL_KINDS = ("qnn", "nn", "bpnn")
__all__ = ["MODEL_KINDS", "QNN_CIRCUIT_KEYS", "build_model", "qnn_circuit_config", "qnn_parameter_count"]


def build_model(cfg: dict, system: str, kind: str, featurizer: Featurizer, scaler: EnergyScaler,
                train_positions: np.ndarray, *, protocol: str | None = None, seed_index: int = 0) -> ForceField:
    """A fresh model of ``kind`` for ``system`` as the config describes it, initialised from seed ``seed_index``
    (:func:`qnnff.protocols.init_seed`); a QNN takes its initialisation from ``protocol`` (default: the first)."""
    if kind not in MODEL_KINDS:
        raise ConfigError(f"unknown model kind {kind!r} (use one of {MODEL_KINDS})")
    mc = {**schema_defaults(f"#{kind}"), **model_config(cfg, system, kind)}  # the schema holds the defaults
    seed = init_seed(cfg, system, kind, seed_index)
    if kind == "qnn":
        # Qiskit and the numba engine are loaded for a QNN only (qnn_parameter_count needs neither)
        from .qnn import QNNForceField

        init = qnn_init(cfg, system, protocol or protocols(cfg, system, kind)[0])
        return QNNForceField(featurizer=featurizer, energy_scaler=scaler, circuit=qnn_circuit_config(cfg, system), seed=seed,
                             init_scale=float(init["rotations"]), feature_map_init=init["feature_map_weights"])
    if kind == "nn":
        target = mc.get("target_parameters")
        if mc.get("hidden") is None and target is None:
            if "qnn" not in cfg["systems"][system].get("models", {}):
                raise ConfigError(f"systems.{system}.models.nn: give `hidden` or `target_parameters` (there is no QNN to match)")
            target = qnn_parameter_count(cfg, system, featurizer.n_features)
        return NNForceField(featurizer=featurizer, energy_scaler=scaler, hidden=mc.get("hidden"), target_parameters=target,
                            activation=mc["activation"], seed=seed)
    return BPNNForceField.from_training_data(  # kind == "bpnn"
        train_positions, symbols=featurizer.symbols, energy_scaler=scaler, hidden=mc["hidden"],
        symmetry_functions=mc.get("symmetry_functions"), activation=mc["activation"], seed=seed)

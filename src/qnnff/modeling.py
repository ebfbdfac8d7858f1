"""Build, train and apply the models of a system from the config (QNN, NN, BPNN alike)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch

from . import dataset as ds
from .config import ConfigError
from .protocols import init_seed, model_config, model_hash, protocols, qnn_init, train_seed, training_settings
from .features import EnergyScaler, Featurizer
from .integrity import load_npz
from .io import write_json_atomic
from .models.base import ForceField, TrainingBatch
from .provenance import provenance

log = logging.getLogger("qnnff")
MODEL_KINDS = ("qnn", "nn", "bpnn")
QNN_CIRCUIT_KEYS = ("n_qubits", "depth", "feature_map", "feature_map_reps", "trainable_feature_map",
                    "trainable_feature_map_reps", "entanglement", "rotations", "final_rotations")


def qnn_circuit_config(cfg: dict, system: str) -> dict:
    mc = model_config(cfg, system, "qnn")
    out = {k: mc[k] for k in QNN_CIRCUIT_KEYS if k in mc}
    out.setdefault("entanglement", "linear")
    out["rotations"] = list(out.get("rotations", ["ry", "rz"]))
    out.setdefault("final_rotations", True)
    return out


def qnn_parameter_count(cfg: dict, system: str, n_features: int) -> int:
    from .qnn.circuit import QNNCircuitConfig

    return QNNCircuitConfig(n_features=n_features, **qnn_circuit_config(cfg, system)).n_weights


def build_model(cfg: dict, system: str, kind: str, featurizer: Featurizer, scaler: EnergyScaler,
                train_positions: np.ndarray, *, protocol: str | None = None, seed_index: int = 0) -> ForceField:
    """A fresh model of ``kind`` for ``system`` as the config describes it, initialised from seed ``seed_index``
    (:func:`qnnff.protocols.init_seed`); a QNN takes its initialisation from ``protocol`` (default: the first)."""
    mc = model_config(cfg, system, kind)
    seed = init_seed(cfg, system, kind, seed_index)
    if kind == "qnn":
        from .models.qnn import QNNForceField

        init = qnn_init(cfg, system, protocol or protocols(cfg, system, kind)[0])
        return QNNForceField(featurizer=featurizer, energy_scaler=scaler, circuit=qnn_circuit_config(cfg, system), seed=seed,
                             init_scale=float(init["rotations"]), feature_map_init=init["feature_map_weights"])
    if kind == "nn":
        from .models.nn import NNForceField

        target = mc.get("target_parameters")
        if mc.get("hidden") is None and target is None:
            if "qnn" not in cfg["systems"][system].get("models", {}):
                raise ConfigError(f"systems.{system}.models.nn: give `hidden` or `target_parameters` (there is no QNN to match)")
            target = qnn_parameter_count(cfg, system, featurizer.n_features)
        return NNForceField(featurizer=featurizer, energy_scaler=scaler, hidden=mc.get("hidden"), target_parameters=target,
                            activation=mc.get("activation", "tanh"), seed=seed)
    if kind == "bpnn":
        from .models.bpnn import BPNNForceField

        return BPNNForceField.from_training_data(
            train_positions, symbols=featurizer.symbols, energy_scaler=scaler, hidden=mc.get("hidden", [20, 20]),
            symmetry_functions=mc.get("symmetry_functions"), activation=mc.get("activation", "tanh"), seed=seed)
    raise ConfigError(f"unknown model kind {kind!r} (use one of {MODEL_KINDS})")


def load_batch(npz_path: str | Path, *, with_features: bool = True) -> TrainingBatch:
    f = load_npz(npz_path)  # verified: frame count and sha256
    t = lambda k: torch.as_tensor(f[k], dtype=torch.float64)  # noqa: E731
    return TrainingBatch(positions=t("positions"), y=t("y"), f=t("f"),
                         x=t("x") if with_features else None, jac=t("jac") if with_features else None)


def train_model(cfg: dict, system: str, kind: str, protocol: str, seed_index: int, scalers_json: str, train_npz: str,
                test_npz: str, out_model: str, out_predictions: str, out_curve: str, out_summary: str, checkpoint: str) -> dict:
    """Train seed ``seed_index`` of ``kind`` under ``protocol``; write the model, its test predictions, learning curve
    and summary (iterations done out of configured, wall time, provenance)."""
    from .pipeline import load_scalers
    from .training import train

    torch.set_num_threads(1)
    featurizer, scaler = load_scalers(scalers_json)
    is_feature_model = kind in ("qnn", "nn")
    batch = load_batch(train_npz, with_features=is_feature_model)
    model = build_model(cfg, system, kind, featurizer, scaler, batch.positions.numpy(), protocol=protocol, seed_index=seed_index)
    tc = training_settings(cfg, system, kind, protocol)
    log.info("%s %s/%s seed %d: %d trainable parameters, %s for %d iterations, chi=%g", system, kind, protocol, seed_index,
             model.n_parameters(), tc["optimizer"], tc["iterations"], tc["chi"])
    t0 = time.perf_counter()
    result = train(model, batch, optimizer=tc["optimizer"], iterations=int(tc["iterations"]), lr=float(tc["lr"]),
                   lr_final=None if tc["lr_final"] is None else float(tc["lr_final"]), chi=float(tc["chi"]),
                   seed=train_seed(cfg, system, kind, protocol, seed_index), batch_size=tc["batch_size"],
                   rhobeg=float(tc["rhobeg"]), checkpoint_path=checkpoint, checkpoint_every=int(tc["checkpoint_every"]),
                   log=log.info, curve_path=out_curve)
    seconds = time.perf_counter() - t0
    prov = provenance(model_hash(cfg, system, kind, protocol), system=system, model=kind, protocol=protocol, seed_index=seed_index,
                      training=tc, train_seconds=round(seconds, 2))
    predictions = predict_to_frames(model, test_npz, kind)
    ds.write_frames(out_predictions, predictions)
    model.save(out_model, provenance=prov)
    summary = {"system": system, "model": kind, "protocol": protocol, "seed_index": int(seed_index), "seed": model.seed,
               "n_parameters": model.n_parameters(),
               "n_parameters_paper": int(getattr(model, "n_circuit_parameters", model.n_parameters())),
               "train_seconds": round(seconds, 2), "final_loss": float(result.final_loss),
               "iterations": int(result.iterations), "iterations_done": int(result.iterations_done),
               "iterations_configured": int(result.iterations_configured), "resumed_from": result.resumed_from,
               "optimizer_message": result.message, "provenance": prov}
    write_json_atomic(out_summary, summary)
    Path(checkpoint).unlink(missing_ok=True)
    return summary


def predict_to_frames(model: ForceField, npz_path: str | Path, kind: str) -> list:
    """Test-set predictions as extxyz frames: REF_* (DFT) next to MODEL_* (this model), eV and eV/Angstrom."""
    f = load_npz(npz_path)
    pos, e_ref, f_ref, points = f["positions"], f["energy"], f["forces"], f["point"]
    e, frc = model.energy_and_forces(torch.as_tensor(pos))
    frames = []
    for k in range(len(pos)):
        a = ds.make_frame(model.symbols, pos[k], float(e_ref[k]), f_ref[k], {"point": str(points[k]), "model": kind})
        a.info["MODEL_energy"] = float(e[k])
        a.new_array("MODEL_forces", frc[k].detach().numpy())
        frames.append(a)
    return frames

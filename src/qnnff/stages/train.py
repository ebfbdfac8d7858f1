"""Stage 3, models (``workflow/rules/train.smk``): rules ``train_qnn``, ``train_nn``, ``train_bpnn``, ``train_eqnn``, ``train_sgdml`` and
``select_seeds``.

The ``train_*`` rules share one script and one function, :func:`train_seeds` (the model kind arrives as a rule
param, in each seed's :class:`~qnnff.jobs.TrainJob`), which runs :func:`train` for the job's seed, or for every seed
with ``seeds_in_one_job``: it builds the model from the job's architecture
(:func:`qnnff.models.factory.build_model_from`), trains one seed under one protocol (:func:`qnnff.training.train`,
resuming from a checkpoint only if it was written for the same model, data, features, settings and job model hash)
and writes the model, its test predictions, learning curve and summary.
:func:`select_seeds` gathers the seeds of one (kind, protocol): per-seed test errors, mean +- sd and the median seed
that figures, MD and Aer use.

torch and the models are imported by :func:`train` (and :func:`predict_to_frames`) only: :func:`select_seeds` reads
the seeds' predictions and summaries and starts without them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .. import dataset as ds
from ..evaluation import energy_scale
from ..evaluation import select_seeds as seed_statistics
from ..integrity import load_npz
from ..io import atomic_path, write_json_atomic
from ..jobs import TrainJob
from ..kinds import KINDS
from ..provenance import provenance

if TYPE_CHECKING:
    from ..models.base import ForceField

log = logging.getLogger("qnnff")


def train(job: TrainJob, scalers_json: str, train_npz: str, test_npz: str, out_model: str, out_predictions: str,
          out_curve: str, out_summary: str, checkpoint: str) -> dict:
    """Rules ``train_qnn``, ``train_nn``, ``train_bpnn``: train seed ``job.seed_index`` of ``job.kind`` under
    ``job.protocol``; write the model, its test predictions, learning curve and summary (iterations done out of
    configured, wall time, provenance)."""
    import torch  # torch and the models: this function only (see the module docstring)

    from .. import training
    from ..features import load_scalers
    from ..models.factory import build_model_from

    system, kind, protocol, seed_index = job.system, job.kind, job.protocol, job.seed_index
    torch.set_num_threads(1)
    featurizer, scaler = load_scalers(scalers_json)
    is_feature_model = KINDS[kind].feature_model
    batch = training.load_batch(train_npz, with_features=is_feature_model)
    if KINDS[kind].closed_form:
        return _fit(job, featurizer, scaler, batch, test_npz, out_model, out_predictions, out_curve, out_summary)
    model = build_model_from(job.model, job.init_seed, featurizer, scaler, batch.positions.numpy())
    tc = job.training
    log.info("%s %s/%s seed %d: %d trainable parameters, %s for %d iterations, chi=%g", system, kind, protocol, seed_index,
             model.n_parameters(), tc.optimizer, tc.iterations, tc.chi)
    t0 = time.perf_counter()
    result = training.train(model, batch, optimizer=tc.optimizer, iterations=tc.iterations, lr=tc.lr, lr_final=tc.lr_final,
                            chi=tc.chi, seed=job.train_seed, batch_size=tc.batch_size,
                            rhobeg=tc.rhobeg, history_size=tc.history_size, tolerance_grad=tc.tolerance_grad,
                            tolerance_change=tc.tolerance_change, lbfgs_evaluations=tc.lbfgs_evaluations,
                            checkpoint_path=checkpoint, checkpoint_every=tc.checkpoint_every, log=log,
                            curve_path=out_curve, provenance={"model_hash": job.model_hash})
    seconds = time.perf_counter() - t0
    prov = provenance(job.model_hash, system=system, model=kind, protocol=protocol, seed_index=seed_index,
                      training=tc.as_dict(), train_seconds=round(seconds, 2))
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


def _fit(job: TrainJob, featurizer, scaler, batch, test_npz: str, out_model: str, out_predictions: str, out_curve: str,
         out_summary: str) -> dict:
    """:func:`train` for a closed-form kind (:attr:`qnnff.kinds.ModelKind.closed_form`, e.g. sGDML): one fit on the
    training energies and forces (eV, eV/Angstrom, unscaled from the features file), deterministic; the learning
    curve is the model's selection table (one row per candidate setting, e.g. sGDML's kernel widths)."""
    import csv

    from ..models.factory import model_class

    system, kind, protocol, seed_index = job.system, job.kind, job.protocol, job.seed_index
    energies = batch.y.numpy() * scaler.scale + scaler.center
    forces = batch.f.numpy() * scaler.scale
    log.info("%s %s: closed-form fit on %d frames", system, kind, len(energies))
    t0 = time.perf_counter()
    model = model_class(kind).fit_from_settings(job.model, seed=job.init_seed, featurizer=featurizer, energy_scaler=scaler,
                                                positions=batch.positions.numpy(), energies=energies, forces=forces,
                                                name=system, theory=job.spec.level.describe())
    seconds = time.perf_counter() - t0
    info = dict(model.fit_info)
    prov = provenance(job.model_hash, system=system, model=kind, protocol=protocol, seed_index=seed_index,
                      fit={k: v for k, v in info.items() if k != "validation"}, train_seconds=round(seconds, 2))
    rows = info.get("validation", [])
    with atomic_path(out_curve) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["sigma"])
        w.writeheader()
        w.writerows(rows)
    ds.write_frames(out_predictions, predict_to_frames(model, test_npz, kind))
    model.save(out_model, provenance=prov)
    log.info("%s %s: sigma %s of %s (validation RMSE(F) %s meV/A), %d symmetries, %d %s, %.1f s", system, kind,
             info.get("sigma"), info.get("sigmas"), [round(r["rmse_f_meV_per_A"], 3) for r in rows], info.get("n_symmetries", 0),
             model.n_parameters(), KINDS[kind].parameter_label, seconds)
    summary = {"system": system, "model": kind, "protocol": protocol, "seed_index": int(seed_index), "seed": model.seed,
               "n_parameters": model.n_parameters(), "n_parameters_paper": model.n_parameters(),
               "parameter_label": KINDS[kind].parameter_label, "train_seconds": round(seconds, 2),
               "final_loss": float("nan"), "iterations": 1, "iterations_done": 1, "iterations_configured": 1,
               "resumed_from": None, "optimizer_message": f"closed-form fit ({info.get('selection_criterion', '')})",
               "deterministic": True, "fit": info, "provenance": prov}
    write_json_atomic(out_summary, summary)
    return summary


def train_seeds(jobs: Sequence[TrainJob], scalers_json: str, train_npz: str, test_npz: str, out_models: str | Sequence[str],
                out_predictions: str | Sequence[str], out_curves: str | Sequence[str], out_summaries: str | Sequence[str],
                checkpoints: str | Sequence[str]) -> list[dict]:
    """Rules ``train_qnn``, ``train_nn``, ``train_bpnn``: :func:`train` each job (:meth:`TrainJob.each`): one seed (a
    job per seed; file arguments are paths), or every seed of the (kind, protocol) in turn (``seeds_in_one_job``; file
    arguments are lists, in the jobs' order). A seed trains the same either way: nothing carries over from the seed
    before it (``tests/test_workflow.py`` compares the two layouts)."""
    files = [[str(v)] if isinstance(v, (str, Path)) else [str(f) for f in v]
             for v in (out_models, out_predictions, out_curves, out_summaries, checkpoints)]
    if any(len(f) != len(jobs) for f in files):
        raise ValueError(f"{len(jobs)} training jobs but {[len(f) for f in files]} files per output")
    return [train(job, scalers_json, train_npz, test_npz, *paths) for job, *paths in zip(jobs, *files)]


def predict_to_frames(model: ForceField, npz_path: str | Path, kind: str) -> list:
    """Test-set predictions as extxyz frames: REF_* (DFT) next to MODEL_* (this model), eV and eV/Angstrom."""
    import torch

    f = load_npz(npz_path)
    pos, e_ref, f_ref, points = f["positions"], f["energy"], f["forces"], f["point"]
    e, frc = model.energy_and_forces(torch.as_tensor(pos), check=False)  # every test point, as the features stage kept them
    frames = []
    for k in range(len(pos)):
        a = ds.make_frame(model.symbols, pos[k], float(e_ref[k]), f_ref[k], {"point": str(points[k]), "model": kind})
        a.info["MODEL_energy"] = float(e[k])
        a.new_array("MODEL_forces", frc[k].detach().numpy())
        frames.append(a)
    return frames


def select_seeds(system: str, kind: str, protocol: str, predictions: Sequence[str], summaries: Sequence[str],
                 scalers_json: str, out_json: str) -> dict:
    """Rule ``select_seeds``: per-seed test errors of one (kind, protocol), their mean +- sd and the median seed
    (:func:`qnnff.evaluation.select_seeds`)."""
    out = seed_statistics(system, kind, protocol, predictions, summaries, energy_scale(scalers_json), out_json)
    st = out["stats"]
    log.info("%s %s/%s over %d seeds: RMSE(E) %.4g +- %.2g, RMSE(F) %.4g +- %.2g (scaled); median seed %d", system, kind,
             protocol, out["n_seeds"], st["RMSE(E) [scaled]"]["mean"], st["RMSE(E) [scaled]"]["sd"],
             st["RMSE(F) [scaled, 1/A]"]["mean"], st["RMSE(F) [scaled, 1/A]"]["sd"], out["median_seed"])
    return out

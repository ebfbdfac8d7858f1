"""Stage 4, evaluation (``workflow/rules/evaluate.smk``): rules ``effective_dimension``, ``information_floor``,
``aer_evaluation``, ``errors_table`` and ``reproduction_table``.

* :func:`effective_dimension`: the normalised effective dimension d_n/d (Abbas et al. 2021) of one model kind, mean
  +- sd over Monte-Carlo draws, and its curve over n;
* :func:`information_floor`: the information floor of one model kind's inputs (:mod:`qnnff.floor`);
* :func:`aer_evaluation`: the median-seed QNN of one protocol with circuits, on qiskit-aer with shots (and noise) and,
  where configured, through IBM Qiskit Runtime;
* :func:`errors_table`: the paper's error table of one system (every seed, mean +- sd);
* :func:`reproduction_table`: the reproduction scorecard (:mod:`qnnff.reproduction`).

torch and the models are imported by the three rules that load a model (:func:`effective_dimension`,
:func:`information_floor`, :func:`aer_evaluation`), scikit-learn by :func:`information_floor` alone, Qiskit by
:func:`aer_evaluation` alone (an effective dimension of a QNN loads it through the model registry): the two table rules
read files only and start without them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..evaluation import energy_scale, error_table, mean_sd, rmse, write_error_table
from ..integrity import load_npz
from ..io import write_json_atomic
from ..jobs import AerJob, EffdimJob, FloorJob
from ..kinds import KINDS
from ..reproduction import scorecard, write_scorecard
from ..settings import AerSettings, ReproductionSettings
from ..units import MEV_PER_EV
from . import SeedSet

if TYPE_CHECKING:
    import torch

log = logging.getLogger("qnnff")

# ---------------------------------------------------------------- effective dimension
def effective_dimension(job: EffdimJob, model_path: str, train_npz: str, out_json: str) -> dict:
    """Rule ``effective_dimension``: d_n/d of one model architecture over ``n_draws`` independent Monte-Carlo draws
    (parameters and inputs, each from its seed ``job.draw_seeds[k]``); mean +- sd (ddof = 1) at the training-set size
    (at n = 20 below it, where kappa <= 1 leaves d_n undefined; ``n`` in the JSON says which, and the log warns) and
    along the n grid. The trained weights play no role: the parameters are drawn uniformly in ``theta_range``."""
    import torch  # torch and the models: the rules that load a model only (see the module docstring)

    from ..effdim import model_effective_dimension
    from ..models.factory import load_model

    torch.set_num_threads(1)
    system, kind, ec = job.system, job.kind, job.effdim
    model = load_model(model_path)
    pos = load_npz(train_npz)["positions"]
    n_train = len(pos)
    effdim_model = model.effdim_module() if hasattr(model, "effdim_module") else model
    n_params = sum(p.numel() for p in _effdim_parameters(effdim_model))
    lo, hi = ec.theta_range[kind]
    ns = sorted({n for n in ec.n_grid if n >= 20} | {n_train if n_train >= 20 else 20})
    at = ns.index(n_train if n_train >= 20 else 20)
    if ns[at] != n_train:
        log.warning("%s %s: d_n/d is undefined at the training-set size n = %d (kappa <= 1 below n = 20); it is reported "
                    "at n = %d instead", system, kind, n_train, ns[at])
    draws, curves = [], []
    for k in range(ec.n_draws):
        g = np.random.default_rng(job.draw_seeds[k])
        idx = np.sort(g.choice(len(pos), size=min(ec.n_inputs, len(pos)), replace=False))
        theta = torch.as_tensor(g.uniform(lo, hi, size=(ec.n_theta, n_params)))
        res = model_effective_dimension(model=effdim_model, positions=pos[idx], theta_samples=theta, n=ns, gamma=ec.gamma)
        draws.append(float(res.d_n_over_d[at]))
        curves.append([float(v) for v in res.d_n_over_d])
        log.info("%s %s: draw %d: d_n/d = %.4f at n = %d", system, kind, k, draws[-1], ns[at])
    cur = np.asarray(curves)
    mean, sd = mean_sd(draws)
    out = {"system": system, "model": kind, "n_params": int(n_params), "n_train": n_train, "n": ns[at],
           "d_n_over_d": mean, "d_n_over_d_sd": sd, "d_n": mean * n_params, "draws": draws,
           "curve": {"n": ns, "d_n_over_d": [float(v) for v in cur.mean(axis=0)],
                     "d_n_over_d_sd": [float(v) for v in cur.std(axis=0, ddof=1)]},
           "settings": {"n_theta": ec.n_theta, "n_inputs": min(ec.n_inputs, len(pos)), "n_draws": len(draws),
                        "gamma": ec.gamma, "theta_range": [lo, hi]}}
    write_json_atomic(out_json, out)
    log.info("%s %s: d_n/d = %.3f +- %.3f over %d draws (d = %d)", system, kind, mean, sd, len(draws), n_params)
    return out


def _effdim_parameters(model: torch.nn.Module):
    from ..models.base import FeatureForceField

    mod = model.regressor if isinstance(model, FeatureForceField) else model
    return [p for p in mod.parameters() if p.requires_grad]


# ---------------------------------------------------------------- information floor
def information_floor(job: FloorJob, model_path: str, train_npz: str, test_npz: str, out_json: str) -> dict:
    """Rule ``information_floor``: the test RMSE(E) (scaled units, meV) of a Gaussian process fitted to the inputs the
    model kind sees (:meth:`~qnnff.models.base.ForceField.model_inputs`) on the training set, energies only. The
    trained weights play no role: the model is loaded for its inputs (featurizer or symmetry functions) alone."""
    import torch  # torch and the models: the rules that load a model only (see the module docstring)

    from ..floor import model_floor
    from ..models.factory import load_model

    torch.set_num_threads(1)
    model = load_model(model_path)
    train, test = load_npz(train_npz), load_npz(test_npz)
    res = model_floor(model, train["positions"], train["y"], test["positions"], test["y"], seed=job.seed,
                      n_restarts=job.floor.n_restarts, label=f"{job.system} {job.kind}")
    scale = float(model.energy_scaler.scale)
    inputs = (f"{len(model.featurizer.coordinate_labels())} internal coordinates ({', '.join(model.featurizer.coordinate_labels())}), "
              f"{model.featurizer.feature_map} map" if KINDS[job.kind].feature_model
              else f"{res['n_inputs']} model inputs" + (f" ({model.inputs_label})" if getattr(model, "inputs_label", "") else ""))
    if getattr(model, "floor_inputs_label", ""):
        inputs = f"{model.inputs_label}; the floor is {model.floor_inputs_label} ({res['n_inputs']} of them)"
    out = {"system": job.system, "model": job.kind, "inputs": inputs, "floor [scaled]": res["rmse"],
           "floor [meV]": res["rmse"] * scale * MEV_PER_EV, "energy scale [eV]": scale, "gp": res}
    write_json_atomic(out_json, out)
    log.info("%s %s: information floor RMSE(E) = %.3g scaled (%.3g meV) from %d inputs, GP fit %.1f s",
             job.system, job.kind, res["rmse"], out["floor [meV]"], res["n_inputs"], res["seconds"])
    return out


# ---------------------------------------------------------------- errors
def errors_table(system: str, selections: Sequence[str], effdims: dict[str, str], floors: dict[str, str], aer_jsons: Sequence[str],
                 scalers_json: str, out_csv: str, out_md: str) -> pd.DataFrame:
    """Rule ``errors_table``: one CSV row per seed; Markdown mean +- sd of RMSE(E), RMSE(F) (scaled, meV, meV/A),
    d_n/d and d, each model's information floor of its inputs, with the circuit evaluations' rows."""
    scale = energy_scale(scalers_json)
    df = error_table(system, selections, effdims, floors, aer_jsons, scale)
    excluded = json.loads(Path(scalers_json).read_text()).get("excluded_test_points", [])
    notes = [f"Energy scale: {scale:.6g} eV. Test points outside the training range (excluded): {len(excluded)}."]
    for kind, path in effdims.items():
        ed = json.loads(Path(path).read_text())
        if ed.get("n", ed["n_train"]) != ed["n_train"]:
            notes.append(f"{kind.upper()}: d_n/d at n = {ed['n']}, not at the training-set size {ed['n_train']}: below n = 20, "
                         "kappa <= 1 leaves d_n undefined.")
    write_error_table(df, out_csv, out_md, title=f"{system}: errors on the held-out test set", notes=notes)
    return df


def reproduction_table(reproduction: ReproductionSettings, errors: dict[str, str], effdims: Sequence[Sequence[str]],
                       md_summaries: Sequence[str], period: Sequence[str] | None, out_csv: str, out_md: str) -> pd.DataFrame:
    """Rule ``reproduction_table``: every number of the paper's tables beside ours (mean +- sd), ratio and verdict.
    ``effdims`` lists (system, kind, effective_dimension.json); ``period`` the model and DFT trajectories whose
    oscillation periods are compared (empty: none)."""
    df = scorecard(reproduction, dict(errors), {(s, k): p for s, k, p in effdims}, list(md_summaries), tuple(period) if period else None)
    write_scorecard(df, out_csv, out_md)
    return df


# ---------------------------------------------------------------- QNN on qiskit-aer (shots, noise)
AER_FORCE_CIRCUIT_BUDGET = 1500  # default force points: as many geometries as fit in this many circuits (1 + 2K each)


def _force_stats(r: dict, f_ref: np.ndarray) -> dict:
    """Force errors (meV/Angstrom) of a circuit evaluation ``r`` (QNNForceField.circuit_energy_and_forces)."""
    f, err, exact = np.asarray(r["forces"]), np.asarray(r["forces_stderr"]), np.asarray(r["exact_forces"])
    z = np.abs(f - exact) / np.where(err > 0, err, np.inf)
    return {
        "n_force_points": int(len(f)),
        "RMSE(F) vs DFT [meV/A]": MEV_PER_EV * rmse(f - f_ref),
        "RMSE(F) vs exact QNN [meV/A]": MEV_PER_EV * rmse(f - exact),
        "mean force standard error [meV/A]": MEV_PER_EV * float(np.mean(err)),
        "fraction of force components within 4 sigma of exact": float(np.mean(z <= 4.0)),
    }


def _json_info(info: dict) -> dict:
    keep = (int, float, str, bool, type(None))
    out = {}
    for k, v in info.items():
        if isinstance(v, keep):
            out[k] = v
        elif isinstance(v, (list, tuple)) and all(isinstance(e, keep) for e in v):
            out[k] = list(v)
        elif isinstance(v, dict) and k in ("cost", "options", "isa_ops"):
            out[k] = v
    return out


def aer_evaluation(job: AerJob, models: SeedSet | Mapping[str, Any], test_npz: str, out_json: str) -> dict:
    """Rule ``aer_evaluation``: the median-seed QNN of one protocol (``models``: its :class:`~qnnff.stages.SeedSet`)
    evaluated with circuits on test geometries: on qiskit-aer with shots (and the configured noise), energies and,
    with ``aer.forces``, parameter-shift forces on the first ``aer.force_points`` of them; with ``hardware.backend``
    other than ``aer``, the same through IBM Qiskit Runtime (fake backend or device)."""
    # torch and the model (whose Aer and Runtime paths load Qiskit): this rule's and effective_dimension's alone
    import torch

    from ..models.factory import load_model

    models = SeedSet.of(models)
    if models.protocol != job.protocol:
        raise ValueError(f"aer_evaluation: the seeds are of protocol {models.protocol!r}, the job's of {job.protocol!r}")
    torch.set_num_threads(1)
    system, ac = job.system, job.aer
    seed, model_path = models.median()
    model = load_model(model_path)
    f = load_npz(test_npz)
    pos_all, e_all, f_all = f["positions"], f["energy"], f["forces"]
    n = min(ac.n_points, len(pos_all))
    pos, e_ref = pos_all[:n], e_all[:n]
    runs = [("shots", "none")] + ([("shots+noise", ac.noise)] if ac.noise != "none" else [])
    out = {"system": system, "model": "qnn", "protocol": models.protocol, "seed": seed, "n_points": n, "shots": ac.shots,
           "runs": {}}
    for label, noise in runs:
        r = model.aer_energy(pos, shots=ac.shots, noise=noise, p1=ac.p1, p2=ac.p2,
                             seed=job.energy_seeds[label])
        e, err, exact = np.asarray(r["energy"]), np.asarray(r["stderr"]), np.asarray(r["exact"])
        z = np.abs(e - exact) / np.where(err > 0, err, np.inf)
        out["runs"][label] = {
            "noise": noise,
            "RMSE(E) vs DFT [meV]": MEV_PER_EV * rmse(e - e_ref),
            "RMSE(E) vs exact QNN [meV]": MEV_PER_EV * rmse(e - exact),
            "mean shot standard error [meV]": MEV_PER_EV * float(np.mean(err)),
            "fraction within 4 sigma of exact": float(np.mean(z <= 4.0)),
            "info": {k: v for k, v in r["info"].items() if isinstance(v, (int, float, str, bool))},
        }
        if ac.forces:
            per = model.shift_circuit().circuits_per_input
            k = min(n, ac.force_points if ac.force_points is not None else max(1, AER_FORCE_CIRCUIT_BUDGET // per))
            rf = model.aer_energy_and_forces(pos_all[:k], shots=ac.shots, noise=noise, p1=ac.p1,
                                             p2=ac.p2, seed=job.force_seeds[label])
            out["runs"][label].update(_force_stats(rf, f_all[:k]))
            out["runs"][label]["force_info"] = _json_info(rf["info"])
            log.info("%s QNN on Aer (%s): RMSE(F) vs DFT %.1f meV/A, vs exact %.1f meV/A on %d points (%d circuits)", system,
                     label, out["runs"][label]["RMSE(F) vs DFT [meV/A]"], out["runs"][label]["RMSE(F) vs exact QNN [meV/A]"],
                     k, rf["info"]["n_circuits"])
        log.info("%s QNN on Aer (%s): RMSE vs DFT %.1f meV, vs exact %.1f meV", system, label,
                 out["runs"][label]["RMSE(E) vs DFT [meV]"], out["runs"][label]["RMSE(E) vs exact QNN [meV]"])
    if ac.hardware["backend"] != "aer":
        out["hardware"] = hardware_evaluation(model, ac, pos_all, e_all, f_all, seed=job.runtime_seed)
    write_json_atomic(out_json, out)
    return out


def hardware_evaluation(model, aer: AerSettings, positions: np.ndarray, e_ref: np.ndarray, f_ref: np.ndarray, *, seed: int) -> dict:
    """Energies and parameter-shift forces of the first ``hardware.n_points`` geometries through Qiskit Runtime
    (:class:`qnnff.qnn.runtime.RuntimeEvaluator`, built from ``aer.hardware``, the ``models.qnn.hardware`` block over
    its defaults): cost printed and recorded first, the QPU-time cap enforced before submission, the ISA layout
    recorded."""
    settings = aer.hardware
    # Qiskit Runtime: only with models.qnn.hardware.backend set (see aer_evaluation)
    from ..qnn.runtime import RuntimeEvaluator

    k = min(int(settings["n_points"]), len(positions))
    ev = RuntimeEvaluator.from_settings(settings, seed=seed)
    r = model.circuit_energy_and_forces(positions[:k], evaluate=ev)
    e, exact = np.asarray(r["energy"]), np.asarray(r["exact_energy"])
    res = {
        "backend": settings["backend"], "n_points": k,
        "RMSE(E) vs DFT [meV]": MEV_PER_EV * rmse(e - e_ref[:k]),
        "RMSE(E) vs exact QNN [meV]": MEV_PER_EV * rmse(e - exact),
        "mean energy standard error [meV]": MEV_PER_EV * float(np.mean(r["energy_stderr"])),
        **_force_stats(r, f_ref[:k]),
        "info": _json_info(r["info"]),
    }
    log.info("%s on %s (%s): RMSE(E) vs DFT %.1f meV, RMSE(F) vs DFT %.1f meV/A; layout %s; ~%.1f QPU s", model.kind,
             settings["backend"], r["info"]["mode"], res["RMSE(E) vs DFT [meV]"], res["RMSE(F) vs DFT [meV/A]"],
             r["info"]["layout"], r["info"]["cost"]["qpu_seconds"])
    return res

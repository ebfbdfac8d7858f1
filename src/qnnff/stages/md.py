"""Stage 5, molecular dynamics (``workflow/rules/md.smk``): rules ``run_md``, ``run_md_dft``, ``md_table`` and
``run_md_shots``.

NVE velocity Verlet with ASE (:mod:`qnnff.md`): a diatomic is released from a stretched bond, a larger molecule starts
at the configured geometry with Maxwell-Boltzmann velocities. :func:`run_md` drives the median seed of one (kind,
protocol), :func:`run_md_dft` the PySCF reference, :func:`run_md_shots` the median-seed QNN with forces measured with
a finite number of shots on qiskit-aer (the deviation from the exact QNN trajectory recorded); :func:`md_table` gathers
drift, speed and completion of every run.

torch, the models and the calculators are imported by the three rules that run dynamics; :func:`md_table` reads
their summaries only and starts without them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from ase import Atoms

from .. import dataset as ds
from ..config import ConfigError, SystemSpec
from ..dft import set_threads
from ..evaluation import fmt
from ..io import atomic_path, write_json_atomic, write_text_atomic
from ..jobs import MDJob
from ..settings import MDSettings
from . import SeedSet

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("qnnff")



def md_start(spec: SystemSpec, mc: MDSettings) -> np.ndarray:
    """Start geometry: the configured Z-matrix values (``md.start``), else the centre of the sampled box."""
    values = {v: 0.5 * (lo + hi) for v, (lo, hi) in spec.variables.items()}
    values.update(mc.start)
    return spec.geometry(values)


def _r_start(mc: MDSettings, spec: SystemSpec) -> float:
    """A diatomic's start bond: ``md.r_start``, else the centre of its sampled range."""
    return mc.r_start if mc.r_start is not None else float(np.mean(spec.variables[spec.variable_names[0]]))


def run_md(job: MDJob, models: SeedSet | Mapping[str, Any], out_traj: str, out_json: str) -> dict:
    """Rule ``run_md``: one NVE trajectory driven by the median seed of ``models`` (the seeds of one kind and
    protocol, a :class:`~qnnff.stages.SeedSet`)."""
    models = SeedSet.of(models)
    seed, model = models.median()
    return _nve(job, models.kind, model, out_traj, out_json, protocol=models.protocol, seed=seed)


def run_md_dft(job: MDJob, out_traj: str, out_json: str) -> dict:
    """Rule ``run_md_dft``: the DFT (PySCF) reference trajectory, ``md.n_steps_dft`` steps."""
    return _nve(job, "dft", None, out_traj, out_json)


def _nve(job: MDJob, kind: str, model_path: str | None, out_traj: str, out_json: str, *,
         protocol: str | None = None, seed: int | None = None) -> dict:
    import torch  # torch, the models and the calculators: the rules that run dynamics only (see the module docstring)

    from ..calculators import ModelCalculator, PySCFCalculator
    from ..md import energy_conserved, run_nve, run_stretched_bond

    torch.set_num_threads(1)
    spec, system, mc = job.spec, job.system, job.md
    if kind == "dft":
        set_threads(1)
        calc = PySCFCalculator(level=spec.level, charge=spec.charge, spin=spec.spin)
        n_steps = mc.n_steps_dft
    else:
        calc = ModelCalculator(model_path)
        n_steps = mc.n_steps
    if len(spec.symbols) == 2:
        r0 = _r_start(mc, spec)
        res = run_stretched_bond(calculator=calc, symbols=spec.symbols, r_start_A=r0, timestep_fs=mc.timestep_fs,
                                 n_steps=n_steps, log_every=mc.log_every, trajectory_path=out_traj)
        md, extra = res.md, {"r_start_A": r0, "r_min_A": float(res.r_A.min()), "r_max_A": float(res.r_A.max())}
    else:
        atoms = Atoms(symbols=list(spec.symbols), positions=md_start(spec, mc))
        md = run_nve(calculator=calc, atoms=atoms, timestep_fs=mc.timestep_fs, n_steps=n_steps,
                     temperature_K=mc.temperature_K, seed=job.velocity_seed,
                     trajectory_path=out_traj, log_every=mc.log_every)
        extra = {"temperature_K_initial": mc.temperature_K}
    summary = {"system": system, "model": kind, "protocol": protocol, "seed": seed, **md.summary(), **extra}
    summary.update(max_energy_error=mc.max_energy_error, energy_conserved=energy_conserved(summary, mc.max_energy_error))
    write_json_atomic(out_json, summary)
    log.info("%s %s/%s MD: %d steps, %.0f steps/s, drift %.3g eV/atom/ps", system, kind, protocol, n_steps, md.steps_per_second,
             md.drift_eV_per_atom_per_ps)
    return summary


def run_md_shots(job: MDJob, shots: int, models: SeedSet | Mapping[str, Any], exact_traj: str, out_traj: str,
                 out_json: str) -> dict:
    """Rule ``run_md_shots``: LiH-style MD (a diatomic released from a stretched bond) driven by the forces of the
    median-seed QNN of ``models`` measured with ``shots`` shots per circuit on qiskit-aer
    (:class:`qnnff.md.ShotNoiseCalculator`, seeded by ``job.shot_seeds``), for ``md.n_steps_shots`` steps; records the
    energy drift and the deviation of r(t) from the exact QNN trajectory ``exact_traj``."""
    import torch  # see _nve

    from ..md import ShotNoiseCalculator, distance_deviation, energy_conserved, run_stretched_bond
    from ..models.factory import load_model

    models = SeedSet.of(models)
    seed_index, model_path = models.median()
    protocol = models.protocol
    torch.set_num_threads(1)
    spec, system, mc = job.spec, job.system, job.md
    key = f"systems.{system}.md.shots"
    if len(spec.symbols) != 2:
        raise ConfigError(f"{key}: shot-noise MD is implemented for diatomics (released from a stretched bond); {system} has "
                          f"{len(spec.symbols)} atoms")
    if int(shots) not in mc.shots:
        raise ConfigError(f"{key}: {shots} shots requested but the config lists {list(mc.shots)}")
    seed = job.shot_seeds[int(shots)]
    calc = ShotNoiseCalculator(load_model(model_path), shots=int(shots), seed=seed)
    r0 = _r_start(mc, spec)
    n_steps = mc.n_steps_shots
    res = run_stretched_bond(calculator=calc, symbols=spec.symbols, r_start_A=r0, timestep_fs=mc.timestep_fs,
                             n_steps=n_steps, log_every=mc.log_every, trajectory_path=out_traj)
    ref = ds.read_frames(exact_traj)
    t_ref = np.array([a.info["time_fs"] for a in ref])
    r_ref = np.array([a.get_distance(0, 1) for a in ref])
    dev = distance_deviation(t_ref, r_ref, res.times_fs, res.r_A)
    tol = mc.shots_tolerance_A
    summary = {"system": system, "model": f"qnn-shots{int(shots)}", "protocol": protocol, "seed": seed_index, "shots": int(shots),
               "shot_seed": seed,
               "force_evaluations": calc.n_calls, "circuits": calc.n_circuits,
               "circuits_per_force_evaluation": calc.shift.circuits_per_input, **res.md.summary(),
               "r_start_A": r0, "r_min_A": float(res.r_A.min()), "r_max_A": float(res.r_A.max()),
               "deviation_from_exact_qnn": {**dev, "tolerance_A": tol, "within_tolerance": bool(dev["max_abs_deviation_A"] <= tol)}}
    summary.update(max_energy_error=mc.max_energy_error, energy_conserved=energy_conserved(summary, mc.max_energy_error))
    write_json_atomic(out_json, summary)
    log.info("%s QNN MD with %d shots: %d steps, %.1f steps/s, drift %.3g eV/atom/ps, max |r - r_exact| %.4f A over %.0f fs",
             system, shots, n_steps, res.md.steps_per_second, res.md.drift_eV_per_atom_per_ps, dev["max_abs_deviation_A"], dev["window_fs"])
    return summary


def _conservation_text(summary: Mapping[str, Any]) -> str:
    """The MD table's and the scorecard's energy-conservation cell of one MD summary: "yes", or "no (ratio > threshold)";
    "-" for a summary written before the check existed."""
    if "energy_conserved" not in summary:
        return "-"
    if summary["energy_conserved"]:
        return "yes"
    return f"no ({summary.get('energy_error_ratio', float('nan')):.3g} > {summary['max_energy_error']:g})"


def md_table(summaries: Sequence[str], out_csv: str, out_md: str) -> pd.DataFrame:
    """Rule ``md_table``: energy drift, speed and completion of every MD run (CSV and Markdown)."""
    import pandas as pd  # only the table rules need pandas: training and MD jobs start without it
    rows = []
    for p in summaries:
        d = json.loads(Path(p).read_text())
        rows.append({"system": d["system"], "model": d["model"], "protocol": d.get("protocol") or "",
                     "seed": "" if d.get("seed") is None else int(d["seed"]),
                     "steps": d["n_steps"], "timestep [fs]": d["timestep_fs"],
                     "drift [eV/atom/ps]": d["drift_eV_per_atom_per_ps"],
                     "max |E_tot - E_tot(0)| [eV]": d["max_abs_energy_deviation_eV"],
                     "max |E_tot - E_tot(0)| / mean E_kin": d.get("energy_error_ratio", float("nan")),
                     "energy conserved": _conservation_text(d),
                     "steps per second": d["steps_per_second"],
                     "completed": "yes" if d.get("completed", True) else f"left the model's domain at {d['stopped_at_fs']:.1f} fs"})
    df = pd.DataFrame(rows)
    with atomic_path(out_csv) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
    cols = list(df.columns)
    lines = ["# Molecular dynamics (NVE, velocity Verlet)", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in cols) + " |" for _, r in df.iterrows()]
    lines += ["", "Each model runs its median seed (by test RMSE(E)) of each protocol.",
              "Units: drift is the slope of a linear fit of the total energy against time, per atom, in eV/atom/ps;",
              "the deviation is in eV; steps per second is wall-clock speed on the machine that ran the pipeline.",
              "Energy conserved: max |E_tot - E_tot(0)| is at most md.max_energy_error (default 0.1) of the run's mean",
              "kinetic energy (velocity Verlet on a smooth, consistent force field: about 0.01); \"no\" marks a run whose",
              "forces do not conserve energy (e.g. shot noise), whatever its drift slope.", ""]
    write_text_atomic(out_md, "\n".join(lines))
    return df

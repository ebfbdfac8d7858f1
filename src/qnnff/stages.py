"""Stage functions of the results half of the pipeline: effective dimension, errors, MD, figures, manifest."""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from . import dataset as ds
from . import figures as fig
from .config import ConfigError, config_hash, system_spec
from .integrity import load_npz
from .io import atomic_path, write_json_atomic, write_text_atomic
from .provenance import provenance
from .evaluation import mean_sd
from .seeding import derive_seed, rng

log = logging.getLogger("qnnff")

EFFDIM_DEFAULTS = {"n_theta": 100, "n_inputs": 100, "n_draws": 5, "gamma": 1.0, "n_grid": [20, 50, 100, 200, 500, 1000, 5000, 10000, 100000],
                   "theta_range": {"qnn": [-math.pi, math.pi], "nn": [-1.0, 1.0], "bpnn": [-1.0, 1.0]}}
MD_DEFAULTS = {"timestep_fs": 0.5, "n_steps": 4000, "log_every": 10, "temperature_K": 300.0, "dft": False, "n_steps_dft": 400}


def _section(cfg: dict, key: str, defaults: dict) -> dict:
    return {**defaults, **cfg.get(key, {})}


# ---------------------------------------------------------------- effective dimension
def effective_dimension_stage(cfg: dict, system: str, kind: str, model_path: str, train_npz: str, out_json: str) -> dict:
    """d_n/d of one model architecture over ``n_draws`` independent Monte-Carlo draws (parameters and inputs);
    mean +- sd (ddof = 1) at the training-set size and along the n grid. The trained weights play no role: the
    parameters are drawn uniformly in ``theta_range``."""
    from .effdim import model_effective_dimension
    from .models.base import load_model

    torch.set_num_threads(1)
    ec = _section(cfg, "effective_dimension", EFFDIM_DEFAULTS)
    model = load_model(model_path)
    pos = load_npz(train_npz)["positions"]
    n_train = len(pos)
    effdim_model = model.effdim_module() if hasattr(model, "effdim_module") else model
    n_params = sum(p.numel() for p in _effdim_parameters(effdim_model))
    lo, hi = ec["theta_range"][kind]
    ns = sorted({int(n) for n in ec["n_grid"] if int(n) >= 20} | {n_train if n_train >= 20 else 20})
    at = ns.index(n_train if n_train >= 20 else 20)
    draws, curves = [], []
    for k in range(int(ec["n_draws"])):
        g = rng(cfg["seed"], "effdim", system, kind, k)
        idx = np.sort(g.choice(len(pos), size=min(int(ec["n_inputs"]), len(pos)), replace=False))
        theta = torch.as_tensor(g.uniform(lo, hi, size=(int(ec["n_theta"]), n_params)))
        res = model_effective_dimension(model=effdim_model, positions=pos[idx], theta_samples=theta, n=ns, gamma=float(ec["gamma"]))
        draws.append(float(res.d_n_over_d[at]))
        curves.append([float(v) for v in res.d_n_over_d])
        log.info("%s %s: draw %d: d_n/d = %.4f at n = %d", system, kind, k, draws[-1], n_train)
    cur = np.asarray(curves)
    mean, sd = mean_sd(draws)
    out = {"system": system, "model": kind, "n_params": int(n_params), "n_train": n_train,
           "d_n_over_d": mean, "d_n_over_d_sd": sd, "d_n": mean * n_params, "draws": draws,
           "curve": {"n": ns, "d_n_over_d": [float(v) for v in cur.mean(axis=0)],
                     "d_n_over_d_sd": [float(v) for v in cur.std(axis=0, ddof=1)]},
           "settings": {"n_theta": int(ec["n_theta"]), "n_inputs": int(min(int(ec["n_inputs"]), len(pos))), "n_draws": len(draws),
                        "gamma": float(ec["gamma"]), "theta_range": [lo, hi]}}
    write_json_atomic(out_json, out)
    log.info("%s %s: d_n/d = %.3f +- %.3f over %d draws (d = %d)", system, kind, mean, sd, len(draws), n_params)
    return out


def _effdim_parameters(model: torch.nn.Module):
    from .models.base import FeatureForceField

    mod = model.regressor if isinstance(model, FeatureForceField) else model
    return [p for p in mod.parameters() if p.requires_grad]


# ---------------------------------------------------------------- seeds and errors
def energy_scale(scalers_json: str | Path) -> float:
    return float(json.loads(Path(scalers_json).read_text())["energy_scaler"]["scale"])


def select_seeds_stage(system: str, kind: str, protocol: str, predictions: Sequence[str], summaries: Sequence[str],
                       scalers_json: str, out_json: str) -> dict:
    from .evaluation import select_seeds

    out = select_seeds(system, kind, protocol, predictions, summaries, energy_scale(scalers_json), out_json)
    st = out["stats"]
    log.info("%s %s/%s over %d seeds: RMSE(E) %.4g +- %.2g, RMSE(F) %.4g +- %.2g (scaled); median seed %d", system, kind,
             protocol, out["n_seeds"], st["RMSE(E) [scaled]"]["mean"], st["RMSE(E) [scaled]"]["sd"],
             st["RMSE(F) [scaled, 1/A]"]["mean"], st["RMSE(F) [scaled, 1/A]"]["sd"], out["median_seed"])
    return out


def errors_stage(system: str, selections: Sequence[str], effdims: dict[str, str], aer_jsons: Sequence[str], scalers_json: str,
                 out_csv: str, out_md: str) -> pd.DataFrame:
    from .evaluation import error_table, write_error_table

    scale = energy_scale(scalers_json)
    df = error_table(system, selections, effdims, aer_jsons, scale)
    excluded = json.loads(Path(scalers_json).read_text()).get("excluded_test_points", [])
    notes = [f"Energy scale: {scale:.6g} eV. Test points outside the training range (excluded): {len(excluded)}."]
    write_error_table(df, out_csv, out_md, title=f"{system}: errors on the held-out test set", notes=notes)
    return df


# ---------------------------------------------------------------- MD
def md_settings(cfg: dict, system: str) -> dict:
    return {**MD_DEFAULTS, **cfg["systems"][system].get("md", {})}


def md_start(cfg: dict, system: str) -> np.ndarray:
    """Start geometry: the configured Z-matrix values, else the centre of the sampled box."""
    spec = system_spec(cfg, system)
    mc = md_settings(cfg, system)
    values = {v: 0.5 * (lo + hi) for v, (lo, hi) in spec.variables.items()}
    values.update(mc.get("start", {}))
    return spec.geometry(values)


def md_stage(cfg: dict, system: str, kind: str, model_path: str | None, out_traj: str, out_json: str, *,
             protocol: str | None = None, seed: int | None = None) -> dict:
    from ase import Atoms

    from .calculators import ModelCalculator, PySCFCalculator
    from .md import run_nve, run_stretched_bond

    torch.set_num_threads(1)
    spec = system_spec(cfg, system)
    mc = md_settings(cfg, system)
    if kind == "dft":
        from pyscf import lib

        lib.num_threads(1)
        calc = PySCFCalculator(level=spec.level, charge=spec.charge, spin=spec.spin)
        n_steps = int(mc["n_steps_dft"])
    else:
        calc = ModelCalculator(model_path)
        n_steps = int(mc["n_steps"])
    if len(spec.symbols) == 2:
        r0 = float(mc.get("r_start", np.mean(spec.variables[spec.variable_names[0]])))
        res = run_stretched_bond(calculator=calc, symbols=spec.symbols, r_start_A=r0, timestep_fs=float(mc["timestep_fs"]),
                                 n_steps=n_steps, log_every=int(mc["log_every"]), trajectory_path=out_traj)
        md, extra = res.md, {"r_start_A": r0, "r_min_A": float(res.r_A.min()), "r_max_A": float(res.r_A.max())}
    else:
        atoms = Atoms(symbols=list(spec.symbols), positions=md_start(cfg, system))
        md = run_nve(calculator=calc, atoms=atoms, timestep_fs=float(mc["timestep_fs"]), n_steps=n_steps,
                     temperature_K=float(mc["temperature_K"]), seed=derive_seed(cfg["seed"], "md", system),
                     trajectory_path=out_traj, log_every=int(mc["log_every"]))
        extra = {"temperature_K_initial": float(mc["temperature_K"])}
    summary = {"system": system, "model": kind, "protocol": protocol, "seed": seed, **md.summary(), **extra}
    write_json_atomic(out_json, summary)
    log.info("%s %s/%s MD: %d steps, %.0f steps/s, drift %.3g eV/atom/ps", system, kind, protocol, n_steps, md.steps_per_second,
             md.drift_eV_per_atom_per_ps)
    return summary


SHOT_MD_DEFAULTS = {"shots": [], "n_steps_shots": 400, "shots_tolerance_A": 0.1}


def shot_md_stage(cfg: dict, system: str, shots: int, model_path: str, exact_traj: str, out_traj: str, out_json: str, *,
                  protocol: str | None = None, seed_index: int | None = None) -> dict:
    """LiH-style MD (a diatomic released from a stretched bond) driven by QNN forces measured with ``shots`` shots
    per circuit on qiskit-aer (:class:`qnnff.md.ShotNoiseCalculator`, seeded from the config seed), for
    ``md.n_steps_shots`` steps; records the energy drift and the deviation of r(t) from the exact QNN trajectory."""
    from .md import ShotNoiseCalculator, distance_deviation, run_stretched_bond
    from .models.base import load_model

    torch.set_num_threads(1)
    spec = system_spec(cfg, system)
    mc = {**SHOT_MD_DEFAULTS, **md_settings(cfg, system)}
    key = f"systems.{system}.md.shots"
    if len(spec.symbols) != 2:
        raise ConfigError(f"{key}: shot-noise MD is implemented for diatomics (released from a stretched bond); {system} has {len(spec.symbols)} atoms")
    if int(shots) not in [int(s) for s in mc["shots"]]:
        raise ConfigError(f"{key}: {shots} shots requested but the config lists {mc['shots']}")
    seed = derive_seed(cfg["seed"], "md-shots", system, int(shots))
    calc = ShotNoiseCalculator(load_model(model_path), shots=int(shots), seed=seed)
    r0 = float(mc.get("r_start", np.mean(spec.variables[spec.variable_names[0]])))
    n_steps = int(mc["n_steps_shots"])
    res = run_stretched_bond(calculator=calc, symbols=spec.symbols, r_start_A=r0, timestep_fs=float(mc["timestep_fs"]),
                             n_steps=n_steps, log_every=int(mc["log_every"]), trajectory_path=out_traj)
    ref = ds.read_frames(exact_traj)
    t_ref = np.array([a.info["time_fs"] for a in ref])
    r_ref = np.array([a.get_distance(0, 1) for a in ref])
    dev = distance_deviation(t_ref, r_ref, res.times_fs, res.r_A)
    tol = float(mc["shots_tolerance_A"])
    summary = {"system": system, "model": f"qnn-shots{int(shots)}", "protocol": protocol, "seed": seed_index, "shots": int(shots),
               "shot_seed": seed,
               "force_evaluations": calc.n_calls, "circuits": calc.n_circuits,
               "circuits_per_force_evaluation": calc.shift.circuits_per_input, **res.md.summary(),
               "r_start_A": r0, "r_min_A": float(res.r_A.min()), "r_max_A": float(res.r_A.max()),
               "deviation_from_exact_qnn": {**dev, "tolerance_A": tol, "within_tolerance": bool(dev["max_abs_deviation_A"] <= tol)}}
    write_json_atomic(out_json, summary)
    log.info("%s QNN MD with %d shots: %d steps, %.1f steps/s, drift %.3g eV/atom/ps, max |r - r_exact| %.4f A over %.0f fs",
             system, shots, n_steps, res.md.steps_per_second, res.md.drift_eV_per_atom_per_ps, dev["max_abs_deviation_A"], dev["window_fs"])
    return summary


# ---------------------------------------------------------------- DFT slice for the one-coordinate figure
def slice_settings(cfg: dict, system: str) -> dict:
    spec = system_spec(cfg, system)
    sc = dict(cfg["systems"][system].get("slice", {}))
    var = sc.get("variable", spec.variable_names[-1])
    if var not in spec.variables:
        raise ConfigError(f"systems.{system}.slice.variable: {var!r} is not a sampled variable ({spec.variable_names})")
    return {"variable": var, "n": int(sc.get("n", 25)), "values": dict(sc.get("values", {}))}


def slice_geometries(cfg: dict, system: str) -> tuple[np.ndarray, np.ndarray]:
    spec = system_spec(cfg, system)
    sc = slice_settings(cfg, system)
    lo, hi = spec.variables[sc["variable"]]
    xs = np.linspace(lo, hi, sc["n"])
    base = {v: 0.5 * (a + b) for v, (a, b) in spec.variables.items()}
    base.update(sc["values"])
    return xs, np.stack([spec.geometry({**base, sc["variable"]: x}) for x in xs])


def dft_slice_stage(cfg: dict, system: str, out_xyz: str) -> None:
    from pyscf import lib

    from .dft import run_path
    from .units import HA_PER_BOHR_TO_EV_PER_ANG, HARTREE_TO_EV

    lib.num_threads(1)
    spec = system_spec(cfg, system)
    xs, geoms = slice_geometries(cfg, system)
    results = run_path(spec.symbols, list(geoms), charge=spec.charge, spin=spec.spin, level=spec.level)
    var = slice_settings(cfg, system)["variable"]
    frames = [ds.make_frame(spec.symbols, g, r.energy * HARTREE_TO_EV, -r.gradient * HA_PER_BOHR_TO_EV_PER_ANG,
                            {"slice_variable": var, "slice_value": float(x), "converged": r.converged})
              for x, g, r in zip(xs, geoms, results)]
    bad = [float(x) for x, r in zip(xs, results) if not r.converged]
    if bad:
        log.warning("%s slice: SCF failed at %s = %s (shown as gaps)", system, var, bad)
    ds.write_frames(out_xyz, frames)


# ---------------------------------------------------------------- figures
def _slice_derivative(frames, xs: np.ndarray, spec, var: str, forces: np.ndarray) -> np.ndarray:
    """dE/d(var) from Cartesian forces via the chain rule along the slice (finite-difference direction of the geometry)."""
    g = np.stack([a.get_positions() for a in frames])
    dgeo = np.gradient(g, xs, axis=0)  # d(positions)/d(var)
    return -np.einsum("bij,bij->b", forces, dgeo)


@dataclass(frozen=True)
class SeedSet:
    """The trained seeds of one (kind, protocol): its selection file and per-seed models, predictions or curves."""

    kind: str
    protocol: str
    selection: str
    files: tuple[str, ...]

    def median(self) -> tuple[int, str]:
        """(median seed index, its file)."""
        sel = json.loads(Path(self.selection).read_text())
        want = f"seed{sel['median_seed']}"
        hits = [f for f in self.files if Path(f).parent.name == want]
        if len(hits) != 1:
            raise FileNotFoundError(f"{self.selection}: median seed {sel['median_seed']} has no single file among {list(self.files)}")
        return int(sel["median_seed"]), hits[0]


def _band(values: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    v = np.stack(values)
    return v.min(axis=0), v.max(axis=0)


def system_figures(cfg: dict, system: str, models: Sequence[SeedSet], predictions: Sequence[SeedSet], train_xyz: str,
                   test_xyz: str, slice_xyz: str | None, out: dict[str, str]) -> None:
    """Parity plot of each kind's median seed; energy/force curves of the median seed with the band over all seeds."""
    from .evaluation import prediction_errors
    from .models.base import load_model

    torch.set_num_threads(1)
    spec = system_spec(cfg, system)
    data = {}
    for ss in predictions:
        err = prediction_errors(ds.read_frames(ss.median()[1]))
        data[ss.kind] = (err["E_ref"], err["E"], err["F_ref"], err["F"])
    fig.parity(data, title=f"{system} (median seed)", png=out["parity_png"], pdf=out["parity_pdf"])

    def curves_and_bands(geoms: np.ndarray, to_force) -> tuple[dict, dict]:
        curves, bands = {}, {}
        for ss in models:
            med = ss.median()[1]
            per_seed = {}
            for path in ss.files:
                e, f = load_model(path).energy_and_forces(torch.as_tensor(geoms))
                per_seed[path] = (e.detach().numpy(), to_force(f.detach().numpy()))
            curves[ss.kind] = per_seed[med]
            lo_e, hi_e = _band([v[0] for v in per_seed.values()])
            lo_f, hi_f = _band([v[1] for v in per_seed.values()])
            bands[ss.kind] = (lo_e, hi_e, lo_f, hi_f)
        return curves, bands

    if len(spec.symbols) == 2:
        var = spec.variable_names[0]
        lo, hi = spec.variables[var]
        xs = np.linspace(lo, hi, 400)
        geoms = np.stack([spec.geometry({var: x}) for x in xs])
        unit = np.array([0.0, 0.0, 1.0])  # atom 1 sits on +z from atom 0: F_r = F_1 . z
        curves, bands = curves_and_bands(geoms, lambda f: f[:, 1] @ unit)
        tr, te = ds.read_frames(train_xyz), ds.read_frames(test_xyz)
        rx = np.array([a.get_distance(0, 1) for a in tr])
        tx = np.array([a.get_distance(0, 1) for a in te])
        # forces along the bond (projected onto the unit vector from atom 0 to atom 1)
        fproj = lambda a: float(a.arrays["REF_forces"][1] @ (a.positions[1] - a.positions[0]) / a.get_distance(0, 1))  # noqa: E731
        fig.curve_1d(xs, curves, rx, np.array([a.info["REF_energy"] for a in tr]), np.array([fproj(a) for a in tr]),
                     xlabel="interatomic distance (Å)", title=system, png=out["curve_png"], pdf=out["curve_pdf"],
                     test_x=tx, test_e=np.array([a.info["REF_energy"] for a in te]), test_f=np.array([fproj(a) for a in te]),
                     bands=bands)
    else:
        frames = ds.read_frames(slice_xyz)
        var = slice_settings(cfg, system)["variable"]
        xs = np.array([a.info["slice_value"] for a in frames])
        ok = np.array([bool(a.info["converged"]) for a in frames])
        geoms = np.stack([a.get_positions() for a in frames])
        e_ref = np.array([a.info["REF_energy"] for a in frames])
        f_ref = np.stack([a.arrays["REF_forces"] for a in frames])
        curves, bands = curves_and_bands(geoms, lambda f: _slice_derivative(frames, xs, spec, var, f))
        kind = next(k for zr in spec.zmatrix for k, p in (("bond", zr.bond), ("angle", zr.angle), ("dihedral", zr.dihedral))
                    if p is not None and p[1] == var)
        unit = "Å" if kind == "bond" else "°"
        others = ", ".join(f"{k} = {v:g}" for k, v in slice_settings(cfg, system)["values"].items()) or "the centre of their ranges"
        fig.curve_1d(xs, curves, xs[ok], e_ref[ok], _slice_derivative(frames, xs, spec, var, f_ref)[ok],
                     xlabel=f"{var} ({unit})", title=f"{system}: scan of {var} ({others})",
                     png=out["curve_png"], pdf=out["curve_pdf"], ref_label="DFT (scan)",
                     force_label=f"generalised force -dE/d{var} (eV/{unit})", bands=bands)


def summary_figures(curves: dict[str, Sequence[SeedSet]], effdims: dict[str, dict[str, str]], out: dict[str, str]) -> None:
    """Learning curves (median seed, band over seeds), d_n/d bars and d_n/d against n (error bars: sd over draws)."""
    lc = {}
    for s, sets in curves.items():
        lc[s] = {}
        for ss in sets:
            losses = []
            for path in ss.files:
                df = pd.read_csv(path)
                losses.append((df["iteration"].to_numpy(), df["loss"].to_numpy(), path))
            n = min(len(it) for it, _, _ in losses)
            med = ss.median()[1]
            it, loss, _ = next(v for v in losses if v[2] == med)
            lo, hi = _band([v[1][:n] for v in losses])
            lc[s][ss.kind] = (it[:n], loss[:n], lo, hi)
    fig.learning_curves(lc, png=out["learning_png"], pdf=out["learning_pdf"])
    bars, vs_n = {}, {}
    for s, per in effdims.items():
        bars[s], vs_n[s] = {}, {}
        for k, path in per.items():
            d = json.loads(Path(path).read_text())
            bars[s][k] = (d["d_n_over_d"], d["d_n_over_d_sd"])
            vs_n[s][k] = (d["curve"]["n"], d["curve"]["d_n_over_d"], d["curve"]["d_n_over_d_sd"])
    fig.effdim_bars(bars, png=out["effdim_png"], pdf=out["effdim_pdf"])
    fig.effdim_vs_n(vs_n, png=out["effdim_n_png"], pdf=out["effdim_n_pdf"])


def md_figure(system: str, kinds: Sequence[str], trajectories: Sequence[str], png: str, pdf: str) -> None:
    traces = {}
    for k, p in zip(kinds, trajectories):
        frames = ds.read_frames(p)
        t = np.array([a.info["time_fs"] for a in frames])
        r = np.array([a.get_distance(0, 1) for a in frames])
        traces[_md_label(k)] = (t, r)
    tmax = min(t.max() for t, _ in traces.values())
    traces = {k: (t[t <= tmax], r[t <= tmax]) for k, (t, r) in traces.items()}
    fig.md_distance(traces, title=f"{system}: NVE velocity Verlet from a stretched bond (median seeds)", png=png, pdf=pdf)


def _md_label(kind: str) -> str:
    """Legend label of an MD run: ``qnn-shots1024`` -> ``QNN, 1024 shots`` (others unchanged)."""
    if kind.startswith("qnn-shots") and kind[len("qnn-shots"):].isdigit():
        return f"QNN, {int(kind[len('qnn-shots'):]):,} shots"
    return kind


def md_table(summaries: Sequence[str], out_csv: str, out_md: str) -> pd.DataFrame:
    rows = []
    for p in summaries:
        d = json.loads(Path(p).read_text())
        rows.append({"system": d["system"], "model": d["model"], "protocol": d.get("protocol") or "",
                     "seed": "" if d.get("seed") is None else int(d["seed"]),
                     "steps": d["n_steps"], "timestep [fs]": d["timestep_fs"],
                     "drift [eV/atom/ps]": d["drift_eV_per_atom_per_ps"],
                     "max |E_tot - E_tot(0)| [eV]": d["max_abs_energy_deviation_eV"],
                     "steps per second": d["steps_per_second"],
                     "completed": "yes" if d.get("completed", True) else f"left the model's domain at {d['stopped_at_fs']:.1f} fs"})
    df = pd.DataFrame(rows)
    with atomic_path(out_csv) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
    cols = list(df.columns)
    from .evaluation import fmt

    lines = ["# Molecular dynamics (NVE, velocity Verlet)", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in cols) + " |" for _, r in df.iterrows()]
    lines += ["", "Each model runs its median seed (by test RMSE(E)) of each protocol.",
              "Units: drift is the slope of a linear fit of the total energy against time, per atom, in eV/atom/ps;",
              "the deviation is in eV; steps per second is wall-clock speed on the machine that ran the pipeline.", ""]
    write_text_atomic(out_md, "\n".join(lines))
    return df


# ---------------------------------------------------------------- metrics, manifest
def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def metrics_and_manifest(cfg: dict, error_csvs: Sequence[str], md_csv: str | None, artifacts: Sequence[str],
                         out_metrics: str, out_manifest: str, reproduction_csv: str | None = None) -> None:
    tables = {Path(p).name.split("_errors")[0]: pd.read_csv(p) for p in error_csvs}
    prov = provenance(config_hash({k: v for k, v in cfg.items() if k != "studies"}))  # studies never change these results
    metrics = {"units": {"RMSE(E) [meV]": "meV", "RMSE(F) [meV/A]": "meV/Angstrom",
                         "RMSE(E) [scaled]": "energy / scaler scale (dimensionless)", "RMSE(F) [scaled, 1/A]": "force / scaler scale (1/Angstrom)"},
               "errors": {s: df.to_dict(orient="records") for s, df in tables.items()},
               "provenance": prov}
    if md_csv:
        metrics["md"] = pd.read_csv(md_csv).to_dict(orient="records")
    if reproduction_csv:
        metrics["reproduction"] = pd.read_csv(reproduction_csv).to_dict(orient="records")
    write_json_atomic(out_metrics, metrics)
    lines = [f"{sha256(p)}  {p}" for p in sorted(set(artifacts) | {out_metrics})]
    write_text_atomic(out_manifest, "\n".join(lines) + "\n")


# ---------------------------------------------------------------- QNN on qiskit-aer (shots, noise)
AER_DEFAULTS = {"shots": 4096, "noise": "none", "p1": 0.001, "p2": 0.01, "n_points": 50, "forces": True, "force_points": None}
AER_FORCE_CIRCUIT_BUDGET = 1500  # default force points: as many geometries as fit in this many circuits (1 + 2K each)


def _force_stats(r: dict, f_ref: np.ndarray) -> dict:
    """Force errors (meV/Angstrom) of a circuit evaluation ``r`` (QNNForceField.circuit_energy_and_forces)."""
    f, err, exact = np.asarray(r["forces"]), np.asarray(r["forces_stderr"]), np.asarray(r["exact_forces"])
    z = np.abs(f - exact) / np.where(err > 0, err, np.inf)
    return {
        "n_force_points": int(len(f)),
        "RMSE(F) vs DFT [meV/A]": 1000.0 * float(np.sqrt(np.mean((f - f_ref) ** 2))),
        "RMSE(F) vs exact QNN [meV/A]": 1000.0 * float(np.sqrt(np.mean((f - exact) ** 2))),
        "mean force standard error [meV/A]": 1000.0 * float(np.mean(err)),
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


def aer_stage(cfg: dict, system: str, models: SeedSet, test_npz: str, out_json: str) -> dict:
    """The median-seed QNN of one protocol evaluated with circuits on test geometries: on qiskit-aer with shots (and the
    configured noise), energies and, with ``aer.forces``, parameter-shift forces on the first ``aer.force_points`` of
    them; with ``hardware.backend`` other than ``aer``, the same through IBM Qiskit Runtime (fake backend or device)."""
    from .models.base import load_model
    from .qnn.runtime import HARDWARE_DEFAULTS

    torch.set_num_threads(1)
    qc = cfg["systems"][system].get("models", {}).get("qnn", {})
    ac = {**AER_DEFAULTS, **qc.get("aer", {})}
    hw = {**HARDWARE_DEFAULTS, **qc.get("hardware", {})}
    seed, model_path = models.median()
    model = load_model(model_path)
    f = load_npz(test_npz)
    pos_all, e_all, f_all = f["positions"], f["energy"], f["forces"]
    n = min(int(ac["n_points"]), len(pos_all))
    pos, e_ref = pos_all[:n], e_all[:n]
    runs = [("shots", "none")] + ([("shots+noise", ac["noise"])] if ac["noise"] != "none" else [])
    out = {"system": system, "model": "qnn", "protocol": models.protocol, "seed": seed, "n_points": n, "shots": int(ac["shots"]),
           "runs": {}}
    for label, noise in runs:
        r = model.aer_energy(pos, shots=int(ac["shots"]), noise=noise, p1=float(ac["p1"]), p2=float(ac["p2"]),
                             seed=derive_seed(cfg["seed"], "aer", system, models.protocol, label))
        e, err, exact = np.asarray(r["energy"]), np.asarray(r["stderr"]), np.asarray(r["exact"])
        z = np.abs(e - exact) / np.where(err > 0, err, np.inf)
        out["runs"][label] = {
            "noise": noise,
            "RMSE(E) vs DFT [meV]": 1000.0 * float(np.sqrt(np.mean((e - e_ref) ** 2))),
            "RMSE(E) vs exact QNN [meV]": 1000.0 * float(np.sqrt(np.mean((e - exact) ** 2))),
            "mean shot standard error [meV]": 1000.0 * float(np.mean(err)),
            "fraction within 4 sigma of exact": float(np.mean(z <= 4.0)),
            "info": {k: v for k, v in r["info"].items() if isinstance(v, (int, float, str, bool))},
        }
        if ac["forces"]:
            per = model.shift_circuit().circuits_per_input
            k = min(n, int(ac["force_points"]) if ac["force_points"] is not None else max(1, AER_FORCE_CIRCUIT_BUDGET // per))
            rf = model.aer_energy_and_forces(pos_all[:k], shots=int(ac["shots"]), noise=noise, p1=float(ac["p1"]),
                                             p2=float(ac["p2"]), seed=derive_seed(cfg["seed"], "aer-forces", system, models.protocol, label))
            out["runs"][label].update(_force_stats(rf, f_all[:k]))
            out["runs"][label]["force_info"] = _json_info(rf["info"])
            log.info("%s QNN on Aer (%s): RMSE(F) vs DFT %.1f meV/A, vs exact %.1f meV/A on %d points (%d circuits)", system,
                     label, out["runs"][label]["RMSE(F) vs DFT [meV/A]"], out["runs"][label]["RMSE(F) vs exact QNN [meV/A]"],
                     k, rf["info"]["n_circuits"])
        log.info("%s QNN on Aer (%s): RMSE vs DFT %.1f meV, vs exact %.1f meV", system, label,
                 out["runs"][label]["RMSE(E) vs DFT [meV]"], out["runs"][label]["RMSE(E) vs exact QNN [meV]"])
    if hw["backend"] != "aer":
        out["hardware"] = hardware_evaluation(model, hw, pos_all, e_all, f_all, seed=derive_seed(cfg["seed"], "runtime", system, models.protocol))
    write_json_atomic(out_json, out)
    return out


def hardware_evaluation(model, settings: dict, positions: np.ndarray, e_ref: np.ndarray, f_ref: np.ndarray, *, seed: int) -> dict:
    """Energies and parameter-shift forces of the first ``settings["n_points"]`` geometries through Qiskit Runtime
    (:class:`qnnff.qnn.runtime.RuntimeEvaluator`): cost printed and recorded first, the QPU-time cap enforced before
    submission, the ISA layout recorded."""
    from .qnn.runtime import RuntimeEvaluator

    k = min(int(settings["n_points"]), len(positions))
    ev = RuntimeEvaluator.from_settings(settings, seed=seed)
    r = model.circuit_energy_and_forces(positions[:k], evaluate=ev)
    e, exact = np.asarray(r["energy"]), np.asarray(r["exact_energy"])
    res = {
        "backend": settings["backend"], "n_points": k,
        "RMSE(E) vs DFT [meV]": 1000.0 * float(np.sqrt(np.mean((e - e_ref[:k]) ** 2))),
        "RMSE(E) vs exact QNN [meV]": 1000.0 * float(np.sqrt(np.mean((e - exact) ** 2))),
        "mean energy standard error [meV]": 1000.0 * float(np.mean(r["energy_stderr"])),
        **_force_stats(r, f_ref[:k]),
        "info": _json_info(r["info"]),
    }
    log.info("%s on %s (%s): RMSE(E) vs DFT %.1f meV, RMSE(F) vs DFT %.1f meV/A; layout %s; ~%.1f QPU s", model.kind,
             settings["backend"], r["info"]["mode"], res["RMSE(E) vs DFT [meV]"], res["RMSE(F) vs DFT [meV/A]"],
             r["info"]["layout"], r["info"]["cost"]["qpu_seconds"])
    return res

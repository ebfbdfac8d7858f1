"""Stage 6, figures and records (``workflow/rules/figures.smk``): rules ``dft_slice``, ``figures_system``,
``figure_md``, ``figures_summary`` and ``metrics``.

* :func:`dft_slice`: DFT energies and forces along one coordinate (the others at the centre of their ranges), for the
  curve figure of a molecule with more than one coordinate;
* :func:`figures_system`: parity plots (test set) and the energy/force curve along one coordinate (the bond of a
  diatomic, else the DFT slice), median seed with the band over all seeds;
* :func:`figure_md`: interatomic distance against time for a diatomic (DFT and every model);
* :func:`figures_summary`: learning curves, effective-dimension bars and d_n/d against n;
* :func:`metrics`: ``metrics.json`` (every error and MD number, with provenance) and ``MANIFEST.sha256`` of every
  committed artifact.

Plotting is :mod:`qnnff.figures` (matplotlib, loaded when the first figure is drawn). torch and the models are
imported by :func:`figures_system` alone, the one rule here that evaluates models; PySCF by :func:`dft_slice`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import dataset as ds
from .. import figures as fig
from ..config import SystemSpec
from ..dft import run_path, set_threads
from ..evaluation import prediction_errors
from ..io import write_json_atomic, write_text_atomic
from ..jobs import FiguresJob, MetricsJob
from ..kinds import KINDS
from ..provenance import provenance
from ..settings import SliceSettings
from ..units import HA_PER_BOHR_TO_EV_PER_ANG, HARTREE_TO_EV
from . import SeedSet

log = logging.getLogger("qnnff")


# ---------------------------------------------------------------- DFT slice for the one-coordinate figure
def slice_geometries(spec: SystemSpec, sl: SliceSettings) -> tuple[np.ndarray, np.ndarray]:
    """The scanned values of ``sl.variable`` and the geometries along the slice."""
    lo, hi = spec.variables[sl.variable]
    xs = np.linspace(lo, hi, sl.n)
    base = {v: 0.5 * (a + b) for v, (a, b) in spec.variables.items()}
    base.update(sl.values)
    return xs, np.stack([spec.geometry({**base, sl.variable: x}) for x in xs])


def dft_slice(job: FiguresJob, out_xyz: str) -> None:
    """Rule ``dft_slice``: DFT energies and forces along the slice variable (failed SCF points kept, marked)."""
    set_threads(1)
    spec, system, sl = job.spec, job.system, job.slice
    xs, geoms = slice_geometries(spec, sl)
    results = run_path(spec.symbols, list(geoms), charge=spec.charge, spin=spec.spin, level=spec.level)
    var = sl.variable
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


def _band(values: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    v = np.stack(values)
    return v.min(axis=0), v.max(axis=0)


def figures_system(job: FiguresJob, models: Sequence[SeedSet | Mapping[str, Any]],
                   predictions: Sequence[SeedSet | Mapping[str, Any]], train_xyz: str, test_xyz: str, slice_xyz: str | None,
                   out: dict[str, str]) -> None:
    """Rule ``figures_system``: parity plot of each kind's median seed; energy/force curves of the median seed with
    the band over all seeds (``models``, ``predictions``: per kind, the seeds of the protocol the figures show)."""
    import torch  # torch and the models: this rule only (see the module docstring)

    from ..models.factory import load_model

    models = [SeedSet.of(m) for m in models]
    predictions = [SeedSet.of(m) for m in predictions]
    torch.set_num_threads(1)
    spec, system = job.spec, job.system
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
                e, f = load_model(path).energy_and_forces(torch.as_tensor(geoms), check=False)  # the whole slice, edges included
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
        sl = job.slice
        var = sl.variable
        xs = np.array([a.info["slice_value"] for a in frames])
        ok = np.array([bool(a.info["converged"]) for a in frames])
        geoms = np.stack([a.get_positions() for a in frames])
        e_ref = np.array([a.info["REF_energy"] for a in frames])
        f_ref = np.stack([a.arrays["REF_forces"] for a in frames])
        curves, bands = curves_and_bands(geoms, lambda f: _slice_derivative(frames, xs, spec, var, f))
        kind = next(k for zr in spec.zmatrix for k, p in (("bond", zr.bond), ("angle", zr.angle), ("dihedral", zr.dihedral))
                    if p is not None and p[1] == var)
        unit = "Å" if kind == "bond" else "°"
        others = ", ".join(f"{k} = {v:g}" for k, v in sl.values.items()) or "the centre of their ranges"
        fig.curve_1d(xs, curves, xs[ok], e_ref[ok], _slice_derivative(frames, xs, spec, var, f_ref)[ok],
                     xlabel=f"{var} ({unit})", title=f"{system}: scan of {var} ({others})",
                     png=out["curve_png"], pdf=out["curve_pdf"], ref_label="DFT (scan)",
                     force_label=f"generalised force -dE/d{var} (eV/{unit})", bands=bands)


def figures_summary(curves: Mapping[str, Sequence[SeedSet | Mapping[str, Any]]], effdims: dict[str, dict[str, str]],
                    out: dict[str, str]) -> None:
    """Rule ``figures_summary``: learning curves (median seed, band over seeds), d_n/d bars and d_n/d against n
    (error bars: sd over draws)."""
    lc = {}
    for s, sets in curves.items():
        lc[s] = {}
        for ss in map(SeedSet.of, sets):
            if KINDS[ss.kind].closed_form:  # fitted, not trained: its "curve" is its selection table (no iterations)
                continue
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


def figure_md(system: str, kinds: Sequence[str], trajectories: Sequence[str], png: str, pdf: str) -> None:
    """Rule ``figure_md``: interatomic distance against time of each run (``kinds``, in the order of ``trajectories``),
    cut to the shortest run."""
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


# ---------------------------------------------------------------- metrics, manifest
def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def metrics(job: MetricsJob, error_csvs: Sequence[str], md_csv: str | None, artifacts: Sequence[str],
            out_metrics: str, out_manifest: str, reproduction_csv: str | None = None) -> None:
    """Rule ``metrics``: ``metrics.json`` (the error tables, MD table and scorecard as records, units, provenance) and
    the manifest (sha256 of every committed artifact and of ``metrics.json``)."""
    tables = {Path(p).name.split("_errors")[0]: pd.read_csv(p) for p in error_csvs}
    prov = provenance(job.run_hash)  # the configuration but studies, which never change these results
    record = {"units": {"RMSE(E) [meV]": "meV", "RMSE(F) [meV/A]": "meV/Angstrom",
                        "RMSE(E) [scaled]": "energy / scaler scale (dimensionless)", "RMSE(F) [scaled, 1/A]": "force / scaler scale (1/Angstrom)"},
              "errors": {s: df.to_dict(orient="records") for s, df in tables.items()},
              "provenance": prov}
    if md_csv:
        record["md"] = pd.read_csv(md_csv).to_dict(orient="records")
    if reproduction_csv:
        record["reproduction"] = pd.read_csv(reproduction_csv).to_dict(orient="records")
    write_json_atomic(out_metrics, record, strict=True)  # strict JSON: a missing number (NaN) is null
    lines = [f"{sha256(p)}  {p}" for p in sorted(set(artifacts) | {out_metrics})]
    write_text_atomic(out_manifest, "\n".join(lines) + "\n")

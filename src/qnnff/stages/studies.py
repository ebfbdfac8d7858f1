"""Studies (``workflow/rules/studies.smk``): rules ``study_point``, ``study_table`` and ``data_efficiency``.

:func:`study_point` trains (or reuses the pipeline's model of) one seed of one grid point of a study and writes its
metrics (:func:`run_point`); it works in the directory of its metrics file (model, learning curve, checkpoint).
:func:`study_table` writes the study's table and figure; :func:`data_efficiency` puts every kind's data study of a
system on one figure. The grids themselves, their points and which point reuses
the pipeline's model are parsed below this layer, by :mod:`qnnff.studies`, which needs no stage.

torch, the features and the models are imported by :func:`run_point` only, so a ``study_table`` job runs without them.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import dataset as ds
from ..evaluation import floor_cell, mean_sd, pm, prediction_errors, rmse
from ..floor import AT_FLOOR_RATIO, FLOOR
from ..integrity import stamp_arrays
from ..io import atomic_path, write_json_atomic, write_text_atomic
from ..jobs import StudyJob, StudyPointJob
from ..studies import Study, _label
from ..units import MEV_PER_EV

log = logging.getLogger("qnnff")


def study_point(job: StudyPointJob, *, train_xyz: str, test_xyz: str, out_json: str, pipeline_model: str | None = None,
                pipeline_predictions: str | None = None, pipeline_summary: str | None = None) -> dict:
    """Rule ``study_point``: seed ``job.seed_index`` of grid point ``job.point`` of study ``job.study``
    (:func:`run_point`); ``pipeline_*``: the pipeline's model of the same seed, when the point reuses it."""
    return run_point(job, train_xyz=train_xyz, test_xyz=test_xyz, out_json=out_json, workdir=os.path.dirname(out_json),
                     pipeline_model=pipeline_model, pipeline_predictions=pipeline_predictions,
                     pipeline_summary=pipeline_summary)


# ------------------------------------------------------------------ one job
def _subset(n_total: int, n: int | None, seed: int) -> np.ndarray:
    if n is None:
        return np.arange(n_total)
    return np.sort(np.random.default_rng(seed).choice(n_total, size=n, replace=False))


def run_point(job: StudyPointJob, *, train_xyz: str, test_xyz: str, out_json: str, workdir: str,
              pipeline_model: str | None = None, pipeline_predictions: str | None = None,
              pipeline_summary: str | None = None) -> dict:
    """Train (or reuse) seed ``job.seed_index`` of the grid point ``job.point`` (:class:`qnnff.jobs.StudyPointJob`: the
    point's settings applied and parsed), evaluate it on the test set (and with shots), write its metrics.

    ``workdir`` keeps the trained model, learning curve and a training checkpoint (a killed job resumes from it)."""
    from .features import build_featurizer, feature_arrays  # torch: a study_table job starts without it
    from .train import train

    study, point, seed_index = job.study, job.point, job.seed_index
    wd = Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    train_frames = ds.read_frames(train_xyz)
    test_frames = ds.read_frames(test_xyz)
    feat, scaler = build_featurizer(job.data, train_frames)  # the full training set's domain and scale
    outside = feat.out_of_domain(_positions(test_frames)).tolist()
    excluded = [a.info.get("point", str(i)) for i, (a, o) in enumerate(zip(test_frames, outside)) if o]
    if excluded:  # as in the pipeline's features stage: arcsin is undefined there; listed, never hidden
        log.warning("%s %s: %d test point(s) outside the training range are excluded: %s", study.name, point.name,
                    len(excluded), ", ".join(excluded))
    test_frames = [a for a, o in zip(test_frames, outside) if not o]
    idx = _subset(len(train_frames), point.n_train, job.subset_seed)
    reused = pipeline_model is not None and job.reuses_pipeline_model
    if reused:
        predictions, summary_path = pipeline_predictions, pipeline_summary
    else:
        scalers = wd / "scalers.json"
        write_json_atomic(scalers, {"featurizer": feat.to_dict(), "energy_scaler": scaler.to_dict()})
        npz = {}
        for split, frames in (("train", [train_frames[i] for i in idx]), ("test", test_frames)):
            npz[split] = wd / f"{split}.npz"
            with atomic_path(npz[split]) as tmp:
                np.savez(tmp, **stamp_arrays(feature_arrays(feat, scaler, frames), len(frames)))
        predictions, summary_path = str(wd / "test_predictions.extxyz"), str(wd / "train_summary.json")
        train(job.train, str(scalers), str(npz["train"]), str(npz["test"]), str(wd / "model.zip"), predictions,
              str(wd / "learning_curve.csv"), summary_path, str(wd / "checkpoint.pt"))
        for split in npz.values():
            split.unlink(missing_ok=True)
    err = prediction_errors(ds.read_frames(predictions))
    summary = json.loads(Path(summary_path).read_text())
    scale = float(scaler.scale)
    out = {
        "study": study.name, "system": study.system, "kind": study.kind, "protocol": study.protocol, "point": point.name,
        "settings": point.settings, "seed": int(seed_index), "n_train": len(idx), "n_test": len(err["dE"]),
        "excluded_test_points": excluded,
        "reused_pipeline_model": bool(reused), "point_hash": job.point_hash,
        "RMSE(E) [scaled]": rmse(err["dE"]) / scale, "RMSE(F) [scaled, 1/A]": rmse(err["dF"]) / scale,
        "RMSE(E) [meV]": MEV_PER_EV * rmse(err["dE"]), "RMSE(F) [meV/A]": MEV_PER_EV * rmse(err["dF"]),
        "parameters": int(summary["n_parameters"]), "iterations": int(summary["iterations"]),
        "train time [s]": float(summary["train_seconds"]), "energy scale [eV]": scale, "shots": [],
    }
    if study.evaluate["shots"] or job.floor is not None:
        from ..models.factory import load_model

        model = load_model(pipeline_model if reused else str(wd / "model.zip"))
    if job.floor is not None:
        out.update(_point_floor(job, model, [train_frames[i] for i in idx], test_frames, scaler))
    if study.evaluate["shots"]:
        n = min(int(study.evaluate["n_points"]), len(test_frames))
        pos = _positions(test_frames[:n]).numpy()
        e_ref = np.array([a.info["REF_energy"] for a in test_frames[:n]])
        for noise in study.evaluate["noise"]:
            for shots in study.evaluate["shots"]:
                r = model.aer_energy(pos, shots=int(shots), noise=noise, p1=float(study.evaluate["p1"]),
                                     p2=float(study.evaluate["p2"]),
                                     seed=job.shot_seeds[int(shots), noise])
                e, exact = np.asarray(r["energy"]), np.asarray(r["exact"])
                out["shots"].append({
                    "shots": int(shots), "noise": noise, "n_points": n,
                    "RMSE(E) vs DFT [meV]": MEV_PER_EV * rmse(e - e_ref),
                    "RMSE(E) vs exact QNN [meV]": MEV_PER_EV * rmse(e - exact),
                    "RMSE(E) vs DFT [scaled]": rmse(e - e_ref) / scale,
                })
                log.info("%s %s seed %d: %d shots, noise %s: RMSE(E) vs DFT %.2f meV, vs exact %.2f meV", study.name,
                         point.name, seed_index, shots, noise, out["shots"][-1]["RMSE(E) vs DFT [meV]"],
                         out["shots"][-1]["RMSE(E) vs exact QNN [meV]"])
    log.info("%s %s seed %d (n_train %d%s): RMSE(E) %.4g, RMSE(F) %.4g (scaled)", study.name, point.name, seed_index,
             len(idx), ", pipeline model reused" if reused else "", out["RMSE(E) [scaled]"], out["RMSE(F) [scaled, 1/A]"])
    write_json_atomic(out_json, out, strict=True)  # strict JSON: a missing number (NaN) is null
    return out


def _point_floor(job: StudyPointJob, model, train_frames, test_frames, scaler) -> dict:
    """The information floor of the inputs ``model`` sees, on the point's training set (:mod:`qnnff.floor`)."""
    from ..floor import model_floor

    y_train, y_test = ((np.array([a.info["REF_energy"] for a in f]) - scaler.center) / scaler.scale for f in (train_frames, test_frames))
    res = model_floor(model, _positions(train_frames), y_train, _positions(test_frames), y_test, seed=job.floor_seed,
                      n_restarts=job.floor.n_restarts, label=f"{job.study.name} {job.point.name}")
    log.info("%s %s seed %d: information floor of the inputs %.4g (scaled), GP fit %.1f s", job.study.name, job.point.name,
             job.seed_index, res["rmse"], res["seconds"])
    return {FLOOR: res["rmse"], "floor_gp": res}


def _positions(frames):
    import torch

    return torch.as_tensor(np.stack([a.get_positions() for a in frames]), dtype=torch.float64)


# ------------------------------------------------------------------ table and figure
METRICS = ("RMSE(E) [scaled]", "RMSE(F) [scaled, 1/A]", "RMSE(E) [meV]", "RMSE(F) [meV/A]")


def study_frames(metrics_jsons: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:  # noqa: F821
    """Per-seed rows (one per point and seed) and shot rows (one per point, seed, noise and shots)."""
    import pandas as pd

    rows, shot_rows = [], []
    for p in metrics_jsons:
        d = json.loads(Path(p).read_text())
        base = {"point": d["point"], **{k: _cell(v) for k, v in d["settings"].items()}, "seed": d["seed"],
                "n_train": d["n_train"]}
        rows.append({**base, **{m: _number(d[m]) for m in METRICS}, "parameters": d["parameters"],
                     "train time [s]": _number(d["train time [s]"]), "reused pipeline model": d["reused_pipeline_model"],
                     **({FLOOR: _number(d[FLOOR])} if FLOOR in d else {})})
        for s in d["shots"]:
            shot_rows.append({**base, "noise": s["noise"], "shots": s["shots"],
                              **{m: _number(s[m]) for m in ("RMSE(E) vs DFT [meV]", "RMSE(E) vs exact QNN [meV]",
                                                            "RMSE(E) vs DFT [scaled]")}})
    return pd.DataFrame(rows), pd.DataFrame(shot_rows)


def _number(v: Any) -> float:
    """A number of a metrics.json: null (a missing number, written so since issue 26.20) is NaN, as the NaN literal was."""
    return float("nan") if v is None else float(v)


def _cell(v: Any) -> Any:
    return v if isinstance(v, (int, float, str, bool)) or v is None else _label(v)


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and np.isnan(v))


def _shown(v: Any) -> Any:
    """A grid value as tables print it: 3000 not 3000.0 (pandas turns a column with gaps into floats)."""
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return f"{float(v):g}" if isinstance(v, (float, np.floating)) else v


def loglog_slope(n: Sequence[float], y: Sequence[float]) -> float:
    """Least-squares slope of log(y) against log(n) (NaN with fewer than two distinct sizes)."""
    n, y = np.asarray(n, float), np.asarray(y, float)
    ok = (n > 0) & (y > 0) & np.isfinite(y)
    if len(np.unique(n[ok])) < 2:
        return float("nan")
    return float(np.polyfit(np.log(n[ok]), np.log(y[ok]), 1)[0])


def summarise_study(rows: pd.DataFrame, shot_rows: pd.DataFrame, axes: Sequence[str]):  # noqa: F821
    """Mean +- sd over seeds per point (and per noise and shots); with an ``n_train`` axis, the fitted log-log slope of
    the mean errors against the training-set size per combination of the other axes."""
    import pandas as pd


    other = [a for a in axes if a != "n_train"]
    summ = []
    for point, g in rows.groupby("point", sort=False):
        rec = {"point": point, **{a: g[a].iloc[0] for a in axes}, "n_train": int(g["n_train"].iloc[0]), "seeds": len(g)}
        for m in METRICS + ((FLOOR,) if FLOOR in g else ()):
            rec[m], rec[m + " sd"] = mean_sd(g[m].dropna()) if m == FLOOR else mean_sd(g[m])
        rec["train time [s]"] = float(g["train time [s]"].mean())
        summ.append(rec)
    summary = pd.DataFrame(summ)
    slopes = []
    if "n_train" in axes and len(summary):
        groups = summary.groupby(other, sort=False) if other else [((), summary)]
        for key, g in groups:
            key = key if isinstance(key, tuple) else (key,)
            slopes.append({**dict(zip(other, key)),
                           "slope RMSE(E)": loglog_slope(g["n_train"], g["RMSE(E) [scaled]"]),
                           "slope RMSE(F)": loglog_slope(g["n_train"], g["RMSE(F) [scaled, 1/A]"])})
    shots = []
    if len(shot_rows):
        for (point, noise, s), g in shot_rows.groupby(["point", "noise", "shots"], sort=False):
            m, sd = mean_sd(g["RMSE(E) vs DFT [meV]"])
            mx, sdx = mean_sd(g["RMSE(E) vs exact QNN [meV]"])
            shots.append({"point": point, "noise": noise, "shots": int(s), "seeds": len(g), "RMSE(E) vs DFT [meV]": m,
                          "RMSE(E) vs DFT [meV] sd": sd, "RMSE(E) vs exact QNN [meV]": mx, "RMSE(E) vs exact QNN [meV] sd": sdx})
    return summary, pd.DataFrame(slopes), pd.DataFrame(shots)


def study_table(job: StudyJob, metrics_jsons: Sequence[str], out_csv: str, out_md: str, out_png: str, out_pdf: str) -> None:
    """``table.csv`` (one row per point and seed, and per shots and noise), ``table.md`` (mean +- sd per point, the
    fitted slopes, the shot-noise table) and the study's figure (``job``: :class:`qnnff.jobs.StudyJob`)."""
    import pandas as pd


    study = job.study
    rows, shot_rows = study_frames(metrics_jsons)
    axes = list(study.grid_keys)
    labels = {p.name: p.labels for p in study.points}
    for frame in (rows, shot_rows):  # non-scalar values (a coordinate list) appear by their label (`moments`)
        for a in axes:
            if len(frame) and a in frame and a != "n_train":
                frame[a] = [labels.get(pt, {}).get(a, v) if not isinstance(v, (int, float, bool)) else v
                            for pt, v in zip(frame["point"], frame[a])]
    for frame in (rows, shot_rows):  # a point of a union of grids leaves the other grids' keys at the base protocol
        for a in axes:
            if len(frame) and a != "n_train":
                base = job.base_values.get(a, "base")
                if a not in frame:
                    frame[a] = base
                elif frame[a].isna().any():  # (a column without gaps keeps its values and type)
                    frame[a] = [base if _missing(v) else _shown(v) for v in frame[a]]
    summary, slopes, shots = summarise_study(rows, shot_rows, axes)
    per_seed = rows.assign(evaluation="exact")
    if len(shot_rows):
        per_seed = pd.concat([per_seed, shot_rows.assign(evaluation="aer")], ignore_index=True)
    with atomic_path(out_csv) as tmp:
        per_seed.to_csv(tmp, index=False, float_format="%.6g")
    what = job.description
    md = [f"# Study {study.name}: {study.system} {study.kind} from protocol `{study.protocol}`", "",
          *([what, ""] if what else []),
          f"Grid over {', '.join(f'`{a}`' for a in axes) or 'nothing (the base protocol)'}; {study.seeds} seeds per point; "
          f"test set errors, mean ± sd over seeds. Scaled units: divided by the energy scale "
          f"({float(rows['RMSE(E) [meV]'].iloc[0] / MEV_PER_EV / rows['RMSE(E) [scaled]'].iloc[0]):.4g} eV, half the training "
          "energy range); forces then in 1/A. One row per seed in table.csv.", ""]
    with_floor = FLOOR in summary
    cols = ["point", *[a for a in axes if a != "n_train"], "n_train", "seeds", "RMSE(E) [scaled]",
            *([FLOOR] if with_floor else []), "RMSE(F) [scaled, 1/A]", "RMSE(E) [meV]", "RMSE(F) [meV/A]", "train time [s]"]
    md.append("| " + " | ".join(cols) + " |")
    md.append("|" + "---|" * len(cols))
    for _, r in summary.iterrows():
        cells = [str(r["point"]), *[str(r[a]) for a in axes if a != "n_train"], str(int(r["n_train"])), str(int(r["seeds"]))]
        cells += [pm(r[m], r[m + " sd"]) for m in METRICS]
        if with_floor:
            cells.insert(len(cells) - 3, floor_cell(r["RMSE(E) [scaled]"], r[FLOOR]))
        cells.append(f"{r['train time [s]']:.1f}")
        md.append("| " + " | ".join(cells) + " |")
    if with_floor:
        md += ["", f"{FLOOR}: the information floor of the point's inputs (qnnff.floor: test RMSE(E) of a Gaussian process "
               "fitted to the inputs the model sees, energies only, on the point's training set); 'at floor': the model's mean "
               f"RMSE(E) lies within {AT_FLOOR_RATIO:g}x of it."]
    if len(slopes):
        md += ["", "Fitted slope of log(mean test RMSE) against log(training-set size) (0: no gain from data; "
               "-0.5: the 1/sqrt(n) of a well-specified parametric model):", ""]
        oc = [c for c in slopes.columns if not c.startswith("slope")]
        md.append("| " + " | ".join([*oc, "slope RMSE(E)", "slope RMSE(F)"]) + " |")
        md.append("|" + "---|" * (len(oc) + 2))
        for _, r in slopes.iterrows():
            md.append("| " + " | ".join([*(str(r[c]) for c in oc), f"{r['slope RMSE(E)']:.2f}", f"{r['slope RMSE(F)']:.2f}"]) + " |")
    if len(shots):
        md += ["", f"qiskit-aer, energies of the first {study.evaluate['n_points']} test geometries, mean ± sd over seeds "
               "(meV; 'vs exact' is the shot and noise error alone):", "",
               "| point | noise | shots | RMSE(E) vs DFT [meV] | RMSE(E) vs exact QNN [meV] |", "|---|---|---|---|---|"]
        for _, r in shots.iterrows():
            md.append(f"| {r['point']} | {r['noise']} | {int(r['shots'])} | {pm(r['RMSE(E) vs DFT [meV]'], r['RMSE(E) vs DFT [meV] sd'])} | "
                      f"{pm(r['RMSE(E) vs exact QNN [meV]'], r['RMSE(E) vs exact QNN [meV] sd'])} |")
    with atomic_path(out_md) as tmp:
        Path(tmp).write_text("\n".join(md) + "\n")
    study_figure(study, summary, shots, axes, out_png, out_pdf)


def _integer_ticks(ax, values) -> None:
    """Log axis ticks at the grid's own values, as plain integers (no overlapping minor labels)."""
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator, ScalarFormatter

    ax.xaxis.set_major_locator(FixedLocator([float(v) for v in values]))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())


def _tick_label(r, axes: Sequence[str]) -> str:
    """One line per grid key the point sets (``base`` for the base protocol), then its mean training time."""
    lines = [f"{a.split('.')[-1]} {r[a]}" for a in axes if str(r[a]) not in ("-", "base")]
    return "\n".join([*lines, *(["(base)"] if r["point"] == "base" else []), f"{r['train time [s]']:.0f} s"])


def _data_axes(axs, metrics: Sequence[str], sizes: Sequence[int]) -> None:
    """Log-log axes of test error against training-set size, one metric per axis."""
    for ax, m in zip(axs, metrics):
        ax.set_xscale("log")
        ax.set_yscale("log")
        _integer_ticks(ax, sizes)
        ax.set_xlabel("training-set size")
        ax.set_ylabel(f"test {m}")
        ax.legend(fontsize=7)


def study_figure(study: Study, summary, shots, axes: Sequence[str], out_png: str, out_pdf: str) -> None:
    """Shots on the x axis when evaluated with shots (with the 1/sqrt(shots) line); else the training-set size
    (log-log) when it is an axis; else one error bar per point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    other = [a for a in axes if a != "n_train"]
    if len(shots):
        fig, ax = plt.subplots(figsize=(6, 4.5))
        for (point, noise), g in shots.groupby(["point", "noise"], sort=False):
            g = g.sort_values("shots")
            ax.errorbar(g["shots"], g["RMSE(E) vs exact QNN [meV]"], yerr=g["RMSE(E) vs exact QNN [meV] sd"], marker="o",
                        capsize=3, label=f"{point}, noise {noise}" if len(summary) > 1 else f"noise {noise}")
        ref = shots[shots["noise"] == "none"].sort_values("shots")
        if len(ref):
            s0, y0 = float(ref["shots"].iloc[0]), float(ref["RMSE(E) vs exact QNN [meV]"].iloc[0])
            s = np.geomspace(float(shots["shots"].min()), float(shots["shots"].max()), 50)
            ax.plot(s, y0 * np.sqrt(s0 / s), "k--", lw=1, label="1/sqrt(shots)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        _integer_ticks(ax, sorted(shots["shots"].unique()))
        ax.set_xlabel("shots per circuit")
        ax.set_ylabel("RMSE(E) vs exact QNN [meV]")
        ax.set_title(f"{study.system} {study.kind}: shot noise on qiskit-aer")
        ax.legend(fontsize=7)
    elif "n_train" in axes:
        fig, axs = plt.subplots(1, 2, figsize=(10, 4.2))
        groups = summary.groupby(other, sort=False) if other else [((), summary)]
        for key, g in groups:
            key = key if isinstance(key, tuple) else (key,)
            g = g.sort_values("n_train")
            label = ", ".join(f"{a.split('.')[-1]}={k}" for a, k in zip(other, key)) or study.kind
            for ax, m in zip(axs, ("RMSE(E) [scaled]", "RMSE(F) [scaled, 1/A]")):
                slope = loglog_slope(g["n_train"], g[m])
                ax.errorbar(g["n_train"], g[m], yerr=g[m + " sd"], marker="o", capsize=3, label=f"{label} (slope {slope:.2f})")
        _data_axes(axs, ("RMSE(E) [scaled]", "RMSE(F) [scaled, 1/A]"), sorted(summary["n_train"].unique()))
        fig.suptitle(f"{study.system} {study.kind}: data efficiency (mean ± sd over {study.seeds} seeds)")
    else:
        from matplotlib.ticker import NullFormatter

        fig, axs = plt.subplots(1, 2, figsize=(max(9, 2.0 * len(summary) + 3), 5.0))
        x = np.arange(len(summary))
        ticks = [_tick_label(r, other) for _, r in summary.iterrows()]
        for ax, m in zip(axs, ("RMSE(E) [scaled]", "RMSE(F) [scaled, 1/A]")):
            ax.errorbar(x, summary[m], yerr=summary[m + " sd"], fmt="o", capsize=3)
            ax.set_xticks(x, ticks, fontsize=7)
            ax.set_xlim(-0.5, len(summary) - 0.5)
            ax.set_yscale("log")
            ax.yaxis.set_minor_formatter(NullFormatter())
            ax.set_ylabel(f"test {m}")
        fig.suptitle(f"{study.system} {study.kind}: mean ± sd over {study.seeds} seeds (training time per model under each point)")
    fig.tight_layout()
    for out in (out_png, out_pdf):
        with atomic_path(out) as tmp:
            fig.savefig(tmp, dpi=150, format=Path(out).suffix[1:])
    plt.close(fig)


# ---------------------------------------------------------------- data efficiency across kinds
def data_efficiency(system: str, tables: Mapping[str, str], out_csv: str, out_md: str, out_png: str, out_pdf: str) -> pd.DataFrame:  # noqa: F821
    """Rule ``data_efficiency``: the data-efficiency studies of one system (``tables``: kind -> its study's
    ``table.csv``, a study whose only axis is ``n_train``) on one log-log figure, RMSE(E) and RMSE(F) against the
    training-set size, mean +- sd over each study's seeds, with each kind's fitted slope; the table lists the points
    and the slopes. The question the QNN literature asks (does a QNN learn from less data?), answered beside the
    classical models, the strongest (sGDML) included."""
    import matplotlib
    import pandas as pd

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..figures import save
    from ..kinds import KINDS

    metrics = ("RMSE(E) [scaled]", "RMSE(F) [scaled, 1/A]")
    rows, slopes = [], []
    for kind, path in tables.items():
        df = pd.read_csv(path)
        df = df[df["evaluation"] == "exact"] if "evaluation" in df else df
        if df.empty:
            raise ValueError(f"{path}: no exact-evaluation rows to plot")
        for n, g in df.groupby("n_train", sort=True):
            row = {"model": KINDS[kind].label if kind in KINDS else kind, "kind": kind, "n_train": int(n), "seeds": len(g)}
            for m in metrics:
                row[m], row[m + " sd"] = float(g[m].mean()), float(g[m].std(ddof=1)) if len(g) > 1 else float("nan")
            rows.append(row)
        s = [r for r in rows if r["kind"] == kind]
        slopes.append({"model": s[0]["model"], "kind": kind, "seeds": int(max(r["seeds"] for r in s)),
                       **{f"slope {m.split(' ')[0]}": loglog_slope([r["n_train"] for r in s], [r[m] for r in s]) for m in metrics}})
    table = pd.DataFrame(rows)
    with atomic_path(out_csv) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    fig, axs = plt.subplots(1, 2, figsize=(10.5, 4.4))
    for sl in slopes:
        kind = sl["kind"]
        g = table[table["kind"] == kind].sort_values("n_train")
        spec = KINDS.get(kind)
        for ax, m in zip(axs, metrics):
            slope = sl[f"slope {m.split(' ')[0]}"]
            ax.errorbar(g["n_train"], g[m], yerr=g[m + " sd"].fillna(0.0), marker=spec.marker if spec else "o",
                        color=spec.color if spec else None, capsize=3,
                        label=f"{sl['model']} (slope {slope:.2f}; {sl['seeds']} seed{'s' if sl['seeds'] > 1 else ''})")
    _data_axes(axs, metrics, sorted(table["n_train"].unique()))
    fig.suptitle(f"{system}: data efficiency of every model kind (mean ± sd over seeds; log-log)")
    fig.tight_layout()
    save(fig, out_png, out_pdf)  # atomic, and a PDF without a creation date: a rerun gives the same file
    md = [f"# {system}: data efficiency of every model kind", "",
          "Test errors against the training-set size (scaled units: energy / scale, RMSE(F) in 1/Angstrom), each kind from",
          "its data study (`" + "`, `".join(Path(p).parent.name for p in tables.values()) + "`), mean ± sd over that study's seeds",
          "(each seed a different seeded subset of the training points; sGDML is one deterministic fit per subset).", "",
          "| model | slope RMSE(E) | slope RMSE(F) | seeds |", "|---|---|---|---|"]
    md += [f"| {s['model']} | {s['slope RMSE(E)']:.2f} | {s['slope RMSE(F)']:.2f} | {s['seeds']} |" for s in slopes]
    md += ["", "Slope: least-squares slope of log(mean test RMSE) against log(training-set size) (-0.5: the 1/sqrt(n) of a",
           "well-specified parametric model; steeper: a model whose error falls faster with data).", "",
           "| model | n_train | RMSE(E) [scaled] | RMSE(F) [scaled, 1/A] | seeds |", "|---|---|---|---|---|"]
    for _, r in table.iterrows():
        pmv = lambda m: f"{r[m]:.3g}" + (f" ± {r[m + ' sd']:.2g}" if np.isfinite(r[m + " sd"]) else "")  # noqa: E731, B023
        md.append(f"| {r['model']} | {int(r['n_train'])} | {pmv(metrics[0])} | {pmv(metrics[1])} | {int(r['seeds'])} |")
    write_text_atomic(out_md, "\n".join(md) + "\n")
    return table

"""Errors of every model on the held-out test set, in the paper's scaled units and in meV, meV/Angstrom.

Scaled units are the training targets' units: energies and forces divided by the energy scaler's ``scale``
(half the training energy range), so RMSE(E) is dimensionless and RMSE(F) is in 1/Angstrom, as in the paper.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import dataset as ds
from .floor import AT_FLOOR_RATIO, FLOOR, at_floor
from .io import atomic_path, write_json_atomic, write_text_atomic
from .kinds import KINDS
from .units import MEV_PER_EV

if TYPE_CHECKING:
    import pandas as pd

MODEL_LABELS = {k.name: k.label for k in KINDS.values()}  # the registered kinds (qnnff.kinds)
OPTIMIZER_LABELS = {"adam": "Adam", "lbfgs": "L-BFGS", "adam+lbfgs": "Adam + L-BFGS", "cobyla": "COBYLA"}


def energy_scale(scalers_json: str | Path) -> float:
    """The energy scaler's ``scale`` (eV) of a ``scalers.json``: errors in scaled units are divided by it."""
    return float(json.loads(Path(scalers_json).read_text())["energy_scaler"]["scale"])


def prediction_errors(frames) -> dict[str, np.ndarray]:
    e_ref = np.array([a.info["REF_energy"] for a in frames])
    e = np.array([a.info["MODEL_energy"] for a in frames])
    f_ref = np.stack([a.arrays["REF_forces"] for a in frames])
    f = np.stack([a.arrays["MODEL_forces"] for a in frames])
    return {"dE": e - e_ref, "dF": (f - f_ref).reshape(len(frames), -1), "E_ref": e_ref, "E": e, "F_ref": f_ref, "F": f}


def rmse(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x))))


def mean_sd(values) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof = 1; 0 for a single value) of finite numbers."""
    v = np.asarray(list(values), dtype=float)
    if v.size == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def pm(mean: float, sd: float, digits: int = 3) -> str:
    """``mean +- sd`` with ``digits`` significant digits (``n/a`` for NaN)."""
    if not np.isfinite(mean):
        return "n/a"
    return f"{mean:.{digits}g} ± {sd:.{digits - 1 if digits > 1 else 1}g}"


SEED_METRICS = ("RMSE(E) [scaled]", "RMSE(F) [scaled, 1/A]", "RMSE(E) [meV]", "RMSE(F) [meV/A]", "MAE(E) [meV]")


def seed_row(predictions: str | Path, summary: str | Path, scale: float) -> dict:
    """Test-set errors of one trained seed, with its training record."""
    err = prediction_errors(ds.read_frames(predictions))
    s = json.loads(Path(summary).read_text())
    prov = s.get("provenance", {}).get("training", {})
    return {
        "kind": s["model"], "protocol": s["protocol"], "seed": int(s["seed_index"]),
        "RMSE(E) [scaled]": rmse(err["dE"]) / scale,
        "RMSE(F) [scaled, 1/A]": rmse(err["dF"]) / scale,
        "RMSE(E) [meV]": MEV_PER_EV * rmse(err["dE"]),
        "RMSE(F) [meV/A]": MEV_PER_EV * rmse(err["dF"]),
        "MAE(E) [meV]": MEV_PER_EV * float(np.mean(np.abs(err["dE"]))),
        "n_test": len(err["dE"]),
        "parameters": int(s["n_parameters"]),
        "optimizer": prov.get("optimizer", ""), "chi": float(prov.get("chi", float("nan"))),
        "iterations": int(s["iterations"]), "iterations configured": int(s.get("iterations_configured", s["iterations"])),
        "train time [s]": float(s["train_seconds"]),
    }


def select_seeds(system: str, kind: str, protocol: str, predictions: Sequence[str], summaries: Sequence[str], scale: float,
                 out_json: str | Path) -> dict:
    """Per-seed test errors of one (kind, protocol), their mean +- sd and the median seed (the seed whose RMSE(E) is
    the median; the lower middle one for an even count), which figures, MD and Aer use."""
    rows = [seed_row(p, s, scale) for p, s in zip(predictions, summaries)]
    for r in rows:
        if (r["kind"], r["protocol"]) != (kind, protocol):
            raise ValueError(f"{system} {kind}/{protocol}: a summary belongs to {r['kind']}/{r['protocol']}")
    order = sorted(range(len(rows)), key=lambda i: (rows[i]["RMSE(E) [scaled]"], rows[i]["seed"]))
    median = rows[order[(len(rows) - 1) // 2]]["seed"]
    stats = {m: dict(zip(("mean", "sd"), mean_sd(r[m] for r in rows))) for m in SEED_METRICS}
    out = {"system": system, "kind": kind, "protocol": protocol, "n_seeds": len(rows), "median_seed": int(median),
           "median_position": median_position(rows, median), "stats": stats, "seeds": rows}
    write_json_atomic(out_json, out)
    return out


def median_position(rows: Sequence[dict], seed: int) -> int:
    """Index in ``rows`` of the row of seed ``seed``."""
    return next(i for i, r in enumerate(rows) if r["seed"] == seed)


def aer_rows(aer_json: str | Path, scale: float) -> list[dict]:
    """Rows for the median-seed QNN of one protocol evaluated with circuits: on qiskit-aer (energies on ``n_points``
    test points, parameter-shift forces on the first ``n_force_points`` where measured) and, if configured, through IBM
    Qiskit Runtime."""
    d = json.loads(Path(aer_json).read_text())
    nan = float("nan")

    def row(model: str, evaluation: str, r: dict, n: int) -> dict:
        f = r.get("RMSE(F) vs DFT [meV/A]", nan)
        return {"model": model, "kind": "qnn", "protocol": d.get("protocol", ""), "seed": int(d.get("seed", -1)),
                "evaluation": evaluation,
                "RMSE(E) [scaled]": r["RMSE(E) vs DFT [meV]"] / MEV_PER_EV / scale, "RMSE(F) [scaled, 1/A]": f / MEV_PER_EV / scale,
                "RMSE(E) [meV]": r["RMSE(E) vs DFT [meV]"], "RMSE(F) [meV/A]": f, "MAE(E) [meV]": nan, "n_test": n}

    rows = []
    for label, r in d["runs"].items():
        noise = "" if r["noise"] == "none" else f", {r['noise']} noise"
        forces = f"; F on {r['n_force_points']} points" if "n_force_points" in r else ""
        rows.append(row(f"QNN on Aer ({d['shots']} shots{noise}{forces})", f"aer-{label}", r, d["n_points"]))
    hw = d.get("hardware")
    if hw:
        info = hw.get("info", {})
        rows.append(row(f"QNN on {hw['backend']} (Qiskit Runtime {info.get('mode', '')}, {info.get('shots', '?')} shots)",
                        "runtime", hw, hw["n_points"]))
    return rows


def error_table(system: str, selections: Sequence[str | Path], effdims: dict[str, str | Path], floors: dict[str, str | Path],
                aer_jsons: Sequence[str | Path], scale: float) -> pd.DataFrame:
    """One row per trained seed (and per Aer evaluation): the CSV behind the Markdown table. ``floors``: per kind, its
    inputs' information floor (``information_floor.json``; a kind without one gets NaN)."""
    import pandas as pd  # only the table rules need pandas: training and MD jobs start without it
    rows = []
    ed = {k: json.loads(Path(p).read_text()) for k, p in effdims.items()}
    fl = {k: json.loads(Path(p).read_text()) for k, p in floors.items()}
    nan = float("nan")
    for sel_path in selections:
        sel = json.loads(Path(sel_path).read_text())
        for r in sel["seeds"]:
            e = ed.get(r["kind"])
            rows.append({"model": MODEL_LABELS.get(r["kind"], r["kind"]), "evaluation": "exact", **r,
                         "median seed": r["seed"] == sel["median_seed"],
                         "d_n/d": e["d_n_over_d"] if e else float("nan"), "d_n/d sd": e["d_n_over_d_sd"] if e else float("nan"),
                         "d": int(e["n_params"]) if e else r["parameters"],
                         FLOOR: fl[r["kind"]]["floor [scaled]"] if r["kind"] in fl else nan,
                         "floor (inputs) [meV]": fl[r["kind"]]["floor [meV]"] if r["kind"] in fl else nan})
    for p in aer_jsons:
        rows += aer_rows(p, scale)
    df = pd.DataFrame(rows)
    df.insert(0, "system", system)
    return df


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """Mean +- sd over seeds of every (model, protocol, evaluation) of a per-seed error table."""
    import pandas as pd  # only the table rules need pandas: training and MD jobs start without it
    out = []
    keys = ["kind", "protocol", "evaluation"]
    for (kind, protocol, evaluation), g in df.groupby(keys, sort=False):
        row = {"model": g["model"].iloc[0], "kind": kind, "protocol": protocol, "evaluation": evaluation, "n_seeds": len(g)}
        for m in SEED_METRICS:
            row[m], row[m + " sd"] = mean_sd(g[m].dropna())
        for c in ("d_n/d", "d_n/d sd", "d", FLOOR, "n_test", "optimizer", "chi", "iterations", "iterations configured", "train time [s]"):
            if c in g:
                row[c] = g[c].iloc[0] if c not in ("iterations", "train time [s]") else g[c].mean()
        if "iterations" in g:
            row["iterations min"] = g["iterations"].min()
        out.append(row)
    return pd.DataFrame(out)


def floor_cell(rmse_e: float, floor: float) -> str:
    """The floor of a model's inputs, marked ``(at floor)`` when the model's RMSE(E) is within AT_FLOOR_RATIO of it."""
    if not np.isfinite(floor):
        return "n/a"
    return f"{floor:.3g}" + (" (at floor)" if at_floor(rmse_e, floor) else "")


def fmt(v) -> str:
    if isinstance(v, (int, np.integer)):
        return str(v)
    if isinstance(v, float):
        if np.isnan(v):
            return "n/a"
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def write_error_table(df: pd.DataFrame, out_csv: str | Path, out_md: str | Path, *, title: str, notes: Sequence[str] = ()) -> None:
    """CSV: one row per seed. Markdown: mean +- sd over seeds per model and protocol (Aer rows: the median seed)."""
    with atomic_path(out_csv) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
    sm = summarise(df)
    cols = ["model", "protocol", "seeds", "RMSE(E) [scaled]", "floor (inputs) [scaled]", "RMSE(F) [scaled, 1/A]", "d_n/d", "d",
            "RMSE(E) [meV]", "RMSE(F) [meV/A]", "iterations", "n_test"]
    lines = [f"# {title}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in sm.iterrows():
        exact = r["evaluation"] == "exact"
        spec = KINDS.get(str(r["kind"]))
        if spec is not None and spec.closed_form:  # one deterministic fit: no spread to state, no optimiser, no iterations
            cells = [r["model"], f"{r['protocol']} (closed-form fit)", f"{int(r['n_seeds'])} (deterministic)",
                     fmt(r["RMSE(E) [scaled]"]), floor_cell(r["RMSE(E) [scaled]"], r.get(FLOOR, float("nan"))),
                     fmt(r["RMSE(F) [scaled, 1/A]"]), spec.effdim_note or "n/a", f"{fmt(r['d'])} {spec.parameter_label}",
                     fmt(r["RMSE(E) [meV]"]), fmt(r["RMSE(F) [meV/A]"]), "n/a", fmt(int(r["n_test"]))]
            lines.append("| " + " | ".join(cells) + " |")
            continue
        prot = f"{r['protocol']} ({OPTIMIZER_LABELS.get(str(r['optimizer']), r['optimizer'])}, chi={r['chi']:g})" if exact \
            else f"{r['protocol']}, median seed"
        its = f"{int(r['iterations min'])}/{int(r['iterations configured'])}" if exact else "n/a"
        cells = [r["model"], prot, str(int(r["n_seeds"])),
                 pm(r["RMSE(E) [scaled]"], r["RMSE(E) [scaled] sd"]) if exact else fmt(r["RMSE(E) [scaled]"]),
                 floor_cell(r["RMSE(E) [scaled]"], r.get(FLOOR, float("nan"))) if exact else "n/a",
                 pm(r["RMSE(F) [scaled, 1/A]"], r["RMSE(F) [scaled, 1/A] sd"]) if exact else fmt(r["RMSE(F) [scaled, 1/A]"]),
                 pm(r["d_n/d"], r["d_n/d sd"], 2) if exact else "n/a", fmt(r["d"]) if exact else "n/a",
                 pm(r["RMSE(E) [meV]"], r["RMSE(E) [meV] sd"]) if exact else fmt(r["RMSE(E) [meV]"]),
                 pm(r["RMSE(F) [meV/A]"], r["RMSE(F) [meV/A] sd"]) if exact else fmt(r["RMSE(F) [meV/A]"]),
                 its, fmt(int(r["n_test"]))]
        lines.append("| " + " | ".join(cells) + " |")
    has_aer = bool((sm["evaluation"] != "exact").any())
    has_closed_form = any(KINDS[str(k)].closed_form for k in sm["kind"] if str(k) in KINDS)
    lines += ["", "Mean ± standard deviation over seeds (the CSV has one row per seed)"
              + ("; Aer rows evaluate the median seed." if has_aer else "."),
              "Units: scaled = divided by the energy scaler's scale (half the training energy range), as the models are trained;",
              "RMSE(F) [scaled] is in 1/Angstrom; meV and meV/Angstrom are physical units. d = trainable parameters",
              "(for the QNN the circuit's; its readout E = a<Z> + b adds 2); d_n/d = normalised effective dimension at",
              "n = the training-set size, mean ± sd over Monte-Carlo draws. iterations = fewest done over seeds / configured.",
              "floor (inputs) = the information floor of the inputs the model sees: test RMSE(E) [scaled] of a Gaussian process",
              f"fitted to them (energies only); 'at floor': the model's mean RMSE(E) lies within {AT_FLOOR_RATIO:g}x of it, so only",
              "other inputs, not more capacity, data or training, can lower it.",
              *(["A closed-form model (sGDML) is one deterministic fit for given data and settings: n = 1, no spread; its d counts",
                 "kernel coefficients, and the effective dimension does not apply to a kernel model."] if has_closed_form else []),
              *notes, ""]
    write_text_atomic(out_md, "\n".join(lines))

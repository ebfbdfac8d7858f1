"""Errors of every model on the held-out test set, in the paper's scaled units and in meV, meV/Angstrom.

Scaled units are the training targets' units: energies and forces divided by the energy scaler's ``scale``
(half the training energy range), so RMSE(E) is dimensionless and RMSE(F) is in 1/Angstrom, as in the paper.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from . import dataset as ds
from .io import atomic_path, write_json_atomic, write_text_atomic

MODEL_LABELS = {"qnn": "QNN", "nn": "NN", "bpnn": "BPNN (n2p2-style)"}


def prediction_errors(frames) -> dict[str, np.ndarray]:
    e_ref = np.array([a.info["REF_energy"] for a in frames])
    e = np.array([a.info["MODEL_energy"] for a in frames])
    f_ref = np.stack([a.arrays["REF_forces"] for a in frames])
    f = np.stack([a.arrays["MODEL_forces"] for a in frames])
    return {"dE": e - e_ref, "dF": (f - f_ref).reshape(len(frames), -1), "E_ref": e_ref, "E": e, "F_ref": f_ref, "F": f}


def rmse(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x))))


def error_row(kind: str, predictions: str | Path, summary: str | Path, effdim: str | Path | None, scale: float) -> dict:
    err = prediction_errors(ds.read_frames(predictions))
    s = json.loads(Path(summary).read_text())
    row = {
        "model": MODEL_LABELS.get(kind, kind),
        "kind": kind,
        "RMSE(E) [scaled]": rmse(err["dE"]) / scale,
        "RMSE(F) [scaled, 1/A]": rmse(err["dF"]) / scale,
        "RMSE(E) [meV]": 1000.0 * rmse(err["dE"]),
        "RMSE(F) [meV/A]": 1000.0 * rmse(err["dF"]),
        "MAE(E) [meV]": 1000.0 * float(np.mean(np.abs(err["dE"]))),
        "d_n/d": float("nan"),
        "d": int(s["n_parameters"]),
        "n_test": len(err["dE"]),
        "train time [s]": float(s["train_seconds"]),
    }
    if effdim is not None and Path(effdim).is_file():
        ed = json.loads(Path(effdim).read_text())
        row["d_n/d"] = float(ed["d_n_over_d"])
        row["d"] = int(ed["n_params"])  # the d of d_n/d: for the QNN the circuit's parameters (readout a, b excluded)
    return row


def aer_rows(aer_json: str | Path, scale: float) -> list[dict]:
    """Rows for the QNN evaluated with circuits: on qiskit-aer (energies on ``n_points`` test points, parameter-shift
    forces on the first ``n_force_points`` where measured) and, if configured, through IBM Qiskit Runtime."""
    d = json.loads(Path(aer_json).read_text())
    nan = float("nan")

    def row(model: str, kind: str, r: dict, n: int) -> dict:
        f = r.get("RMSE(F) vs DFT [meV/A]", nan)
        return {"model": model, "kind": kind,
                "RMSE(E) [scaled]": r["RMSE(E) vs DFT [meV]"] / 1000.0 / scale, "RMSE(F) [scaled, 1/A]": f / 1000.0 / scale,
                "RMSE(E) [meV]": r["RMSE(E) vs DFT [meV]"], "RMSE(F) [meV/A]": f, "MAE(E) [meV]": nan,
                "d_n/d": nan, "d": nan, "n_test": n, "train time [s]": nan}

    rows = []
    for label, r in d["runs"].items():
        noise = "" if r["noise"] == "none" else f", {r['noise']} noise"
        forces = f"; F on {r['n_force_points']} points" if "n_force_points" in r else ""
        rows.append(row(f"QNN on Aer ({d['shots']} shots{noise}{forces})", f"qnn-aer-{label}", r, d["n_points"]))
    hw = d.get("hardware")
    if hw:
        info = hw.get("info", {})
        rows.append(row(f"QNN on {hw['backend']} (Qiskit Runtime {info.get('mode', '')}, {info.get('shots', '?')} shots)",
                        "qnn-runtime", hw, hw["n_points"]))
    return rows


def error_table(system: str, kinds: Sequence[str], predictions: Sequence[str], summaries: Sequence[str],
                effdims: Sequence[str | None], scale: float, aer_json: str | Path | None = None) -> pd.DataFrame:
    rows = [error_row(k, p, s, e, scale) for k, p, s, e in zip(kinds, predictions, summaries, effdims)]
    if aer_json:
        rows += aer_rows(aer_json, scale)
    df = pd.DataFrame(rows)
    df.insert(0, "system", system)
    return df


def fmt(v) -> str:
    if isinstance(v, (int, np.integer)):
        return str(v)
    if isinstance(v, float):
        if np.isnan(v):
            return "n/a"
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def write_error_table(df: pd.DataFrame, out_csv: str | Path, out_md: str | Path, *, title: str, notes: Sequence[str] = ()) -> None:
    with atomic_path(out_csv) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
    cols = ["model", "RMSE(E) [scaled]", "RMSE(F) [scaled, 1/A]", "d_n/d", "d", "RMSE(E) [meV]", "RMSE(F) [meV/A]", "n_test"]
    lines = [f"# {title}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(fmt(r[c]) for c in cols) + " |")
    lines += ["", "Units: scaled = divided by the energy scaler's scale (half the training energy range), as the models are trained;",
              "RMSE(F) [scaled] is in 1/Angstrom; meV and meV/Angstrom are physical units. d = trainable parameters",
              "(for the QNN the circuit's; its readout E = a<Z> + b adds 2);",
              "d_n/d = normalised effective dimension at n = the training-set size.", *notes, ""]
    write_text_atomic(out_md, "\n".join(lines))


def write_metrics(out_json: str | Path, tables: dict[str, pd.DataFrame], provenance: dict) -> None:
    write_json_atomic(out_json, {"units": {"RMSE(E) [meV]": "meV", "RMSE(F) [meV/A]": "meV/Angstrom",
                                           "scaled": "divided by the energy scaler's scale"},
                                 "systems": {s: df.to_dict(orient="records") for s, df in tables.items()},
                                 "provenance": provenance})

"""Stage 1, reference data (``workflow/rules/data.smk``): rules ``sample_points``, ``dft_chunk`` and ``assemble_dataset``.

The sampling design of a system is planned once (every train/test point, its chunk and its place on the chunk's path),
each chunk's points are computed with PySCF along their path (energies, analytic forces, the SCF fallback chain), and
the converged points are concatenated per split with a DFT report that fails the run above ``max_failed_fraction``.

Only ``dft_chunk`` loads torch (it evaluates the internal coordinates of each frame, :mod:`qnnff.features`, imported
in the function) and PySCF (loaded by :mod:`qnnff.dft` at the first calculation); ``sample_points`` and
``assemble_dataset`` need neither.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pandas as pd

from .. import dataset as ds
from ..dft import pyscf_version, run_path, set_threads
from ..integrity import IntegrityError, rebuild_hint
from ..io import atomic_path, write_json_atomic, write_text_atomic
from ..jobs import DataJob
from ..sampling import plan_points
from ..units import HA_PER_BOHR_TO_EV_PER_ANG, HARTREE_TO_EV

log = logging.getLogger("qnnff")


def sample_points(job: DataJob, out_csv: str | Path) -> pd.DataFrame:
    """Rule ``sample_points``: the sampling design of the job's system as a CSV (one row per point)."""
    spec, system = job.spec, job.system
    df = plan_points(spec, job.seed)
    with atomic_path(out_csv) as tmp:
        df.to_csv(tmp, index=False, float_format="%.12g")
    log.info("%s: %d train + %d test points in %d chunks", system, spec.n_points("train"), spec.n_points("test"), df["chunk"].nunique())
    return df


def dft_chunk(job: DataJob, points_csv: str | Path, chunk: str, out_xyz: str | Path, out_json: str | Path, threads: int = 1) -> dict:
    """Rule ``dft_chunk``: energies and forces of one chunk's points along their path. Converged points -> extxyz,
    all -> json."""
    from ..features import coordinate_values  # torch: this rule only (see the module docstring)

    set_threads(int(threads))
    spec, system = job.spec, job.system
    df = pd.read_csv(points_csv)
    rows = df[df["chunk"] == chunk]
    if rows.empty:
        raise ValueError(f"{points_csv}: no points in chunk {chunk!r}")
    geoms = [spec.geometry({v: float(r[v]) for v in spec.variable_names}) for _, r in rows.iterrows()]
    chash = job.data_hash
    t0 = time.perf_counter()

    def progress(k, res):
        log.info("%s %s point %d/%d: %s E=%.10f Ha (%.2f s) [%s]", system, chunk, k + 1, len(geoms),
                 "ok" if res.converged else "FAILED", res.energy, res.seconds, "; ".join(res.attempts))

    results = run_path(spec.symbols, geoms, charge=spec.charge, spin=spec.spin, level=spec.level, progress=progress)
    frames, status = [], []
    for (_, r), pos, res in zip(rows.iterrows(), geoms, results):
        status.append({"point": r["point"], "converged": res.converged, "attempts": res.attempts, "seconds": round(res.seconds, 4)})
        if not res.converged:
            continue
        info = {
            "point": r["point"],
            "split": r["split"],
            "system": system,
            "level_of_theory": spec.level.describe(),
            "method": spec.level.method,
            "xc": spec.level.xc if spec.level.method == "dft" else "none",
            "basis": spec.level.basis,
            "grid_level": spec.level.grid_level if spec.level.method == "dft" else -1,
            "pyscf_version": pyscf_version(),
            "config_hash": chash,
            "energy_hartree": res.energy,
        }
        info.update({f"zmat_{v}": float(r[v]) for v in spec.variable_names})
        info.update({f"ic_{lab}": val for lab, val in coordinate_values(spec.families, pos).items()})
        frames.append(ds.make_frame(spec.symbols, pos, res.energy * HARTREE_TO_EV, -res.gradient * HA_PER_BOHR_TO_EV_PER_ANG, info))
    summary = {
        "system": system,
        "chunk": chunk,
        "n_points": len(results),
        "n_converged": sum(r.converged for r in results),
        "seconds": round(time.perf_counter() - t0, 3),
        "points": status,
    }
    # the json is written last, and only after the extxyz: its presence marks a finished chunk
    ds.write_frames(out_xyz, frames)
    write_json_atomic(out_json, summary)
    return summary


def assemble_dataset(job: DataJob, chunk_xyz: list[str], chunk_json: list[str], out_train: str | Path, out_test: str | Path,
                     report_md: str | Path, report_json: str | Path) -> dict:
    """Rule ``assemble_dataset``: concatenate chunks per split, write the per-system DFT report; fail above
    max_failed_fraction."""
    spec, system = job.spec, job.system
    statuses = [json.loads(Path(p).read_text()) for p in chunk_json]
    failures = [dict(p, chunk=s["chunk"]) for s in statuses for p in s["points"] if not p["converged"]]
    rescued = [dict(p, chunk=s["chunk"]) for s in statuses for p in s["points"] if p["converged"] and len(p["attempts"]) > 1]
    n_total = sum(s["n_points"] for s in statuses)
    frac = len(failures) / max(n_total, 1)
    by_split: dict[str, list] = {"train": [], "test": []}
    converged = {s["chunk"]: int(s["n_converged"]) for s in statuses}
    for p in sorted(chunk_xyz):
        frames = ds.read_frames(p, allow_empty=True)  # verified against its own record (a chunk may have no frame)
        chunk = Path(p).name.split(".")[0]
        if chunk in converged and len(frames) != converged[chunk]:  # and against the chunk's status file
            raise IntegrityError(f"{p}: {len(frames)} frames, but its status file records {converged[chunk]} converged "
                                 f"points; {rebuild_hint(p)}")
        for a in frames:
            by_split[a.info["split"]].append(a)
    for split in by_split:
        by_split[split].sort(key=lambda a: a.info["point"])
    seconds = sum(s["seconds"] for s in statuses)
    report = {
        "system": system,
        "level_of_theory": spec.level.describe(),
        "n_points": n_total,
        "n_train": len(by_split["train"]),
        "n_test": len(by_split["test"]),
        "n_failed": len(failures),
        "failed_fraction": frac,
        "max_failed_fraction": spec.dft["max_failed_fraction"],
        "n_rescued_by_fallback": len(rescued),
        "dft_cpu_seconds": round(seconds, 2),
        "failures": failures,
        "rescued": rescued,
    }
    lines = [
        f"# DFT report: {system}",
        "",
        f"Level of theory: {spec.level.describe()}",
        "",
        "| quantity | value |",
        "|---|---|",
        f"| points | {n_total} |",
        f"| training frames | {report['n_train']} |",
        f"| test frames | {report['n_test']} |",
        f"| converged only with a fallback | {len(rescued)} |",
        f"| failed (dropped, listed below) | {len(failures)} ({100 * frac:.2f} %, limit {100 * spec.dft['max_failed_fraction']:.2f} %) |",
        f"| summed SCF+gradient time (s) | {seconds:.1f} |",
        "",
    ]
    if failures:
        lines += ["## Failed points", "", "| point | chunk | attempts |", "|---|---|---|"]
        lines += [f"| {f['point']} | {f['chunk']} | {'; '.join(f['attempts'])} |" for f in failures]
        lines.append("")
    if rescued:
        lines += ["## Points rescued by a fallback", "", "| point | attempts |", "|---|---|"]
        lines += [f"| {f['point']} | {'; '.join(f['attempts'])} |" for f in rescued]
        lines.append("")
    write_text_atomic(report_md, "\n".join(lines))
    write_json_atomic(report_json, report)
    if frac > spec.dft["max_failed_fraction"]:
        raise RuntimeError(
            f"{system}: {len(failures)} of {n_total} DFT points failed ({100 * frac:.2f} % > "
            f"dft.max_failed_fraction = {100 * spec.dft['max_failed_fraction']:.2f} %); see {report_md}"
        )
    if not by_split["train"] or not by_split["test"]:
        raise RuntimeError(f"{system}: no converged {'training' if not by_split['train'] else 'test'} points")
    ds.write_frames(out_train, by_split["train"])
    ds.write_frames(out_test, by_split["test"])
    return report

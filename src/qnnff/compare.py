"""Compare a fresh run's tables with the committed ones: is the committed result reproducible?

For every (system, model, protocol) of the per-seed error tables (``tables/{system}_errors.csv``) and every metric
(RMSE(E), RMSE(F) in scaled units), the fresh run's mean over seeds must lie within ``2 sd`` of the committed mean
(sd over the committed seeds) plus an absolute floor; the same for d_n/d (sd over Monte-Carlo draws). MD runs must
complete (or fail) as they did. Aer rows (one shots run of the median seed) are listed as not compared.

    qnnff-compare results/ runs/fresh/results/       # exit status 1 if any check fails

or ``python -m qnnff.compare COMMITTED FRESH``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .evaluation import mean_sd

FLOORS = {"RMSE(E) [scaled]": 2e-4, "RMSE(F) [scaled, 1/A]": 2e-3, "d_n/d": 0.01}
N_SD = 2.0


@dataclass(frozen=True)
class Check:
    what: str
    committed: float
    committed_sd: float
    fresh: float
    allowed: float
    ok: bool | None  # None: not compared

    def line(self) -> str:
        if self.ok is None:
            return f"SKIP {self.what}"
        status = "ok  " if self.ok else "FAIL"
        if np.isnan(self.committed):  # a categorical check (MD completed, a file present): its text says it all
            return f"{status} {self.what}"
        return (f"{status} {self.what}: committed {self.committed:.4g} ± {self.committed_sd:.2g}, fresh {self.fresh:.4g}, "
                f"|diff| {abs(self.fresh - self.committed):.3g} <= {self.allowed:.3g}" + ("" if self.ok else " violated"))


def _within(what: str, committed: Sequence[float], fresh: Sequence[float], floor: float, n_sd: float) -> Check:
    cm, csd = mean_sd(committed)
    fm, _ = mean_sd(fresh)
    allowed = n_sd * csd + floor
    ok = bool(np.isfinite(fm) and abs(fm - cm) <= allowed)
    return Check(what, cm, csd, fm, allowed, ok)


class CompareError(ValueError):
    """A results directory or table that cannot be compared (missing, empty, a column missing); names the file."""


TABLE_COLUMNS = ("system", "kind", "protocol", "evaluation", "seed", "RMSE(E) [scaled]", "RMSE(F) [scaled, 1/A]", "d_n/d",
                 "d_n/d sd")


def _read_table(path: Path) -> pd.DataFrame:
    try:
        df = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise CompareError(f"{path}: empty file (no header, no rows)") from None
    missing = [col for col in TABLE_COLUMNS if col not in df.columns]
    if missing:
        raise CompareError(f"{path}: column(s) {missing} missing (an errors table of qnnff has {list(TABLE_COLUMNS)})")
    if df.empty:
        raise CompareError(f"{path}: a header and no rows")
    return df


def _n_sd(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not np.isfinite(v) or v < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a finite number >= 0 of standard deviations")
    return v


def compare_tables(committed: str | Path, fresh: str | Path, *, floors: dict[str, float] | None = None,
                   n_sd: float = N_SD) -> list[Check]:
    """All checks between two results directories (each holding ``tables/``)."""
    if not (np.isfinite(n_sd) and n_sd >= 0):
        raise ValueError(f"n_sd must be a finite number >= 0, got {n_sd!r}")
    floors = {**FLOORS, **(floors or {})}
    committed, fresh = Path(committed), Path(fresh)
    checks: list[Check] = []
    for d in (committed, fresh):
        if not (d / "tables").is_dir():
            raise CompareError(f"{d}: no tables/ directory here (give the results directory of a run, e.g. results/)")
    csvs = sorted((committed / "tables").glob("*_errors.csv"))
    if not csvs:
        raise CompareError(f"{committed / 'tables'}: no *_errors.csv to compare")
    for cpath in csvs:
        fpath = fresh / "tables" / cpath.name
        if not fpath.is_file():
            checks.append(Check(f"{cpath.name}: missing in {fresh / 'tables'}", np.nan, np.nan, np.nan, np.nan, False))
            continue
        c, f = _read_table(cpath), _read_table(fpath)
        system = str(c["system"].iloc[0])
        for (kind, protocol, evaluation), g in c.groupby(["kind", "protocol", "evaluation"], sort=False):
            h = f[(f["kind"] == kind) & (f["protocol"] == protocol) & (f["evaluation"] == evaluation)]
            name = f"{system} {kind}/{protocol}"
            if evaluation != "exact":
                checks.append(Check(f"{name} {evaluation} (one shots run of the median seed: not compared)",
                                    np.nan, np.nan, np.nan, np.nan, None))
                continue
            if h.empty:
                checks.append(Check(f"{name}: missing in the fresh run", np.nan, np.nan, np.nan, np.nan, False))
                continue
            nc, nf = int(g["seed"].nunique()), int(h["seed"].nunique())
            checks.append(Check(f"{name} seeds: committed {nc}, fresh {nf}" + (
                "" if nc == nf else " (a different number of seeds: the means are not comparable at 2 sd; rerun with the "
                "committed seed count)"), np.nan, np.nan, np.nan, np.nan, nc == nf))
            for col in ("RMSE(E) [scaled]", "RMSE(F) [scaled, 1/A]"):
                checks.append(_within(f"{name} {col}", g[col], h[col], floors[col], n_sd))
            cd, csd, fd = g["d_n/d"].iloc[0], g["d_n/d sd"].iloc[0], h["d_n/d"].iloc[0]
            if np.isfinite(cd):
                allowed = n_sd * csd + floors["d_n/d"]
                checks.append(Check(f"{name} d_n/d", cd, csd, fd, allowed, bool(abs(fd - cd) <= allowed)))
    cmd, fmd = committed / "tables" / "md.csv", fresh / "tables" / "md.csv"
    if cmd.is_file():
        c = pd.read_csv(cmd, keep_default_na=False)
        f = pd.read_csv(fmd, keep_default_na=False) if fmd.is_file() else pd.DataFrame(columns=c.columns)
        for _, r in c.iterrows():
            h = f[(f["system"] == r["system"]) & (f["model"] == r["model"]) & (f["protocol"] == r["protocol"])]
            what = f"{r['system']} MD {r['model']}/{r['protocol'] or '-'} completed"
            same = (not h.empty) and ((h["completed"].iloc[0] == "yes") == (r["completed"] == "yes"))
            checks.append(Check(f"{what}: committed {r['completed']!r}, fresh {h['completed'].iloc[0] if not h.empty else 'missing'!r}",
                                np.nan, np.nan, np.nan, np.nan, same))
    return checks


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="qnnff-compare", description=__doc__.split("\n\n")[0])
    ap.add_argument("committed", help="results directory of the committed run (holds tables/)")
    ap.add_argument("fresh", help="results directory of the fresh run")
    ap.add_argument("--n-sd", type=_n_sd, default=N_SD, help="allowed deviation in committed standard deviations (default 2)")
    args = ap.parse_args(argv)
    try:
        checks = compare_tables(args.committed, args.fresh, n_sd=args.n_sd)
    except CompareError as exc:
        print(f"qnnff-compare: error: {exc}", file=sys.stderr)
        return 2
    for c in checks:
        print(c.line())
    failed = [c for c in checks if c.ok is False]
    compared = [c for c in checks if c.ok is not None]
    print(f"{len(compared) - len(failed)} of {len(compared)} checks passed ({len(checks) - len(compared)} not compared)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

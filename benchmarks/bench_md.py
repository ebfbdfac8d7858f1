"""Benchmark QNN-driven molecular dynamics through ASE (LiH, and H3O+): the frozen evaluator against the torch path.

The paper's LiH experiment (``qnnff.md.run_stretched_bond``: Li-H released at rest from r = 2.2 Angstrom, ASE
velocity Verlet, dt = 0.5 fs, 20,000 steps, a frame recorded every 5 steps as in config/config.yaml) with
:class:`qnnff.calculators.ModelCalculator` on

* a QNN with the paper's LiH circuit (N = 2, D = 10, full / full feature maps, l = 2; 50 circuit weights) and random
  weights (the model's seeded initialisation; the first seed whose well keeps the bond inside the domain from
  r = 2.2 A is taken, checked on a grid of r before the run), featurizer bounds r in [1, 4] A as in the config;
* the committed median-seed model of the best protocol, ``results/LiH/models/qnn/best/seed<k>/model.zip`` (k from ``seeds.json``), if it exists;

each through the frozen evaluator (``backend = "frozen"``, the calculator's default for QNN models) and through the
torch engine (``ModelCalculator(model, frozen=False)``). Reported: velocity-Verlet steps per second as
``run_nve`` measures them (force evaluations included, frame recording excluded), microseconds per step, whether
the run completed inside the domain, and the largest difference in r(t) and in the total energy between the two
paths over the recorded frames (they integrate the same forces, so these stay at round-off).

Then H3O+ (the paper's 6-qubit circuit): the committed median-seed model ``results/H3O+/models/qnn/best/seed<k>/model.zip`` if it exists,
otherwise the seeded random initialisation with bounds from the config's sampling box, in an NVE run from the config's
start geometry at 300 K (dt = 0.25 fs), frozen path and torch path.

Targets (issue 12): >= 13,000 steps per second for LiH and >= 3,000 for H3O+ on the frozen path. One thread everywhere (torch, OpenMP,
OpenBLAS): two are slower for these sizes on this 2-core machine.

Run: ``python benchmarks/bench_md.py`` (about 3 minutes, most of it the torch path; ``--torch-steps 2000`` shortens
that, steps per second being a rate).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from qnnff.calculators import ModelCalculator  # noqa: E402
from qnnff.features import CoordinateFamily, EnergyScaler, Featurizer  # noqa: E402
from qnnff.md import run_stretched_bond  # noqa: E402
from qnnff.models import load_model  # noqa: E402
from qnnff.models.qnn import QNNForceField  # noqa: E402
from qnnff.qnn.frozen import FrozenQNN  # noqa: E402

LIH_CIRCUIT = dict(n_qubits=2, depth=10, feature_map="full", feature_map_reps=2, trainable_feature_map="full",
                   trainable_feature_map_reps=2)


def median_seed_model(system: str, protocol: str = "best") -> Path:
    """The committed median-seed QNN of ``system`` under ``protocol`` (the model the pipeline's MD drives):
    ``results/<system>/models/qnn/<protocol>/seed<k>/model.zip`` with k from that directory's ``seeds.json``."""
    d = REPO / "results" / system / "models" / "qnn" / protocol
    try:
        return d / f"seed{json.loads((d / 'seeds.json').read_text())['median_seed']}" / "model.zip"
    except (OSError, KeyError, ValueError):
        return d / "seeds.json"  # does not exist or is unreadable: reported as "no trained model"


TRAINED = median_seed_model("LiH")
TRAINED_H3O = median_seed_model("H3O+")
H3O_CIRCUIT = dict(n_qubits=6, depth=10, feature_map="linear", feature_map_reps=3, trainable_feature_map="linear",
                   trainable_feature_map_reps=3)
H3O_START = {"r1": 0.98, "r2": 0.98, "r3": 0.98, "a1": 112.0, "a2": 112.0, "d": 127.0}
TARGETS = {"LiH": 13000.0, "H3O+": 3000.0}
SYMBOLS = ["Li", "H"]


def random_lih_model(r_start: float, max_seed: int = 100) -> tuple[QNNForceField, int]:
    """The paper's LiH QNN with its seeded random initialisation, for the first seed that confines the bond.

    Confined: on a fine grid of r over the domain, the region {E(r) <= E(r_start)} around r_start (where a molecule
    released at rest can go) does not reach the ends of the domain.
    """
    fz = Featurizer(families=[CoordinateFamily("r_LiH", "bond", ((0, 1),))], feature_map="pi_arcsin_arccos", lo=[1.0], hi=[4.0],
                    margin=0.05, symbols=SYMBOLS)
    half = 1.5 / 0.95  # the domain: scaled |s| <= 1 <=> r in 2.5 -+ 1.5 / 0.95
    r = np.linspace(2.5 - half + 1e-9, 2.5 + half - 1e-9, 4001)
    pos = np.zeros((len(r), 2, 3))
    pos[:, 1, 2] = r
    for seed in range(max_seed):
        model = QNNForceField(featurizer=fz, energy_scaler=EnergyScaler(center=-218.47, scale=1.39), circuit=LIH_CIRCUIT, seed=seed)
        e = FrozenQNN(model).energy(pos)
        e0 = FrozenQNN(model).energy(np.array([[0.0, 0.0, 0.0], [0.0, 0.0, r_start]]))
        i0 = int(np.searchsorted(r, r_start))
        above = e > e0 + 1e-6
        left, right = np.flatnonzero(above[:i0]), np.flatnonzero(above[i0:])
        if len(left) and len(right):
            return model, seed
    raise RuntimeError(f"no seed below {max_seed} gives a well around r = {r_start} A")


def h3o_model():
    """The trained H3O+ QNN if the pipeline produced it, else the seeded initialisation on the config's box."""
    if TRAINED_H3O.exists():
        return f"trained ({TRAINED_H3O.parent.parent.name}/{TRAINED_H3O.parent.name})", load_model(TRAINED_H3O)
    fams = [CoordinateFamily("r_OH", "bond", ((0, 1), (0, 2), (0, 3))),
            CoordinateFamily("a_HOH", "angle", ((1, 0, 2), (1, 0, 3), (2, 0, 3)))]
    fz = Featurizer(families=fams, feature_map="arcsin", lo=[0.85, -0.01, -0.001, 95.0, -20.0, -50.0],
                    hi=[1.15, 0.01, 0.001, 130.0, 20.0, 50.0], symbols=["O", "H", "H", "H"])
    return "random weights (seed 0)", QNNForceField(featurizer=fz, energy_scaler=EnergyScaler(center=-2087.0, scale=0.05),
                                                     circuit=H3O_CIRCUIT, seed=0)


def h3o_atoms():
    from ase import Atoms

    from qnnff.geometry import ZRow, zmatrix_to_cartesian

    rows = [ZRow.parse(r, i) for i, r in enumerate([["O"], ["H", 0, "r1"], ["H", 0, "r2", 1, "a1"], ["H", 0, "r3", 1, "a2", 2, "d"]])]
    return Atoms("OH3", positions=zmatrix_to_cartesian(rows, H3O_START))


def run_h3o(model, *, frozen: bool, steps: int):
    from qnnff.md import run_nve

    calc = ModelCalculator(model, frozen=frozen)
    t0 = time.perf_counter()
    res = run_nve(calculator=calc, atoms=h3o_atoms(), timestep_fs=0.25, n_steps=steps, temperature_K=300.0, seed=0,
                  log_every=10)
    return calc.backend, res, time.perf_counter() - t0


def run(model, *, frozen: bool, steps: int, r_start: float, dt: float, log_every: int):
    calc = ModelCalculator(model, frozen=frozen)
    t0 = time.perf_counter()
    res = run_stretched_bond(calculator=calc, symbols=SYMBOLS, r_start_A=r_start, timestep_fs=dt, n_steps=steps, log_every=log_every)
    return calc.backend, res, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=20000, help="velocity-Verlet steps of the frozen runs (default 20000)")
    ap.add_argument("--torch-steps", type=int, default=None, help="steps of the torch-path runs (default: --steps)")
    ap.add_argument("--dt", type=float, default=0.5, help="time step in fs (default 0.5)")
    ap.add_argument("--r-start", type=float, default=2.2, help="initial Li-H distance in Angstrom (default 2.2)")
    ap.add_argument("--log-every", type=int, default=5, help="record a frame every this many steps (default 5, as the config)")
    ap.add_argument("--h3o-steps", type=int, default=4000, help="velocity-Verlet steps of the H3O+ runs (default 4000)")
    ap.add_argument("--model", type=Path, default=TRAINED, help="trained model artifact to include if it exists")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch_steps = args.steps if args.torch_steps is None else args.torch_steps

    models = []
    model, seed = random_lih_model(args.r_start)
    models.append((f"random weights (seed {seed})", model))
    if args.model.exists():
        print(f"trained model: {args.model}")
        models.append((f"trained ({args.model.parent.parent.name}/{args.model.parent.name})", load_model(args.model)))
    else:
        print(f"(no trained model at {args.model}: only the random-weight model is benchmarked)")

    print(f"LiH stretched-bond MD: r0 = {args.r_start} A, dt = {args.dt} fs, frame every {args.log_every} steps; "
          f"python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__} (1 thread), "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    rows = []
    for label, m in models:
        results = {}
        for frozen, steps in ((True, args.steps), (False, torch_steps)):
            backend, res, wall = run(m, frozen=frozen, steps=steps, r_start=args.r_start, dt=args.dt, log_every=args.log_every)
            results[backend] = res
            md = res.md
            rows.append([label, backend, md.n_steps, md.steps_per_second, 1e6 / md.steps_per_second,
                         "yes" if md.extra.get("completed") else f"no ({md.extra.get('stop_reason', '')[:40]})",
                         f"{res.r_A.min():.3f}..{res.r_A.max():.3f}", wall])
            print(f"  {label:26s} {backend:7s} {md.n_steps:6d} steps  {md.steps_per_second:9.0f} steps/s", flush=True)
        fz, tr = results.get("frozen"), results.get("fused")
        if fz is not None and tr is not None:
            n = min(len(fz.r_A), len(tr.r_A))
            dr = float(np.abs(fz.r_A[:n] - tr.r_A[:n]).max())
            de = float(np.abs(fz.md.total_energy[:n] - tr.md.total_energy[:n]).max())
            rows[-1].append(f"{dr:.1e} A / {de:.1e} eV over {(n - 1) * args.log_every} steps")

    label, m = h3o_model()
    label = f"H3O+ {label}"
    for frozen, steps in ((True, args.h3o_steps), (False, min(args.h3o_steps, torch_steps))):
        backend, md, wall = run_h3o(m, frozen=frozen, steps=steps)
        rows.append([label, backend, md.n_steps, md.steps_per_second, 1e6 / md.steps_per_second,
                     "yes" if md.extra.get("completed", True) else f"no ({md.extra.get('stop_reason', '')[:40]})", "", wall])
        print(f"  {label:26s} {backend:7s} {md.n_steps:6d} steps  {md.steps_per_second:9.0f} steps/s", flush=True)

    head = ["model", "path", "steps", "steps/s", "us/step", "completed", "r range (A)", "wall (s)", "frozen vs torch: max |dr| / |dE_tot|"]
    table = [[str(r[0]), r[1], str(r[2]), f"{r[3]:,.0f}", f"{r[4]:.1f}", r[5], r[6], f"{r[7]:.1f}", r[8] if len(r) > 8 else ""]
             for r in rows]
    widths = [max(len(h), *(len(t[i]) for t in table)) for i, h in enumerate(head)]
    print()
    print(" | ".join(h.ljust(w) for h, w in zip(head, widths)))
    print("-+-".join("-" * w for w in widths))
    for t in table:
        print(" | ".join(c.ljust(w) for c, w in zip(t, widths)))
    print()
    for system, target in TARGETS.items():
        speed = [r[3] for r in rows if r[1] == "frozen" and str(r[0]).startswith("H3O+") == (system == "H3O+")]
        print(f"target {system} >= {target:,.0f} steps/s (frozen path): {'PASS' if min(speed) >= target else 'FAIL'} "
              f"(lowest {min(speed):,.0f} steps/s)")
    print(f"load average at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores (other jobs slow this down)")


if __name__ == "__main__":
    main()

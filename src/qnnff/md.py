"""Microcanonical (NVE) molecular dynamics with ASE's velocity Verlet, for any ASE calculator.

:func:`run_nve`:

* initial state: the given positions (plus an optional ``displacement``), and either Maxwell-Boltzmann velocities at
  ``temperature_K`` drawn with ``numpy.random.default_rng(seed)`` (passed as ``rng=`` to ASE's
  ``thermalize_momenta``, which ASE 3.29 made the successor of the deprecated
  ``MaxwellBoltzmannDistribution``; same draw), or explicit ``velocities_A_per_fs``, or zero velocities. Drawn velocities then
  have their centre-of-mass momentum and angular momentum removed (ASE ``Stationary`` and ``ZeroRotation`` with
  ``preserve_temperature=False``: the removed rigid-body motion is not put back into the internal modes, so the
  internal kinetic energy keeps its Maxwell-Boltzmann expectation ``(3N - 6) k T / 2``);
* every ``log_every`` steps (and at step 0) the positions, potential/kinetic/total energies and temperature are
  recorded; with ``trajectory_path`` the same frames (positions, momenta, forces, energies, time) are written as
  extxyz, atomically (the file appears only when the run completes);
* reported: energy drift per atom per ps (slope of a least-squares line through the total energy vs time, divided
  by the number of atoms), the largest ``|E_tot(t) - E_tot(0)|``, and the integration speed (steps per second of
  wall time, force evaluations included, recording excluded as far as possible).

:func:`run_stretched_bond`: the paper's LiH experiment, a diatomic started from a stretched bond at rest, with the
interatomic distance ``r(t)``.

A calculator that raises (e.g. :class:`~qnnff.calculators.OutOfDomainError` when the trajectory leaves the model's
domain) stops the run with that error.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms, units
from ase.calculators.singlepoint import SinglePointCalculator
from ase.md.velocitydistribution import Stationary, ZeroRotation, thermalize_momenta
from ase.md.verlet import VelocityVerlet

from .calculators import ModelCalculator, OutOfDomainError, check_geometry
from .evaluation import rmse
from .units import FS_PER_PS

__all__ = ["BondOscillation", "MDResult", "ShotNoiseCalculator", "distance_deviation", "energy_conserved", "energy_drift",
           "energy_error_ratio", "run_nve", "run_stretched_bond"]


@dataclass
class MDResult:
    """Recorded frames (every ``log_every`` steps, step 0 included) and summary numbers. Energies eV, times fs."""

    steps: np.ndarray
    times_fs: np.ndarray
    positions: np.ndarray  # [F, n_atoms, 3] Angstrom
    potential_energy: np.ndarray
    kinetic_energy: np.ndarray
    total_energy: np.ndarray
    temperature_K: np.ndarray
    n_atoms: int
    timestep_fs: float
    n_steps: int
    log_every: int
    drift_eV_per_atom_per_ps: float
    max_abs_energy_deviation_eV: float
    steps_per_second: float
    wall_seconds: float
    trajectory_path: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-friendly numbers (no per-frame arrays)."""
        return {
            "n_atoms": self.n_atoms,
            "timestep_fs": self.timestep_fs,
            "n_steps": self.n_steps,
            "log_every": self.log_every,
            "duration_ps": self.n_steps * self.timestep_fs / FS_PER_PS,
            "drift_eV_per_atom_per_ps": self.drift_eV_per_atom_per_ps,
            "max_abs_energy_deviation_eV": self.max_abs_energy_deviation_eV,
            "mean_kinetic_energy_eV": float(np.mean(self.kinetic_energy)),
            "energy_error_ratio": energy_error_ratio(self.max_abs_energy_deviation_eV, float(np.mean(self.kinetic_energy))),
            "initial_total_energy_eV": float(self.total_energy[0]),
            "mean_temperature_K": float(np.mean(self.temperature_K)),
            "steps_per_second": self.steps_per_second,
            "wall_seconds": self.wall_seconds,
            "trajectory_path": self.trajectory_path,
            **self.extra,
        }


def energy_error_ratio(max_abs_deviation_eV: float, mean_kinetic_energy_eV: float) -> float:
    """max |E_tot(t) - E_tot(0)| over the mean kinetic energy of the run: how well an NVE run conserves energy, on the
    scale of the motion itself (velocity Verlet with a smooth, consistent force field: about 0.01 at the pipeline's
    time steps; shot-noise forces: 0.2-0.6). NaN for a run without motion."""
    if not (mean_kinetic_energy_eV > 0.0):
        return float("nan")
    return float(max_abs_deviation_eV) / float(mean_kinetic_energy_eV)


def energy_conserved(summary: dict[str, Any], threshold: float) -> bool:
    """Whether an MD summary's energy error ratio (:func:`energy_error_ratio`) is at most ``threshold``
    (``md.max_energy_error``); a run without the ratio (written before it existed) or without motion is not
    judged conserved."""
    r = summary.get("energy_error_ratio")
    return r is not None and np.isfinite(r) and float(r) <= float(threshold)


def energy_drift(times_fs: np.ndarray, total_energy: np.ndarray, n_atoms: int) -> tuple[float, float]:
    """(slope of the least-squares line E_tot(t) in eV/atom/ps, max |E_tot - E_tot(0)| in eV)."""
    t_ps = np.asarray(times_fs, dtype=float) / FS_PER_PS
    e = np.asarray(total_energy, dtype=float)
    max_dev = float(np.max(np.abs(e - e[0]))) if e.size else float("nan")
    if e.size < 2:
        return float("nan"), max_dev
    slope = float(np.polyfit(t_ps, e, 1)[0])
    return slope / n_atoms, max_dev


def _frame(atoms: Atoms, step: int, time_fs: float, epot: float, ekin: float) -> Atoms:
    snap = Atoms(symbols=atoms.get_chemical_symbols(), positions=atoms.get_positions(), momenta=atoms.get_momenta(),
                 cell=atoms.get_cell(), pbc=atoms.get_pbc())
    snap.calc = SinglePointCalculator(snap, energy=epot, forces=atoms.get_forces())
    snap.info.update({"step": int(step), "time_fs": float(time_fs), "kinetic_energy": float(ekin), "total_energy": float(epot + ekin)})
    return snap


def run_nve(
    *,
    calculator: Any,
    atoms: Atoms,
    timestep_fs: float,
    n_steps: int,
    temperature_K: float | None = None,
    velocities_A_per_fs: np.ndarray | None = None,
    displacement_A: np.ndarray | None = None,
    seed: int | None = None,
    trajectory_path: str | Path | None = None,
    log_every: int = 1,
) -> MDResult:
    """Velocity-Verlet NVE run (see the module docstring). ``atoms`` is copied, not modified."""
    if not timestep_fs > 0:
        raise ValueError(f"timestep_fs must be positive, got {timestep_fs}")
    if int(n_steps) < 0 or int(log_every) < 1:
        raise ValueError(f"need n_steps >= 0 and log_every >= 1, got {n_steps}, {log_every}")
    if temperature_K is not None and velocities_A_per_fs is not None:
        raise ValueError("give either temperature_K (Maxwell-Boltzmann velocities) or velocities_A_per_fs, not both")
    n_steps, log_every = int(n_steps), int(log_every)

    at = Atoms(symbols=atoms.get_chemical_symbols(), positions=atoms.get_positions(), cell=atoms.get_cell(), pbc=atoms.get_pbc())
    if displacement_A is not None:
        d = np.asarray(displacement_A, dtype=float)
        if d.shape != (len(at), 3):
            raise ValueError(f"displacement_A must have shape ({len(at)}, 3), got {d.shape}")
        at.positions = at.positions + d
    if temperature_K is not None:
        if seed is None:
            raise ValueError("temperature_K needs a seed (Maxwell-Boltzmann velocities are drawn from numpy.random.default_rng(seed))")
        if not temperature_K >= 0:
            raise ValueError(f"temperature_K must be >= 0, got {temperature_K}")
        thermalize_momenta(at, float(temperature_K), rng=np.random.default_rng(int(seed)))
        Stationary(at, preserve_temperature=False)
        if len(at) > 1:
            ZeroRotation(at, preserve_temperature=False)
    elif velocities_A_per_fs is not None:
        v = np.asarray(velocities_A_per_fs, dtype=float)
        if v.shape != (len(at), 3):
            raise ValueError(f"velocities_A_per_fs must have shape ({len(at)}, 3), got {v.shape}")
        at.set_velocities(v / units.fs)  # ASE velocities: Angstrom per ASE time unit; 1 fs = units.fs
    else:
        at.set_momenta(np.zeros((len(at), 3)))
    at.calc = calculator

    rec: dict[str, list] = {k: [] for k in ("steps", "pos", "epot", "ekin", "temp")}
    frames: list[Atoms] = []
    dyn = VelocityVerlet(at, timestep=float(timestep_fs) * units.fs)
    record_seconds = [0.0]

    def record() -> None:
        t0 = time.perf_counter()
        step = dyn.nsteps
        epot = float(at.get_potential_energy())
        ekin = float(at.get_kinetic_energy())
        rec["steps"].append(step)
        rec["pos"].append(at.get_positions())
        rec["epot"].append(epot)
        rec["ekin"].append(ekin)
        rec["temp"].append(float(at.get_temperature()))
        if trajectory_path is not None:
            frames.append(_frame(at, step, step * timestep_fs, epot, ekin))
        record_seconds[0] += time.perf_counter() - t0

    dyn.attach(record, interval=log_every)
    at.get_forces()  # step-0 forces outside the timed region
    t_start = time.perf_counter()
    stopped = None
    try:
        dyn.run(n_steps)
    except OutOfDomainError as exc:
        # a model that drives the molecule out of its training domain ends its run there, on record
        stopped = {"stopped_at_step": int(dyn.nsteps), "stopped_at_fs": float(dyn.nsteps * timestep_fs), "stop_reason": str(exc)}
    wall = time.perf_counter() - t_start
    integrate = max(wall - record_seconds[0], 1e-12)

    steps = np.asarray(rec["steps"], dtype=int)
    times = steps * float(timestep_fs)
    epot, ekin = np.asarray(rec["epot"]), np.asarray(rec["ekin"])
    etot = epot + ekin
    drift, max_dev = energy_drift(times, etot, len(at))
    traj = None
    if trajectory_path is not None:
        from .dataset import write_frames

        write_frames(trajectory_path, frames)  # atomic, with the integrity record its readers check
        traj = str(trajectory_path)
    return MDResult(
        steps=steps, times_fs=times, positions=np.asarray(rec["pos"]), potential_energy=epot, kinetic_energy=ekin,
        total_energy=etot, temperature_K=np.asarray(rec["temp"]), n_atoms=len(at), timestep_fs=float(timestep_fs),
        n_steps=n_steps if stopped is None else stopped["stopped_at_step"], log_every=log_every,
        drift_eV_per_atom_per_ps=drift, max_abs_energy_deviation_eV=max_dev,
        steps_per_second=(n_steps if stopped is None else stopped["stopped_at_step"]) / integrate if n_steps else float("nan"),
        wall_seconds=wall, trajectory_path=traj, extra={"completed": stopped is None, **(stopped or {})},
    )


@dataclass
class BondOscillation:
    """Interatomic distance r(t) (Angstrom) of a diatomic released from a stretched bond, and the full MD record."""

    times_fs: np.ndarray
    r_A: np.ndarray
    md: MDResult


def run_stretched_bond(
    *,
    calculator: Any,
    symbols: Sequence[str],
    r_start_A: float,
    timestep_fs: float,
    n_steps: int,
    log_every: int = 1,
    trajectory_path: str | Path | None = None,
) -> BondOscillation:
    """The paper's LiH figure: a diatomic along z at distance ``r_start_A``, zero velocities, NVE; returns r(t)."""
    if len(symbols) != 2:
        raise ValueError(f"run_stretched_bond needs a diatomic, got symbols {list(symbols)}")
    if not r_start_A > 0:
        raise ValueError(f"r_start_A must be positive, got {r_start_A}")
    atoms = Atoms(symbols=list(symbols), positions=[[0.0, 0.0, 0.0], [0.0, 0.0, float(r_start_A)]])
    md = run_nve(calculator=calculator, atoms=atoms, timestep_fs=timestep_fs, n_steps=n_steps, log_every=log_every,
                 trajectory_path=trajectory_path)
    r = np.linalg.norm(md.positions[:, 1] - md.positions[:, 0], axis=-1)
    return BondOscillation(times_fs=md.times_fs, r_A=r, md=md)


# ---------------------------------------------------------------- shot-noise MD (forces measured with finite shots)
class ShotNoiseCalculator(ModelCalculator):
    """ASE calculator whose QNN energy and forces are *measured*: parameter-shift circuits (:mod:`qnnff.qnn.shift`)
    on qiskit-aer, each circuit's <Z> estimated from ``shots`` measurements (``shots=None``: exact).

    Every force call evaluates the ``1 + 2K`` circuits of the geometry in one Aer EstimatorV2 call (the ISA circuit
    is transpiled once, in ``__init__``). The statevector gives each circuit's exact ``<Z_0>``; a measurement of Z_0
    repeated ``shots`` times is then ``shots`` independent +-1 outcomes with P(-1) = (1 - <Z_0>)/2, so the number of
    -1 outcomes is drawn from Binomial(shots, (1 - <Z_0>)/2) with ``numpy.random.default_rng(seed)`` (one generator
    for the whole run: a fixed seed gives the same trajectory). This is the exact distribution of the sample mean that
    qiskit-aer's SamplerV2 would return for the noiseless circuit, without simulating every shot (which costs ~2 us per
    shot here, i.e. seconds per MD step at 16,384 shots). Only the single-Pauli observable Z (the paper's) is supported.

    ``n_calls`` / ``n_circuits`` count the force evaluations and circuits; ``last_stderr`` holds the standard errors
    (eV, eV/Angstrom) of the last call.
    """

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, model: Any, *, shots: int | None, seed: int, optimization_level: int = 1) -> None:
        from qiskit.transpiler import generate_preset_pass_manager
        from qiskit_aer import AerSimulator
        from qiskit_aer.primitives import EstimatorV2

        super().__init__(model, frozen=False)
        if self.model.kind != "qnn":
            raise ValueError(f"ShotNoiseCalculator needs a qnn model, got {self.model.kind!r}")
        if shots is not None and (isinstance(shots, bool) or int(shots) < 1):
            raise ValueError(f"shots must be a positive integer or None (exact), got {shots!r}")
        obs = self.model.observable
        labels = obs.paulis.to_labels()
        if len(labels) != 1 or set(labels[0]) - {"I", "Z"} or labels[0].count("Z") != 1 or abs(complex(obs.coeffs[0]) - 1) > 1e-12:
            raise ValueError(f"ShotNoiseCalculator supports a single Z observable (the paper's), got {labels}")
        self.shots = None if shots is None else int(shots)
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)
        self.shift = self.model.shift_circuit()
        sim = AerSimulator(method="statevector", seed_simulator=self.seed, runtime_parameter_bind_enable=True)
        pm = generate_preset_pass_manager(optimization_level=optimization_level, backend=sim, seed_transpiler=self.seed)
        self.isa = pm.run(self.shift.circuit)
        self.isa_observable = obs.apply_layout(self.isa.layout)
        col = {p: j for j, p in enumerate(self.shift.thetas)}
        self._columns = [col[p] for p in self.isa.parameters]
        self.estimator = EstimatorV2.from_backend(sim, options={"default_precision": 0.0})
        self.n_calls = 0
        self.n_circuits = 0
        self.last_stderr: dict[str, Any] = {}

    def measured(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """<Z> [B, 1 + 2K] of the shifted circuits for features ``x [B, d]`` and their standard errors."""
        pv = self.shift.parameter_values(x)[..., self._columns]
        z = np.asarray(self.estimator.run([(self.isa, self.isa_observable, pv)]).result()[0].data.evs, dtype=float)
        z = np.clip(z.reshape(pv.shape[:-1]), -1.0, 1.0)
        self.n_calls += 1
        self.n_circuits += int(z.size)
        if self.shots is None:
            return z, np.zeros_like(z)
        minus = self.rng.binomial(self.shots, 0.5 * (1.0 - z))
        zhat = 1.0 - 2.0 * minus / self.shots
        return zhat, np.sqrt(np.maximum(1.0 - zhat**2, 0.0) / self.shots)

    def calculate(self, atoms=None, properties=("energy",), system_changes=None) -> None:
        import torch

        if atoms is not None:
            self.atoms = atoms.copy()
        self._check_species(self.atoms)
        check_geometry(self.atoms.positions, f"{self.model.kind} model (shots)")  # NaN, overlapping atoms: before any circuit
        pos = torch.from_numpy(np.array(self.atoms.positions, dtype=np.float64)).unsqueeze(0)
        if bool(self._domain(pos)[0]):
            raise self._domain_error(pos)
        x, jac = self.model.featurizer.features_and_jacobian(pos)
        z, err = self.measured(x.numpy())
        g = self.shift.gradients(z, err)
        a, b = self.model.regressor.a.detach().item(), self.model.regressor.b.detach().item()
        es = self.model.energy_scaler
        dedr, dedr_err = self.shift.cartesian(g, jac.detach().numpy(), es.scale * a)
        energy = float(es.center + es.scale * (a * g.value[0] + b))
        self.last_stderr = {"energy": float(abs(es.scale * a) * g.value_stderr[0]), "forces": dedr_err[0]}
        self.results = {"energy": energy, "free_energy": energy, "forces": -dedr[0]}


def distance_deviation(times_ref: np.ndarray, r_ref: np.ndarray, times: np.ndarray, r: np.ndarray) -> dict[str, float]:
    """Deviation of a distance curve r(t) from a reference over their common time window (Angstrom, fs).

    The reference is interpolated linearly onto ``times`` (both are recorded on the same step grid in practice).
    """
    t_ref, rr = np.asarray(times_ref, dtype=float), np.asarray(r_ref, dtype=float)
    t, rv = np.asarray(times, dtype=float), np.asarray(r, dtype=float)
    tmax = min(t_ref.max(), t.max())
    keep = t <= tmax + 1e-9
    d = rv[keep] - np.interp(t[keep], t_ref, rr)
    return {"window_fs": float(tmax), "max_abs_deviation_A": float(np.max(np.abs(d))),
            "rms_deviation_A": rmse(d), "final_deviation_A": float(d[-1])}

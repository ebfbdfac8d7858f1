"""NVE MD: energy conservation (stated drift bounds), reproducibility, initial conditions, trajectory, r(t) helper."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.lj import LennardJones
from ase.calculators.morse import MorsePotential
from ase.io import read
from test_calculators import TinyWater, water_atoms

from qnnff.calculators import ModelCalculator, OutOfDomainError
from qnnff.md import energy_drift, run_nve, run_stretched_bond

# stated bounds
# tiny water model (O-H bond family symmetrised by moments, as the H2O models use), dt = 0.1 fs, 2000 steps, 300 K.
# (With *sorted* bonds the forces had a kink where the bonds cross: max |dE| 2.2e-4 eV against 1e-5 eV unsorted,
# which is why features use smooth moments; see test_smooth_model_energy_error_is_second_order.)
MODEL_DRIFT_BOUND = 1e-3  # eV/atom/ps
MODEL_MAX_DEV_BOUND = 2e-3  # eV, max |E_tot(t) - E_tot(0)| over that run
LJ_DRIFT_BOUND = 1e-3  # eV/atom/ps, Ar13 Lennard-Jones cluster, dt = 2 fs, 1000 steps, 40 K


def argon13() -> Atoms:
    from ase.cluster import Icosahedron

    return Icosahedron("Ar", noshells=2, latticeconstant=5.26)


def lj() -> LennardJones:
    return LennardJones(epsilon=0.0104, sigma=3.40, rc=12.0, smooth=True)


def test_lj_harness_conserves_energy_and_is_reproducible(tmp_path):
    atoms = argon13()
    assert len(atoms) == 13
    kw = dict(atoms=atoms, timestep_fs=2.0, n_steps=1000, temperature_K=40.0, seed=7, log_every=10)
    a = run_nve(calculator=lj(), trajectory_path=tmp_path / "a.extxyz", **kw)
    b = run_nve(calculator=lj(), **kw)
    print(f"LJ Ar13: drift {a.drift_eV_per_atom_per_ps:.2e} eV/atom/ps, max dev {a.max_abs_energy_deviation_eV:.2e} eV, "
          f"{a.steps_per_second:.0f} steps/s")
    assert abs(a.drift_eV_per_atom_per_ps) < LJ_DRIFT_BOUND
    assert np.array_equal(a.positions, b.positions) and np.array_equal(a.total_energy, b.total_energy)
    assert a.steps.tolist() == list(range(0, 1001, 10))
    np.testing.assert_allclose(a.times_fs, a.steps * 2.0)
    assert np.array_equal(atoms.positions, argon13().positions)  # input untouched
    # a different seed gives a different trajectory
    c = run_nve(calculator=lj(), **{**kw, "seed": 8, "n_steps": 10})
    assert not np.allclose(c.positions[-1], a.positions[1])
    # trajectory file: every recorded frame, with energies, forces and momenta
    frames = read(tmp_path / "a.extxyz", index=":")
    assert len(frames) == len(a.steps)
    np.testing.assert_allclose(frames[-1].positions, a.positions[-1], atol=1e-7)
    assert frames[5].info["step"] == 50
    assert frames[5].get_potential_energy() == pytest.approx(a.potential_energy[5], abs=1e-7)
    assert frames[5].get_forces().shape == (13, 3)
    assert frames[5].get_momenta().shape == (13, 3)
    assert not list(tmp_path.glob(".*tmp*"))


def test_initial_velocities_have_no_rigid_body_motion():
    atoms = water_atoms()
    res = run_nve(calculator=ModelCalculator(TinyWater()), atoms=atoms, timestep_fs=0.1, n_steps=0, temperature_K=300.0, seed=3)
    assert res.steps.tolist() == [0] and np.isnan(res.drift_eV_per_atom_per_ps)
    # rebuild the initial velocities the same way and check momentum and angular momentum
    from ase.md.velocitydistribution import Stationary, ZeroRotation, thermalize_momenta

    at = atoms.copy()
    thermalize_momenta(at, 300.0, rng=np.random.default_rng(3))
    Stationary(at, preserve_temperature=False)
    ZeroRotation(at, preserve_temperature=False)
    np.testing.assert_allclose(at.get_momenta().sum(0), 0.0, atol=1e-12)
    np.testing.assert_allclose(at.get_angular_momentum(), 0.0, atol=1e-12)
    assert res.kinetic_energy[0] == pytest.approx(at.get_kinetic_energy(), rel=1e-12)
    assert res.temperature_K[0] > 0


def test_model_nve_drift_and_speed(tmp_path):
    calc = ModelCalculator(TinyWater())
    res = run_nve(calculator=calc, atoms=water_atoms(), timestep_fs=0.1, n_steps=2000, temperature_K=300.0, seed=11, log_every=10,
                  trajectory_path=tmp_path / "water.extxyz")
    print(f"tiny water model: drift {res.drift_eV_per_atom_per_ps:.2e} eV/atom/ps, max |dE| {res.max_abs_energy_deviation_eV:.2e} eV, "
          f"{res.steps_per_second:.0f} steps/s, T mean {res.temperature_K.mean():.0f} K")
    assert abs(res.drift_eV_per_atom_per_ps) < MODEL_DRIFT_BOUND
    assert res.max_abs_energy_deviation_eV < MODEL_MAX_DEV_BOUND
    assert res.kinetic_energy.std() > 0 and res.potential_energy.std() > 0  # it actually moved
    assert len(read(tmp_path / "water.extxyz", index=":")) == 201
    s = res.summary()
    assert s["duration_ps"] == pytest.approx(0.2) and s["steps_per_second"] > 0


class TinyWaterUnsorted(TinyWater):
    """The same regressor on the two O-H bonds as two separate (unsorted) families: a smooth surface.

    With the sorted bond family (TinyWater) the features, and so the forces, have a kink where the two bonds cross,
    which velocity Verlet sees as an energy error of order dt (not dt^2) at each crossing.
    """

    def __init__(self):
        super().__init__()
        from qnnff.features import CoordinateFamily, Featurizer

        fams = [CoordinateFamily("r1", "bond", ((0, 1),)), CoordinateFamily("r2", "bond", ((0, 2),)), CoordinateFamily("a", "angle", ((1, 0, 2),))]
        self.featurizer = Featurizer(families=fams, feature_map="arcsin", lo=[0.85, 0.85, 95.0], hi=[1.15, 1.15, 115.0], symbols=["O", "H", "H"])


@pytest.mark.parametrize("model_cls,bound", [(TinyWaterUnsorted, 3e-5), (TinyWater, 1e-3)], ids=["unsorted", "moments"])
def test_smooth_model_energy_error_is_second_order(model_cls, bound):
    """Raw bonds and the permutation-invariant moments are both smooth: velocity Verlet's error is O(dt^2)."""
    kw = dict(atoms=water_atoms(), temperature_K=300.0, seed=11, log_every=5)
    coarse = run_nve(calculator=ModelCalculator(model_cls()), timestep_fs=0.2, n_steps=500, **kw)
    fine = run_nve(calculator=ModelCalculator(model_cls()), timestep_fs=0.1, n_steps=1000, **kw)
    ratio = coarse.max_abs_energy_deviation_eV / fine.max_abs_energy_deviation_eV
    print(f"smooth model: max |dE| {coarse.max_abs_energy_deviation_eV:.2e} (0.2 fs), "
          f"{fine.max_abs_energy_deviation_eV:.2e} eV (0.1 fs), ratio {ratio:.2f}")
    assert fine.max_abs_energy_deviation_eV < bound
    assert 3.0 < ratio < 6.0  # velocity Verlet on a smooth surface: O(dt^2) (a force kink gives O(dt): ratio ~2)


def test_model_md_same_seed_same_trajectory():
    kw = dict(atoms=water_atoms(), timestep_fs=0.2, n_steps=200, temperature_K=300.0, seed=5, log_every=1)
    a = run_nve(calculator=ModelCalculator(TinyWater()), **kw)
    b = run_nve(calculator=ModelCalculator(TinyWater()), **kw)
    assert np.array_equal(a.positions, b.positions)


def test_explicit_velocities_and_displacement():
    atoms = water_atoms()
    v = np.zeros((3, 3))
    v[1, 0] = 0.01  # Angstrom/fs
    res = run_nve(calculator=ModelCalculator(TinyWater()), atoms=atoms, timestep_fs=0.1, n_steps=1, velocities_A_per_fs=v,
                  displacement_A=np.full((3, 3), 0.5))
    np.testing.assert_allclose(res.positions[0], atoms.positions + 0.5)
    m_h = atoms.get_masses()[1]
    from ase import units

    assert res.kinetic_energy[0] == pytest.approx(0.5 * m_h * (0.01 / units.fs) ** 2, rel=1e-12)
    with pytest.raises(ValueError, match="not both"):
        run_nve(calculator=ModelCalculator(TinyWater()), atoms=atoms, timestep_fs=0.1, n_steps=1, velocities_A_per_fs=v, temperature_K=10, seed=0)
    with pytest.raises(ValueError, match="seed"):
        run_nve(calculator=ModelCalculator(TinyWater()), atoms=atoms, timestep_fs=0.1, n_steps=1, temperature_K=10)


def test_leaving_the_domain_stops_the_run(tmp_path):
    # far too hot for the model's training range: the run stops where the model's domain ends, and says so
    res = run_nve(calculator=ModelCalculator(TinyWater()), atoms=water_atoms(), timestep_fs=0.5, n_steps=2000, temperature_K=20000.0,
                  seed=1, trajectory_path=tmp_path / "hot.extxyz")
    s = res.summary()
    assert s["completed"] is False and 0 < s["stopped_at_step"] < 2000
    assert "outside the tiny-water-test model's domain" in s["stop_reason"]
    assert res.steps[-1] <= s["stopped_at_step"]
    assert len(read(tmp_path / "hot.extxyz", index=":")) == len(res.steps)  # the trajectory up to the stop
    # a start outside the domain is a plain error (nothing to simulate)
    far = water_atoms(r1=1.40)
    with pytest.raises(OutOfDomainError):
        run_nve(calculator=ModelCalculator(TinyWater()), atoms=far, timestep_fs=0.5, n_steps=10)


def test_stretched_bond_oscillation():
    # LiH-like Morse bond (D = 2.5 eV, r_e = 1.6 A, a = 1.125 / A: harmonic period about 24 fs), released at rest from r = 1.9 A
    calc = MorsePotential(epsilon=2.5, r0=1.6, rho0=1.8)
    out = run_stretched_bond(calculator=calc, symbols=["Li", "H"], r_start_A=1.9, timestep_fs=0.1, n_steps=1500, log_every=5)
    r = out.r_A
    assert r[0] == pytest.approx(1.9) and out.md.kinetic_energy[0] == 0.0
    assert r.min() < 1.6 < r.max()
    assert r.max() == pytest.approx(1.9, abs=1e-3)  # returns to the turning point (energy conserved)
    # back near the start after one period: the first return to a maximum
    i_min = int(np.argmin(r[: len(r) // 2]))
    assert 8 < out.times_fs[i_min] < 16  # half a period
    assert out.md.max_abs_energy_deviation_eV < 1e-3
    assert abs(out.md.drift_eV_per_atom_per_ps) < 1e-2
    with pytest.raises(ValueError, match="diatomic"):
        run_stretched_bond(calculator=calc, symbols=["O", "H", "H"], r_start_A=1.0, timestep_fs=0.1, n_steps=1)


def test_energy_drift_fit():
    t = np.linspace(0, 1000, 11)  # fs
    e = 5.0 + 0.02 * t / 1000.0  # 0.02 eV/ps
    drift, dev = energy_drift(t, e, 4)
    assert drift == pytest.approx(0.005) and dev == pytest.approx(0.02)

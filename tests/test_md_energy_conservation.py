"""Issue 26.19: an NVE run whose forces do not conserve energy is flagged (MD table, scorecard), not only by its drift
slope: max |E_tot(t) - E_tot(0)| against the run's mean kinetic energy, threshold ``md.max_energy_error``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.morse import MorsePotential
from test_reproduction import scorecard_inputs

from qnnff.md import energy_conserved, energy_error_ratio, run_nve
from qnnff.reproduction import scorecard
from qnnff.settings import MDSettings, ReproductionSettings
from qnnff.stages.md import _conservation_text, md_table


class NoisyMorse(Calculator):
    """Morse forces plus seeded Gaussian noise (like shot noise): not the gradient of any energy."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, sigma: float, seed: int = 0) -> None:
        super().__init__()
        self.morse, self.sigma, self.rng = MorsePotential(epsilon=2.5, r0=1.6, rho0=6.0), sigma, np.random.default_rng(seed)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        a = self.atoms.copy()
        a.calc = self.morse
        self.results = {"energy": a.get_potential_energy(),
                        "forces": a.get_forces() + self.sigma * self.rng.normal(size=(len(a), 3))}


def triatomic() -> Atoms:
    return Atoms("H3", positions=[[0.0, 0.0, 0.0], [1.6, 0.0, 0.0], [0.8, 1.39, 0.0]])


def run(calc):
    return run_nve(calculator=calc, atoms=triatomic(), timestep_fs=0.2, n_steps=1500, temperature_K=300.0, seed=3, log_every=5)


def test_a_conservative_force_field_passes_and_noisy_forces_fail():
    threshold = MDSettings.of({"systems": {"X": {}}}, "X").max_energy_error
    assert threshold == 0.1  # the schema default, documented in config/README.md
    good = run(MorsePotential(epsilon=2.5, r0=1.6, rho0=6.0)).summary()
    bad = run(NoisyMorse(sigma=0.5)).summary()
    assert good["energy_error_ratio"] < 0.05 and energy_conserved(good, threshold)
    assert bad["energy_error_ratio"] > threshold and not energy_conserved(bad, threshold)
    # the drift slope alone need not show it: the flag is on the largest excursion, on the scale of the motion
    assert good["mean_kinetic_energy_eV"] > 0.0


def test_ratio_edge_cases():
    assert energy_error_ratio(0.01, 0.1) == pytest.approx(0.1)
    assert np.isnan(energy_error_ratio(0.01, 0.0))
    assert not energy_conserved({"energy_error_ratio": float("nan")}, 0.1)
    assert not energy_conserved({}, 0.1)  # a summary without the ratio is not judged conserved


def summary(tmp_path, name, ratio, *, threshold=0.1, model="qnn", completed=True):
    d = {"system": "H2O", "model": model, "protocol": "best", "seed": 1, "n_steps": 4000, "timestep_fs": 0.25,
         "drift_eV_per_atom_per_ps": 1e-7, "max_abs_energy_deviation_eV": ratio * 0.02, "mean_kinetic_energy_eV": 0.02,
         "energy_error_ratio": ratio, "steps_per_second": 100.0, "completed": completed,
         "max_energy_error": threshold, "energy_conserved": ratio <= threshold}
    p = tmp_path / f"{name}.json"
    p.write_text(json.dumps(d))
    return str(p)


def test_md_table_marks_the_run(tmp_path):
    files = [summary(tmp_path, "ok", 0.011), summary(tmp_path, "noisy", 0.58, model="qnn-shots1024")]
    df = md_table(files, tmp_path / "md.csv", tmp_path / "md.md")
    assert df["energy conserved"].tolist() == ["yes", "no (0.58 > 0.1)"]
    text = (tmp_path / "md.md").read_text()
    assert "no (0.58 > 0.1)" in text and "md.max_energy_error" in text
    assert _conservation_text({"n_steps": 1}) == "-"  # written before the check: not judged


def test_scorecard_md_target_needs_energy_conservation(tmp_path):
    cfg, errors, effdims, _ = scorecard_inputs(tmp_path, [(0.001, 0.05)] * 3)
    rep = ReproductionSettings.of(cfg)
    ok = scorecard(rep, errors, effdims, [summary(tmp_path, "ok", 0.011)])
    bad = scorecard(rep, errors, effdims, [summary(tmp_path, "bad", 0.3)])
    row = lambda sc: sc[sc["metric"] == "MD"].iloc[0]  # noqa: E731
    assert row(ok)["verdict"] == "completed" and row(ok)["target met"] == "yes"
    assert row(bad)["verdict"] == "completed, energy not conserved" and row(bad)["target met"] == "no"
    assert "0.3 of the mean kinetic energy > md.max_energy_error 0.1" in row(bad)["note"]

"""Shot-noise MD: QNN forces measured with finite shots drive a deterministic (seeded) LiH trajectory."""

import json

import numpy as np
import pytest
import yaml

from qnnff.calculators import ModelCalculator
from qnnff.md import ShotNoiseCalculator, distance_deviation, run_stretched_bond
from test_qnn_shift import lih_model

STEPS = 12


def bond(calc, n_steps=STEPS, **kw):
    return run_stretched_bond(calculator=calc, symbols=["Li", "H"], r_start_A=2.2, timestep_fs=0.5, n_steps=n_steps, **kw)


@pytest.fixture(scope="module")
def model():
    return lih_model()


def test_exact_circuits_reproduce_the_engine_trajectory(model):
    ref = bond(ModelCalculator(model))
    exact = bond(ShotNoiseCalculator(model, shots=None, seed=0))
    assert np.max(np.abs(exact.r_A - ref.r_A)) < 1e-9
    assert np.max(np.abs(ref.r_A - ref.r_A[0])) > 1e-3  # the bond moves


def test_shot_noise_md_is_deterministic_with_a_seed(model):
    calc = ShotNoiseCalculator(model, shots=256, seed=5)
    a = bond(calc)
    b = bond(ShotNoiseCalculator(model, shots=256, seed=5))
    c = bond(ShotNoiseCalculator(model, shots=256, seed=6))
    assert np.array_equal(a.md.positions, b.md.positions)
    assert not np.array_equal(a.md.positions, c.md.positions)
    ref = bond(ModelCalculator(model))
    dev = distance_deviation(ref.times_fs, ref.r_A, a.times_fs, a.r_A)
    assert 0 < dev["max_abs_deviation_A"] < 0.2 and dev["window_fs"] == pytest.approx(STEPS * 0.5)
    assert calc.n_calls == STEPS + 1 and calc.n_circuits == (STEPS + 1) * calc.shift.circuits_per_input
    assert calc.last_stderr["forces"].shape == (2, 3) and np.all(calc.last_stderr["forces"][:, 2] > 0)


def test_shot_calculator_rejects_bad_settings(model):
    with pytest.raises(ValueError, match="shots must be a positive integer"):
        ShotNoiseCalculator(model, shots=0, seed=1)


def test_shot_md_stage_writes_summary(model, tmp_path, repo):
    from qnnff.stages import shot_md_stage

    cfg = yaml.safe_load((repo / "config" / "config.yaml").read_text())
    cfg["systems"]["LiH"]["md"].update(shots=[512], n_steps_shots=10, log_every=2)
    model_path = tmp_path / "model.zip"
    model.save(model_path)
    exact = tmp_path / "exact.extxyz"
    bond(ModelCalculator(model), n_steps=20, log_every=2, trajectory_path=exact)
    out = shot_md_stage(cfg, "LiH", 512, str(model_path), str(exact), str(tmp_path / "t.extxyz"), str(tmp_path / "s.json"))
    saved = json.loads((tmp_path / "s.json").read_text())
    assert saved == json.loads(json.dumps(out))
    assert saved["model"] == "qnn-shots512" and saved["n_steps"] == 10 and saved["circuits_per_force_evaluation"] == 73
    d = saved["deviation_from_exact_qnn"]
    assert d["window_fs"] == pytest.approx(5.0) and d["max_abs_deviation_A"] > 0 and d["tolerance_A"] == 0.1
    again = shot_md_stage(cfg, "LiH", 512, str(model_path), str(exact), str(tmp_path / "t2.extxyz"), str(tmp_path / "s2.json"))
    assert again["deviation_from_exact_qnn"] == out["deviation_from_exact_qnn"]  # seeded from the config seed
    from qnnff.config import ConfigError

    with pytest.raises(ConfigError, match="1024 shots requested"):
        shot_md_stage(cfg, "LiH", 1024, str(model_path), str(exact), str(tmp_path / "t3.extxyz"), str(tmp_path / "s3.json"))

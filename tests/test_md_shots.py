"""Shot-noise MD: QNN forces measured with finite shots drive a deterministic (seeded) LiH trajectory."""

import json

import numpy as np
import pytest
import yaml
from test_qnn_shift import lih_model

from qnnff.calculators import ModelCalculator
from qnnff.md import ShotNoiseCalculator, distance_deviation, run_stretched_bond

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


def test_run_md_shots_writes_summary(model, tmp_path, repo):
    from qnnff.jobs import MDJob
    from qnnff.stages.md import run_md_shots

    cfg = yaml.safe_load((repo / "config" / "config.yaml").read_text())
    cfg["systems"]["LiH"]["md"].update(shots=[512], n_steps_shots=10, log_every=2)
    (tmp_path / "seed1").mkdir()
    model.save(tmp_path / "seed1" / "model.zip")
    (tmp_path / "seeds.json").write_text(json.dumps({"median_seed": 1}))
    # the seed set as the rule passes it (params.models, common.smk seed_set): the median seed's model drives the MD
    models = {"kind": "qnn", "protocol": "best", "selection": str(tmp_path / "seeds.json"),
              "files": [str(tmp_path / "seed0" / "model.zip"), str(tmp_path / "seed1" / "model.zip")]}
    exact = tmp_path / "exact.extxyz"
    bond(ModelCalculator(model), n_steps=20, log_every=2, trajectory_path=exact)
    job = MDJob.of(cfg, system="LiH")
    out = run_md_shots(job, 512, models, str(exact), str(tmp_path / "t.extxyz"), str(tmp_path / "s.json"))
    saved = json.loads((tmp_path / "s.json").read_text())
    assert saved == json.loads(json.dumps(out))
    assert saved["model"] == "qnn-shots512" and saved["n_steps"] == 10 and saved["circuits_per_force_evaluation"] == 73
    assert (saved["protocol"], saved["seed"]) == ("best", 1)
    d = saved["deviation_from_exact_qnn"]
    assert d["window_fs"] == pytest.approx(5.0) and d["max_abs_deviation_A"] > 0 and d["tolerance_A"] == 0.1
    again = run_md_shots(job, 512, models, str(exact), str(tmp_path / "t2.extxyz"), str(tmp_path / "s2.json"))
    assert again["deviation_from_exact_qnn"] == out["deviation_from_exact_qnn"]  # seeded from the config seed
    from qnnff.config import ConfigError

    with pytest.raises(ConfigError, match="1024 shots requested"):
        run_md_shots(job, 1024, models, str(exact), str(tmp_path / "t3.extxyz"), str(tmp_path / "s3.json"))

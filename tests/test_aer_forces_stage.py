"""The aer_evaluation stage measures parameter-shift forces (and runs Qiskit Runtime when configured); the error
table shows RMSE(F) for them instead of n/a."""

import json

import numpy as np
import pytest
import torch
import yaml
from test_qnn_shift import lih_model, lih_positions

from qnnff.evaluation import aer_rows
from qnnff.stages import SeedSet
from qnnff.stages.evaluate import AerJob, aer_evaluation


def test_aer_evaluation_forces_and_runtime_rows(tmp_path, repo):
    model = lih_model()
    (tmp_path / "seed1").mkdir()
    model.save(tmp_path / "seed1" / "model.zip")
    (tmp_path / "seeds.json").write_text(json.dumps({"median_seed": 1}))
    seeds = SeedSet("qnn", "best", str(tmp_path / "seeds.json"), (str(tmp_path / "seed0" / "model.zip"), str(tmp_path / "seed1" / "model.zip")))
    pos = lih_positions(6, seed=9)
    e, f = model.energy_and_forces(torch.as_tensor(pos))
    rng = np.random.default_rng(0)
    e_ref, f_ref = e.numpy() + 0.01 * rng.normal(size=6), f.numpy() + 0.05 * rng.normal(size=f.shape)  # "DFT"
    np.savez(tmp_path / "test.npz", positions=pos, energy=e_ref, forces=f_ref)
    cfg = yaml.safe_load((repo / "config" / "config.yaml").read_text())
    cfg["systems"]["LiH"]["models"]["qnn"]["aer"] = {"shots": 2000, "noise": "depolarizing", "n_points": 6, "force_points": 3}
    cfg["systems"]["LiH"]["models"]["qnn"]["hardware"] = {"backend": "FakeManilaV2", "shots": 1000, "n_points": 2, "max_qpu_seconds": 1000}
    out = aer_evaluation(AerJob.of(cfg, system="LiH", protocol="best"), seeds, str(tmp_path / "test.npz"), str(tmp_path / "aer.json"))
    saved = json.loads((tmp_path / "aer.json").read_text())
    assert saved == json.loads(json.dumps(out))
    assert (saved["protocol"], saved["seed"]) == ("best", 1)  # the median seed's model was evaluated
    for label in ("shots", "shots+noise"):
        r = saved["runs"][label]
        assert r["n_force_points"] == 3 and r["force_info"]["n_circuits"] == 3 * 73 and r["force_info"]["n_primitive_calls"] == 1
        assert 0 < r["RMSE(F) vs exact QNN [meV/A]"] < 1e6 and r["RMSE(F) vs DFT [meV/A]"] > 0
    assert saved["runs"]["shots"]["fraction of force components within 4 sigma of exact"] == 1.0
    hw = saved["hardware"]
    assert hw["backend"] == "FakeManilaV2" and hw["n_points"] == 2 and len(hw["info"]["layout"]) == 2
    assert hw["info"]["cost"]["n_circuits"] == 2 * 73 and hw["info"]["cost"]["qpu_seconds"] > 0
    rows = aer_rows(tmp_path / "aer.json", scale=0.8)
    assert [r["evaluation"] for r in rows] == ["aer-shots", "aer-shots+noise", "runtime"]
    assert {(r["kind"], r["protocol"], r["seed"]) for r in rows} == {("qnn", "best", 1)}
    for r in rows:
        assert np.isfinite(r["RMSE(F) [meV/A]"]) and r["RMSE(F) [scaled, 1/A]"] == pytest.approx(r["RMSE(F) [meV/A]"] / 1000 / 0.8)
    assert "FakeManilaV2" in rows[-1]["model"] and "F on 3 points" in rows[0]["model"]

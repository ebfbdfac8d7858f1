"""PySCF reference data: analytic forces, a known energy, and the SCF fallback chain."""

import json

import numpy as np
import pytest

from qnnff.config import system_spec
from qnnff.dft import LevelOfTheory, single_point
from qnnff.units import BOHR_TO_ANGSTROM


def test_known_energy_h2o_hf_sto3g():
    # Crawford's programming project #3 geometry (Bohr); reference SCF energy -74.942079928192 Eh
    pos = np.array([[0.0, -0.143225816552, 0.0], [1.638036840407, 1.136548822547, 0.0], [-1.638036840407, 1.136548822547, 0.0]])
    res = single_point(["O", "H", "H"], pos * BOHR_TO_ANGSTROM, charge=0, spin=0,
                       level=LevelOfTheory(method="hf", basis="sto-3g"))
    assert res.converged
    assert res.energy == pytest.approx(-74.942079928192, abs=1e-8)


@pytest.mark.parametrize("system,method", [("LiH", "dft"), ("H2O", "dft"), ("H3O+", "hf")])
def test_forces_match_finite_differences(paper_config, system, method):
    spec = system_spec(paper_config, system)
    values = {v: 0.5 * (lo + hi) + 0.1 * (hi - lo) for v, (lo, hi) in spec.variables.items()}
    pos = spec.geometry(values)
    level = LevelOfTheory(method=method, basis="sto-3g", grid_level=2, conv_tol=1e-12)
    kw = dict(charge=spec.charge, spin=spec.spin, level=level)
    ref = single_point(spec.symbols, pos, **kw)
    assert ref.converged
    h = 1e-4  # Bohr
    fd = np.zeros_like(pos)
    for a in range(len(pos)):
        for k in range(3):
            e = []
            for s in (1, -1):
                p = pos.copy()
                p[a, k] += s * h * BOHR_TO_ANGSTROM
                r = single_point(spec.symbols, p, dm0=ref.dm, **kw)
                assert r.converged
                e.append(r.energy)
            fd[a, k] = (e[0] - e[1]) / (2 * h)
    assert np.max(np.abs(fd - ref.gradient)) < 1e-5


def test_fallback_chain_records_failure():
    pos = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.6]])
    level = LevelOfTheory(method="dft", basis="sto-3g", max_cycle=2)
    res = single_point(["Li", "H"], pos, charge=0, spin=0, level=level)
    assert not res.converged
    assert np.isnan(res.energy)
    assert [a.split(":")[0] for a in res.attempts] == ["diis", "damped", "newton"]


def test_newton_rejected_when_discontinuous():
    # a fake neighbour 1 Ha below: Newton's solution must be rejected as discontinuous
    pos = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.6]])
    good = single_point(["Li", "H"], pos, charge=0, spin=0, level=LevelOfTheory(method="hf", basis="sto-3g"))
    res = single_point(["Li", "H"], pos, charge=0, spin=0, level=LevelOfTheory(method="hf", basis="sto-3g", max_cycle=1),
                       neighbour=(pos, good.energy - 1.0, np.zeros((2, 3))))
    assert not res.converged
    assert "rejected" in res.attempts[-1] or "not converged" in res.attempts[-1]


def test_failed_points_reported_and_rule_fails(tmp_path, test_config):
    from qnnff.jobs import DataJob
    from qnnff.stages import data

    cfg = test_config
    cfg["systems"] = {"LiH": cfg["systems"]["LiH"]}
    cfg["dft"].update(method="dft", max_cycle=1, max_failed_fraction=0.1)
    pts = tmp_path / "points.csv"
    job = DataJob.of(cfg, system="LiH")
    df = data.sample_points(job, pts)
    xyz, js = [], []
    for chunk in sorted(df["chunk"].unique()):
        xyz.append(tmp_path / f"{chunk}.extxyz")
        js.append(tmp_path / f"{chunk}.json")
        data.dft_chunk(job, pts, chunk, xyz[-1], js[-1])
    status = json.loads(js[0].read_text())
    assert status["n_converged"] < status["n_points"]
    with pytest.raises(RuntimeError, match="dft.max_failed_fraction"):
        data.assemble_dataset(job, xyz, js, tmp_path / "train.extxyz", tmp_path / "test.extxyz",
                              tmp_path / "report.md", tmp_path / "report.json")
    report = (tmp_path / "report.md").read_text()
    assert "Failed points" in report and "diis: not converged" in report
    assert not (tmp_path / "train.extxyz").exists()  # no output that looks complete

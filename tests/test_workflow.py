"""Smoke runs of the Snakemake workflow from a tiny config in a temporary directory."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from progress_helpers import run_streaming, terminal_writer


def run_snakemake(repo: Path, workdir: Path, configfile: Path, *args: str, timeout: int = 600, say=None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(configfile), "--cores", "2", *args]
    if say is not None:  # the long runs show which job is running (progress_helpers)
        proc = run_streaming(cmd, say, timeout=timeout, label="snakemake")
    else:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc


@pytest.fixture(scope="module")
def smoke(tmp_path_factory, repo, pytestconfig):
    work = tmp_path_factory.mktemp("smoke")
    say = terminal_writer(pytestconfig)
    say("smoke fixture: the whole workflow on config/test.yaml (about 90 s on 2 cores)")
    run_snakemake(repo, work, repo / "config" / "test.yaml", say=say)
    return work


def test_smoke_datasets(smoke, test_config):
    from ase.io import read

    for system, sc in test_config["systems"].items():
        train = read(smoke / f"results/{system}/data/train.extxyz", index=":")
        test = read(smoke / f"results/{system}/data/test.extxyz", index=":")
        assert len(train) == sc["sampling"]["train"]["n"]
        assert len(test) == sc["sampling"]["test"]["n"]
        a = train[0]
        assert a.info["REF_energy"] == pytest.approx(a.info["energy_hartree"] * 27.211386, rel=1e-6)  # eV
        assert a.arrays["REF_forces"].shape == (len(a), 3)
        for key in ("level_of_theory", "basis", "pyscf_version", "config_hash", "point"):
            assert key in a.info
        assert any(k.startswith("ic_") for k in a.info)
        report = json.loads((smoke / f"results/{system}/data/dft_report.json").read_text())
        assert report["n_failed"] == 0
        assert (smoke / f"results/benchmarks/assemble_dataset/{system}.tsv").is_file()


def test_smoke_features(smoke, test_config):
    for system in test_config["systems"]:
        scal = json.loads((smoke / f"results/{system}/features/scalers.json").read_text())
        with np.load(smoke / f"results/{system}/features/train.npz") as f:
            x, jac, y = f["x"], f["jac"], f["y"]
        n_coord = len(scal["featurizer"]["coordinate_labels"])
        n_feat = 3 * n_coord if scal["featurizer"]["feature_map"] == "pi_arcsin_arccos" else n_coord
        assert x.shape[1] == n_feat and jac.shape[1:3] == (n_feat, x.shape[0] // x.shape[0] * jac.shape[2])
        assert np.all(np.abs(x) <= np.pi) and np.all(np.isfinite(jac))
        assert y.min() == pytest.approx(-1.0) and y.max() == pytest.approx(1.0)


def test_rerun_is_a_no_op(smoke, repo):
    proc = run_snakemake(repo, smoke, repo / "config" / "test.yaml", "-n")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_fourth_molecule_needs_config_only(tmp_path, repo, test_config):
    """An HF stretch added in config alone runs through data and features."""
    cfg = dict(test_config)
    cfg["systems"] = {
        "HF": {
            "charge": 0,
            "multiplicity": 1,
            "zmatrix": [["F"], ["H", 0, "r"]],
            "variables": {"r": [0.75, 1.6]},
            "coordinates": [{"name": "r_HF", "type": "bond", "atoms": [[0, 1]]}],
            "feature_map": "pi_arcsin_arccos",
            "sampling": {"train": {"design": "grid", "n": 7}, "test": {"design": "random", "n": 3}},
        }
    }
    cf = tmp_path / "hf.yaml"
    cf.write_text(yaml.safe_dump(cfg))
    run_snakemake(repo, tmp_path, cf, "--until", "features")
    with np.load(tmp_path / "results/HF/features/train.npz") as f:
        assert f["x"].shape == (7, 3)
        # the energy curve of a bond stretch has its minimum inside the sampled range
        assert np.argmin(f["energy"]) not in (0, 6)


def test_smoke_every_figure_and_table(smoke, test_config):
    systems = list(test_config["systems"])
    files = [f"results/figures/{s}_{n}.{e}" for s in systems for n in ("parity", "curve") for e in ("png", "pdf")]
    files += [f"results/figures/LiH_md_distance.{e}" for e in ("png", "pdf")]
    files += [f"results/figures/{n}.{e}" for n in ("learning_curves", "effective_dimension", "effective_dimension_vs_n")
              for e in ("png", "pdf")]
    files += [f"results/tables/{s}_errors.{e}" for s in systems for e in ("csv", "md")]
    files += ["results/tables/md.csv", "results/tables/md.md", "results/metrics.json", "results/MANIFEST.sha256"]
    for f in files:
        assert (smoke / f).is_file() and (smoke / f).stat().st_size > 0, f
    for s in systems:
        md = (smoke / f"results/tables/{s}_errors.md").read_text()
        assert "meV" in md and "scaled" in md and "| QNN |" in md and "| NN |" in md
    # the manifest lists every committed artifact with its checksum
    import hashlib

    lines = (smoke / "results/MANIFEST.sha256").read_text().splitlines()
    assert len(lines) > 50
    for line in lines:
        digest, path = line.split("  ", 1)
        assert hashlib.sha256((smoke / path).read_bytes()).hexdigest() == digest, path
    metrics = json.loads((smoke / "results/metrics.json").read_text())
    assert set(metrics["errors"]) == set(systems)
    assert {"git_commit", "packages", "config_hash", "date"} <= set(metrics["provenance"])


def test_smoke_report_builds(smoke, repo):
    run_snakemake(repo, smoke, repo / "config" / "test.yaml", "--report", str(smoke / "report.html"))
    html = (smoke / "report.html").read_text(errors="replace")
    assert len(html) > 10_000 and "LiH_parity.png" in html

"""Smoke runs of the Snakemake workflow from a tiny config in a temporary directory."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from progress_helpers import run_streaming, terminal_writer


def run_snakemake(repo: Path, workdir: Path, configfile: Path, *args: str, timeout: int = 2400, say=None) -> subprocess.CompletedProcess:
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
    say("smoke fixture: the whole workflow (target `extended`: both scopes) on config/test.yaml (about 1.5 min on 2 cores)")
    run_snakemake(repo, work, repo / "config" / "test.yaml", "extended", say=say)
    keep = os.environ.get("QNNFF_KEEP_SMOKE_RUN")
    if keep:  # .ci/run: the SLURM proof compares its SLURM run with this local run instead of making another one
        shutil.copytree(work, keep, ignore=shutil.ignore_patterns(".snakemake"), symlinks=True)
        say(f"smoke fixture: the finished run copied to {keep} (QNNFF_KEEP_SMOKE_RUN)")
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
        n_atoms = len(test_config["systems"][system]["zmatrix"])
        assert x.shape[1] == n_feat and jac.shape == (x.shape[0], n_feat, n_atoms, 3)
        assert np.all(np.abs(x) <= np.pi) and np.all(np.isfinite(jac))
        assert y.min() == pytest.approx(-1.0) and y.max() == pytest.approx(1.0)


@pytest.mark.parametrize("target", ["all", "extended"])
def test_rerun_is_a_no_op(smoke, repo, target):
    proc = run_snakemake(repo, smoke, repo / "config" / "test.yaml", "-n", target)
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_fourth_molecule_needs_config_only(tmp_path, repo, test_config):
    """An HF stretch added in config alone runs through data and features."""
    cfg = dict(test_config)
    cfg.pop("reproduction", None)  # the scorecard names the paper's systems; config/README.md: omit it for your own
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


def test_the_same_config_with_its_keys_in_another_order_reruns_nothing(tmp_path, repo, test_config):
    """Snakemake records a job's params by their repr: the slices are in a canonical key order (issue 26, item 6), so
    a config with the keys of its blocks in another order reruns no job, and a changed value still does."""
    def reversed_keys(value):
        if isinstance(value, dict):
            return {k: reversed_keys(value[k]) for k in reversed(list(value))}
        return [reversed_keys(v) for v in value] if isinstance(value, list) else value

    cfg = {k: v for k, v in test_config.items() if k != "reproduction"}
    cfg["systems"] = {"LiH": test_config["systems"]["LiH"]}  # one system, one variable, one protocol per model
    first, second, third = (tmp_path / f"{n}.yaml" for n in ("first", "second", "third"))
    first.write_text(yaml.safe_dump(cfg, sort_keys=False))
    other = reversed_keys(cfg)
    assert other == cfg and list(other["dft"]) != list(cfg["dft"])
    second.write_text(yaml.safe_dump(other, sort_keys=False))
    target = "results/LiH/data/points.csv"
    run_snakemake(repo, tmp_path, first, target)
    proc = run_snakemake(repo, tmp_path, second, "-n", target)
    assert "Nothing to be done" in proc.stdout + proc.stderr, proc.stdout[-3000:]
    other["systems"]["LiH"]["sampling"]["test"]["n"] = 5
    third.write_text(yaml.safe_dump(other, sort_keys=False))
    proc = run_snakemake(repo, tmp_path, third, "-n", target)
    assert "Params have changed" in proc.stdout + proc.stderr, proc.stdout[-3000:]


def test_one_job_per_seed_trains_the_same_models_as_one_job_for_all_seeds(smoke, repo, test_config, tmp_path):
    """config/test.yaml trains the seeds of a model in one job (`seeds_in_one_job`); the default layout, one job per
    seed, gives byte-identical predictions and weights: seed 1 is the same trained after seed 0 in one process."""
    from qnnff.models.artifact import load_artifact

    assert test_config["seeds_in_one_job"] is True
    work = tmp_path / "per_seed"
    shutil.copytree(smoke, work, symlinks=True)  # with .snakemake: data and features are not redone
    cfg = {**test_config, "seeds_in_one_job": False}
    cf = tmp_path / "per_seed.yaml"
    cf.write_text(yaml.safe_dump(cfg, sort_keys=False))  # the key order too: Snakemake compares params as written
    targets = [f"results/{s}/models/{k}/{p}/seed1/test_predictions.extxyz"
               for s, k, p in (("H2O", "qnn", "paper"), ("H2O", "qnn", "best"), ("H2O", "bpnn", "best"), ("H3O+", "nn", "paper"))]
    proc = run_snakemake(repo, work, cf, *targets)
    log = proc.stdout + proc.stderr
    assert all(f"rule {r}:" in log for r in ("train_qnn", "train_nn", "train_bpnn")) and "rule dft_chunk:" not in log
    for t in targets:
        assert (work / t).read_bytes() == (smoke / t).read_bytes(), t
        mine, ref = (load_artifact(d / t.replace("test_predictions.extxyz", "model.zip"))[0] for d in (work, smoke))
        assert mine.keys() == ref.keys() and all(np.array_equal(mine[k], ref[k]) for k in ref), t


@pytest.mark.parametrize("damaged", ["results/H2O/features/train.npz", "results/H2O/data/train.extxyz"])
def test_a_damaged_data_file_stops_the_run_before_any_output_is_deleted(smoke, repo, tmp_path, damaged):
    """Issue 26.10: a truncated feature file (or dataset) stops the run at start-up, naming it; before, every training
    that reads it reran, and Snakemake deleted the valid models before the jobs failed."""
    work = tmp_path / "damaged"
    shutil.copytree(smoke, work, symlinks=True)
    f = work / damaged
    data = f.read_bytes()
    f.write_bytes(data[: int(len(data) * 0.66)])
    before = sorted(p.relative_to(work) for p in work.glob("results/**/*") if p.is_file() and p != f)
    cmd = [sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "--directory", str(work), "--configfile",
           str(repo / "config" / "test.yaml"), "--cores", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "damaged file(s)" in out and damaged in out, out[-3000:]
    assert "rm " in out and "--directory" in out  # the rebuild hint repeats the run's directory (issue 26.9)
    after = sorted(p.relative_to(work) for p in work.glob("results/**/*") if p.is_file() and p != f)
    assert after == before
    # a dry run and --unlock still work, with the same list as a warning (issue 26.14)
    for extra in (["-n"], ["--unlock"]):
        look = subprocess.run([*cmd, *extra], capture_output=True, text=True, timeout=600)
        assert look.returncode == 0 and "qnnff: warning: damaged file(s)" in look.stderr, (extra, look.stderr[-2000:])


@pytest.mark.parametrize("scope", ["", "extended/"])
def test_smoke_every_figure_and_table(smoke, test_config, scope):
    systems = list(test_config["systems"])
    r = f"results/{scope}"
    files = [f"{r}figures/{s}_{n}.{e}" for s in systems for n in ("parity", "curve") for e in ("png", "pdf")]
    files += [f"{r}figures/LiH_md_distance.{e}" for e in ("png", "pdf")]
    files += [f"{r}figures/{n}.{e}" for n in ("learning_curves", "effective_dimension", "effective_dimension_vs_n")
              for e in ("png", "pdf")]
    files += [f"{r}tables/{s}_errors.{e}" for s in systems for e in ("csv", "md")]
    files += [f"{r}tables/md.csv", f"{r}tables/md.md", f"{r}metrics.json", f"{r}MANIFEST.sha256"]
    files += [f"{r}tables/reproduction.csv", f"{r}tables/reproduction.md"]
    for f in files:
        assert (smoke / f).is_file() and (smoke / f).stat().st_size > 0, f
    # the paper's scope has the kinds of the paper's tables only, no Aer evaluation and no shot-noise MD; the extended
    # scope has every configured kind (sGDML on H2O in config/test.yaml), both
    errors = (smoke / f"{r}tables/H2O_errors.md").read_text()
    md_table = (smoke / f"{r}tables/md.md").read_text()
    lih = (smoke / f"{r}tables/LiH_errors.md").read_text()
    assert ("sGDML" in errors) == bool(scope) and ("shots" in md_table) == bool(scope), scope
    assert ("aer" in lih.lower()) == bool(scope), scope
    for s in systems:
        md = (smoke / f"{r}tables/{s}_errors.md").read_text()
        qnn_opt = "L-BFGS" if s == "H3O+" else "Adam"  # config/test.yaml: the H3O+ best protocols use lbfgs, adam+lbfgs
        assert "meV" in md and "scaled" in md and f"| QNN | best ({qnn_opt}, chi=1)" in md and "| NN | best" in md and " ± " in md
        assert "| floor (inputs) [scaled] |" in md  # every model's inputs' information floor
        assert "QNN: d_n/d at n = 20, not at the training-set size" in md  # the smoke sets have 8-10 training points
    # the manifest lists every committed artifact with its checksum
    import hashlib

    lines = (smoke / f"{r}MANIFEST.sha256").read_text().splitlines()
    assert len(lines) > 50
    for line in lines:
        digest, path = line.split("  ", 1)
        assert hashlib.sha256((smoke / path).read_bytes()).hexdigest() == digest, path
    if scope:  # the extended manifest covers the paper scope's files too
        assert {ln.split("  ", 1)[1] for ln in (smoke / "results/MANIFEST.sha256").read_text().splitlines()} <= {
            ln.split("  ", 1)[1] for ln in lines}
    metrics = json.loads((smoke / f"{r}metrics.json").read_text())
    assert set(metrics["errors"]) == set(systems) and metrics["reproduction"]
    assert {"git_commit", "packages", "config_hash", "date"} <= set(metrics["provenance"])


def test_smoke_report_builds(smoke, repo):
    run_snakemake(repo, smoke, repo / "config" / "test.yaml", "--report", str(smoke / "report.html"))
    html = (smoke / "report.html").read_text(errors="replace")
    assert len(html) > 10_000 and "LiH_parity.png" in html


def test_smoke_seeds_protocols_and_scorecard(smoke, test_config):
    import pandas as pd

    from qnnff.evaluation import mean_sd
    from qnnff.kinds import KINDS
    from qnnff.reproduction import error_verdict
    from qnnff.training import LBFGS_STEP_EVALUATIONS

    n = test_config["seeds"]
    for system, sc in test_config["systems"].items():
        csv = pd.read_csv(smoke / f"results/extended/tables/{system}_errors.csv")  # every kind
        exact = csv[csv["evaluation"] == "exact"]
        for kind, mc in sc["models"].items():
            closed_form = KINDS[kind].closed_form  # one deterministic fit (sGDML): one seed, its one protocol
            for protocol in (["best"] if closed_form else mc["protocols"]):
                g = exact[(exact["kind"] == kind) & (exact["protocol"] == protocol)]
                assert sorted(g["seed"]) == ([0] if closed_form else list(range(n))), (system, kind, protocol)
                sel = json.loads((smoke / f"results/{system}/models/{kind}/{protocol}/seeds.json").read_text())
                # the CSV keeps 6 significant digits (float_format="%.6g")
                assert sel["stats"]["RMSE(E) [scaled]"]["mean"] == pytest.approx(mean_sd(g["RMSE(E) [scaled]"])[0], rel=2e-5)
                assert int(g[g["median seed"]]["seed"].iloc[0]) == sel["median_seed"]
                if closed_form:
                    assert (g["iterations"] == 1).all()
                elif "lbfgs" in str(g["optimizer"].iloc[0]):  # L-BFGS stops at the first outer step at or past its budget
                    assert (g["iterations"] >= g["iterations configured"]).all(), (system, kind, protocol)
                    assert (g["iterations"] <= g["iterations configured"] + LBFGS_STEP_EVALUATIONS).all(), (system, kind, protocol)
                else:
                    assert (g["iterations"] == g["iterations configured"]).all()
        ed = json.loads((smoke / f"results/{system}/models/qnn/effective_dimension.json").read_text())
        assert len(ed["draws"]) == test_config["effective_dimension"]["n_draws"] and ed["d_n_over_d_sd"] > 0
    assert "sgdml" not in set(pd.read_csv(smoke / "results/tables/reproduction.csv", keep_default_na=False)["kind"])
    rep = pd.read_csv(smoke / "results/extended/tables/reproduction.csv", keep_default_na=False)
    # the sGDML reference rows and the QNN / sGDML gap (issue 27): no paper number, no target
    ref = rep[rep["kind"] == "sgdml"]
    assert set(ref["metric"]) == {"RMSE(E)", "RMSE(F)"} and (ref["target met"] == "").all()
    gap = rep[rep["model"] == "QNN / sGDML"]
    assert len(gap) == 2 and (gap["ours"].astype(float) > 0).all()
    # the invariant QNN (issue 28, H2O in config/test.yaml): its errors (paper "-") and its ratio to the QNN
    inv = rep[(rep["kind"] == "eqnn") & (rep["unit"] != "ratio")]
    assert set(inv["metric"]) == {"RMSE(E)", "RMSE(F)"} and set(inv["system"]) == {"H2O"} and (inv["paper"] == "").all()
    assert len(rep[rep["model"] == "EQNN / QNN"]) == 2
    errs = rep[rep["metric"].isin(["RMSE(E)", "RMSE(F)"]) & (rep["unit"] != "ratio") & ~rep["kind"].isin(["sgdml", "eqnn"])]
    assert set(errs["protocol"]) == {"paper", "best"}
    for _, r in errs.iterrows():
        assert r["verdict"] == error_verdict(float(r["ours"]) / float(r["paper"]))
    assert "MD period" in set(rep["metric"]) and "MD" in set(rep["metric"])


def test_smoke_comparison_with_itself_and_a_perturbed_copy(smoke, tmp_path):
    import pandas as pd

    from qnnff.compare import main as compare_main

    assert compare_main([str(smoke / "results"), str(smoke / "results")]) == 0
    bad = tmp_path / "results"
    shutil.copytree(smoke / "results" / "tables", bad / "tables")
    csv = pd.read_csv(bad / "tables" / "H2O_errors.csv")
    csv.loc[csv["evaluation"] == "exact", "RMSE(F) [scaled, 1/A]"] += 1.0
    csv.to_csv(bad / "tables" / "H2O_errors.csv", index=False)
    assert compare_main([str(smoke / "results"), str(bad)]) == 1


def test_fresh_clone_regenerates_a_figure_without_dft_or_training(tmp_path, repo):
    """In a fresh clone (arbitrary file times, no .snakemake metadata, no intermediates) the documented command
    regenerates a figure from the committed results with that figure's rule alone."""
    import re

    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True, timeout=300)
    if not (clone / "results/H2O/models/qnn/best/seeds.json").is_file():
        pytest.fail("the committed results lack the per-protocol layout (results/H2O/models/qnn/best/seeds.json)")
    cmd = [sys.executable, "-m", "snakemake", "--workflow-profile", "profiles/regenerate", "-n", "-f",
           "results/figures/H2O_parity.png"]
    proc = subprocess.run(cmd, cwd=clone, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", out.split("Job stats:")[1].split("total")[0], flags=re.M))
    assert jobs == {"figures_system": "1"}, out[-3000:]
    # the plain pipeline in the same clone would recompute upstream work: the profile is what prevents it
    full = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", "-n", "results/figures/H2O_parity.png"],
                          cwd=clone, capture_output=True, text=True, timeout=300)
    assert "featurize" in full.stdout + full.stderr


def _study_config(repo: Path, path: Path, extra_sizes=()) -> Path:
    """The smoke config with a tiny QNN study (two training-set sizes, two shot counts) and a study whose only point is
    the pipeline's own LiH NN (reused, not retrained)."""
    cfg = yaml.safe_load((repo / "config" / "test.yaml").read_text())
    cfg["studies"] = {
        "tiny": {"system": "H2O", "kind": "qnn", "seeds": 2,
                 "grid": {"n_train": [5, 10, *extra_sizes], "init.feature_map_weights": [0.2]},
                 "evaluate": {"shots": [64, 1024], "noise": ["none"], "n_points": 4}},
        "reuse": {"system": "LiH", "kind": "nn", "seeds": 2, "evaluate": {"floor": True}},
    }
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _planned_jobs(proc: subprocess.CompletedProcess) -> dict[str, int]:
    import re

    return {m[0]: int(m[1]) for m in re.findall(r"^(\w+)\s+(\d+)\s*$", proc.stdout + proc.stderr, re.M) if m[0] != "total"}


def test_smoke_study_runs_reruns_nothing_and_adds_only_a_new_point(smoke, repo, tmp_path):
    import pandas as pd

    cfgfile = _study_config(repo, tmp_path / "studies.yaml")
    run_snakemake(repo, smoke, cfgfile, "studies")
    base = smoke / "results/studies"
    rows = pd.read_csv(base / "tiny/table.csv")
    exact, aer = rows[rows["evaluation"] == "exact"], rows[rows["evaluation"] == "aer"]
    assert sorted(exact["n_train"]) == [5, 5, 10, 10] and sorted(exact["seed"]) == [0, 0, 1, 1]
    assert len(aer) == 2 * 2 * 2  # points x seeds x shot counts
    by_shots = aer.groupby("shots")["RMSE(E) vs exact QNN [meV]"].mean()
    assert by_shots[64] > 2 * by_shots[1024]  # shot noise ~ 1/sqrt(shots): 4x expected
    for name in ("table.md", "figure.png", "figure.pdf"):
        assert (base / "tiny" / name).stat().st_size > 0
    md = (base / "tiny/table.md").read_text()
    assert "slope RMSE(E)" in md and "RMSE(E) vs exact QNN [meV]" in md
    for point in ("n_train-5__feature_map_weights-0.2", "n_train-10__feature_map_weights-0.2"):
        for k in (0, 1):
            assert (smoke / f"results/benchmarks/study_point/tiny_{point}_{k}.tsv").is_file()
            assert (smoke / f"results/logs/study_point/tiny_{point}_{k}.log").is_file()
            m = json.loads((base / f"tiny/{point}/seed{k}/metrics.json").read_text())
            assert not m["reused_pipeline_model"] and (base / f"tiny/{point}/seed{k}/model.zip").is_file()
    # the base point of `reuse` is the pipeline's own model: its errors are the pipeline's, seed by seed
    sel = json.loads((smoke / "results/LiH/models/nn/best/seeds.json").read_text())
    for k in (0, 1):
        m = json.loads((base / f"reuse/base/seed{k}/metrics.json").read_text())
        want = next(r for r in sel["seeds"] if r["seed"] == k)
        assert m["reused_pipeline_model"] and m["RMSE(E) [scaled]"] == pytest.approx(want["RMSE(E) [scaled]"], rel=1e-9)
        # evaluate.floor: the floor of the point's inputs, here the pipeline's own (same inputs, same seed)
        floor = json.loads((smoke / "results/LiH/models/nn/information_floor.json").read_text())["floor [scaled]"]
        assert m["floor (inputs) [scaled]"] == pytest.approx(floor, rel=1e-9) and floor > 0
    assert "| floor (inputs) [scaled] |" in (base / "reuse/table.md").read_text()
    assert "floor (inputs) [scaled]" not in (base / "tiny/table.md").read_text()
    # a rerun does nothing; one more training-set size runs that point's seeds (and the table), nothing else
    dry = run_snakemake(repo, smoke, cfgfile, "studies", "-n")
    assert "Nothing to be done" in dry.stdout + dry.stderr
    dry = run_snakemake(repo, smoke, _study_config(repo, tmp_path / "more.yaml", extra_sizes=(8,)), "studies", "-n")
    jobs = _planned_jobs(dry)
    assert jobs == {"study_point": 2, "study_table": 1, "studies": 1}, jobs
    assert "n_train-8__feature_map_weights-0.2" in dry.stdout + dry.stderr


def test_bad_study_fails_at_start_up_naming_the_key(repo, tmp_path):
    cfg = yaml.safe_load((repo / "config" / "test.yaml").read_text())
    cfg["studies"] = {"bad": {"system": "H2O", "kind": "qnn", "grid": {"n_train": [10_000]}}}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "--directory", str(tmp_path),
                           "--configfile", str(path), "--cores", "1", "-n", "studies"], capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "studies.bad.grid.n_train" in proc.stdout + proc.stderr and "10000" in proc.stdout + proc.stderr

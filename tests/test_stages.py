"""The stage layer (qnnff.stages): one module per rule file, one function per rule, on tiny inputs without Snakemake;
and the import contract that keeps a job's start-up cheap."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from rule_helpers import rule_scripts

from qnnff import dataset as ds
from qnnff.integrity import IntegrityError, load_npz
from qnnff.jobs import DataJob, EffdimJob, FiguresJob, MDJob, MetricsJob, TrainJob
from qnnff.settings import rule_settings

REPO = Path(__file__).resolve().parents[1]


def job_of(spec, cfg: dict, rule: str, **wildcards):
    """The spec of one job as its script builds it: from the rule's settings slice and the wildcard values."""
    return spec.of(rule_settings(cfg, rule, **wildcards), **wildcards)


RULE_FILES = ("data", "features", "train", "evaluate", "md", "figures", "studies")


# ------------------------------------------------------------------ the contract: rule files, scripts, imports
def stage_function(rule: str) -> str:
    return "train_seeds" if rule.startswith("train_") else rule  # train_qnn, train_nn, train_bpnn share one function


def test_every_rule_has_its_function_in_the_module_of_its_rule_file():
    import importlib

    rules = rule_scripts()
    assert {"sample_points", "train_bpnn", "select_seeds", "errors_table", "run_md_dft", "metrics", "study_table"} <= set(rules)
    assert {stem for stem, _ in rules.values()} == set(RULE_FILES)
    for rule, (stem, script) in rules.items():
        lines = [ln for ln in (REPO / "workflow" / "scripts" / f"{script}.py").read_text().splitlines() if ln.strip()]
        imports = [ln for ln in lines if ln.startswith(("import ", "from "))]
        assert imports[0] == "from qnnff.stages import setup_logging", script
        assert len(imports) == 2 and imports[1].startswith(f"from qnnff.stages.{stem} import "), (script, imports)
        names = {n.strip() for n in imports[1].split(" import ")[1].split("#")[0].split(",")}
        assert stage_function(rule) in names, (rule, script, names)
        module = importlib.import_module(f"qnnff.stages.{stem}")
        assert callable(getattr(module, stage_function(rule))), rule
        assert f"``{rule}``" in module.__doc__, f"the docstring of qnnff.stages.{stem} does not name rule {rule}"
        assert len(lines) <= 9, f"{script}.py is not a thin adapter ({len(lines)} lines)"
        assert ".split(" not in "".join(lines) and "os.path" not in "".join(lines), script  # nothing parsed from paths


HEAVY = ("numpy", "torch", "pandas", "scipy", "scipy.stats", "qiskit", "qiskit_aer", "qiskit_ibm_runtime", "pyscf",
         "matplotlib", "numba", "ase")


def loaded_after_import(*modules: str) -> dict[str, set[str]]:
    """For each module, the heavy packages in sys.modules after importing it in a fresh interpreter."""
    out = {}
    for module in modules:
        code = f"import json, sys\nimport {module}\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
        assert proc.returncode == 0, proc.stderr
        out[module] = set(json.loads(proc.stdout))
    return out


def test_import_lightness():
    """What each job loads before its stage function runs (measured in a fresh interpreter)."""
    found = loaded_after_import("qnnff.stages", *(f"qnnff.stages.{m}" for m in RULE_FILES))
    assert found["qnnff.stages"] == set()  # every job imports it, for setup_logging: the standard library only
    loaded = {m: found[f"qnnff.stages.{m}"] for m in RULE_FILES}
    # torch, the models, PySCF, Qiskit and matplotlib are imported by the functions of the rules that use them; at
    # import, only features.smk's one rule (featurize, all torch) loads torch
    for m, mods in loaded.items():
        assert not mods & {"qiskit", "qiskit_aer", "qiskit_ibm_runtime", "pyscf", "matplotlib", "numba"}, (m, mods)
        assert ("torch" in mods) == (m == "features"), (m, mods)
    for m in ("features", "train", "evaluate", "md", "figures", "studies"):
        assert "scipy.stats" not in loaded[m], m  # scipy.stats: the sampling designs (sample_points) only
    for m in ("features", "studies", "train", "md"):
        assert "pandas" not in loaded[m], m  # pandas: the table rules only (not the smoke run's 11 training and 11 MD jobs)
    # an NN sized to the QNN reads the circuit's spec only: no Qiskit, no numba engine
    assert not loaded_after_import("qnnff.qnn.spec")["qnnff.qnn.spec"] & {"qiskit", "numba", "torch"}


def test_parsing_the_workflow_loads_no_torch():
    """Snakemake imports what the rule files import every time it parses them: in the main process, and once more
    in every cluster job (the executor's job step runs Snakemake again). None of it may pull in torch, PySCF or
    Qiskit (3-5 s each time); the list of modules is read from the rule files, so a new import is covered."""
    files = [REPO / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]
    modules = sorted({ln.split()[1] for f in files for ln in f.read_text().splitlines()
                      if ln.startswith("from qnnff") or ln.startswith("import qnnff")})
    assert {"qnnff.config", "qnnff.protocols", "qnnff.integrity", "qnnff.studies"} <= set(modules)
    # the start-up check of model files (common.smk) opens artifacts through qnnff.models.artifact
    found = loaded_after_import(*modules, "qnnff.models.artifact")
    for module, mods in found.items():
        assert not mods & {"torch", "pyscf", "qiskit", "matplotlib", "numba", "scipy.stats"}, (module, mods)


# ------------------------------------------------------------------ tiny LiH data (a Morse curve, no DFT)
D_E, A, R_E, E_0 = 2.5, 1.1, 1.6, -217.0  # eV, 1/Angstrom, Angstrom, eV


def lih_frame(r: float, point: str, split: str):
    x = np.exp(-A * (r - R_E))
    e = E_0 + D_E * (1 - x) ** 2
    de_dr = 2 * D_E * A * x * (1 - x)
    forces = np.array([[0.0, 0.0, de_dr], [0.0, 0.0, -de_dr]])  # atom 1 on +z
    return ds.make_frame(["Li", "H"], np.array([[0.0, 0.0, 0.0], [0.0, 0.0, r]]), e, forces,
                         {"point": point, "split": split, "system": "LiH"})


@pytest.fixture()
def lih_config(test_config) -> dict:
    cfg = test_config
    cfg["systems"] = {"LiH": cfg["systems"]["LiH"]}
    cfg.pop("reproduction", None)
    return cfg


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    train = [lih_frame(r, f"train-{i:05d}", "train") for i, r in enumerate(np.linspace(1.2, 3.8, 9))]
    test = [lih_frame(r, f"test-{i:05d}", "test") for i, r in enumerate([1.7, 2.45, 3.3, 4.6])]  # 4.6: outside the training range
    ds.write_frames(d / "train.extxyz", train)
    ds.write_frames(d / "test.extxyz", test)
    return d


# ------------------------------------------------------------------ data
def test_sample_points_writes_the_planned_points(tmp_path, lih_config):
    from qnnff.config import system_spec
    from qnnff.sampling import plan_points
    from qnnff.stages.data import sample_points

    out = tmp_path / "points.csv"
    df = sample_points(job_of(DataJob, lih_config, "sample_points", system="LiH"), out)
    saved = pd.read_csv(out)
    want = plan_points(system_spec(lih_config, "LiH"), lih_config["seed"])
    assert list(saved.columns) == ["split", "point", "chunk", "r"] and len(saved) == 8 + 4
    assert saved[["split", "point", "chunk"]].equals(want[["split", "point", "chunk"]])
    np.testing.assert_allclose(saved["r"], want["r"], rtol=1e-11)
    assert df.equals(want) and saved["r"].between(1.0, 4.0).all()
    assert sorted(saved["chunk"].unique()) == ["test-000", "train-000"]


def test_dft_chunk_computes_one_chunk(tmp_path, lih_config):
    from qnnff.stages.data import dft_chunk

    pts = tmp_path / "points.csv"
    pd.DataFrame({"split": ["test", "test"], "point": ["test-00000", "test-00001"], "chunk": ["test-000"] * 2,
                  "r": [1.5, 1.7]}).to_csv(pts, index=False)
    status = dft_chunk(job_of(DataJob, lih_config, "dft_chunk", system="LiH"), pts, "test-000", tmp_path / "c.extxyz", tmp_path / "c.json")
    assert status["n_converged"] == 2 and json.loads((tmp_path / "c.json").read_text()) == json.loads(json.dumps(status))
    frames = ds.read_frames(tmp_path / "c.extxyz")
    assert [a.info["point"] for a in frames] == ["test-00000", "test-00001"]
    assert frames[1].info["ic_r_LiH"] == pytest.approx(1.7) and frames[1].info["basis"] == "sto-3g"
    assert frames[0].info["REF_energy"] == pytest.approx(frames[0].info["energy_hartree"] * 27.211386, rel=1e-6)
    with pytest.raises(ValueError, match="no points in chunk 'train-000'"):
        dft_chunk(job_of(DataJob, lih_config, "dft_chunk", system="LiH"), pts, "train-000", tmp_path / "d.extxyz", tmp_path / "d.json")


def test_dft_chunk_labels_every_internal_coordinate_coupled_moments_included(tmp_path, test_config):
    """The ``ic_<label>`` columns carry the value of their own coordinate also when a coupled family comes first (the
    coupled moments used to be left out of the values, so every later label got its neighbour's value)."""
    from qnnff.config import system_spec
    from qnnff.features import coordinate_labels, internal_coordinates
    from qnnff.stages.data import dft_chunk

    cfg = test_config
    h3o = cfg["systems"]["H3O+"]
    h3o["coordinates"] = [
        {"name": "a_HOH", "type": "angle", "atoms": [[2, 0, 3], [1, 0, 3], [1, 0, 2]], "couple_with": "r_OH"},
        {"name": "r_OH", "type": "bond", "atoms": [[0, 1], [0, 2], [0, 3]]}]
    cfg["systems"] = {"H3O+": h3o}
    cfg.pop("reproduction", None)
    point = {"r1": 0.95, "r2": 1.0, "r3": 1.05, "a1": 108.0, "a2": 114.0, "d": 125.0}
    pts = tmp_path / "points.csv"
    pd.DataFrame([{"split": "test", "point": "test-00000", "chunk": "test-000", **point}]).to_csv(pts, index=False)
    dft_chunk(job_of(DataJob, cfg, "dft_chunk", system="H3O+"), pts, "test-000", tmp_path / "c.extxyz", tmp_path / "c.json")
    (frame,) = ds.read_frames(tmp_path / "c.extxyz")
    spec = system_spec(cfg, "H3O+")
    labels = coordinate_labels(spec.families)
    want = internal_coordinates(spec.families, torch.as_tensor(frame.get_positions()[None]))[0].tolist()
    got = {k[3:]: v for k, v in frame.info.items() if k.startswith("ic_")}
    assert sorted(got) == sorted(labels) and len(labels) == 9
    for lab, val in zip(labels, want):
        assert got[lab] == pytest.approx(val, rel=1e-5, abs=1e-9), lab  # positions are read back from 8 decimals
    assert got["r_OH.mean"] == pytest.approx(1.0, rel=1e-9)


def write_chunk(d: Path, chunk: str, rs: list[float], failed: list[str] = (), rescued: list[str] = ()):
    split = chunk.split("-")[0]
    frames = [lih_frame(r, f"{split}-{i:05d}", split) for i, r in enumerate(rs)]
    ds.write_frames(d / f"{chunk}.extxyz", frames)
    points = [{"point": a.info["point"], "converged": True, "seconds": 0.1,
               "attempts": ["diis: not converged", "damped: ok"] if a.info["point"] in rescued else ["diis: ok"]} for a in frames]
    points += [{"point": p, "converged": False, "attempts": ["diis: not converged", "damped: not converged"], "seconds": 0.2}
               for p in failed]
    (d / f"{chunk}.json").write_text(json.dumps({"system": "LiH", "chunk": chunk, "n_points": len(points),
                                                  "n_converged": len(frames), "seconds": 0.5, "points": points}))
    return str(d / f"{chunk}.extxyz"), str(d / f"{chunk}.json")


def test_assemble_dataset_concatenates_per_split_and_fails_above_the_limit(tmp_path, lih_config):
    from qnnff.stages.data import assemble_dataset

    tr = write_chunk(tmp_path, "train-000", [2.0, 1.5, 3.0], rescued=["train-00001"])
    te = write_chunk(tmp_path, "test-000", [2.2, 2.7])
    outs = [tmp_path / n for n in ("train.extxyz", "test.extxyz", "report.md", "report.json")]
    report = assemble_dataset(job_of(DataJob, lih_config, "assemble_dataset", system="LiH"), [te[0], tr[0]], [te[1], tr[1]], *outs)
    train, test = ds.read_frames(outs[0]), ds.read_frames(outs[1])
    assert [a.info["point"] for a in train] == ["train-00000", "train-00001", "train-00002"]
    assert [a.info["point"] for a in test] == ["test-00000", "test-00001"]
    assert (report["n_train"], report["n_test"], report["n_failed"], report["n_rescued_by_fallback"]) == (3, 2, 0, 1)
    assert json.loads(outs[3].read_text()) == json.loads(json.dumps(report))
    assert "| converged only with a fallback | 1 |" in outs[2].read_text()

    # one failed point of six is above max_failed_fraction (0.02): the rule fails naming the system, no datasets
    bad = tmp_path / "bad"
    bad.mkdir()
    tr = write_chunk(bad, "train-000", [2.0, 1.5, 3.0], failed=["train-00009"])
    te = write_chunk(bad, "test-000", [2.2, 2.7])
    outs = [bad / n for n in ("train.extxyz", "test.extxyz", "report.md", "report.json")]
    with pytest.raises(RuntimeError, match=r"LiH: 1 of 6 DFT points failed .*dft.max_failed_fraction"):
        assemble_dataset(job_of(DataJob, lih_config, "assemble_dataset", system="LiH"), [tr[0], te[0]], [tr[1], te[1]], *outs)
    assert "train-00009" in outs[2].read_text() and not outs[0].exists()

    # a chunk whose frames disagree with its status file
    (bad / "train-000.json").write_text(json.dumps({**json.loads((bad / "train-000.json").read_text()), "n_converged": 4}))
    with pytest.raises(IntegrityError, match="status file records 4 converged points"):
        assemble_dataset(job_of(DataJob, lih_config, "assemble_dataset", system="LiH"), [tr[0], te[0]], [tr[1], te[1]], *outs)


# ------------------------------------------------------------------ features
@pytest.fixture(scope="module")
def featurized(datasets, tmp_path_factory):
    import yaml

    from qnnff.stages.features import featurize

    cfg = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
    d = tmp_path_factory.mktemp("features")
    featurize(job_of(DataJob, cfg, "featurize", system="LiH"), str(datasets / "train.extxyz"), str(datasets / "test.extxyz"),
              str(d / "scalers.json"),
              str(d / "train.npz"), str(d / "test.npz"))
    return cfg, d


def test_featurize_writes_scalers_and_verified_arrays(featurized, caplog):
    from qnnff.features import load_scalers

    cfg, d = featurized
    scal = json.loads((d / "scalers.json").read_text())
    assert scal["excluded_test_points"] == ["test-00003"]  # r = 4.6 Angstrom lies beyond the training range + margin
    feat, scaler = load_scalers(d / "scalers.json")
    assert feat.feature_map == "pi_arcsin_arccos" and feat.n_features == 3 and scaler.to_dict() == scal["energy_scaler"]
    train, test = load_npz(d / "train.npz"), load_npz(d / "test.npz")  # integrity records hold
    assert len(train["positions"]) == 9 and list(test["point"]) == ["test-00000", "test-00001", "test-00002"]
    assert train["x"].shape == (9, 3) and train["jac"].shape == (9, 3, 2, 3)
    assert train["y"].min() == pytest.approx(-1.0) and train["y"].max() == pytest.approx(1.0)
    np.testing.assert_allclose(train["f"], train["forces"] / scaler.scale)


# ------------------------------------------------------------------ train, evaluate (errors), md, figures (metrics)
@pytest.fixture(scope="module")
def trained(featurized):
    from qnnff.stages.train import select_seeds, train

    cfg, d = featurized
    m = d / "models" / "nn" / "best"
    for k in range(2):
        s = m / f"seed{k}"
        job = TrainJob.of(rule_settings(cfg, "train", system="LiH", kind="nn", protocol="best"), system="LiH", kind="nn",
                          protocol="best", seed_index=k)
        train(job, str(d / "scalers.json"),
              str(d / "train.npz"), str(d / "test.npz"), str(s / "model.zip"),
              str(s / "test_predictions.extxyz"), str(s / "learning_curve.csv"), str(s / "train_summary.json"), str(s / "checkpoint.pt"))
    sel = select_seeds("LiH", "nn", "best", [str(m / f"seed{k}" / "test_predictions.extxyz") for k in range(2)],
                       [str(m / f"seed{k}" / "train_summary.json") for k in range(2)], str(d / "scalers.json"), str(m / "seeds.json"))
    return cfg, d, m, sel


def test_train_and_select_seeds(trained):
    cfg, d, m, sel = trained
    summaries = [json.loads((m / f"seed{k}" / "train_summary.json").read_text()) for k in range(2)]
    assert [s["seed_index"] for s in summaries] == [0, 1] and summaries[0]["seed"] != summaries[1]["seed"]
    assert all(s["iterations_done"] == s["iterations_configured"] == 20 and s["model"] == "nn" for s in summaries)
    assert not (m / "seed0" / "checkpoint.pt").exists() and (m / "seed0" / "model.zip").is_file()
    frames = ds.read_frames(m / "seed1" / "test_predictions.extxyz")
    assert len(frames) == 3 and {"MODEL_energy", "REF_energy"} <= set(frames[0].info) and "MODEL_forces" in frames[0].arrays
    assert json.loads((m / "seeds.json").read_text()) == json.loads(json.dumps(sel))
    assert sel["n_seeds"] == 2 and sel["median_seed"] in (0, 1) and len(pd.read_csv(m / "seed0" / "learning_curve.csv")) == 20


def test_a_killed_training_resumes_only_under_its_own_settings(featurized, tmp_path, monkeypatch, caplog):
    """Issue 26.1: killed after a checkpoint, then rerun with ``iterations`` lowered, the job must not resume (it warns
    and names the difference); rerun with the settings it was killed under, it resumes."""
    import copy
    import logging

    from qnnff import training
    from qnnff.stages.train import train

    cfg, d = featurized
    s = tmp_path / "seed0"
    files = [str(s / n) for n in ("model.zip", "test_predictions.extxyz", "learning_curve.csv", "train_summary.json",
                                  "checkpoint.pt")]

    def run(config, kill_at=None):
        job = TrainJob.of(rule_settings(config, "train", system="LiH", kind="nn", protocol="best"), system="LiH", kind="nn",
                          protocol="best", seed_index=0)
        return train(job, str(d / "scalers.json"), str(d / "train.npz"), str(d / "test.npz"), *files)

    real = training.train

    def killed_at_12(*a, **kw):
        def kill(it, rec):
            if it == 12:
                raise KeyboardInterrupt
        return real(*a, callback=kill, **kw)

    monkeypatch.setattr(training, "train", killed_at_12)
    with pytest.raises(KeyboardInterrupt):
        run(cfg)
    monkeypatch.setattr(training, "train", real)
    assert Path(files[-1]).is_file()
    shorter = copy.deepcopy(cfg)
    shorter["systems"]["LiH"]["models"]["nn"]["protocols"]["best"]["iterations"] = 15
    with caplog.at_level(logging.INFO, logger="qnnff"):
        summary = run(shorter)
    assert summary["resumed_from"] is None and summary["iterations_done"] == 15
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "ignored" in r.getMessage()]
    assert warned and "iterations 20 -> 15" in warned[0] and "provenance hash model_hash differs" in warned[0]

    monkeypatch.setattr(training, "train", killed_at_12)
    with pytest.raises(KeyboardInterrupt):
        run(cfg)
    monkeypatch.setattr(training, "train", real)
    summary = run(cfg)
    assert summary["resumed_from"] == 10 and summary["iterations_done"] == 20


def test_errors_table(trained, tmp_path):
    from qnnff.stages.evaluate import errors_table

    cfg, d, m, sel = trained
    df = errors_table("LiH", [str(m / "seeds.json")], {}, {}, [], str(d / "scalers.json"), str(tmp_path / "e.csv"), str(tmp_path / "e.md"))
    saved = pd.read_csv(tmp_path / "e.csv")
    assert len(saved) == len(df) == 2 and set(saved["seed"]) == {0, 1} and saved["median seed"].sum() == 1
    scale = json.loads((d / "scalers.json").read_text())["energy_scaler"]["scale"]
    np.testing.assert_allclose(saved["RMSE(E) [scaled]"], saved["RMSE(E) [meV]"] / 1000 / scale, rtol=1e-4)
    md = (tmp_path / "e.md").read_text()
    assert md.startswith("# LiH: errors on the held-out test set") and "| NN | best (Adam, chi=1) | 2 |" in md
    assert "Test points outside the training range (excluded): 1." in md and "d_n/d at n =" not in md
    # an effective dimension evaluated at n = 20 for a smaller training set says so under the table
    ed = {"n_params": 50, "n_train": 9, "n": 20, "d_n_over_d": 0.5, "d_n_over_d_sd": 0.1}
    (tmp_path / "ed.json").write_text(json.dumps(ed))
    errors_table("LiH", [str(m / "seeds.json")], {"nn": str(tmp_path / "ed.json")}, {}, [], str(d / "scalers.json"),
                 str(tmp_path / "f.csv"), str(tmp_path / "f.md"))
    assert "NN: d_n/d at n = 20, not at the training-set size 9" in (tmp_path / "f.md").read_text()
    (tmp_path / "ed.json").write_text(json.dumps({**ed, "n": 9}))
    errors_table("LiH", [str(m / "seeds.json")], {"nn": str(tmp_path / "ed.json")}, {}, [], str(d / "scalers.json"),
                 str(tmp_path / "g.csv"), str(tmp_path / "g.md"))
    assert "d_n/d at n =" not in (tmp_path / "g.md").read_text()


def test_run_md_drives_the_median_seed_and_md_table(trained, tmp_path):
    from qnnff.stages.md import md_table, run_md

    cfg, d, m, sel = trained
    cfg = {**cfg, "systems": {"LiH": {**cfg["systems"]["LiH"], "md": {**cfg["systems"]["LiH"]["md"], "n_steps": 20}}}}
    models = {"kind": "nn", "protocol": "best", "selection": str(m / "seeds.json"),
              "files": [str(m / f"seed{k}" / "model.zip") for k in range(2)]}  # params.models of rule run_md
    out = run_md(job_of(MDJob, cfg, "run_md", system="LiH"), models, str(tmp_path / "md" / "trajectory.extxyz"),
                 str(tmp_path / "md" / "summary.json"))
    assert (out["model"], out["protocol"], out["seed"], out["n_steps"]) == ("nn", "best", sel["median_seed"], 20)
    assert out["r_start_A"] == 2.2 and len(ds.read_frames(tmp_path / "md" / "trajectory.extxyz")) == 20 // 5 + 1
    stopped = {**out, "model": "qnn", "protocol": "best", "seed": 3, "completed": False, "stopped_at_fs": 4.25}
    (tmp_path / "stopped.json").write_text(json.dumps(stopped))
    dft = {**out, "model": "dft", "protocol": None, "seed": None}
    (tmp_path / "dft.json").write_text(json.dumps(dft))
    df = md_table([str(tmp_path / "md" / "summary.json"), str(tmp_path / "stopped.json"), str(tmp_path / "dft.json")],
                  str(tmp_path / "md.csv"), str(tmp_path / "md.md"))
    saved = pd.read_csv(tmp_path / "md.csv", keep_default_na=False)
    assert list(saved["model"]) == ["nn", "qnn", "dft"] and list(saved["protocol"]) == ["best", "best", ""]
    assert list(saved["completed"]) == ["yes", "left the model's domain at 4.2 fs", "yes"] and len(df) == 3
    assert "| LiH | dft |  |  | 20 |" in (tmp_path / "md.md").read_text()


def test_metrics_records_tables_and_manifest(trained, tmp_path, lih_config):
    from qnnff.stages.evaluate import errors_table
    from qnnff.stages.figures import metrics, sha256

    cfg, d, m, sel = trained
    errors_table("LiH", [str(m / "seeds.json")], {}, {}, [], str(d / "scalers.json"), str(tmp_path / "LiH_errors.csv"), str(tmp_path / "e.md"))
    pd.DataFrame([{"system": "LiH", "model": "nn", "drift [eV/atom/ps]": 1e-4}]).to_csv(tmp_path / "md.csv", index=False)
    artifacts = [str(tmp_path / "LiH_errors.csv"), str(tmp_path / "md.csv")]
    metrics(MetricsJob.of(rule_settings(lih_config, "metrics")), [artifacts[0]], artifacts[1], artifacts, str(tmp_path / "metrics.json"),
            str(tmp_path / "MANIFEST.sha256"))
    rec = json.loads((tmp_path / "metrics.json").read_text())
    assert set(rec) == {"units", "errors", "provenance", "md"} and len(rec["errors"]["LiH"]) == 2
    assert rec["md"] == [{"system": "LiH", "model": "nn", "drift [eV/atom/ps]": 1e-4}]
    lines = (tmp_path / "MANIFEST.sha256").read_text().splitlines()
    assert lines == [f"{sha256(p)}  {p}" for p in sorted(artifacts + [str(tmp_path / "metrics.json")])]
    # the studies never change the pipeline's results: their config leaves the provenance hash alone
    metrics(MetricsJob.of(rule_settings({**lih_config, "studies": {"x": {}}}, "metrics")), [artifacts[0]], None, artifacts, str(tmp_path / "m2.json"),
            str(tmp_path / "M2"))
    assert json.loads((tmp_path / "m2.json").read_text())["provenance"]["config_hash"] == rec["provenance"]["config_hash"]


def test_rules_that_read_files_only_run_without_torch(trained, tmp_path):
    """select_seeds, errors_table, md_table and metrics run in a fresh interpreter without loading torch (a job of
    theirs starts in about a second rather than four) and give what they give in this process."""
    cfg, d, m, sel = trained
    args = {"sel": [str(m / f"seed{k}" / "test_predictions.extxyz") for k in range(2)],
            "sum": [str(m / f"seed{k}" / "train_summary.json") for k in range(2)], "scalers": str(d / "scalers.json"),
            "seeds": str(m / "seeds.json"), "out": str(tmp_path), "cfg": cfg}
    (tmp_path / "md.json").write_text(json.dumps({"system": "LiH", "model": "nn", "protocol": "best", "seed": 0, "n_steps": 20,
                                                   "timestep_fs": 0.5, "drift_eV_per_atom_per_ps": 1e-4,
                                                   "max_abs_energy_deviation_eV": 2e-4, "steps_per_second": 900.0}))
    code = f"""import json, sys
a = json.loads({json.dumps(json.dumps(args))})
from qnnff.stages.train import select_seeds
from qnnff.stages.evaluate import errors_table
from qnnff.stages.md import md_table
from qnnff.stages.figures import MetricsJob, metrics
o = a["out"]
select_seeds("LiH", "nn", "best", a["sel"], a["sum"], a["scalers"], o + "/seeds.json")
errors_table("LiH", [a["seeds"]], {{}}, {{}}, [], a["scalers"], o + "/e.csv", o + "/e.md")
md_table([o + "/md.json"], o + "/md.csv", o + "/md.md")
metrics(MetricsJob.of(a["cfg"]), [o + "/e.csv"], o + "/md.csv", [o + "/e.csv", o + "/md.csv"], o + "/metrics.json", o + "/MANIFEST")
print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded = set(json.loads(proc.stdout.splitlines()[-1]))
    assert not loaded & {"torch", "pyscf", "qiskit", "matplotlib", "numba"}, loaded
    assert json.loads((tmp_path / "seeds.json").read_text()) == json.loads((m / "seeds.json").read_text())
    assert len(pd.read_csv(tmp_path / "e.csv")) == 2 and json.loads((tmp_path / "metrics.json").read_text())["md"][0]["model"] == "nn"


# ------------------------------------------------------------------ studies
def test_study_point_works_next_to_its_metrics(monkeypatch):
    from qnnff.stages import studies
    from qnnff.stages.studies import study_point

    seen = {}
    monkeypatch.setattr(studies, "run_point", lambda *a, **kw: seen.update(args=a, **kw) or {"ok": 1})
    job = object()  # a StudyPointJob (tests/test_jobs.py), passed on as it is
    assert study_point(job, train_xyz="tr", test_xyz="te", out_json="results/studies/tiny/lr-0.1/seed2/metrics.json",
                       pipeline_model="m") == {"ok": 1}
    assert seen["args"] == (job,) and seen["workdir"] == "results/studies/tiny/lr-0.1/seed2"
    assert (seen["pipeline_model"], seen["pipeline_predictions"], seen["pipeline_summary"]) == ("m", None, None)


# ------------------------------------------------------------------ evaluate (effective dimension), figures, DFT MD
def test_effective_dimension_is_the_mean_over_draws_and_repeats(trained, tmp_path):
    from qnnff.stages.evaluate import effective_dimension

    cfg, d, m, sel = trained
    cfg = {**cfg, "effective_dimension": {"n_theta": 4, "n_inputs": 5, "n_draws": 3, "gamma": 1.0, "n_grid": [20, 100, 1000]}}
    job = EffdimJob.of(rule_settings(cfg, "effective_dimension"), system="LiH", kind="nn")
    args = (str(m / "seed0" / "model.zip"), str(d / "train.npz"))
    out = effective_dimension(job, *args, str(tmp_path / "a.json"))
    assert len(out["draws"]) == 3 and out["d_n_over_d"] == pytest.approx(np.mean(out["draws"]))
    assert out["d_n_over_d_sd"] == pytest.approx(np.std(out["draws"], ddof=1)) and out["d_n_over_d_sd"] > 0
    assert all(np.isfinite(v) and v > 0 for v in out["draws"]) and out["d_n"] == pytest.approx(out["d_n_over_d"] * out["n_params"])
    assert out["curve"]["n"] == [20, 100, 1000] and out["n_train"] == 9 and out["n"] == 20  # below 20: reported at n = 20
    assert out["settings"] == {"n_theta": 4, "n_inputs": 5, "n_draws": 3, "gamma": 1.0, "theta_range": [-1.0, 1.0]}
    again = effective_dimension(job, *args, str(tmp_path / "b.json"))  # the config seed fixes every draw
    assert again["draws"] == out["draws"]
    assert json.loads((tmp_path / "a.json").read_text())["draws"] == out["draws"]


def png_and_pdf(*paths) -> None:
    for p in paths:
        head = Path(p).read_bytes()[:8]
        assert head.startswith(b"\x89PNG" if str(p).endswith(".png") else b"%PDF"), p


def test_figures_system_and_summary_draw_every_figure(trained, datasets, tmp_path):
    from qnnff.stages.figures import figures_summary, figures_system

    cfg, d, m, sel = trained
    seeds = {"kind": "nn", "protocol": "best", "selection": str(m / "seeds.json")}
    models = [{**seeds, "files": [str(m / f"seed{k}" / "model.zip") for k in range(2)]}]
    predictions = [{**seeds, "files": [str(m / f"seed{k}" / "test_predictions.extxyz") for k in range(2)]}]
    out = {k: str(tmp_path / f"{k}.{k.rsplit('_', 1)[1]}") for k in ("parity_png", "parity_pdf", "curve_png", "curve_pdf")}
    figures_system(job_of(FiguresJob, cfg, "figures_system", system="LiH"), models, predictions,
                   str(datasets / "train.extxyz"), str(datasets / "test.extxyz"), None, out)
    png_and_pdf(*out.values())
    effdim = tmp_path / "effdim.json"
    effdim.write_text(json.dumps({"d_n_over_d": 0.4, "d_n_over_d_sd": 0.02,
                                  "curve": {"n": [20, 100], "d_n_over_d": [0.3, 0.4], "d_n_over_d_sd": [0.01, 0.02]}}))
    curves = {"LiH": [{**seeds, "files": [str(m / f"seed{k}" / "learning_curve.csv") for k in range(2)]}]}
    names = ("learning_png", "learning_pdf", "effdim_png", "effdim_pdf", "effdim_n_png", "effdim_n_pdf")
    out = {k: str(tmp_path / f"{k}.{k.rsplit('_', 1)[1]}") for k in names}
    figures_summary(curves, {"LiH": {"nn": str(effdim)}}, out)
    png_and_pdf(*out.values())


def test_run_md_dft_and_figure_md(lih_config, tmp_path):
    from qnnff.stages.figures import figure_md
    from qnnff.stages.md import run_md_dft

    lih_config["systems"]["LiH"]["md"].update(n_steps_dft=3, log_every=1)
    traj, summ = str(tmp_path / "dft.extxyz"), str(tmp_path / "dft.json")
    out = run_md_dft(job_of(MDJob, lih_config, "run_md_dft", system="LiH"), traj, summ)  # HF/STO-3G PySCF forces
    assert (out["model"], out["protocol"], out["n_steps"], out["r_start_A"]) == ("dft", None, 3, 2.2)
    frames = ds.read_frames(traj)
    assert len(frames) == 4 and frames[0].get_distance(0, 1) == pytest.approx(2.2)
    assert frames[-1].get_distance(0, 1) < 2.2  # released from a stretched bond: it contracts
    assert out["max_abs_energy_deviation_eV"] < 1e-3 and json.loads(Path(summ).read_text()) == json.loads(json.dumps(out))
    figure_md("LiH", ["dft", "dft"], [traj, traj], str(tmp_path / "md.png"), str(tmp_path / "md.pdf"))
    png_and_pdf(tmp_path / "md.png", tmp_path / "md.pdf")


def test_dft_slice_scans_the_slice_variable_with_the_others_held(test_config, tmp_path):
    from qnnff.stages.figures import dft_slice

    test_config["systems"]["H2O"]["slice"] = {"variable": "theta", "n": 3, "values": {"r1": 0.97, "r2": 1.01}}
    dft_slice(job_of(FiguresJob, test_config, "dft_slice", system="H2O"), str(tmp_path / "slice.extxyz"))
    frames = ds.read_frames(tmp_path / "slice.extxyz")
    lo, hi = test_config["systems"]["H2O"]["variables"]["theta"]
    assert [a.info["slice_value"] for a in frames] == pytest.approx(np.linspace(lo, hi, 3).tolist())
    assert all(a.info["converged"] and a.info["slice_variable"] == "theta" for a in frames)
    for a, x in zip(frames, np.linspace(lo, hi, 3)):
        assert (a.get_distance(0, 1), a.get_distance(0, 2), a.get_angle(1, 0, 2)) == pytest.approx((0.97, 1.01, x), abs=1e-6)  # extxyz digits
    assert np.all(np.isfinite([a.info["REF_energy"] for a in frames]))

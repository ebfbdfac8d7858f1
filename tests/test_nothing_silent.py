"""Issue 11 ("Nothing silent"): integrity, guards, honest resume, config checks, permissions."""

import os
import stat

import numpy as np
import pytest


def test_atomic_outputs_honour_the_umask(tmp_path):
    """Issue 11.11: atomic writes used mkstemp's 0600; outputs must get 0666 & ~umask like any other file."""
    from qnnff.io import write_text_atomic

    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "a.txt", "x")
        os.umask(0o002)
        write_text_atomic(tmp_path / "b.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b.txt").stat().st_mode) == 0o664


class _Planted:
    marker = None

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_planted_checkpoint_runs_no_code(tmp_path):
    """Issue 11.10: a checkpoint is loaded with weights_only=True; a pickle that runs code is refused (logged)."""
    import torch

    from qnnff.training import _load_checkpoint

    marker = tmp_path / "pwned"
    _Planted.marker = marker
    ck = tmp_path / "checkpoint.pt"
    torch.save({"fingerprint": {}, "payload": _Planted()}, ck)
    said = []
    assert _load_checkpoint(ck, {}, said.append) is None
    assert not marker.exists(), "loading the checkpoint executed code from it"
    assert any("unreadable" in s for s in said)


def _frames(n=6):
    from qnnff.dataset import make_frame

    rng = np.random.default_rng(0)
    return [make_frame(["O", "H", "H"], rng.normal(size=(3, 3)), float(rng.normal()), rng.normal(size=(3, 3)),
                       {"point": f"train-{i:05d}", "split": "train"}) for i in range(n)]


@pytest.mark.parametrize("cut", ["frame_boundary", "inside_number"])
def test_truncated_dataset_is_an_error_naming_file_expected_found(tmp_path, cut):
    """Issue 11.2: a dataset cut at a frame boundary or inside the last number is refused, not read short."""
    from qnnff.dataset import read_frames, write_frames
    from qnnff.integrity import IntegrityError

    path = tmp_path / "train.extxyz"
    write_frames(path, _frames())
    assert len(read_frames(path)) == 6
    lines = path.read_text().splitlines(keepends=True)
    if cut == "frame_boundary":
        text = "".join(lines[: 5 * 5])  # 5 of 6 frames (3 atoms + 2 header lines each)
    else:
        text = "".join(lines)[:-1].rstrip("\n")[:-3] + "\n"  # the last number loses digits
    path.write_text(text)
    with pytest.raises(IntegrityError) as err:
        read_frames(path)
    msg = str(err.value)
    assert str(path) in msg and "expected" in msg and "found" in msg and "snakemake" in msg


def test_truncated_or_edited_feature_file_is_an_error(tmp_path):
    """Issue 11.2: the npz feature files carry frame count + sha256; a file with a frame dropped is refused."""
    from qnnff.integrity import IntegrityError, load_npz, stamp_arrays

    arrays = {"positions": np.zeros((4, 3, 3)), "energy": np.arange(4.0)}
    good = tmp_path / "train.npz"
    np.savez(good, **stamp_arrays(arrays, 4))
    assert len(load_npz(good)["positions"]) == 4
    bad = tmp_path / "bad.npz"
    np.savez(bad, **{**stamp_arrays(arrays, 4), "positions": np.zeros((3, 3, 3))})
    with pytest.raises(IntegrityError, match=r"bad.npz: number of frames: expected 4, found 3"):
        load_npz(bad)
    cut = tmp_path / "cut.npz"
    cut.write_bytes(good.read_bytes()[:-40])
    with pytest.raises(IntegrityError, match="cut.npz"):
        load_npz(cut)


def _water_models():
    import torch
    from geometry_helpers import water_positions

    from qnnff.features import CoordinateFamily, EnergyScaler, Featurizer
    from qnnff.models.bpnn import BPNNForceField
    from qnnff.models.nn import NNForceField

    train = water_positions(np.random.default_rng(0), 32)
    fams = [CoordinateFamily("r_OH", "bond", ((0, 1), (0, 2))), CoordinateFamily("a_HOH", "angle", ((1, 0, 2),))]
    q = Featurizer(families=fams, feature_map="identity", lo=[0, 0, 0], hi=[1, 1, 1]).internal(torch.as_tensor(train))
    feat = Featurizer(families=fams, feature_map="arcsin", lo=q.min(0).values.tolist(), hi=q.max(0).values.tolist(),
                      symbols=["O", "H", "H"])
    scaler = EnergyScaler(center=-2079.6, scale=0.35)
    nn = NNForceField(featurizer=feat, energy_scaler=scaler, hidden=[4], seed=0)
    bpnn = BPNNForceField.from_training_data(train, symbols=["O", "H", "H"], energy_scaler=scaler, hidden=[4], seed=0)
    return {"nn": nn, "bpnn": bpnn}, train


def test_corrupt_model_artifact_names_the_rebuild_command(tmp_path):
    """Issue 11.6: a truncated or damaged model.zip is detected, with the exact command that rebuilds it."""
    from qnnff.integrity import IntegrityError
    from qnnff.models import load_model

    models, _ = _water_models()
    path = tmp_path / "model.zip"
    models["nn"].save(path)
    load_model(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(IntegrityError, match=r"rm '.*model.zip' && snakemake --cores 2 '.*model.zip'"):
        load_model(path)
    # a member whose bytes were changed inside a well-formed zip: the recorded sha256 catches it
    import json
    import zipfile

    models["nn"].save(path)
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    record = json.loads(members["integrity.json"])
    record["members"]["arrays.npz"]["sha256"] = "0" * 64
    members["integrity.json"] = json.dumps(record).encode()
    with zipfile.ZipFile(path, "w") as zf:
        for n, b in members.items():
            zf.writestr(n, b)
    with pytest.raises(IntegrityError, match="member arrays.npz: expected"):
        load_model(path)


def test_damaged_model_is_found_at_start_up(tmp_path):
    """Issue 11.6: the start-up check (common.smk) lists a damaged model.zip before any job could read it."""
    from qnnff.models.artifact import damaged_models

    models, _ = _water_models()
    good, bad = tmp_path / "results/X/models/nn/model.zip", tmp_path / "results/X/models/bpnn/model.zip"
    good.parent.mkdir(parents=True)
    bad.parent.mkdir(parents=True)
    models["nn"].save(good)
    models["bpnn"].save(bad)
    bad.write_bytes(bad.read_bytes()[:-100])
    problems = damaged_models(tmp_path)
    assert len(problems) == 1 and "bpnn/model.zip" in problems[0] and "snakemake --cores 2" in problems[0]


def _all_calculator_models():
    from qnnff.models.qnn import QNNForceField

    models, train = _water_models()
    circuit = dict(n_qubits=3, depth=1, feature_map="full", feature_map_reps=1, trainable_feature_map="full",
                   trainable_feature_map_reps=1)
    models["qnn"] = QNNForceField(featurizer=models["nn"].featurizer, energy_scaler=models["nn"].energy_scaler,
                                  circuit=circuit, seed=0)
    return models, train


@pytest.mark.parametrize("geometry", ["nan", "far", "overlapping"])
def test_every_model_calculator_rejects_bad_geometries(geometry):
    """Issue 11.3: QNN, NN and BPNN calculators all raise the OutOfDomainError family (never return a number)."""
    from ase import Atoms

    from qnnff.calculators import ModelCalculator, OutOfDomainError

    models, train = _all_calculator_models()
    good = train[0]
    pos = good.copy()
    if geometry == "nan":
        pos[1, 0] = np.nan
    elif geometry == "far":
        pos[1] = pos[0] + 10.0 * (pos[1] - pos[0]) / np.linalg.norm(pos[1] - pos[0])
    else:
        pos[1] = pos[0] + 1e-4
    for kind, model in models.items():
        calc = ModelCalculator(model)
        atoms = Atoms(["O", "H", "H"], positions=good, calculator=calc)
        assert np.isfinite(atoms.get_potential_energy())
        atoms.positions = pos
        with pytest.raises(OutOfDomainError):
            e = atoms.get_potential_energy()
            pytest.fail(f"{kind} calculator returned {e} eV for a {geometry} geometry")


def test_bpnn_domain_survives_the_artifact_and_md_started_outside_fails(tmp_path):
    """Issue 11.3: the BPNN's domain (training distances) is stored in the artifact; an MD started outside the domain
    raises instead of reporting completed: True."""
    from ase import Atoms

    from qnnff.calculators import ModelCalculator, OutOfDomainError
    from qnnff.md import run_nve
    from qnnff.models import load_model

    models, train = _water_models()
    models["bpnn"].save(tmp_path / "bpnn.zip")
    loaded = load_model(tmp_path / "bpnn.zip")
    want = models["bpnn"].distance_domain  # {pair: (lo, hi)}: pytest.approx takes no nested containers (pytest >= 9.2 raises)
    assert loaded.distance_domain.keys() == want.keys()
    for pair, bounds in want.items():
        assert loaded.distance_domain[pair] == pytest.approx(bounds), pair
    far = train[0].copy()
    far[2] = far[0] + 3.0 * (far[2] - far[0])
    with pytest.raises(OutOfDomainError, match="H-O distance"):
        run_nve(calculator=ModelCalculator(loaded), atoms=Atoms(["O", "H", "H"], positions=far), timestep_fs=0.5,
                n_steps=5, temperature_K=0.0, seed=0)


@pytest.mark.parametrize("case", ["empty", "nan", "close"])
def test_pyscf_calculator_rejects_bad_geometries_before_pyscf_runs(case, monkeypatch):
    """Issue 11.3: empty Atoms, NaN and a 0.05 A bond are clear errors raised before PySCF is called."""
    from ase import Atoms

    import qnnff.calculators as calcs
    from qnnff.dft import LevelOfTheory

    def no_pyscf(*a, **k):
        raise AssertionError("PySCF ran")

    monkeypatch.setattr(calcs, "single_point", no_pyscf)
    atoms = {"empty": Atoms(), "nan": Atoms("H2", positions=[[0, 0, 0], [0, 0, np.nan]]),
             "close": Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.05]])}[case]
    atoms.calc = calcs.PySCFCalculator(level=LevelOfTheory(method="hf", basis="sto-3g"))
    expected = {"empty": "empty Atoms", "nan": "NaN", "close": "0.0500 A apart"}[case]
    with pytest.raises(ValueError, match=expected):
        atoms.get_potential_energy()


# ---------------------------------------------------------------------------------------------- 11.4 and 11.5: config
def _repo_copy(repo, dest):
    import shutil

    for name in ("Snakefile", "workflow", "config", "profiles"):
        src = repo / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dest / name)
    return dest


def _dry_run(root, *args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", *args], cwd=root,
                          capture_output=True, text=True, timeout=300)


def test_user_configfile_from_the_repository_root_replaces_the_paper_config(tmp_path, repo, test_config):
    """Issue 11.4: `--configfile my.yaml` from the repository root runs the user's systems only, and keys the user
    left out are reported, not filled from config/config.yaml."""
    import yaml

    root = tmp_path / "clone"
    root.mkdir()
    _repo_copy(repo, root)
    cfg = dict(test_config, systems={"LiH": test_config["systems"]["LiH"]})
    cfg.pop("reproduction")  # the scorecard block names the paper's H2O and H3O+, which this user config does not have
    (root / "my.yaml").write_text(yaml.safe_dump(cfg))
    print("dry run with my.yaml (LiH only) from a copy of the repository root", flush=True)
    run = _dry_run(root, "--configfile", "my.yaml")
    assert run.returncode == 0, run.stdout + run.stderr
    plan = run.stdout + run.stderr
    assert "LiH" in plan
    for other in ("H2O", "H3O+"):
        assert f"system={other}" not in plan and f"results/{other}/" not in plan, f"{other} planned from the paper config"
    incomplete = {k: v for k, v in cfg.items() if k != "dft"}
    (root / "incomplete.yaml").write_text(yaml.safe_dump(incomplete))
    run = _dry_run(root, "--configfile", "incomplete.yaml")
    assert run.returncode != 0
    assert "incomplete.yaml" in run.stderr + run.stdout and "'dft' is a required property" in run.stderr + run.stdout


@pytest.mark.parametrize("edit, key", [
    (lambda c: c["systems"]["H2O"]["md"].update(start={"thet": 104.5}), "systems.H2O.md.start.thet"),
    (lambda c: c["systems"]["H2O"]["slice"].update(variable="tehta"), "systems.H2O.slice.variable"),
    (lambda c: c["systems"]["H2O"]["slice"]["values"].update(r3=1.0), "systems.H2O.slice.values.r3"),
    (lambda c: c["systems"]["H3O+"]["models"]["qnn"]["aer"].update(noise="FakeLagos2"), "systems.H3O+.models.qnn.aer.noise"),
    (lambda c: c["systems"]["LiH"]["md"].update(start={"r": 1.6}), "systems.LiH.md.start"),
])
def test_late_keys_are_checked_at_start_up(paper_config, edit, key):
    """Issue 11.5: MD start keys, the slice variable and the Aer backend are checked at start-up, naming the key."""
    from qnnff.checks import check_config
    from qnnff.config import ConfigError

    edit(paper_config)
    with pytest.raises(ConfigError) as err:
        check_config(paper_config, source="my.yaml")
    assert key in str(err.value) and "my.yaml" in str(err.value)


def test_yaml_errors_name_file_line_and_column(tmp_path):
    """Issue 11.5: a YAML syntax error names file, line and column; an empty file names the file."""
    from qnnff.checks import load_config
    from qnnff.config import ConfigError

    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: 1\nsystems: {LiH: [1, 2}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml, line 2, column \d+: YAML syntax error"):
        load_config(bad)
    empty = tmp_path / "empty.yaml"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match=r"empty.yaml is empty"):
        load_config(empty)


def test_changing_only_aer_settings_does_not_change_the_model_hash(paper_config):
    """Issue 11.5: the QNN's training (its settings slice, the Snakemake params trigger, and its provenance hash)
    excludes the aer block."""
    from qnnff.protocols import model_hash
    from qnnff.settings import rule_settings

    def state():
        return model_hash(paper_config, "H2O", "qnn", "best"), rule_settings(paper_config, "train", system="H2O", kind="qnn", protocol="best")

    before = state()
    paper_config["systems"]["H2O"]["models"]["qnn"]["aer"]["shots"] = 99
    assert state() == before
    paper_config["systems"]["H2O"]["models"]["qnn"]["protocols"]["best"]["iterations"] += 1
    after = state()
    assert after[0] != before[0] and after[1] != before[1]


def test_a_second_run_is_told_another_run_holds_the_directory(tmp_path, repo):
    """Issue 11.7: with the directory locked (a busy or killed run), a run that would execute jobs says that another
    run holds the directory (and how to unlock a killed one) instead of advising --rerun-incomplete; a dry run and
    --unlock still work."""
    import subprocess
    import sys

    root = tmp_path / "clone"
    root.mkdir()
    _repo_copy(repo, root)
    locks = root / ".snakemake" / "locks"
    locks.mkdir(parents=True)
    (locks / "0.output.lock").write_text(str(root / "results/LiH/data/points.csv") + "\n")
    (root / "results/LiH/data").mkdir(parents=True)
    print("second run against a locked directory", flush=True)
    run = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "results/LiH/data/points.csv"], cwd=root,
                         capture_output=True, text=True, timeout=300)
    out = run.stdout + run.stderr
    assert run.returncode != 0 and "another Snakemake run holds this directory" in out and "--unlock" in out, out
    assert not (root / "results/LiH/data/points.csv").exists()
    # a dry run says the same, not Snakemake's "IncompleteFilesException ... --rerun-incomplete" (issue 26.14)
    dry = _dry_run(root, "results/LiH/data/points.csv")
    assert dry.returncode != 0 and "another Snakemake run holds this directory" in dry.stdout + dry.stderr
    assert "dry run" in dry.stdout + dry.stderr
    from qnnff.integrity import command_mode, run_executes_jobs

    assert not run_executes_jobs(["/usr/bin/snakemake", "--unlock"])
    assert run_executes_jobs(["/x/snakemake/__main__.py", "--cores", "2"])
    assert command_mode(["snakemake", "-n"]) == "dryrun" and command_mode(["snakemake", "-n", "--nolock"]) == "other"
    assert command_mode(["snakemake", "--unlock"]) == "unlock" and command_mode(["python", "x.py"]) == "other"


def test_first_contact_profiles_and_readme(repo):
    """Issue 11.9: no "Shell command: None" (printshellcmds with script-only rules), the README's Python versions match
    pyproject's requires-python, and the README points newcomers to `snakemake --report` on a fresh clone."""
    import re

    import yaml

    rules = "".join(p.read_text() for p in (repo / "workflow" / "rules").glob("*.smk")) + (repo / "Snakefile").read_text()
    if not re.search(r"^\s+shell:", rules, flags=re.M):
        for profile in ("default", "slurm"):
            cfg = yaml.safe_load((repo / "profiles" / profile / "config.yaml").read_text()) or {}
            assert not cfg.get("printshellcmds"), f"profiles/{profile}: printshellcmds prints 'Shell command: None'"
    req = re.search(r'requires-python\s*=\s*"([^"]+)"', (repo / "pyproject.toml").read_text()).group(1)
    lo, hi = re.fullmatch(r">=3\.(\d+),<3\.(\d+)", req).groups()
    readme = (repo / "README.md").read_text()
    for minor in range(int(lo), int(hi)):
        assert f"3.{minor}" in readme.split("```")[0], f"README's install line does not mention Python 3.{minor} ({req})"
    assert re.search(r"fresh clone.*snakemake --report|snakemake --report.*fresh clone", readme.replace("\n", " "))


def test_long_runs_report_progress(pytestconfig):
    """Issue 11.9: the long tests forward Snakemake's job headers to the terminal while they run."""
    import sys

    from progress_helpers import run_streaming

    said = []
    script = "print('rule dft_chunk:'); print('    wildcards: system=H2O'); print('noise'); print('3 of 7 steps (43%) done')"
    run = run_streaming([sys.executable, "-c", script], said.append, timeout=60, label="demo")
    assert run.returncode == 0
    assert [s.split(": ", 1)[1] for s in said[1:-1]] == ["rule dft_chunk:", "wildcards: system=H2O", "3 of 7 steps (43%) done"]


@pytest.mark.parametrize("n_atoms", [2, 3, 4])
def test_check_geometry_names_the_overlapping_pair(n_atoms):
    """The diatomic fast path and the pair matrix of larger molecules report the same pair and distance."""
    from qnnff.calculators import MIN_DISTANCE_A, OverlappingAtomsError, check_geometry

    pos = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.6], [1.5, 0.0, 0.0], [0.0, 1.5, 0.0]])[:n_atoms]
    check_geometry(pos, "m")  # fine
    pos[n_atoms - 1] = pos[n_atoms - 2] + [0.0, 0.0, 0.1]
    with pytest.raises(OverlappingAtomsError, match=rf"m: atoms {n_atoms - 2} and {n_atoms - 1} are 0.1000 A apart"):
        check_geometry(pos, "m")
    pos[n_atoms - 1] = pos[n_atoms - 2] + [0.0, 0.0, MIN_DISTANCE_A * 1.0001]
    check_geometry(pos, "m")  # just outside the limit

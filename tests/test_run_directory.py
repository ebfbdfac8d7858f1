"""Issue 26.8: a run with a config other than the committed paper config never writes into the repository's
committed results/: from the repository root it refuses to start and names the --directory to use."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from qnnff.checks import check_run_directory
from qnnff.config import ConfigError

REPO = Path(__file__).resolve().parents[1]
PAPER = REPO / "config" / "config.yaml"


def paper() -> dict:
    return yaml.safe_load(PAPER.read_text())


def test_the_paper_config_runs_in_the_repository_root():
    check_run_directory(paper(), workdir=REPO, repo=REPO, paper_config=PAPER)
    check_run_directory({**paper(), "studies": {"anything": {}}}, workdir=REPO, repo=REPO, paper_config=PAPER)  # studies aside


def test_another_config_in_the_root_is_refused_naming_the_directory(tmp_path):
    mine = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
    with pytest.raises(ConfigError) as err:
        check_run_directory(mine, workdir=REPO, repo=REPO, paper_config=PAPER, user_files=["config/test.yaml"])
    msg = str(err.value)
    assert "--configfile config/test.yaml --directory runs/test" in msg and "committed results/" in msg
    assert "systems.LiH" in msg and "seed" in msg  # what differs
    # a --config override is a different config too
    with pytest.raises(ConfigError, match=r"\(seeds\)"):
        check_run_directory({**paper(), "seeds": 1}, workdir=REPO, repo=REPO, paper_config=PAPER)
    # elsewhere, any config runs; so does a copy of the code without results (the SLURM proof's)
    check_run_directory(mine, workdir=tmp_path, repo=REPO, paper_config=PAPER, user_files=["config/test.yaml"])
    check_run_directory(mine, workdir=tmp_path, repo=tmp_path, paper_config=PAPER, user_files=["config/test.yaml"])


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_a_user_config_from_a_clones_root_changes_nothing(tmp_path):
    """From a clone's root, `snakemake --configfile my.yaml` (here the smoke config) stops at start-up; git status
    stays clean."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "config/test.yaml"],
                          cwd=clone, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
    assert "--directory runs/test" in proc.stdout + proc.stderr
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=clone, capture_output=True,
                            text=True, check=True).stdout
    assert [line for line in status.splitlines() if not line.endswith(".snakemake/")] == [], status


def test_a_bare_figure_target_in_a_fresh_clone_is_refused_with_the_profile_command(tmp_path):
    """Issue 26.11: the README's regenerate commands are safe on a fresh clone; a bare target that would recompute
    committed results upstream of it is refused, naming the regenerate profile."""
    from qnnff.integrity import fresh_clone_regeneration

    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "MANIFEST.sha256").write_text("")
    fig = "results/figures/LiH_curve.png"
    msg = fresh_clone_regeneration(["snakemake", "--cores", "2", fig], tmp_path, tmp_path)
    assert msg and f"snakemake --workflow-profile profiles/regenerate -f '{fig}'" in msg
    assert fresh_clone_regeneration(["snakemake", "--workflow-profile", "profiles/regenerate", "-f", fig], tmp_path, tmp_path) is None
    assert fresh_clone_regeneration(["snakemake", "--cores", "2"], tmp_path, tmp_path) is None  # everything: a choice
    assert fresh_clone_regeneration(["snakemake", "--cores", "2", "results/H2O/data/train.extxyz"], tmp_path, tmp_path) is None
    assert fresh_clone_regeneration(["snakemake", "-n", fig], tmp_path, tmp_path) is None  # a dry run only looks
    (tmp_path / ".snakemake" / "metadata").mkdir(parents=True)
    (tmp_path / ".snakemake" / "metadata" / "x").write_text("{}")
    assert fresh_clone_regeneration(["snakemake", "--cores", "2", fig], tmp_path, tmp_path) is None  # Snakemake ran here


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_the_readme_regenerate_column_is_safe_on_a_fresh_clone(tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    fig = "results/figures/LiH_curve.png"
    bare = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", fig], cwd=clone, capture_output=True,
                          text=True, timeout=600)
    assert bare.returncode != 0 and "profiles/regenerate -f" in bare.stdout + bare.stderr
    status = subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True, check=True).stdout
    assert status == ""

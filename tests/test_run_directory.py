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

"""Issue 26.9: a rebuild hint repeats the run's directory, Snakefile and --configfile, and never points a run made
elsewhere at the repository's committed results."""

from __future__ import annotations

import shlex

import pytest

from qnnff.integrity import INVOCATION_ENV, rebuild_hint, set_invocation


@pytest.fixture()
def clean_env(monkeypatch):
    monkeypatch.delenv(INVOCATION_ENV, raising=False)
    return monkeypatch


def test_a_run_elsewhere_gets_its_directory_snakefile_and_configfile(clean_env, tmp_path):
    repo, run = tmp_path / "repo", tmp_path / "runs" / "mine"
    repo.mkdir()
    run.mkdir(parents=True)
    set_invocation(workdir=run, repo=repo, configfiles=[str(tmp_path / "my.yaml")])
    hint = rebuild_hint(run / "results/H2O/models/qnn/best/seed0/model.zip")
    rm, cmd = hint.removeprefix("rebuild it with: ").split(" && ", 1)
    assert shlex.split(rm) == ["rm", str(run / "results/H2O/models/qnn/best/seed0/model.zip")]  # the run's file, not the repo's
    words = shlex.split(cmd.split(" (Snakemake")[0])
    assert words[:3] == ["snakemake", "--cores", "2"]
    assert words[words.index("-s") + 1] == str(repo / "Snakefile") and words[words.index("--directory") + 1] == str(run)
    assert words[words.index("--configfile") + 1] == str(tmp_path / "my.yaml")
    assert words[-1] == "results/H2O/models/qnn/best/seed0/model.zip"
    # a path relative to the run's directory means the same file
    assert rebuild_hint("results/H2O/models/qnn/best/seed0/model.zip") == hint


def test_the_paper_run_in_the_repository_root_needs_no_flags(clean_env, tmp_path):
    set_invocation(workdir=tmp_path, repo=tmp_path)
    hint = rebuild_hint(tmp_path / "results/LiH/data/train.extxyz")
    assert "--directory" not in hint and "--configfile" not in hint and "-s " not in hint
    assert "snakemake --cores 2 results/LiH/data/train.extxyz" in hint


def test_without_a_recorded_invocation_the_hint_says_whose_directory(clean_env):
    assert "from the run's directory" in rebuild_hint("results/x.json")

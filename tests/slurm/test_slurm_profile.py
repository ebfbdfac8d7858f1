"""The SLURM workflow profile (profiles/slurm) and, on request, the one-node SLURM proof.

- the profile renders (YTE), selects the slurm executor and takes account/partition from the
  environment only when they are set;
- a dry run of the self-test workflow with `--workflow-profile profiles/slurm` applies the
  profile's resources (needs snakemake-executor-plugin-slurm: `pip install -e .[slurm]`);
- with QNNFF_SLURM_TEST=1, as root on Debian: tests/slurm/run_local_slurm.sh --selftest (installs
  SLURM, starts a private one-node cluster, runs the self-test locally and through SLURM,
  compares, stops everything; about 1-2 minutes).
"""

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROFILE = REPO / "profiles" / "slurm"
SELFTEST = REPO / "tests" / "slurm" / "selftest" / "Snakefile"
HAS_PLUGIN = importlib.util.find_spec("snakemake_executor_plugin_slurm") is not None


def render_profile():
    from snakemake.profiles import ProfileConfigFileParser

    with open(PROFILE / "config.yaml") as fh:
        return ProfileConfigFileParser().parse(fh)


@pytest.fixture
def no_slurm_env(monkeypatch):
    for var in ("QNNFF_SLURM_ACCOUNT", "QNNFF_SLURM_PARTITION", "SBATCH_ACCOUNT", "SBATCH_PARTITION"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_profile_selects_slurm_and_leaves_account_partition_unset(no_slurm_env):
    prof = render_profile()
    assert prof["executor"] == "slurm"
    assert int(prof["jobs"]) >= 1
    assert prof["rerun-incomplete"] == "True"
    defaults = prof["default-resources"]
    assert not any(d.startswith(("slurm_account=", "slurm_partition=")) for d in defaults)
    assert "mem_mb=2000" in defaults and "runtime=60" in defaults
    assert "dft_chunk:runtime=120" in prof["set-resources"]


def test_profile_takes_account_and_partition_from_env(no_slurm_env):
    no_slurm_env.setenv("QNNFF_SLURM_ACCOUNT", "proj 1")
    no_slurm_env.setenv("SBATCH_PARTITION", "all")  # fallback variable; a Python builtin's name
    defaults = render_profile()["default-resources"]
    assert "slurm_account='proj 1'" in defaults
    assert "slurm_partition='all'" in defaults
    no_slurm_env.setenv("QNNFF_SLURM_PARTITION", "short")  # the qnnff variable wins
    assert "slurm_partition='short'" in render_profile()["default-resources"]


@pytest.mark.skipif(not HAS_PLUGIN, reason="snakemake-executor-plugin-slurm not installed (pip install -e .[slurm])")
def test_dry_run_applies_profile_resources(tmp_path, no_slurm_env):
    no_slurm_env.setenv("QNNFF_SLURM_ACCOUNT", "acct")
    no_slurm_env.setenv("QNNFF_SLURM_PARTITION", "part")
    out = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--workflow-profile", str(PROFILE), "-s", str(SELFTEST)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    log = out.stdout + out.stderr
    assert f"workflow specific profile {PROFILE}" in log
    blocks = re.findall(r"^(local)?rule (\w+):\n(?:    .*\n)*?    resources: (.*)$", log, re.M)
    res = {name: (bool(local), r) for local, name, r in blocks}  # (a dry run shows no "localrule")
    assert {"sample_points", "dft_chunk", "assemble_dataset", "report"} <= set(res), log
    assert "runtime=120" in res["dft_chunk"][1]  # set-resources of the profile
    assert "mem_mb=300" in res["assemble_dataset"][1]  # the rule's own resources win over defaults
    assert "slurm_account=acct" in res["sample_points"][1]
    assert "slurm_partition=part" in res["sample_points"][1]


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("QNNFF_SLURM_TEST") != "1", reason="set QNNFF_SLURM_TEST=1 (root, Debian 12)")
def test_local_slurm_cluster_selftest():
    assert os.geteuid() == 0, "run_local_slurm.sh needs root"
    assert shutil.which("apt-get") or shutil.which("sbatch"), "needs Debian's apt-get (or SLURM installed)"
    out = subprocess.run(
        ["bash", str(REPO / "tests" / "slurm" / "run_local_slurm.sh"), "--selftest"],
        cwd=REPO, capture_output=True, text=True, timeout=1800,
    )
    assert out.returncode == 0, out.stdout + out.stderr[-6000:]
    assert "OK: self-test ran on SLURM" in out.stdout
    assert "0 difference(s)" in out.stderr

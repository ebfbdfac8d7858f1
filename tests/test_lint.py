"""Lint (issue 12): ruff on every Python file and snakefmt on the Snakefile and rule files, with the settings in
pyproject.toml. A finding fails the test suite, and with it `.ci/run`."""

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_ruff():
    proc = run(sys.executable, "-m", "ruff", "check", "--no-cache", ".")
    assert proc.returncode == 0, f"ruff findings (fix them or `ruff check --fix .`):\n{proc.stdout}\n{proc.stderr}"


def test_snakefmt():
    exe = shutil.which("snakefmt") or str(Path(sys.executable).parent / "snakefmt")
    assert Path(exe).exists(), "snakefmt is missing: it is in the test extra, pip install -e .[test]"
    proc = run(exe, "--check", "Snakefile", "workflow/rules")
    assert proc.returncode == 0, f"snakefmt would reformat (run `snakefmt Snakefile workflow/rules`):\n{proc.stderr}"

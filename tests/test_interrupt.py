"""Interruption and resume: kill Snakemake in the middle of the DFT stage, rerun, lose nothing."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import yaml
from progress_helpers import run_streaming, terminal_writer


def _config(test_config: dict, path: Path) -> Path:
    cfg = dict(test_config)
    h2o = cfg["systems"]["H2O"]
    h2o["sampling"] = {"train": {"design": "lhs", "n": 12}, "test": {"design": "random", "n": 3}}  # 4 + 1 chunks of 3
    h2o.pop("models", None)
    cfg["systems"] = {"H2O": h2o}
    cfg.pop("reproduction", None)  # the scorecard block names models this config drops
    cfg["dft"] = dict(cfg["dft"], chunk_size=3)
    path.write_text(yaml.safe_dump(cfg))
    return path


def _cmd(repo: Path, work: Path, cf: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "--directory", str(work),
            "--configfile", str(cf), "--cores", "2", "--until", "features", *extra]


def _arrays(work: Path) -> dict[str, np.ndarray]:
    from qnnff.dataset import read_frames, to_arrays

    out = {}
    for split in ("train", "test"):
        for k, v in to_arrays(read_frames(work / f"results/H2O/data/{split}.extxyz")).items():
            out[f"{split}/{k}"] = v
    return out


@pytest.mark.slow
def test_interrupt_and_resume(tmp_path, repo, test_config, pytestconfig):
    say = terminal_writer(pytestconfig)  # live progress: this test takes minutes
    say("interrupt test: DFT stage of H2O (5 chunks), interrupted after 3 chunks")
    cf = _config(test_config, tmp_path / "cfg.yaml")
    work = tmp_path / "interrupted"
    chunks = work / "results/H2O/data/chunks"
    proc = subprocess.Popen(_cmd(repo, work, cf), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # wait until some, but not all, of the 5 chunks are done: with 2 cores the first two finish together and are
    # registered by Snakemake by the time a third has finished; the fifth has not, so 3 or 4 are done when it stops
    t0 = time.time()
    while len(list(chunks.glob("*.json"))) < 3:
        assert proc.poll() is None, "snakemake finished before it could be interrupted:\n" + proc.stdout.read()
        assert time.time() - t0 < 240, "no chunk finished in time"
        time.sleep(0.05)
    time.sleep(0.5)
    running = [p for p in psutil.Process(proc.pid).children(recursive=True)]
    proc.send_signal(signal.SIGINT)
    for p in running:  # a running job dies hard, as on a killed node
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    proc.communicate(timeout=120)
    say("interrupt test: interrupted; checking what is kept")
    done_before = {p.name: p.stat().st_mtime_ns for p in chunks.glob("*.json")}
    n_total = 5
    assert 0 < len(done_before) < n_total, f"interrupt came too late or too early: {sorted(done_before)}"
    # no half-written file looks complete: every finished json has its extxyz, no temp file survives as final
    for name in done_before:
        assert (chunks / name.replace(".json", ".extxyz")).is_file()
    assert not (work / "results/H2O/data/train.extxyz").exists()

    # what Snakemake will redo: missing chunks, plus the (at most 2 = --cores) jobs that were running when
    # killed, even if their files were already written (their completion was never recorded)
    dry = subprocess.run(_cmd(repo, work, cf, "--rerun-incomplete", "-n"), capture_output=True, text=True, timeout=300)
    assert dry.returncode == 0, dry.stderr[-4000:]
    import re

    redo = set(re.findall(r"chunk=((?:train|test)-\d{3})", dry.stdout + dry.stderr))
    missing = {f"{s}-{k:03d}" for s, n in (("train", 4), ("test", 1)) for k in range(n)} - {n[:-5] for n in done_before}
    assert missing <= redo
    assert len(redo - missing) <= 2, f"finished chunks would be redone: {sorted(redo - missing)}"
    assert len(redo) < n_total, "nothing was kept"

    rerun = run_streaming(_cmd(repo, work, cf, "--rerun-incomplete"), say, timeout=2400, label="resume")
    assert rerun.returncode == 0, rerun.stdout[-4000:]
    for name, mtime in done_before.items():
        if name[:-5] not in redo:
            assert (chunks / name).stat().st_mtime_ns == mtime, f"{name} was recomputed"
    log = rerun.stdout + rerun.stderr
    assert log.count("rule dft_chunk:") == len(redo)

    # the same numbers as an uninterrupted run
    clean = tmp_path / "clean"
    ok = run_streaming(_cmd(repo, clean, cf), say, timeout=2400, label="uninterrupted reference run")
    assert ok.returncode == 0, ok.stdout[-4000:]
    a, b = _arrays(work), _arrays(clean)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=0, atol=1e-9, err_msg=k)
    for name in ("scalers.json",):
        assert (work / f"results/H2O/features/{name}").read_text() == (clean / f"results/H2O/features/{name}").read_text()

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

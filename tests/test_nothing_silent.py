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

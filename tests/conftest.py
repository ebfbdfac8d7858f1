import os
from pathlib import Path

import pytest
import torch
import yaml

# one thread: two torch threads are slower than one on this 2-core machine, and PySCF likewise
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture()
def paper_config() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


@pytest.fixture()
def test_config() -> dict:
    return yaml.safe_load((REPO / "config" / "test.yaml").read_text())

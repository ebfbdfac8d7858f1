"""qnnff.optim.LBFGS: torch's L-BFGS, steps bitwise unchanged, without importing torch._dynamo."""

from __future__ import annotations

import subprocess
import sys

import pytest

RUN = """
import sys, torch
torch.manual_seed(0)
A = torch.randn(8, 8, dtype=torch.float64)
A = A @ A.T + torch.eye(8, dtype=torch.float64)
b = torch.randn(8, dtype=torch.float64)
p = torch.nn.Parameter(torch.zeros(8, dtype=torch.float64))
if {ours}:
    from qnnff.optim import LBFGS
else:
    from torch.optim import LBFGS
opt = LBFGS([p], lr=1.0, max_iter=6, history_size=4, line_search_fn="strong_wolfe")
def closure():
    opt.zero_grad()
    loss = 0.5 * p @ A @ p - b @ p + (p ** 4).sum()
    loss.backward()
    return loss
for _ in range(3):
    opt.step(closure)
state = opt.state_dict()
opt.load_state_dict(state)
opt.step(closure)
print(repr(p.detach().tolist()), "torch._dynamo" in sys.modules)
"""


def _run(ours: bool) -> tuple[str, bool]:
    out = subprocess.run([sys.executable, "-c", RUN.format(ours=ours)], capture_output=True, text=True, check=True)
    weights, dynamo = out.stdout.strip().rsplit(" ", 1)
    return weights, dynamo == "True"


@pytest.fixture(scope="module")
def runs():
    return {"torch": _run(False), "qnnff": _run(True)}


def test_steps_are_bitwise_torchs(runs):
    assert runs["qnnff"][0] == runs["torch"][0]


def test_dynamo_is_not_imported(runs):
    assert runs["torch"][1], "torch.optim.LBFGS no longer imports torch._dynamo: qnnff.optim is not needed"
    assert not runs["qnnff"][1], "qnnff.optim.LBFGS imported torch._dynamo (2-2.5 s per training job)"


TRAIN = """
import sys
sys.path.insert(0, {tests!r})
from test_training import fresh, make_data
from qnnff.training import train
data = make_data()
train(fresh(data), data[2], optimizer="lbfgs", iterations=12, chi=1.0, seed=0)
print("torch._dynamo" in sys.modules)
"""


def test_an_lbfgs_training_does_not_import_dynamo():
    """qnnff.training's L-BFGS goes through qnnff.optim (a training job's start-up: 2-2.5 s less)."""
    from pathlib import Path

    tests = str(Path(__file__).parent)
    out = subprocess.run([sys.executable, "-c", TRAIN.format(tests=tests)], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"

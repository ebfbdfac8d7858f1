"""The generic trainer: the paper's loss, reproducibility, force gradients, checkpoints and resuming, curves."""

import csv

import pytest
import torch
from geometry_helpers import water_batch

from qnnff.features import CoordinateFamily, EnergyScaler, Featurizer
from qnnff.models.base import TrainingBatch
from qnnff.models.qnn import QNNForceField
from qnnff.training import Adam, loss_terms, train

CIRCUIT = dict(n_qubits=3, depth=2, feature_map="full", feature_map_reps=2, trainable_feature_map="full",
               trainable_feature_map_reps=2)


def water_positions(n, seed=0):
    return water_batch(n, seed, oriented=False)


def toy_energy(pos):
    """A smooth water-like potential (eV): Morse O-H stretches + harmonic bend in cos(theta)."""
    u, v = pos[:, 1] - pos[:, 0], pos[:, 2] - pos[:, 0]
    r1, r2 = u.norm(dim=-1), v.norm(dim=-1)
    c = (u * v).sum(-1) / (r1 * r2)
    return 4.0 * ((1 - torch.exp(-2.2 * (r1 - 0.97))) ** 2 + (1 - torch.exp(-2.2 * (r2 - 0.97))) ** 2) + 2.0 * (c + 0.25) ** 2


@pytest.fixture(scope="module")
def data():
    return make_data()


def make_data():
    pos = water_positions(40)
    fams = [CoordinateFamily("r_OH", "bond", ((0, 1), (0, 2))), CoordinateFamily("a_HOH", "angle", ((1, 0, 2),))]
    probe = Featurizer(families=fams, feature_map="arcsin", lo=[0.0] * 3, hi=[1e3] * 3, symbols=["O", "H", "H"])
    q = probe.internal(pos)
    fz = Featurizer(families=fams, feature_map="arcsin", lo=q.min(0).values.tolist(), hi=q.max(0).values.tolist(),
                    symbols=["O", "H", "H"])
    p = pos.clone().requires_grad_(True)
    e = toy_energy(p)
    (g,) = torch.autograd.grad(e.sum(), p)
    sc = EnergyScaler.fit(e.detach().numpy())
    x, jac = fz.features_and_jacobian(pos)
    batch = TrainingBatch(pos, ((e - sc.center) / sc.scale).detach(), (-g / sc.scale).detach(), x, jac)
    return fz, sc, batch


def fresh(data, seed=3):
    fz, sc, _ = data
    return QNNForceField(featurizer=fz, energy_scaler=sc, circuit=CIRCUIT, seed=seed)


def weights(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def test_loss_is_the_papers(data):
    _, _, batch = data
    model = fresh(data)
    total, e, f = loss_terms(model, batch, chi=0.5, create_graph=False)
    y, fr = model.scaled_energy_and_forces(batch, create_graph=False)
    n_atoms = batch.positions.shape[1]
    e_ref = ((y - batch.y) ** 2).sum() / len(batch)
    f_ref = 0.5 / (3 * n_atoms) * ((fr - batch.f) ** 2).sum() / len(batch)
    assert torch.allclose(e, e_ref) and torch.allclose(f, f_ref) and torch.allclose(total, e_ref + f_ref)
    t0, e0, f0 = loss_terms(model, batch, chi=0.0, create_graph=False)
    assert torch.allclose(e0, e_ref) and float(f0) == 0.0 and torch.allclose(t0, e0)


def test_force_term_sends_gradient_even_when_energies_are_exact(data):
    _, _, batch = data
    model = fresh(data)
    with torch.no_grad():
        y, f = model.scaled_energy_and_forces(batch, create_graph=False)
    perfect_e = TrainingBatch(batch.positions, y.clone(), batch.f, batch.x, batch.jac)
    total, e, fpart = loss_terms(model, perfect_e, chi=1.0)
    assert e.item() < 1e-28 and fpart.item() > 0
    grads = torch.autograd.grad(total, [p for p in model.parameters()])
    gnorm = torch.sqrt(sum((g**2).sum() for g in grads))
    assert gnorm > 1e-3  # the force loss reaches the circuit weights through the mixed second derivatives
    # ... and one Adam step on it changes the weights
    before = weights(model)
    train(model, perfect_e, optimizer="adam", iterations=1, lr=0.01, chi=1.0, seed=0, log=lambda s: None)
    assert not torch.equal(before, weights(model))


@pytest.mark.parametrize("optimizer", ["adam", "cobyla"])
def test_same_seed_same_weights(data, optimizer):
    _, _, batch = data
    runs = []
    for _ in range(2):
        model = fresh(data)
        train(model, batch, optimizer=optimizer, iterations=6 if optimizer == "adam" else 40, lr=0.02, chi=1.0, seed=5,
              batch_size=16 if optimizer == "adam" else None, log=lambda s: None)
        runs.append(weights(model))
    assert torch.equal(runs[0], runs[1])
    other = fresh(data)
    train(other, batch, optimizer=optimizer, iterations=6 if optimizer == "adam" else 40, lr=0.02, chi=1.0, seed=6,
          batch_size=16 if optimizer == "adam" else None,
          rhobeg=0.4, log=lambda s: None)
    assert not torch.equal(runs[0], weights(other))


def _adam_run(opt, params, steps, lrs):
    traj = []
    for it in range(steps):
        opt.param_groups[0]["lr"] = lrs[it]
        opt.zero_grad()
        loss = (params[0] ** 2).sum() + (params[0] * params[1]).sum().sin()
        if it % 3 != 2:  # every third step the second tensor gets no gradient: both skip it
            loss = loss + (params[1] ** 3).sum()
        loss.backward()
        if it % 3 == 2:
            params[1].grad = None
        opt.step()
        traj.append(torch.cat([p.detach().reshape(-1).clone() for p in params]))
    return traj


def test_functional_adam_is_torch_adam_bitwise_and_shares_its_checkpoints():
    def init():
        g = torch.Generator().manual_seed(4)
        return [torch.nn.Parameter(torch.randn(3, 2, dtype=torch.float64, generator=g)),
                torch.nn.Parameter(torch.randn(2, dtype=torch.float64, generator=g))]

    lrs = [0.05 * 0.9**k for k in range(12)]
    p_ref, p_new = init(), init()
    ref, new = torch.optim.Adam(p_ref, lr=lrs[0]), Adam(p_new, lr=lrs[0])
    a, b = _adam_run(ref, p_ref, 12, lrs), _adam_run(new, p_new, 12, lrs)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], a[-1])
    # a checkpoint of either continues in the other, bitwise
    sd_ref, sd_new = ref.state_dict(), new.state_dict()
    assert sd_ref["state"].keys() == sd_new["state"].keys()
    for k, s in sd_ref["state"].items():
        assert all(torch.equal(s[n], sd_new["state"][k][n]) and s[n].dtype == sd_new["state"][k][n].dtype for n in s)
    cont = {}
    for name, src, cls in (("new<-torch", sd_ref, Adam), ("torch<-new", sd_new, torch.optim.Adam)):
        ps = [torch.nn.Parameter(p.detach().clone()) for p in p_ref]
        opt = cls(ps, lr=1.0)
        opt.load_state_dict(src)
        cont[name] = _adam_run(opt, ps, 5, lrs[:5])
    tail = _adam_run(ref, p_ref, 5, lrs[:5])
    for name, traj in cont.items():
        assert all(torch.equal(x, y) for x, y in zip(traj, tail)), name
    with pytest.raises(ValueError, match="one group of 1"):
        Adam([torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))], lr=0.1).load_state_dict(sd_ref)


def test_adam_training_does_not_import_torch_dynamo():
    """Building a torch Optimizer costs a training job 0.9 s of torch._dynamo import; a QNN trained with Adam must not."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys\n"
            f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
            "from test_training import fresh, make_data\n"
            "from qnnff.training import train\n"
            "data = make_data()\n"
            "res = train(fresh(data), data[2], optimizer='adam', iterations=3, lr=0.02, chi=1.0, seed=0, log=lambda s: None)\n"
            "assert res.iterations == 3 and res.final_loss < res.history[0]['loss'], res\n"
            "print('torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"


class Killed(Exception):
    pass


def test_adam_checkpoint_resume_equals_uninterrupted_run(data, tmp_path):
    _, _, batch = data
    kw = dict(optimizer="adam", iterations=10, lr=0.03, chi=1.0, seed=2, batch_size=24, log=lambda s: None)
    ref = fresh(data)
    ref_result = train(ref, batch, **kw)

    ck = tmp_path / "ck.pt"
    curve = tmp_path / "curve.csv"

    def kill_after_5(it, rec):
        if it == 5:
            raise Killed

    model = fresh(data)
    with pytest.raises(Killed):
        train(model, batch, checkpoint_path=ck, checkpoint_every=5, curve_path=curve, callback=kill_after_5, **kw)
    assert ck.exists()
    resumed = fresh(data)  # a new process: fresh model, same settings
    result = train(resumed, batch, checkpoint_path=ck, checkpoint_every=5, curve_path=curve, **kw)
    assert result.resumed_from == 5 and result.iterations == 10
    assert torch.equal(weights(resumed), weights(ref))
    assert [r["loss"] for r in result.history] == [r["loss"] for r in ref_result.history]
    rows = list(csv.DictReader(curve.open()))
    assert [int(r["iteration"]) for r in rows] == list(range(1, 11))
    assert set(rows[0]) >= {"iteration", "loss", "energy_loss", "force_loss", "elapsed_s"}


def test_cobyla_resume_restarts_from_checkpoint_and_foreign_checkpoint_is_ignored(data, tmp_path):
    _, _, batch = data
    ck = tmp_path / "ck.pt"
    kw = dict(optimizer="cobyla", iterations=80, chi=1.0, seed=0, rhobeg=0.3, log=lambda s: None)

    def kill_after_40(it, rec):
        if it == 40:
            raise Killed

    with pytest.raises(Killed):
        train(fresh(data), batch, checkpoint_path=ck, checkpoint_every=10, callback=kill_after_40, **kw)
    model = fresh(data)
    result = train(model, batch, checkpoint_path=ck, checkpoint_every=10, **kw)
    assert result.resumed_from == 40 and result.iterations == 80
    assert result.final_loss <= min(r["loss"] for r in result.history) + 1e-12
    assert result.final_loss < result.history[0]["loss"]
    with pytest.raises(ValueError, match="at least"):
        train(fresh(data), batch, optimizer="cobyla", iterations=10, chi=1.0, seed=0)
    # a checkpoint written with other settings is not used
    messages = []
    other = train(fresh(data), batch, checkpoint_path=ck, optimizer="adam", iterations=3, lr=0.01, chi=1.0, seed=0,
                  log=messages.append)
    assert other.resumed_from is None and any("other settings" in m for m in messages)


def test_validation_columns_and_energy_only_path(data, tmp_path):
    _, _, batch = data
    model = fresh(data)
    idx = torch.arange(len(batch))
    tr, va = batch.subset(idx[:30]), batch.subset(idx[30:])
    curve = tmp_path / "c.csv"
    lines = []
    res = train(model, tr, optimizer="adam", iterations=20, lr=0.05, chi=0.0, seed=0, curve_path=curve, val_batch=va,
                val_every=5, log=lines.append, log_every=10)
    rows = list(csv.DictReader(curve.open()))
    assert len(rows) == 20 and rows[4]["val_loss"] != "" and rows[0]["val_loss"] == ""
    assert all(float(r["force_loss"]) == 0.0 for r in rows)
    assert res.history[-1]["loss"] < res.history[0]["loss"]
    assert any("iter 10/20" in s and "elapsed" in s for s in lines)


def test_trainer_is_generic_nn(data):
    from qnnff.models.nn import NNForceField

    fz, sc, batch = data
    model = NNForceField(featurizer=fz, energy_scaler=sc, hidden=[5, 5], seed=0)
    res = train(model, batch, optimizer="adam", iterations=30, lr=0.02, chi=1.0, seed=0, log=lambda s: None)
    assert res.final_loss < res.history[0]["loss"]


def test_cobyla_resume_with_less_than_a_simplex_left_still_completes_the_budget(data, tmp_path):
    """Issue 11.1: killed after its last checkpoint with fewer than n+2 evaluations left, a resumed COBYLA must not
    ship the checkpoint's parameters as if the budget had been spent."""
    _, _, batch = data
    n = sum(p.numel() for p in fresh(data).parameters() if p.requires_grad)
    budget = n + 2 + 10
    ck = tmp_path / "ck.pt"
    kw = dict(optimizer="cobyla", iterations=budget, chi=1.0, seed=0, rhobeg=0.3, log=lambda s: None)

    def kill(it, rec):
        if it == n + 2:
            raise Killed

    with pytest.raises(Killed):
        train(fresh(data), batch, checkpoint_path=ck, checkpoint_every=n + 2, callback=kill, **kw)
    messages = []
    result = train(fresh(data), batch, checkpoint_path=ck, checkpoint_every=n + 2, **dict(kw, log=messages.append))
    assert result.resumed_from == n + 2
    assert result.iterations_configured == budget
    assert result.iterations_done >= budget, f"resumed COBYLA shipped after {result.iterations_done} of {budget} evaluations"
    assert any("minimum" in m for m in messages)


def test_first_eta_excludes_warm_up(data):
    """Issue 11.9: the first progress line has no ETA extrapolated from the warm-up iteration."""
    _, _, batch = data
    messages = []
    train(fresh(data), batch, optimizer="adam", iterations=4, lr=0.01, chi=1.0, seed=0, log=messages.append, log_every=1)
    it_lines = [m for m in messages if m.startswith("iter ")]
    assert "s left" not in it_lines[0] and "estimated after" in it_lines[0]
    assert "s left" in it_lines[-1]


# ------------------------------------------------------------------ L-BFGS (issue 30)
LBFGS = dict(optimizer="lbfgs", chi=1.0, seed=2, history_size=20, log=lambda s: None)


def test_lbfgs_lowers_the_loss_far_below_adam_at_equal_evaluations(data):
    from qnnff.models.nn import NNForceField

    fz, sc, batch = data
    runs = {}
    for opt in ("adam", "lbfgs"):
        model = NNForceField(featurizer=fz, energy_scaler=sc, hidden=[6, 6], seed=1)
        runs[opt] = train(model, batch, iterations=150, lr=0.02, **{**LBFGS, "optimizer": opt})
    # a smooth, small, full-batch problem: the second-order method goes much further with the same loss evaluations
    assert runs["lbfgs"].final_loss < 0.2 * runs["adam"].final_loss
    assert 150 <= runs["lbfgs"].iterations <= 150 + 25 or "converged" in runs["lbfgs"].message
    its = [r["iteration"] for r in runs["lbfgs"].history]
    assert its == list(range(1, len(its) + 1))  # one learning-curve row per loss evaluation


def test_lbfgs_resume_after_a_kill_between_two_line_searches_equals_the_uninterrupted_run(data, tmp_path):
    from qnnff.training import LBFGS_STEP_EVALUATIONS

    _, _, batch = data
    kw = dict(iterations=60, **LBFGS)
    ref = fresh(data)
    ref_result = train(ref, batch, **kw)
    assert ref_result.iterations >= 60 and "budget" in ref_result.message
    ck = tmp_path / "ck.pt"
    seen = {}

    def kill(it, rec):  # mid-step: after the first checkpoint, in the middle of a later outer step's line searches
        if ck.exists() and "at" not in seen:
            seen["at"] = it + 3
        if it == seen.get("at"):
            raise Killed

    model = fresh(data)
    with pytest.raises(Killed):
        train(model, batch, checkpoint_path=ck, checkpoint_every=10, callback=kill, **kw)
    at = torch.load(ck, weights_only=True)["iteration"]
    assert 10 <= at < seen["at"] and at <= 10 + LBFGS_STEP_EVALUATIONS + 25
    resumed = fresh(data)
    result = train(resumed, batch, checkpoint_path=ck, checkpoint_every=10, **kw)
    assert result.resumed_from == at and result.iterations == ref_result.iterations
    assert torch.equal(weights(resumed), weights(ref))
    assert [r["loss"] for r in result.history] == [r["loss"] for r in ref_result.history]


def test_lbfgs_stops_when_converged_and_refuses_minibatches(data):
    _, _, batch = data
    model = fresh(data)
    res = train(model, batch, iterations=100, **{**LBFGS, "tolerance_grad": 1e3})  # every gradient is below this
    assert res.iterations == 1 and "converged" in res.message
    with pytest.raises(ValueError, match="full-batch"):
        train(fresh(data), batch, iterations=10, batch_size=8, **LBFGS)
    with pytest.raises(ValueError, match="history_size"):
        train(fresh(data), batch, iterations=10, **{**LBFGS, "history_size": 0})


@pytest.mark.parametrize("phase", ["adam", "lbfgs"])  # killed in the Adam phase, or between two line searches of L-BFGS
def test_adam_then_lbfgs_resumes_bitwise_from_either_phase(data, tmp_path, phase):
    _, _, batch = data
    kw = dict(optimizer="adam+lbfgs", iterations=6, lbfgs_evaluations=60, lr=0.03, chi=1.0, seed=4, history_size=10,
              log=lambda s: None)
    ref = fresh(data)
    ref_result = train(ref, batch, **kw)
    its = [r["iteration"] for r in ref_result.history]
    assert its == list(range(1, len(its) + 1)) and 66 <= its[-1] <= 66 + 25 and "after 6 Adam steps" in ref_result.message
    ck = tmp_path / "ck.pt"
    at = {}

    def kill(it, rec):
        if phase == "adam" and it == 4:
            raise Killed
        if phase == "lbfgs" and "it" not in at and ck.exists() and torch.load(ck, weights_only=True)["phase"] == "lbfgs":
            at["it"] = it + 3
        if it == at.get("it"):
            raise Killed

    with pytest.raises(Killed):
        train(fresh(data), batch, checkpoint_path=ck, checkpoint_every=3, callback=kill, **kw)
    assert torch.load(ck, weights_only=True)["phase"] == phase
    resumed = fresh(data)
    result = train(resumed, batch, checkpoint_path=ck, checkpoint_every=3, **kw)
    assert torch.equal(weights(resumed), weights(ref))
    assert [r["loss"] for r in result.history] == [r["loss"] for r in ref_result.history]
    with pytest.raises(ValueError, match="lbfgs_evaluations"):
        train(fresh(data), batch, **{**kw, "lbfgs_evaluations": None})

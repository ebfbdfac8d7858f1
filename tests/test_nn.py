"""The classical network of equal complexity (kind "nn")."""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pytest
import torch
from geometry_helpers import random_rotation, water_positions

from qnnff.features import CoordinateFamily, EnergyScaler, Featurizer
from qnnff.models import TrainingBatch, load_model
from qnnff.models.nn import ACTIVATIONS, MLP, Architecture, NNForceField, architecture_for_parameters, mlp_parameter_count

SCALER = EnergyScaler(center=-2079.6, scale=0.35)


def water_featurizer(train: np.ndarray) -> Featurizer:
    fams = [CoordinateFamily("r_OH", "bond", ((0, 1), (0, 2))), CoordinateFamily("a_HOH", "angle", ((1, 0, 2),))]
    q = Featurizer(families=fams, feature_map="identity", lo=[0, 0, 0], hi=[1, 1, 1]).internal(torch.as_tensor(train))
    return Featurizer(families=fams, feature_map="arcsin", lo=q.min(0).values.tolist(), hi=q.max(0).values.tolist(), symbols=["O", "H", "H"])


@pytest.fixture(scope="module")
def water():
    rng = np.random.default_rng(0)
    train = water_positions(rng, 64)
    return water_featurizer(train), train


def lih_featurizer() -> Featurizer:
    return Featurizer(families=[CoordinateFamily("r", "bond", ((0, 1),))], feature_map="pi_arcsin_arccos", lo=[1.2], hi=[2.4], symbols=["Li", "H"])


def h3o_featurizer() -> Featurizer:
    fams = [
        CoordinateFamily("r", "bond", ((0, 1), (0, 2), (0, 3))),
        CoordinateFamily("a", "angle", ((1, 0, 2), (1, 0, 3))),
        CoordinateFamily("d", "dihedral", ((2, 1, 0, 3),)),
    ]
    return Featurizer(families=fams, feature_map="arcsin", lo=[0.9] * 3 + [100.0] * 2 + [100.0], hi=[1.1] * 3 + [120.0] * 2 + [140.0],
                      symbols=["O", "H", "H", "H"])


@pytest.mark.parametrize(
    "featurizer, target, hidden",
    [(lih_featurizer, 50, (3, 3, 5)), (None, 87, (4, 6, 5)), (h3o_featurizer, 135, (8, 4, 7))],
    ids=["LiH", "H2O", "H3O+"],
)
def test_exact_parameter_counts(water, featurizer, target, hidden):
    feat = water[0] if featurizer is None else featurizer()
    assert feat.n_features == (6 if target == 135 else 3)
    arch = architecture_for_parameters(feat.n_features, target)
    assert arch == Architecture(hidden=hidden, skip=False)
    model = NNForceField(featurizer=feat, energy_scaler=SCALER, target_parameters=target, seed=1)
    assert model.n_parameters() == target == mlp_parameter_count(feat.n_features, hidden)
    assert sum(p.numel() for p in model.parameters()) == target  # nothing frozen, nothing hidden
    # the explicit widths give the same network, and a wrong count is refused
    assert NNForceField(featurizer=feat, energy_scaler=SCALER, hidden=hidden, target_parameters=target).n_parameters() == target
    with pytest.raises(ValueError, match="not the requested"):
        NNForceField(featurizer=feat, energy_scaler=SCALER, hidden=(5,), target_parameters=target)


def test_architecture_rule():
    assert mlp_parameter_count(3, (4, 5), skip=True) == 50
    # one hidden layer on 3 features: plain 5h + 1 = 49 has no solution, with the skip 5h + 1 + 3 = 49 gives h = 9;
    # for 50 neither 5h + 1 nor 5h + 4 works, so the rule refuses
    assert architecture_for_parameters(3, 49, n_hidden_layers=1) == Architecture(hidden=(9,), skip=True)
    with pytest.raises(ValueError, match="exactly 50 trainable parameters"):
        architecture_for_parameters(3, 50, n_hidden_layers=1)
    with pytest.raises(ValueError, match="give `hidden`"):
        NNForceField(featurizer=lih_featurizer(), energy_scaler=SCALER)


def test_architecture_search_equals_brute_force():
    """The closed-form last width finds the same architecture as searching every width tuple."""

    def brute(d, target, layers, lo, hi):
        for skip in (False, True):
            sols = [hs for hs in itertools.product(range(lo, hi + 1), repeat=layers) if mlp_parameter_count(d, hs, skip=skip) == target]
            if sols:
                return Architecture(hidden=min(sols, key=lambda hs: (max(hs) - min(hs), -hs[0], tuple(-h for h in hs))), skip=skip)
        return None

    found = 0
    for d, layers, lo, hi in [(1, 1, 1, 40), (3, 2, 2, 12), (6, 3, 2, 9), (9, 3, 1, 7)]:
        for target in range(10, 200, 7):
            want = brute(d, target, layers, lo, hi)
            if want is None:
                with pytest.raises(ValueError, match=f"exactly {target} trainable"):
                    architecture_for_parameters(d, target, n_hidden_layers=layers, min_width=lo, max_width=hi)
            else:
                found += 1
                assert architecture_for_parameters(d, target, n_hidden_layers=layers, min_width=lo, max_width=hi) == want
    assert found > 40  # the comparison is not vacuous


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("skip", [False, True])
@pytest.mark.parametrize("hidden", [(5, 3), (6,), ()], ids=["2 layers", "1 layer", "linear"])
def test_explicit_input_gradient_matches_autograd(activation, skip, hidden):
    mlp = MLP(4, hidden, activation=activation, skip=skip, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        for p in mlp.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel()), dtype=torch.float64))
    x = torch.randn(7, 4, dtype=torch.float64, requires_grad=True)
    y, g = mlp.value_and_input_grad(x)
    (g_ref,) = torch.autograd.grad(mlp(x).sum(), x, create_graph=True)
    torch.testing.assert_close(y, mlp(x), rtol=0, atol=1e-14)
    torch.testing.assert_close(g, g_ref, rtol=0, atol=1e-14)
    # and its derivative w.r.t. the weights (what the force loss needs) matches double autograd
    w = mlp.layers[0].weight
    (a,) = torch.autograd.grad((g**2).sum(), w)
    (b,) = torch.autograd.grad((g_ref**2).sum(), w)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def trained_like(model: torch.nn.Module, seed: int = 5) -> torch.nn.Module:
    """Perturb the weights away from the init (zero biases) so every term is exercised."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
    return model


def test_forces_match_finite_differences(water):
    feat, train = water
    model = trained_like(NNForceField(featurizer=feat, energy_scaler=SCALER, target_parameters=87))
    pos = torch.as_tensor(train[:4])
    e, f = model.energy_and_forces(pos)
    h = 1e-5
    fd = torch.zeros_like(pos)
    for a in range(3):
        for c in range(3):
            dp = torch.zeros_like(pos)
            dp[:, a, c] = h
            fd[:, a, c] = -(model.energy(pos + dp) - model.energy(pos - dp)).detach() / (2 * h)
    assert (f - fd).abs().max() < 1e-6
    # the training path (precomputed features + Jacobian) gives the same scaled values
    x, jac = feat.features_and_jacobian(pos)
    y, fs = model.scaled_energy_and_forces(TrainingBatch(pos, torch.zeros(4), torch.zeros(4, 3, 3), x, jac))
    torch.testing.assert_close(SCALER.center + SCALER.scale * y.detach(), e, rtol=0, atol=1e-10)
    torch.testing.assert_close(SCALER.scale * fs.detach(), f, rtol=0, atol=1e-12)
    y2, fs2 = model.scaled_energy_and_forces(TrainingBatch(pos, torch.zeros(4), torch.zeros(4, 3, 3)), create_graph=False)
    torch.testing.assert_close(fs2, fs.detach(), rtol=0, atol=1e-14)


def test_invariance_and_covariance(water):
    feat, train = water
    model = trained_like(NNForceField(featurizer=feat, energy_scaler=SCALER, target_parameters=87))
    rng = np.random.default_rng(7)
    pos = train[:5]
    e0, f0 = model.energy_and_forces(pos)
    rot = random_rotation(rng)
    e1, f1 = model.energy_and_forces(pos @ rot.T + rng.normal(size=3))
    torch.testing.assert_close(e1, e0, rtol=0, atol=1e-8)
    torch.testing.assert_close(f1, f0 @ torch.as_tensor(rot).T, rtol=0, atol=1e-8)
    perm = [0, 2, 1]
    e2, f2 = model.energy_and_forces(pos[:, perm])
    torch.testing.assert_close(e2, e0, rtol=0, atol=1e-8)
    torch.testing.assert_close(f2, f0[:, perm], rtol=0, atol=1e-8)


def test_seeded_init(water):
    feat, _ = water
    a = NNForceField(featurizer=feat, energy_scaler=SCALER, target_parameters=87, seed=11)
    torch.manual_seed(123)  # the global RNG plays no part
    b = NNForceField(featurizer=feat, energy_scaler=SCALER, target_parameters=87, seed=11)
    c = NNForceField(featurizer=feat, energy_scaler=SCALER, target_parameters=87, seed=12)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))


def test_save_load_roundtrip(water, tmp_path):
    feat, train = water
    model = trained_like(NNForceField(featurizer=feat, energy_scaler=SCALER, target_parameters=87, activation="silu", seed=4))
    path = tmp_path / "nn.zip"
    model.save(path, provenance={"test": True})
    back = load_model(path)
    assert isinstance(back, NNForceField) and back.n_parameters() == 87 and back.regressor.activation == "silu"
    e0, f0 = model.energy_and_forces(train)
    e1, f1 = back.energy_and_forces(train)
    assert (e0 - e1).abs().max() <= 1e-12 and (f0 - f1).abs().max() <= 1e-12
    # an NN's MD or effective-dimension job loads its model without Qiskit, numba or the other model modules
    code = ("import sys\nfrom qnnff.models import load_model\n"
            f"m = load_model({str(path)!r})\n"
            "print(type(m).__name__, sorted(k for k in ('qiskit', 'numba', 'qnnff.models.qnn', 'qnnff.models.bpnn') if k in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["NNForceField", "[]"], out


def test_wrong_species_or_shape_is_reported(water):
    feat, train = water
    model = NNForceField(featurizer=feat, energy_scaler=SCALER, target_parameters=87)
    model.check_symbols(["O", "H", "H"])
    with pytest.raises(ValueError, match="species"):
        model.check_symbols(["H", "O", "H"])
    with pytest.raises(ValueError, match=r"shape \[B, 3, 3\]"):
        model.energy(np.zeros((2, 4, 3)))
    with pytest.raises(ValueError, match="activation"):
        NNForceField(featurizer=feat, energy_scaler=SCALER, hidden=(4,), activation="relu")
    anonymous = Featurizer(families=feat.families, feature_map="arcsin", lo=feat.lo.tolist(), hi=feat.hi.tolist())
    with pytest.raises(ValueError, match="no chemical symbols"):
        NNForceField(featurizer=anonymous, energy_scaler=SCALER, hidden=(4,))


def test_a_few_adam_steps_reduce_the_loss(water):
    """The model is trainable through the precomputed features + Jacobian (the trainer's path)."""
    feat, train = water
    pos = torch.as_tensor(train)
    x, jac = feat.features_and_jacobian(pos)
    # a smooth synthetic target: harmonic in the internal coordinates
    p = pos.clone().requires_grad_(True)
    qq = feat.internal(p)
    ee = ((qq[:, :2] - 1.0) ** 2).sum(-1) + 1e-4 * (qq[:, 2] - 104.5) ** 2
    (grad,) = torch.autograd.grad(ee.sum(), p)
    scaler = EnergyScaler.fit(ee.detach().numpy())
    batch = TrainingBatch(pos, (ee.detach() - scaler.center) / scaler.scale, -grad / scaler.scale, x, jac)
    model = NNForceField(featurizer=feat, energy_scaler=scaler, target_parameters=87, seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)

    def loss() -> torch.Tensor:
        y, f = model.scaled_energy_and_forces(batch)
        return ((y - batch.y) ** 2).mean() + ((f - batch.f) ** 2).mean()

    first = float(loss().detach())
    for _ in range(60):
        opt.zero_grad()
        ell = loss()
        ell.backward()
        opt.step()
    assert float(loss().detach()) < 0.5 * first

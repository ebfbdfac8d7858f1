"""Behler-Parrinello network (kind "bpnn")."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from geometry_helpers import random_rotation, water_positions

from qnnff.features import EnergyScaler
from qnnff.models import TrainingBatch, load_model
from qnnff.models.bpnn import BPNNForceField, bpnn_parameter_count

SCALER = EnergyScaler(center=-2079.6, scale=0.35)
WATER = ["O", "H", "H"]
HYDRONIUM = ["O", "H", "H", "H"]


def hydronium_positions(rng: np.random.Generator, n: int) -> np.ndarray:
    """Pyramidal H3O+: three O-H bonds ~1 A at ~110 deg to the axis +- noise, random orientation."""
    out = np.empty((n, 4, 3))
    for b in range(n):
        pos = np.zeros((4, 3))
        tilt = np.radians(rng.uniform(95.0, 120.0))
        for k in range(3):
            phi = 2 * np.pi * k / 3 + rng.normal(scale=0.05)
            r = rng.uniform(0.9, 1.1)
            pos[k + 1] = r * np.array([np.sin(tilt) * np.cos(phi), np.sin(tilt) * np.sin(phi), np.cos(tilt)])
        out[b] = pos @ random_rotation(rng).T + rng.normal(size=3)
    return out


def perturb(model: torch.nn.Module, scale: float = 0.2, seed: int = 5) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen, dtype=torch.float64))
    return model


@pytest.fixture(scope="module")
def water():
    train = water_positions(np.random.default_rng(0), 64)
    model = perturb(BPNNForceField.from_training_data(train, symbols=WATER, energy_scaler=SCALER, seed=3))
    return model, train


def test_parameter_counts_match_the_papers_n2p2_rows():
    assert bpnn_parameter_count(WATER, (20, 20)) == 1642
    assert bpnn_parameter_count(HYDRONIUM, (24, 25)) == 2214
    m = BPNNForceField(symbols=HYDRONIUM, energy_scaler=SCALER, hidden=(24, 25))
    assert m.n_parameters() == 2214 and m.acsf.size == 18
    assert BPNNForceField(symbols=WATER, energy_scaler=SCALER).n_parameters() == 1642
    # per-element widths
    assert bpnn_parameter_count(WATER, {"H": (10,), "O": (5,)}) == (19 * 10 + 11) + (19 * 5 + 6)


def test_standardisation(water):
    model, train = water
    g = model.standardised_descriptors(torch.as_tensor(train))
    for e in model.elements:
        idx = [i for i, s in enumerate(WATER) if s == e]
        v = g[:, idx].reshape(-1, g.shape[-1])
        varying = model.g_std[model.elements.index(e)] != 1.0
        torch.testing.assert_close(v.mean(0), torch.zeros_like(v.mean(0)), rtol=0, atol=1e-10)
        torch.testing.assert_close(v.std(0, unbiased=False)[varying], torch.ones(int(varying.sum()), dtype=torch.float64))
    # slots that cannot occur (H-H angular pair around an H of water) are 0 and keep std 1
    labels = model.acsf.labels()
    hh = [k for k, lab in enumerate(labels) if lab.startswith("G3[H-H]")]
    h = model.elements.index("H")
    assert torch.all(model.g_std[h, hh] == 1.0) and torch.all(model.g_mean[h, hh] == 0.0)


def test_forces_match_finite_differences(water):
    model, train = water
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
    assert f.abs().max() > 1e-2  # not trivially zero
    # the training path (cached dG/dR + explicit input gradients) agrees with autograd
    y, fs = model.scaled_energy_and_forces(TrainingBatch(pos, torch.zeros(4), torch.zeros(4, 3, 3)))
    torch.testing.assert_close(SCALER.center + SCALER.scale * y.detach(), e, rtol=0, atol=1e-10)
    torch.testing.assert_close(SCALER.scale * fs.detach(), f, rtol=0, atol=1e-12)
    torch.testing.assert_close(model.atomic_scaled_energies(pos).sum(-1), model.scaled_energy(pos))


def test_training_path_gradient_matches_double_autograd(water):
    model, train = water
    pos = torch.as_tensor(train[:8])
    batch = TrainingBatch(pos, torch.zeros(8), torch.zeros(8, 3, 3))
    params = list(model.parameters())
    y, f = model.scaled_energy_and_forces(batch)
    g1 = torch.autograd.grad((y**2).sum() + (f**2).sum(), params)
    p = pos.clone().requires_grad_(True)
    y2 = model.scaled_energy(p)
    (dy,) = torch.autograd.grad(y2.sum(), p, create_graph=True)
    g2 = torch.autograd.grad((y2**2).sum() + (dy**2).sum(), params)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_descriptor_cache_follows_the_positions(water):
    model, train = water
    pos = torch.as_tensor(train[:3]).clone()
    batch = TrainingBatch(pos, torch.zeros(3), torch.zeros(3, 3, 3))
    y1, _ = model.scaled_energy_and_forces(batch, create_graph=False)
    y1b, _ = model.scaled_energy_and_forces(batch, create_graph=False)
    assert torch.equal(y1, y1b)
    pos[:, 1] += 0.05  # in-place change: the cache must notice
    y2, _ = model.scaled_energy_and_forces(batch, create_graph=False)
    torch.testing.assert_close(y2, model.scaled_energy(pos).detach(), rtol=0, atol=1e-13)
    assert not torch.allclose(y1, y2)


def test_precomputed_descriptors_in_the_batch(water):
    model, train = water
    pos = torch.as_tensor(train[:6])
    G, J = model.descriptors_and_jacobian(pos)
    full = TrainingBatch(pos, torch.zeros(6), torch.zeros(6, 3, 3), G, J)
    idx = torch.tensor([4, 1, 2])
    y, f = model.scaled_energy_and_forces(full.subset(idx), create_graph=False)
    y_ref, f_ref = model.scaled_energy_and_forces(TrainingBatch(pos[idx], torch.zeros(3), torch.zeros(3, 3, 3)), create_graph=False)
    torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-13)
    torch.testing.assert_close(f, f_ref, rtol=0, atol=1e-13)
    with pytest.raises(ValueError, match="raw descriptors"):
        model.scaled_energy_and_forces(TrainingBatch(pos, torch.zeros(6), torch.zeros(6, 3, 3), G[..., :5], J))


@pytest.mark.parametrize("system", ["water", "hydronium"])
def test_invariance_and_covariance(system):
    rng = np.random.default_rng(8)
    symbols, pos = (WATER, water_positions(rng, 5)) if system == "water" else (HYDRONIUM, hydronium_positions(rng, 5))
    model = perturb(BPNNForceField.from_training_data(pos, symbols=symbols, energy_scaler=SCALER, hidden=(8, 8)))
    e0, f0 = model.energy_and_forces(pos)
    rot = random_rotation(rng)
    e1, f1 = model.energy_and_forces(pos @ rot.T + rng.normal(size=3) * 3)
    torch.testing.assert_close(e1, e0, rtol=0, atol=1e-8)
    torch.testing.assert_close(f1, f0 @ torch.as_tensor(rot).T, rtol=0, atol=1e-8)
    perm = [0, 2, 1] if system == "water" else [0, 3, 1, 2]
    e2, f2 = model.energy_and_forces(pos[:, perm])
    torch.testing.assert_close(e2, e0, rtol=0, atol=1e-8)
    torch.testing.assert_close(f2, f0[:, perm], rtol=0, atol=1e-8)
    torch.testing.assert_close(f0.sum(1), torch.zeros(5, 3, dtype=torch.float64), rtol=0, atol=1e-10)  # no net force


def test_forces_vanish_smoothly_at_the_cutoff():
    """A neighbour pulled across Rc: energy and force continuous, force -> 0 at Rc and exactly 0 beyond."""
    rc = 3.0
    sf = {"cutoff": rc, "radial": [{"eta": 0.2, "rs": 0.0}, {"eta": 1.0, "rs": 2.5}], "angular": [{"eta": 0.0, "zeta": 1, "lambda": 1}]}
    rng = np.random.default_rng(4)
    train = water_positions(rng, 16)
    model = perturb(BPNNForceField.from_training_data(train, symbols=WATER, energy_scaler=SCALER, hidden=(6, 6), symmetry_functions=sf))
    # O at 0, H1 fixed, H2 moved out along +z: O-H2 crosses Rc at z = 3, H1-H2 at z = sqrt(9 - 1) ~ 2.83
    z = torch.linspace(2.6, 3.2, 6001, dtype=torch.float64)
    pos = torch.zeros(len(z), 3, 3, dtype=torch.float64)
    pos[:, 1, 0] = 1.0
    pos[:, 2, 2] = z
    e, f = model.energy_and_forces(pos, check=False)  # beyond the training domain on purpose: the formula itself
    dz = float(z[1] - z[0])
    f_h2 = f[:, 2]
    # continuity: steps in E and F are O(dz) everywhere, including at both crossings
    assert torch.diff(e).abs().max() < 10 * dz
    assert torch.diff(f_h2, dim=0).abs().max() < 1e-3
    beyond = z >= rc
    assert torch.all(f_h2[beyond] == 0) and torch.all(e[beyond] == e[-1])
    near = (z < rc) & (z > rc - 1e-3)
    assert f_h2[near].abs().max() < 1e-4  # fc' ~ (pi/rc)^2/2 (Rc - R): the force tends to 0
    assert f_h2[z < 2.7].abs().max() > 1e-3  # ... from a genuinely non-zero value


def test_seeded_init():
    a = BPNNForceField(symbols=WATER, energy_scaler=SCALER, seed=7)
    torch.manual_seed(99)
    b = BPNNForceField(symbols=WATER, energy_scaler=SCALER, seed=7)
    c = BPNNForceField(symbols=WATER, energy_scaler=SCALER, seed=8)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))
    # the two element networks are not copies of each other
    assert not torch.equal(a.nets["H"].layers[0].weight, a.nets["O"].layers[0].weight)


def test_save_load_roundtrip(water, tmp_path):
    model, train = water
    path = tmp_path / "bpnn.zip"
    model.save(path)
    back = load_model(path)
    assert isinstance(back, BPNNForceField) and back.n_parameters() == model.n_parameters() == 1642
    assert back.acsf.functions == model.acsf.functions
    torch.testing.assert_close(back.g_mean, model.g_mean, rtol=0, atol=0)
    e0, f0 = model.energy_and_forces(train)
    e1, f1 = back.energy_and_forces(train)
    assert (e0 - e1).abs().max() <= 1e-12 and (f0 - f1).abs().max() <= 1e-12


def test_lih_has_no_angular_terms_and_still_works(tmp_path):
    r = np.linspace(1.3, 2.3, 20)
    pos = np.zeros((20, 2, 3))
    pos[:, 1, 2] = r
    model = perturb(BPNNForceField.from_training_data(pos, symbols=["Li", "H"], energy_scaler=SCALER, hidden=(5,)))
    assert model.elements == ("H", "Li")
    e, f = model.energy_and_forces(pos)
    torch.testing.assert_close(f[:, 0], -f[:, 1], rtol=0, atol=1e-12)
    assert torch.all(f[:, :, :2] == 0)
    model.save(tmp_path / "lih.zip")
    torch.testing.assert_close(load_model(tmp_path / "lih.zip").energy(pos), e, rtol=0, atol=1e-12)


def test_wrong_species_or_shape_is_reported(water):
    model, _ = water
    with pytest.raises(ValueError, match="species"):
        model.check_symbols(["H", "H", "O"])
    with pytest.raises(ValueError, match=r"shape \[B, 3, 3\]"):
        model.energy(np.zeros((2, 4, 3)))
    with pytest.raises(ValueError, match="unknown chemical symbol"):
        BPNNForceField(symbols=["O", "Hh", "H"], energy_scaler=SCALER)
    with pytest.raises(ValueError, match="must name exactly"):
        BPNNForceField(symbols=WATER, energy_scaler=SCALER, hidden={"H": (4,)})
    with pytest.raises(ValueError, match=r"g_mean\['O'\] must have 18 entries"):
        BPNNForceField(symbols=WATER, energy_scaler=SCALER, g_mean={"H": np.zeros(18), "O": np.zeros(5)})


def test_a_few_adam_steps_reduce_the_loss():
    rng = np.random.default_rng(1)
    pos = torch.as_tensor(water_positions(rng, 48))
    p = pos.clone().requires_grad_(True)
    r1 = torch.linalg.vector_norm(p[:, 1] - p[:, 0], dim=-1)
    r2 = torch.linalg.vector_norm(p[:, 2] - p[:, 0], dim=-1)
    r12 = torch.linalg.vector_norm(p[:, 2] - p[:, 1], dim=-1)
    energy = 5 * ((r1 - 1) ** 2 + (r2 - 1) ** 2) + 2 * (r12 - 1.58) ** 2
    (grad,) = torch.autograd.grad(energy.sum(), p)
    scaler = EnergyScaler.fit(energy.detach().numpy())
    batch = TrainingBatch(pos, (energy.detach() - scaler.center) / scaler.scale, -grad / scaler.scale)
    model = BPNNForceField.from_training_data(pos, symbols=WATER, energy_scaler=scaler, hidden=(10, 10), seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=0.005)

    def loss() -> torch.Tensor:
        y, f = model.scaled_energy_and_forces(batch)
        return ((y - batch.y) ** 2).mean() + ((f - batch.f) ** 2).mean()

    first = float(loss().detach())
    for _ in range(60):
        opt.zero_grad()
        loss().backward()
        opt.step()
    assert float(loss().detach()) < 0.5 * first

"""ASE calculators: finite-difference forces, species and domain checks, artifact loading, DFT reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.calculators.fd import calculate_numerical_forces

from qnnff.calculators import ModelCalculator, OutOfDomainError, PySCFCalculator, SCFNotConvergedError, SpeciesMismatchError
from qnnff.features import CoordinateFamily, EnergyScaler, Featurizer
from qnnff.models.base import FeatureForceField

R_LO, R_HI = 0.85, 1.15  # O-H training range (Angstrom): range of the two bonds' mean
M2_HI = 0.1  # range of their second central moment ((r1 - r2) / 2)^2 (Angstrom^2)
A_LO, A_HI = 95.0, 115.0  # H-O-H training range (degrees)


class TinyRegressor(torch.nn.Module):
    """features [B, 3] -> y [B]: a seeded tanh MLP (3 -> 5 -> 1) on top of a fixed harmonic well sum(x^2).

    The well (a buffer, not trained) keeps MD inside the featurizer's domain; the MLP makes the surface anharmonic.
    """

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w1 = torch.nn.Parameter(0.8 * torch.randn(5, 3, generator=g, dtype=torch.float64))
        self.b1 = torch.nn.Parameter(0.3 * torch.randn(5, generator=g, dtype=torch.float64))
        self.w2 = torch.nn.Parameter(0.3 * torch.randn(5, generator=g, dtype=torch.float64))
        self.register_buffer("k", torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.k * x * x).sum(-1) + torch.tanh(x @ self.w1.T + self.b1) @ self.w2


class TinyWater(FeatureForceField):
    """A small real torch model of water: arcsin features of the O-H bonds' mean and variance, and the H-O-H angle."""

    kind = "tiny-water-test"

    def __init__(self, seed: int = 0) -> None:
        fams = [CoordinateFamily("r_OH", "bond", ((0, 1), (0, 2))), CoordinateFamily("a_HOH", "angle", ((1, 0, 2),))]
        feat = Featurizer(families=fams, feature_map="arcsin", lo=[R_LO, 0.0, A_LO], hi=[R_HI, M2_HI, A_HI],
                          margin=0.05,
                          symbols=["O", "H", "H"])
        super().__init__(featurizer=feat, energy_scaler=EnergyScaler(center=-2080.0, scale=0.1))
        self.regressor = TinyRegressor(seed)

    def to_artifact(self):
        return {k: v.detach().numpy() for k, v in self.regressor.state_dict().items()}, {"seed": 0}, {}

    @classmethod
    def from_artifact(cls, arrays, meta, blobs):
        m = cls(seed=meta["seed"])
        m.regressor.load_state_dict({k: torch.as_tensor(v) for k, v in arrays.items()})
        return m


def water_atoms(r1: float = 0.98, r2: float = 1.02, angle_deg: float = 104.0) -> Atoms:
    a = math.radians(angle_deg)
    pos = [[0.0, 0.0, 0.0], [r1, 0.0, 0.0], [r2 * math.cos(a), r2 * math.sin(a), 0.0]]
    # a generic orientation, so no force component is trivially zero
    atoms = Atoms("OHH", positions=pos)
    atoms.rotate(37.0, (0.3, 0.5, 0.8), center="COM")
    atoms.translate([0.1, -0.2, 0.3])
    return atoms


def test_model_calculator_finite_difference_forces():
    atoms = water_atoms()
    atoms.calc = ModelCalculator(TinyWater())
    f = atoms.get_forces()
    e = atoms.get_potential_energy()
    assert isinstance(e, float) and f.shape == (3, 3) and f.dtype == np.float64
    f_num = calculate_numerical_forces(atoms, eps=1e-5)
    err = np.abs(f - f_num).max()
    print(f"model calculator: max |F - F_fd| = {err:.2e} eV/A (|F|max = {np.abs(f).max():.2f})")
    assert err < 1e-6
    assert np.abs(f).max() > 0.1  # a nontrivial check
    np.testing.assert_allclose(f.sum(0), 0.0, atol=1e-10)  # translation invariance
    # the model's own energy
    with torch.no_grad():
        e_model = float(atoms.calc.model.energy(torch.tensor(atoms.positions))[0])
    assert e == pytest.approx(e_model, abs=1e-12)


def test_model_calculator_species_and_domain():
    calc = ModelCalculator(TinyWater())
    bad = water_atoms()
    bad.set_chemical_symbols(["H", "O", "H"])
    bad.calc = calc
    with pytest.raises(SpeciesMismatchError, match=r"\['O', 'H', 'H'\].*\['H', 'O', 'H'\]"):
        bad.get_potential_energy()
    wrong_count = Atoms("OH", positions=[[0, 0, 0], [1, 0, 0]])
    wrong_count.calc = calc
    with pytest.raises(SpeciesMismatchError):
        wrong_count.get_forces()
    far = water_atoms(r1=1.40)
    far.calc = calc
    with pytest.raises(OutOfDomainError, match=r"r_OH\.mean = 1\.2100"):
        far.get_forces()
    bent = water_atoms(angle_deg=130.0)
    bent.calc = calc
    with pytest.raises(OutOfDomainError, match="a_HOH = 130"):
        bent.get_potential_energy()
    # inside the domain again: fine (and the species check still applies after the error)
    ok = water_atoms()
    ok.calc = calc
    assert np.isfinite(ok.get_potential_energy())


class TinyWaterGeneric(TinyWater):
    """Same model, but overriding ``scaled_energy``: the calculator must then use the model's own energy_and_forces."""

    def scaled_energy(self, positions):
        return super().scaled_energy(positions)


def test_fused_and_generic_paths_agree():
    fused, generic = ModelCalculator(TinyWater()), ModelCalculator(TinyWaterGeneric())
    assert fused._fused and not generic._fused
    for geom in (water_atoms(), water_atoms(0.9, 1.1, 98.0), water_atoms(1.1, 1.05, 112.0)):
        a, b = geom.copy(), geom.copy()
        a.calc, b.calc = fused, generic
        assert a.get_potential_energy() == pytest.approx(b.get_potential_energy(), abs=1e-12)
        np.testing.assert_allclose(a.get_forces(), b.get_forces(), atol=1e-12)
    far = water_atoms(r1=1.4)
    far.calc = generic
    with pytest.raises(OutOfDomainError, match=r"r_OH\.mean = 1\.2100"):
        far.get_forces()
    # the cache: same positions -> no new calculation; moved positions -> new numbers
    a = water_atoms()
    a.calc = fused
    e0 = a.get_potential_energy()
    res = fused.results
    assert a.get_potential_energy() == e0 and fused.results is res
    a.positions[1, 0] += 1e-3
    assert a.get_potential_energy() != e0


def test_model_calculator_from_artifact(tmp_path):
    from qnnff.models import base

    base.register_model(TinyWater)
    model = TinyWater()
    path = tmp_path / "tiny.model"
    model.save(path)
    atoms = water_atoms()
    atoms.calc = ModelCalculator(path)
    ref = water_atoms()
    ref.calc = ModelCalculator(model)
    assert atoms.get_potential_energy() == pytest.approx(ref.get_potential_energy(), abs=1e-12)
    np.testing.assert_allclose(atoms.get_forces(), ref.get_forces(), atol=1e-12)
    with pytest.raises(TypeError, match="ForceField"):
        ModelCalculator(object())


def test_pyscf_calculator_finite_difference_forces():
    from qnnff.dft import LevelOfTheory

    level = LevelOfTheory(method="hf", basis="sto-3g", conv_tol=1e-11)
    atoms = water_atoms(r1=0.97, r2=1.01, angle_deg=103.0)
    calc = PySCFCalculator(level=level, charge=0, spin=0)
    atoms.calc = calc
    f = atoms.get_forces()
    e = atoms.get_potential_energy()
    assert -2050 < e < -2030  # RHF/STO-3G water is about -74.96 Ha = -2039.8 eV
    assert calc._dm is not None  # kept for the next geometry
    f_num = calculate_numerical_forces(atoms, eps=1e-3)
    err = np.abs(f - f_num).max()
    print(f"PySCF calculator: max |F - F_fd| = {err:.2e} eV/A (|F|max = {np.abs(f).max():.2f})")
    assert err < 1e-4
    assert "diis: converged" in calc.last_attempts[0]


def test_pyscf_calculator_raises_on_failure():
    from qnnff.dft import LevelOfTheory

    # 2 SCF cycles cannot converge, and without a converged neighbour the Newton fallback is rejected
    atoms = water_atoms()
    atoms.calc = PySCFCalculator(level=LevelOfTheory(method="hf", basis="sto-3g", max_cycle=2), charge=0, spin=0)
    with pytest.raises(SCFNotConvergedError, match="did not converge"):
        atoms.get_potential_energy()

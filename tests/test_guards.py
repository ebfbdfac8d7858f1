"""The documented API refuses impossible geometries as the ASE calculators do (issue 26, items 2 and 3):
``ForceField.energy`` / ``energy_and_forces`` and the shot-noise calculator raise an OutOfDomainError for NaN positions,
overlapping atoms and geometries outside the model's domain; ``check=False`` is the explicit opt-out."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from qnnff.config import system_spec
from qnnff.errors import NonFiniteGeometryError, OutOfDomainError, OverlappingAtomsError
from qnnff.features import EnergyScaler, Featurizer, internal_coordinates
from qnnff.geometry import zmatrix_to_cartesian
from qnnff.models.factory import build_model


def _geometries(spec, n=12, seed=0):
    rng = np.random.default_rng(seed)
    lo = {k: v[0] for k, v in spec.variables.items()}
    hi = {k: v[1] for k, v in spec.variables.items()}
    return np.stack([zmatrix_to_cartesian(spec.zmatrix, {k: rng.uniform(lo[k], hi[k]) for k in lo}) for _ in range(n)])


@pytest.fixture(scope="module", params=[("H2O", "qnn"), ("H2O", "nn"), ("H2O", "bpnn"), ("LiH", "qnn")])
def model_and_geometry(request, repo):
    paper_config = yaml.safe_load((repo / "config" / "config.yaml").read_text())
    system, kind = request.param
    spec = system_spec(paper_config, system)
    pos = _geometries(spec)
    q = internal_coordinates(spec.families, torch.as_tensor(pos)).numpy()
    feat = Featurizer(families=spec.families, feature_map=spec.feature_map, lo=q.min(0), hi=q.max(0), margin=0.05,
                      symbols=list(spec.symbols))
    model = build_model(paper_config, system, kind, feat, EnergyScaler.fit(-np.linspace(76.0, 76.3, len(pos))), pos)
    inside = np.mean(pos, axis=0)  # the mean geometry lies inside the box of every coordinate
    return model, inside


def test_a_geometry_inside_the_domain_is_evaluated(model_and_geometry):
    model, inside = model_and_geometry
    e, f = model.energy_and_forces(inside)
    assert torch.isfinite(e).all() and torch.isfinite(f).all()


@pytest.mark.parametrize("method", ["energy", "energy_and_forces"])
def test_nan_positions_are_refused(model_and_geometry, method):
    model, inside = model_and_geometry
    pos = np.stack([inside, inside])
    pos[1, 0, 2] = np.nan
    with pytest.raises(NonFiniteGeometryError, match="geometry 1.*NaN or infinite"):
        getattr(model, method)(pos)


@pytest.mark.parametrize("method", ["energy", "energy_and_forces"])
def test_overlapping_atoms_are_refused(model_and_geometry, method):
    model, inside = model_and_geometry
    pos = inside.copy()
    pos[1] = pos[0] + [0.0, 0.0, 0.1]  # 0.1 A apart
    with pytest.raises(OverlappingAtomsError, match="atoms 0 and 1 are 0.1000 A apart"):
        getattr(model, method)(pos)


@pytest.mark.parametrize("method", ["energy", "energy_and_forces"])
def test_a_geometry_far_outside_the_domain_is_refused_with_its_index(model_and_geometry, method):
    model, inside = model_and_geometry
    far = inside.copy()
    far[1:] *= 1e6  # every other atom 10^6 times further out: BPNN gave -2034.5 eV with zero forces here
    with pytest.raises(OutOfDomainError, match="geometry 1 of 2: geometry outside the"):
        getattr(model, method)(np.stack([inside, far]))


def test_check_false_is_the_documented_opt_out(model_and_geometry):
    model, inside = model_and_geometry
    pos = inside.copy()
    pos[1] = pos[0] + [0.0, 0.0, 0.1]
    e, f = model.energy_and_forces(pos, check=False)  # whatever the formula gives there; no error
    assert e.shape == (1,) and f.shape == (1, *inside.shape)


@pytest.mark.parametrize("shots", [None, 256])
def test_the_shot_noise_calculator_refuses_nan_positions_before_any_circuit(paper_config, shots):
    from ase import Atoms

    from qnnff.md import ShotNoiseCalculator

    spec = system_spec(paper_config, "LiH")
    pos = _geometries(spec)
    q = internal_coordinates(spec.families, torch.as_tensor(pos)).numpy()
    feat = Featurizer(families=spec.families, feature_map=spec.feature_map, lo=q.min(0), hi=q.max(0), margin=0.05,
                      symbols=list(spec.symbols))
    model = build_model(paper_config, "LiH", "qnn", feat, EnergyScaler.fit(-np.linspace(8.0, 8.1, len(pos))), pos)
    calc = ShotNoiseCalculator(model, shots=shots, seed=1)
    atoms = Atoms(spec.symbols, positions=pos.mean(0))
    atoms.calc = calc
    assert np.isfinite(atoms.get_potential_energy())
    atoms.positions[1, 2] = np.nan
    with pytest.raises(NonFiniteGeometryError, match="NaN or infinite"):
        atoms.get_potential_energy()
    assert calc.n_calls == 1  # the NaN geometry reached no circuit
    atoms.positions[1] = atoms.positions[0] + [0.0, 0.0, 0.05]
    with pytest.raises(OverlappingAtomsError):
        atoms.get_forces()
    assert calc.n_calls == 1

"""The sGDML model kind (qnnff.models.sgdml, issue 27): a tiny model fitted by the sgdml library on the committed H2O data.

The fixture fits 100 of the 300 training frames of ``results/H2O/data/train.extxyz`` (a few seconds); the reference
energies and forces are read with ASE (``REF_energy`` eV, ``REF_forces`` eV/Angstrom), independently of qnnff's readers.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.io import read

from qnnff.calculators import ModelCalculator
from qnnff.config import system_spec
from qnnff.errors import NonFiniteGeometryError, OutOfDomainError, OverlappingAtomsError
from qnnff.features import EnergyScaler, Featurizer, extend_to_symmetric_point, internal_coordinates
from qnnff.models import artifact
from qnnff.models.base import TrainingBatch, registered_model_class
from qnnff.models.factory import load_model
from qnnff.models.sgdml import SELECTION_CRITERION, SGDMLForceField

N_TRAIN = 100
SIGMAS = [2, 5, 10, 20]


def _frames(repo, split: str) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    frames = read(repo / "results" / "H2O" / "data" / f"{split}.extxyz", index=":", format="extxyz")
    pos = np.stack([a.get_positions() for a in frames])
    energy = np.array([a.info["REF_energy"] for a in frames])  # eV
    forces = np.stack([a.arrays["REF_forces"] for a in frames])  # eV/Angstrom
    return frames[0].get_chemical_symbols(), pos, energy, forces


def _fit(data: dict, **kw) -> SGDMLForceField:
    pos, energy, forces = data["train"]
    args = dict(positions=pos, energies=energy, forces=forces, symbols=data["symbols"], featurizer=data["featurizer"],
                energy_scaler=data["scaler"], sigmas=SIGMAS, validation_fraction=0.2, seed=3)
    return SGDMLForceField.fit(**{**args, **kw})


@pytest.fixture(scope="module")
def data(repo):
    import yaml

    spec = system_spec(yaml.safe_load((repo / "config" / "config.yaml").read_text()), "H2O")
    symbols, pos, energy, forces = _frames(repo, "train")
    assert symbols == list(spec.symbols) == ["O", "H", "H"]
    pos, energy, forces = pos[:N_TRAIN], energy[:N_TRAIN], forces[:N_TRAIN]
    q = internal_coordinates(spec.families, torch.as_tensor(pos))
    lo, hi = extend_to_symmetric_point(spec.families, q.min(0).values.numpy(), q.max(0).values.numpy())
    feat = Featurizer(families=spec.families, feature_map=spec.feature_map, lo=lo, hi=hi, margin=0.05, symbols=symbols)
    _, tpos, tenergy, tforces = _frames(repo, "test")
    return {"symbols": symbols, "featurizer": feat, "scaler": EnergyScaler.fit(energy), "train": (pos, energy, forces),
            "test": (tpos, tenergy, tforces)}


@pytest.fixture(scope="module")
def model(data) -> SGDMLForceField:
    return _fit(data)


def _in_domain_test(data, model):
    pos, energy, forces = data["test"]
    keep = ~model.out_of_domain(torch.as_tensor(pos)).numpy()
    assert keep.sum() >= 80, f"only {keep.sum()} of {len(keep)} test frames inside the fixture's featurizer domain"
    return pos[keep], energy[keep], forces[keep]


# ---- 1. artifact round trip

def test_save_and_load_give_bitwise_the_same_predictions(model, data, tmp_path):
    path = tmp_path / "model.zip"
    model.save(path, provenance={"test": True})
    arrays, meta, blobs = artifact.load_artifact(path)  # integrity record checked; npz read without pickle
    assert meta["kind"] == "sgdml" and meta["parameter_label"] == "kernel coefficients" and not blobs
    back = SGDMLForceField.from_artifact(arrays, meta, blobs)
    pos = data["test"][0]
    e0, f0 = model.energy_and_forces(pos, check=False)
    e1, f1 = back.energy_and_forces(pos, check=False)
    assert torch.equal(e0, e1) and torch.equal(f0, f1)
    assert back.n_parameters() == model.n_parameters() and back.sigma == model.sigma and back.fit_info == model.fit_info
    assert back.energy_scaler == model.energy_scaler and back.featurizer.to_dict() == model.featurizer.to_dict()
    # the library's model dict comes back whole: same keys, equal arrays, same scalars
    a, b = model.sgdml_model_dict(), back.sgdml_model_dict()
    assert sorted(a) == sorted(b)
    for k in a:
        if isinstance(a[k], np.ndarray):
            assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k
        elif isinstance(a[k], dict):
            assert a[k].keys() == b[k].keys(), k
        else:
            assert a[k] == b[k], k
    # and through the registry (the class registers itself on import; kinds.py lists its module)
    assert registered_model_class("sgdml") is SGDMLForceField
    loaded = load_model(path)
    assert type(loaded) is SGDMLForceField and torch.equal(loaded.energy(pos, check=False), e0)


def test_a_damaged_artifact_is_refused(model, tmp_path):
    path = tmp_path / "model.zip"
    model.save(path)
    arrays, meta, blobs = artifact.load_artifact(path)
    meta = {**meta, "n_parameters": meta["n_parameters"] + 1}
    with pytest.raises(ValueError, match="kernel coefficients"):
        SGDMLForceField.from_artifact(arrays, meta, blobs)
    arrays = {k: v for k, v in arrays.items() if k != "sgdml.alphas_F"}
    with pytest.raises(ValueError, match="sgdml.alphas_F"):
        SGDMLForceField.from_artifact(arrays, meta, blobs)


# ---- 2. units: eV and eV/Angstrom, forces = -dE/dR

def test_training_points_are_reproduced_in_ev_and_ev_per_angstrom(model, data):
    pos, energy, forces = data["train"]
    e, f = model.energy_and_forces(pos)
    assert e.dtype == f.dtype == torch.float64 and f.shape == forces.shape
    # an interpolating kernel model (every training point, lambda 1e-10): a unit slip (kcal/mol, Hartree, Bohr) would
    # be off by a factor 23-27 or 0.5; the energies carry the integration constant's least-squares residual
    assert np.abs(f.numpy() - forces).max() < 0.01, "forces (eV/A) at training points"
    assert np.abs(e.numpy() - energy).max() < 0.005, "energies (eV) at training points"
    slope = float(np.sum(f.numpy() * forces) / np.sum(forces * forces))
    assert abs(slope - 1.0) < 1e-3


def test_test_frames_are_predicted_sanely(model, data):
    pos, energy, forces = _in_domain_test(data, model)
    e, f = model.energy_and_forces(pos)
    rmse_e = float(np.sqrt(np.mean((e.numpy() - energy) ** 2)))
    rmse_f = float(np.sqrt(np.mean((f.numpy() - forces) ** 2)))
    assert rmse_e < 0.005 and rmse_f < 0.05, f"test RMSE {1e3 * rmse_e:.2f} meV, {1e3 * rmse_f:.1f} meV/A"
    # the scaled predictions are the energy scaler's: ((E - center) / scale, F / scale)
    y, fs = model.scaled_energy_and_forces(TrainingBatch(torch.as_tensor(pos), torch.zeros(len(pos)), torch.zeros(pos.shape)))
    sc = data["scaler"]
    torch.testing.assert_close(y, (e - sc.center) / sc.scale, rtol=0, atol=1e-12)
    torch.testing.assert_close(fs, f / sc.scale, rtol=0, atol=1e-12)
    torch.testing.assert_close(model.scaled_energy(torch.as_tensor(pos)), y, rtol=0, atol=0)


def test_forces_are_minus_the_finite_difference_gradient_of_the_energy(model, data):
    pos = _in_domain_test(data, model)[0][:3]
    h = 1e-4  # Angstrom
    _, f = model.energy_and_forces(pos)
    fd = np.zeros(pos.shape)
    for b in range(len(pos)):
        for i in range(3):
            for k in range(3):
                plus, minus = pos[b].copy(), pos[b].copy()
                plus[i, k] += h
                minus[i, k] -= h
                e = model.energy(np.stack([plus, minus]), check=False).numpy()
                fd[b, i, k] = -(e[0] - e[1]) / (2 * h)
    np.testing.assert_allclose(f.numpy(), fd, rtol=0, atol=1e-6)


# ---- 3. the guards every kind has

def _geometry(data, model) -> np.ndarray:
    return _in_domain_test(data, model)[0][0].copy()


def test_guards_raise_through_the_calculator_and_the_model(model, data):
    base = _geometry(data, model)
    calc = ModelCalculator(model)
    assert calc.backend == "model"
    atoms = Atoms(data["symbols"], positions=base, calculator=calc)
    e_ref, f_ref = model.energy_and_forces(base)
    assert atoms.get_potential_energy() == pytest.approx(float(e_ref[0]), abs=1e-12)
    np.testing.assert_allclose(atoms.get_forces(), f_ref[0].numpy(), rtol=0, atol=1e-12)

    nan = base.copy(); nan[1, 0] = np.nan
    close = base.copy(); close[1] = close[0] + np.array([0.1, 0.0, 0.0])  # 0.1 A from the O
    far = base.copy(); far[2] = far[0] + np.array([0.0, 0.0, 10.0])  # an H 10 A away
    for pos, err, what in ((nan, NonFiniteGeometryError, "NaN"), (close, OverlappingAtomsError, "0.1000 A apart"),
                           (far, OutOfDomainError, "r_OH")):
        with pytest.raises(err, match=what):
            Atoms(data["symbols"], positions=pos, calculator=ModelCalculator(model)).get_potential_energy()
        with pytest.raises(err, match=what):
            model.energy_and_forces(pos)
        with pytest.raises(err, match=what):
            model.energy(pos)
    # check=False skips the geometry and domain checks: the model's formula answers (NaN positions stay an error)
    for pos in (close, far):
        e, f = model.energy_and_forces(pos, check=False)
        assert torch.isfinite(e).all() and torch.isfinite(f).all()
    with pytest.raises(ValueError, match="NaN"):
        model.energy_and_forces(nan, check=False)
    with pytest.raises(ValueError, match="no torch graph"):
        model.energy_and_forces(base, create_graph=True)


# ---- 4. the symmetries the library found: H <-> H

def test_swapping_the_two_hydrogens_permutes_the_forces(model, data):
    assert model.n_symmetries == 2 and model.fit_info["n_symmetries"] == 2
    pos = _in_domain_test(data, model)[0][:10]
    swap = [0, 2, 1]
    e, f = model.energy_and_forces(pos)
    e_s, f_s = model.energy_and_forces(pos[:, swap])
    assert float((e - e_s).abs().max()) < 1e-8
    torch.testing.assert_close(f_s, f[:, swap], rtol=0, atol=1e-8)


# ---- 5. determinism and the kernel-width selection

def test_the_same_inputs_give_bitwise_the_same_model_and_sigma_is_chosen_on_validation(model, data):
    again = _fit(data)
    pos = data["test"][0]
    e0, f0 = model.energy_and_forces(pos, check=False)
    e1, f1 = again.energy_and_forces(pos, check=False)
    assert torch.equal(e0, e1) and torch.equal(f0, f1)
    fit = model.fit_info
    untimed = lambda m: [{k: v for k, v in row.items() if k != "seconds"} for row in m.fit_info["validation"]]  # noqa: E731
    assert untimed(model) == untimed(again)
    assert fit["sigmas"] == SIGMAS and model.sigma == fit["sigma"] in SIGMAS
    assert [v["sigma"] for v in fit["validation"]] == SIGMAS
    f_err = [v["rmse_f_meV_per_A"] for v in fit["validation"]]
    assert all(np.isfinite(f_err)) and all(np.isfinite(v["rmse_e_meV"]) for v in fit["validation"])
    assert fit["sigma"] == SIGMAS[int(np.argmin(f_err))] and fit["selection_criterion"] == SELECTION_CRITERION
    assert fit["n_validation"] == 20 and fit["n_fit_for_selection"] == 80 and fit["n_train"] == N_TRAIN
    assert fit["solver"] == "analytic" and fit["fit_seconds"] > 0
    # every training point is a kernel centre: 3 N coefficients each, plus the integration constant
    assert model.n_train == N_TRAIN and model.n_parameters() == N_TRAIN * 9 + 1
    assert SGDMLForceField.parameter_label == "kernel coefficients"


def test_another_validation_seed_draws_another_split(data):
    other = _fit(data, seed=4, sigmas=[5])
    assert other.sigma == 5 and other.fit_info["validation_seed"] == 4
    pos = data["test"][0][:5]
    assert torch.isfinite(other.energy(pos, check=False)).all()


def test_bad_arguments_are_named(data):
    with pytest.raises(ValueError, match=r"2\.5"):
        _fit(data, sigmas=[2.5, 5])
    with pytest.raises(ValueError, match="empty"):
        _fit(data, sigmas=[])
    with pytest.raises(ValueError, match="validation_fraction"):
        _fit(data, validation_fraction=1.0)
    pos, energy, forces = data["train"]
    with pytest.raises(ValueError, match=r"forces must have the positions' shape"):
        _fit(data, forces=forces[:, :2])
    with pytest.raises(ValueError, match=r"energies must have shape \[100\]"):
        _fit(data, energies=energy[:-1])
    with pytest.raises(ValueError, match="featurizer"):
        _fit(data, symbols=["O", "H", "O"])
    with pytest.raises(NotImplementedError, match="fit_from_settings"):
        SGDMLForceField.from_settings(None, seed=0, featurizer=data["featurizer"], energy_scaler=data["scaler"], train_positions=pos)


# ---- the library stays quiet, and its warnings that matter still arrive

def test_the_library_prints_nothing_keeps_the_logger_class_and_its_warnings_arrive(data, capfd, caplog):
    pos, energy, forces = data["train"]
    small = dict(positions=pos[:20], energies=energy[:20], sigmas=[5])
    _fit(data, forces=forces[:20], **small)
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    assert logging.getLoggerClass() is logging.Logger  # importing sgdml sets a coloured logger class; undone
    # gradients passed as forces: the library's sign check warns, and the warning reaches the log
    with caplog.at_level(logging.WARNING):
        _fit(data, forces=-forces[:20], **small)
    assert any(r.name.startswith("sgdml") and "gradients instead of force" in r.getMessage() for r in caplog.records)

"""Issue 24: complete H3O+ feature sets, as models see them.

* An invariant set (the coupled moments of bonds and opposite angles, and the same with O-H and opposite H-H
  distances) makes the QNN's and the NN's energy invariant under permutations of the three H atoms (to 1e-10 eV) and
  their forces permute with the atoms; an MD run started from permuted labels is the permuted run.
* The paper's own Z-matrix variables are complete but not invariant: relabelling the H atoms changes the energy
  (config/README.md says so).
* The new distance set's Jacobian matches finite differences.
"""

import itertools

import numpy as np
import pytest
import torch
from geometry_helpers import assert_jacobian_matches_finite_differences

from qnnff.config import system_spec
from qnnff.features import EnergyScaler, Featurizer, extend_to_symmetric_point, internal_coordinates
from qnnff.sampling import sample_values

H3O_SETS = {
    "coupled": [{"name": "r_OH", "type": "bond", "atoms": [[0, 1], [0, 2], [0, 3]], "couple_with": "a_HOH"},
                {"name": "a_HOH", "type": "angle", "atoms": [[2, 0, 3], [1, 0, 3], [1, 0, 2]]}],
    "coupled_distances": [{"name": "r_OH", "type": "bond", "atoms": [[0, 1], [0, 2], [0, 3]], "couple_with": "r_HH"},
                          {"name": "r_HH", "type": "bond", "atoms": [[2, 3], [1, 3], [1, 2]]}],
    "zmatrix": [{"name": "r1", "type": "bond", "atoms": [[0, 1]]}, {"name": "r2", "type": "bond", "atoms": [[0, 2]]},
                {"name": "r3", "type": "bond", "atoms": [[0, 3]]}, {"name": "a1", "type": "angle", "atoms": [[2, 0, 1]]},
                {"name": "a2", "type": "angle", "atoms": [[3, 0, 1]]}, {"name": "d", "type": "dihedral", "atoms": [[3, 0, 1, 2]]}],
}
PERMS = [list(p) for p in itertools.permutations([1, 2, 3])]


def featurizer(paper_config, name, n=60, seed=1):
    cfg = paper_config
    cfg["systems"]["H3O+"]["coordinates"] = H3O_SETS[name]
    spec = system_spec(cfg, "H3O+")
    vals = sample_values(spec, "train", seed=seed)[:n]
    pos = torch.as_tensor(np.stack([spec.geometry(dict(zip(spec.variable_names, r))) for r in vals]))
    q = internal_coordinates(spec.families, pos)
    lo, hi = extend_to_symmetric_point(spec.families, q.min(0).values.numpy(), q.max(0).values.numpy())
    feat = Featurizer(families=spec.families, feature_map="arcsin", lo=lo, hi=hi, margin=0.05, symbols=list(spec.symbols))
    return feat, pos


def models(feat):
    from qnnff.models.nn import NNForceField
    from qnnff.models.qnn import QNNForceField

    sc = EnergyScaler(center=-2100.0, scale=0.5)
    circuit = dict(n_qubits=6, depth=2, feature_map="linear", feature_map_reps=1, trainable_feature_map="linear",
                   trainable_feature_map_reps=1)
    return {"nn": NNForceField(featurizer=feat, energy_scaler=sc, hidden=[7, 5], seed=3),
            "qnn": QNNForceField(featurizer=feat, energy_scaler=sc, circuit=circuit, seed=3)}


@pytest.mark.parametrize("name", ["coupled", "coupled_distances"])
@pytest.mark.parametrize("kind", ["nn", "qnn"])
def test_an_invariant_set_makes_the_model_invariant_and_its_forces_permute(paper_config, name, kind):
    feat, pos = featurizer(paper_config, name)
    model = models(feat)[kind]
    pos = pos[:8]
    e0, f0 = model.energy_and_forces(pos)
    assert float(e0.std()) > 1e-4  # the model is not a constant
    for perm in PERMS:
        full = [0, *perm]
        e, f = model.energy_and_forces(pos[:, full])
        assert float((e - e0).abs().max()) < 1e-10, (perm, float((e - e0).abs().max()))
        assert torch.allclose(f, f0[:, full], atol=1e-9, rtol=0)


def test_the_zmatrix_set_is_complete_but_not_invariant(paper_config):
    feat, pos = featurizer(paper_config, "zmatrix")
    assert feat.n_features == 6
    q0, q1 = feat.internal(pos), feat.internal(pos[:, [0, 2, 1, 3]])  # relabel H1 <-> H2
    assert float((q1 - q0).abs().max()) > 1.0  # other coordinates: a model of them sees another geometry
    assert feat.out_of_domain(pos[:, [0, 2, 1, 3]]).any()  # (often outside the sampled box altogether)


def test_distance_set_jacobian_matches_finite_differences(paper_config):
    feat, pos = featurizer(paper_config, "coupled_distances", n=30, seed=2)
    assert feat.n_features == 9
    assert_jacobian_matches_finite_differences(feat, pos[:3])


def test_md_from_permuted_labels_is_the_permuted_run(paper_config):
    from ase import Atoms

    from qnnff.calculators import ModelCalculator
    from qnnff.md import run_nve

    feat, pos = featurizer(paper_config, "coupled")
    model = models(feat)["nn"]
    start = pos[0].numpy()
    v = np.random.default_rng(0).normal(scale=5e-3, size=(4, 3))
    v -= v.mean(axis=0)
    runs = {}
    for perm in ([0, 1, 2, 3], [0, 3, 1, 2]):
        runs[tuple(perm)] = run_nve(calculator=ModelCalculator(model), atoms=Atoms(["O", "H", "H", "H"], positions=start[perm]),
                                    timestep_fs=0.25, n_steps=40, velocities_A_per_fs=v[perm])
    a, b = runs[(0, 1, 2, 3)], runs[(0, 3, 1, 2)]
    assert len(a.positions) == len(b.positions) > 1
    np.testing.assert_allclose(b.positions, a.positions[:, [0, 3, 1, 2]], atol=1e-9)
    np.testing.assert_allclose(b.potential_energy, a.potential_energy, atol=1e-10)

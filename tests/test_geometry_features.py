"""Internal <-> Cartesian round trips and the symmetry of the features."""

import numpy as np
import pytest
import torch
from geometry_helpers import assert_jacobian_matches_finite_differences
from scipy.spatial.transform import Rotation

from qnnff.config import system_spec
from qnnff.features import Featurizer, angle, bond, dihedral, internal_coordinates
from qnnff.sampling import sample_values


@pytest.mark.parametrize("system", ["LiH", "H2O", "H3O+"])
def test_zmatrix_round_trip(paper_config, system):
    spec = system_spec(paper_config, system)
    vals = sample_values(spec, "train", seed=3)[:50]
    for row in vals:
        values = dict(zip(spec.variable_names, row))
        pos = torch.as_tensor(spec.geometry(values))
        for i, zr in enumerate(spec.zmatrix):
            if zr.bond:
                a, v = zr.bond
                assert bond(pos, i, a).item() == pytest.approx(values.get(v, v), abs=1e-10)
            if zr.angle:
                b, v = zr.angle
                assert angle(pos, i, zr.bond[0], b).item() == pytest.approx(values.get(v, v), abs=1e-8)
            if zr.dihedral:
                c, v = zr.dihedral
                assert dihedral(pos, i, zr.bond[0], zr.angle[0], c).item() == pytest.approx(values.get(v, v), abs=1e-8)


def _featurizer(spec, vals):
    pos = torch.as_tensor(np.stack([spec.geometry(dict(zip(spec.variable_names, r))) for r in vals]))
    q = internal_coordinates(spec.families, pos)
    feat = Featurizer(families=spec.families, feature_map=spec.feature_map, lo=q.min(0).values, hi=q.max(0).values,
                      margin=0.05, symbols=list(spec.symbols))
    return feat, pos


@pytest.mark.parametrize("system,perm", [("LiH", [0, 1]), ("H2O", [0, 2, 1]), ("H3O+", [0, 2, 3, 1]), ("H3O+", [0, 3, 1, 2])])
def test_features_invariant(paper_config, system, perm):
    spec = system_spec(paper_config, system)
    feat, pos = _featurizer(spec, sample_values(spec, "train", seed=1)[:40])
    x0 = feat(pos)
    assert torch.all(x0.abs() <= np.pi + 1e-12)
    rot = torch.as_tensor(Rotation.random(random_state=5).as_matrix())
    moved = pos @ rot.T + torch.tensor([1.3, -2.0, 0.7], dtype=torch.float64)
    assert torch.allclose(feat(moved), x0, atol=1e-10)
    if system != "LiH":  # the permutation swaps equivalent H atoms (LiH has none: identity)
        assert torch.allclose(feat(pos[:, perm]), x0, atol=1e-10)


def test_feature_jacobian_matches_finite_differences(paper_config):
    spec = system_spec(paper_config, "H3O+")
    feat, pos = _featurizer(spec, sample_values(spec, "train", seed=2)[:30])
    assert_jacobian_matches_finite_differences(feat, pos[:3])


def test_scaling_maps_training_range_inside_unit_interval(paper_config):
    spec = system_spec(paper_config, "H2O")
    feat, pos = _featurizer(spec, sample_values(spec, "train", seed=4)[:60])
    s = feat.scale(feat.internal(pos))
    assert s.min().item() == pytest.approx(-0.95) and s.max().item() == pytest.approx(0.95)
    assert not feat.out_of_domain(pos).any()
    d = Featurizer.from_dict(feat.to_dict())
    assert torch.equal(d(pos), feat(pos))


def _coupled_h3o(paper_config):
    cfg = paper_config
    cfg["systems"]["H3O+"]["coordinates"] = [
        {"name": "r_OH", "type": "bond", "atoms": [[0, 1], [0, 2], [0, 3]]},
        {"name": "a_HOH", "type": "angle", "atoms": [[2, 0, 3], [1, 0, 3], [1, 0, 2]], "couple_with": "r_OH"}]
    return system_spec(cfg, "H3O+")


def test_coupled_moments_keep_the_bond_angle_pairing(paper_config):
    """Two H3O+ geometries with the same bonds and angles but a different pairing of each bond with its opposite angle
    have equal separate moments and different coupled moments; the coupled features stay invariant under H permutations."""
    spec = _coupled_h3o(paper_config)
    assert [f.couple_with for f in spec.families] == [None, "r_OH"]
    vals = sample_values(spec, "train", seed=5)[:40]
    feat, pos = _featurizer(spec, vals)
    assert feat.n_features == 9 and feat.coordinate_labels()[-3:] == ["a_HOH~r_OH.m11", "a_HOH~r_OH.m21", "a_HOH~r_OH.m12"]
    # invariance: relabel the three H atoms (bond i and the angle opposite H_i permute together)
    for perm in ([0, 2, 3, 1], [0, 3, 1, 2], [0, 1, 3, 2]):
        np.testing.assert_allclose(feat(pos[:, perm]).numpy(), feat(pos).numpy(), atol=1e-10)
    # the pairing matters: swap which bond goes with which angle (same multisets) -> only the coupled moments change
    base = dict(zip(spec.variable_names, vals[0]))
    g1 = torch.as_tensor(spec.geometry({**base, "r1": 0.92, "r2": 1.0, "r3": 1.08}))[None]
    g2 = torch.as_tensor(spec.geometry({**base, "r1": 1.08, "r2": 1.0, "r3": 0.92}))[None]
    q1, q2 = feat.internal(g1)[0], feat.internal(g2)[0]
    np.testing.assert_allclose(q1[:3].numpy(), q2[:3].numpy(), atol=1e-12)  # bond moments
    np.testing.assert_allclose(q1[3:6].numpy(), q2[3:6].numpy(), atol=1e-12)  # angle moments
    assert abs(float(q1[6] - q2[6])) > 1e-3  # mean(da dr) sees the swap


def test_coupled_moments_jacobian_and_ranges(paper_config):
    spec = _coupled_h3o(paper_config)
    vals = sample_values(spec, "train", seed=6)[:30]
    feat, pos = _featurizer(spec, vals)
    x, jac = feat.features_and_jacobian(pos[:4])
    eps = 1e-6
    for a in range(4):
        for k in range(3):
            p, m = pos[:4].clone(), pos[:4].clone()
            p[:, a, k] += eps
            m[:, a, k] -= eps
            np.testing.assert_allclose(((feat(p) - feat(m)) / (2 * eps)).numpy(), jac[:, :, a, k].numpy(), atol=1e-6)
    from qnnff.features import extend_to_symmetric_point

    q = feat.internal(pos).numpy()
    lo, hi = extend_to_symmetric_point(spec.families, q.min(0), q.max(0))
    assert np.all(lo[6:] == -hi[6:]) and np.all(lo[6:] < 0)  # the symmetric geometry (all couplings 0) is inside
    with pytest.raises(Exception, match="couple_with"):
        paper_config["systems"]["H3O+"]["coordinates"][1]["couple_with"] = "r_CH"
        system_spec(paper_config, "H3O+")

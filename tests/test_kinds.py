"""The model-kind registry (qnnff.kinds): one entry per kind, and every layer reads the kinds from it (issue 25)."""

from __future__ import annotations

import numpy as np
import pytest

from qnnff import settings
from qnnff.config import ConfigError, schema
from qnnff.kinds import KINDS, model_kind
from qnnff.models.factory import build_model, load_model, model_class
from qnnff.protocols import KINDS as PROTOCOL_KINDS


@pytest.mark.parametrize("name", list(KINDS))
def test_each_registered_kind_is_complete(name):
    k = KINDS[name]
    cls = model_class(name)  # imports its module, which registers the class
    assert cls.__name__ == k.model_class and cls.kind == name and cls.__module__ == k.module
    assert callable(cls.from_settings) and callable(cls.from_artifact)
    st = getattr(settings, k.settings)
    assert st.kind == name
    s = schema()
    assert name in s["$defs"], f"schema $defs has no {name!r} block"
    assert name in s["$defs"]["system"]["properties"]["models"]["properties"]


def test_the_layers_take_their_kinds_from_the_registry():
    from qnnff import evaluation, figures
    from qnnff.models.factory import MODEL_KINDS

    assert tuple(PROTOCOL_KINDS) == tuple(MODEL_KINDS) == tuple(KINDS)
    assert set(evaluation.MODEL_LABELS) == set(KINDS) and set(figures.MARKERS) == set(KINDS)
    assert set(figures.COLORS) == {"dft", *KINDS}


def test_an_unknown_kind_is_named():
    with pytest.raises(ValueError, match="unknown model kind 'gp'.*qnn, nn, bpnn"):
        model_kind("gp")
    with pytest.raises(ConfigError, match="unknown model kind 'gp'"):
        settings.model_settings_of({"systems": {"LiH": {}}}, "LiH", "gp")


@pytest.mark.parametrize("kind", list(KINDS))
def test_build_save_load_round_trip_through_the_registry(kind, paper_config, tmp_path):
    """A fresh model of each kind from the config, saved and loaded back through the registry: same energies."""
    import torch

    from qnnff.config import system_spec
    from qnnff.features import EnergyScaler, Featurizer, internal_coordinates
    from qnnff.geometry import zmatrix_to_cartesian

    spec = system_spec(paper_config, "LiH")
    rs = (1.4, 1.6, 2.0, 2.5) if not KINDS[kind].closed_form else np.linspace(1.4, 2.5, 12)
    pos = np.stack([zmatrix_to_cartesian(spec.zmatrix, {"r": r}) for r in rs])
    q = internal_coordinates(spec.families, torch.as_tensor(pos)).numpy()
    feat = Featurizer(families=spec.families, feature_map=spec.feature_map, lo=q.min(0), hi=q.max(0), margin=0.05,
                      symbols=list(spec.symbols))
    scaler = EnergyScaler.fit(np.array([-8.0, -8.1, -8.05, -7.9]))
    if KINDS[kind].closed_form:  # fitted on energies and forces (a Morse curve), not built fresh
        r = np.linalg.norm(pos[:, 1] - pos[:, 0], axis=1)
        e = 2.5 * (1 - np.exp(-1.1 * (r - 1.6))) ** 2 - 8.0
        de = 2 * 2.5 * 1.1 * (1 - np.exp(-1.1 * (r - 1.6))) * np.exp(-1.1 * (r - 1.6))
        u = (pos[:, 1] - pos[:, 0]) / r[:, None]
        forces = np.stack([de[:, None] * u, -de[:, None] * u], axis=1)
        model = model_class(kind).fit_from_settings(settings.model_settings_of(paper_config, "LiH", kind), seed=1,
                                                    featurizer=feat, energy_scaler=scaler, positions=pos, energies=e,
                                                    forces=forces)
    else:
        model = build_model(paper_config, "LiH", kind, feat, scaler, pos, seed_index=1)
    assert type(model) is model_class(kind)
    model.save(tmp_path / "m.zip")
    back = load_model(tmp_path / "m.zip")
    assert type(back) is type(model)
    torch.testing.assert_close(back.energy(pos), model.energy(pos), rtol=0, atol=1e-12)

"""Issue 26.1: a checkpoint is resumed only when the model, the training data, the features and the training settings
are those it was written under; otherwise it is ignored with a warning that names what differs."""

import pytest
import torch
from test_training import CIRCUIT, make_data  # the tiny water data and circuit of the trainer's tests

from qnnff.features import Featurizer
from qnnff.models.base import TrainingBatch
from qnnff.models.qnn import QNNForceField
from qnnff.training import train

KW = dict(optimizer="adam", iterations=12, lr=0.03, chi=1.0, seed=2)


class Killed(Exception):
    pass


@pytest.fixture(scope="module")
def data():
    return make_data()


def qnn(data, *, seed=3, featurizer=None, **circuit):
    fz, sc, _ = data
    return QNNForceField(featurizer=featurizer or fz, energy_scaler=sc, circuit={**CIRCUIT, **circuit}, seed=seed)


def killed_at_6(model, batch, ck, **kw):
    """A training killed after its checkpoint at iteration 6 (a checkpoint every 3)."""

    def kill(it, rec):
        if it == 6:
            raise Killed

    with pytest.raises(Killed):
        train(model, batch, checkpoint_path=ck, checkpoint_every=3, callback=kill, log=lambda s: None, **{**KW, **kw})
    assert ck.is_file()


def rerun(model, batch, ck, **kw):
    said = []
    result = train(model, batch, checkpoint_path=ck, checkpoint_every=3, log=said.append, **{**KW, **kw})
    return result, said


def ignored_because(said, *needles):
    lines = [s for s in said if "checkpoint" in s and "ignored" in s]
    assert lines, f"no 'checkpoint ignored' warning in {said}"
    for n in needles:
        assert n in lines[0], f"{n!r} not in {lines[0]!r}"
    assert not any(s.startswith("resuming") for s in said)


def test_identical_settings_still_resume(data, tmp_path):
    _, _, batch = data
    ck = tmp_path / "ck.pt"
    killed_at_6(qnn(data), batch, ck)
    result, said = rerun(qnn(data), batch, ck)
    assert result.resumed_from == 6 and result.iterations == 12
    assert not any("ignored" in s for s in said)


def test_changed_entanglement_same_parameter_count_is_not_resumed(data, tmp_path):
    _, _, batch = data
    ck = tmp_path / "ck.pt"
    killed_at_6(qnn(data, entanglement="linear"), batch, ck)
    other = qnn(data, entanglement="full")
    assert other.n_parameters() == qnn(data).n_parameters()
    result, said = rerun(other, batch, ck)
    assert result.resumed_from is None and result.iterations == 12
    ignored_because(said, "model hash differs", "architecture or init")


def test_changed_initial_weights_are_not_resumed(data, tmp_path):
    """``init.feature_map_weights`` (or any other initialisation) changes the model's initial weights."""
    fz, sc, batch = data
    ck = tmp_path / "ck.pt"
    killed_at_6(qnn(data), batch, ck)
    other = QNNForceField(featurizer=fz, energy_scaler=sc, circuit=CIRCUIT, seed=3, feature_map_init=0.5)
    result, said = rerun(other, batch, ck)
    assert result.resumed_from is None
    ignored_because(said, "model hash differs")


def test_lower_iterations_are_not_resumed_and_named(data, tmp_path):
    _, _, batch = data
    ck = tmp_path / "ck.pt"
    killed_at_6(qnn(data), batch, ck, iterations=30)
    result, said = rerun(qnn(data), batch, ck, iterations=12)
    assert result.resumed_from is None and result.iterations == 12 == result.iterations_configured
    ignored_because(said, "iterations 30 -> 12")


def test_recomputed_features_are_not_resumed(data, tmp_path):
    """``features.margin`` changed: the featurizer's range and the training features differ, the checkpoint is stale."""
    fz, _, batch = data
    ck = tmp_path / "ck.pt"
    killed_at_6(qnn(data), batch, ck)
    wider = Featurizer.from_dict({**fz.to_dict(), "margin": 0.2})
    x, jac = wider.features_and_jacobian(batch.positions)
    new_batch = TrainingBatch(batch.positions, batch.y, batch.f, x, jac)
    result, said = rerun(qnn(data, featurizer=wider), new_batch, ck)
    assert result.resumed_from is None
    ignored_because(said, "feature hash differs")


def test_changed_training_data_is_not_resumed(data, tmp_path):
    _, _, batch = data
    ck = tmp_path / "ck.pt"
    killed_at_6(qnn(data), batch, ck)
    shifted = TrainingBatch(batch.positions, batch.y + 0.1, batch.f, batch.x, batch.jac)
    result, said = rerun(qnn(data), shifted, ck)
    assert result.resumed_from is None
    ignored_because(said, "data hash differs")


def test_a_callers_provenance_hash_must_match(data, tmp_path):
    """The pipeline passes its job's model hash (``qnnff.protocols.model_hash``): a changed config is not resumed."""
    _, _, batch = data
    ck = tmp_path / "ck.pt"
    killed_at_6(qnn(data), batch, ck, provenance={"model_hash": "a" * 16})
    result, said = rerun(qnn(data), batch, ck, provenance={"model_hash": "b" * 16})
    assert result.resumed_from is None
    ignored_because(said, "provenance hash model_hash differs")
    ck.unlink()
    killed_at_6(qnn(data), batch, ck, provenance={"model_hash": "b" * 16})
    result, _ = rerun(qnn(data), batch, ck, provenance={"model_hash": "b" * 16})
    assert result.resumed_from == 6


def test_a_warning_reaches_a_logger(data, tmp_path, caplog):
    """With a logging.Logger, the ignored checkpoint is logged at WARNING."""
    import logging

    _, _, batch = data
    ck = tmp_path / "ck.pt"
    killed_at_6(qnn(data), batch, ck, iterations=30)
    with caplog.at_level(logging.INFO, logger="qnnff.test"):
        train(qnn(data), batch, checkpoint_path=ck, checkpoint_every=3, log=logging.getLogger("qnnff.test"), **KW)
    warned = [r for r in caplog.records if r.levelno == logging.WARNING and "ignored" in r.getMessage()]
    assert warned and "iterations 30 -> 12" in warned[0].getMessage()
    assert torch.load(ck, weights_only=True)["fingerprint"]["iterations"] == 12  # overwritten by the new run

"""QNN initialisation is configuration: the keys reach the circuit, and the default start is smooth."""

import math

import numpy as np
import pytest

from qnnff.checks import check_config
from qnnff.config import ConfigError
from qnnff.features import EnergyScaler
from qnnff.models.factory import build_model, qnn_circuit_config
from qnnff.models.qnn import QNNForceField
from qnnff.protocols import init_seed, qnn_init
from qnnff.qnn.circuit import QNNCircuitConfig, build_qnn_circuit, encoding_counts, initial_feature_map_weights
from qnnff.qnn.spectrum import high_frequency_fraction, line_spectrum_fraction

SMALL = dict(n_qubits=2, n_features=2, depth=8, feature_map="full", feature_map_reps=3, trainable_feature_map="full",
             trainable_feature_map_reps=3)


def test_encoding_counts_match_the_architecture():
    # H2O paper circuit: 12 layers x 3 repetitions x 3 qubits = 108 encodings of every feature -> 1/sqrt(108)
    qc, x, w = build_qnn_circuit(n_qubits=3, n_features=3, depth=12, feature_map="full", feature_map_reps=3,
                                 trainable_feature_map="full", trainable_feature_map_reps=3)
    counts, shares = encoding_counts(qc, x, w)
    assert counts == [108, 108, 108]
    lam = initial_feature_map_weights(qc, x, w, "auto")
    assert sorted(lam) == list(range(9)) and all(v == pytest.approx(1 / math.sqrt(108)) for v in lam.values())
    # H3O+: linear map, one weight per repetition shared by the 6 features, each encoded 10 x 3 = 30 times
    qc, x, w = build_qnn_circuit(n_qubits=6, n_features=6, depth=10, feature_map="linear", feature_map_reps=3,
                                 trainable_feature_map="linear", trainable_feature_map_reps=3)
    counts, shares = encoding_counts(qc, x, w)
    assert counts == [30] * 6 and shares == {t: set(range(6)) for t in range(3)}
    assert initial_feature_map_weights(qc, x, w, 0.25) == {0: 0.25, 1: 0.25, 2: 0.25}
    with pytest.raises(ValueError, match="auto"):
        initial_feature_map_weights(qc, x, w, "smooth")


def _water_featurizer():
    from qnnff.features import CoordinateFamily, Featurizer

    fams = [CoordinateFamily("r_OH", "bond", ((0, 1), (0, 2))), CoordinateFamily("a_HOH", "angle", ((1, 0, 2),))]
    return Featurizer(families=fams, feature_map="arcsin", lo=[0.9, 0.0, 95.0], hi=[1.2, 0.1, 120.0], symbols=["O", "H", "H"])


@pytest.mark.parametrize("fm_init,rotations", [("auto", math.pi), (0.3, 0.5), (1.0, 2.0)])
def test_init_keys_reach_the_circuit_weights(paper_config, fm_init, rotations):
    cfg = paper_config
    cfg["systems"]["H2O"]["models"]["qnn"]["init"] = {"feature_map_weights": fm_init, "rotations": rotations}
    check_config(cfg)
    feat = _water_featurizer()
    model = build_model(cfg, "H2O", "qnn", feat, EnergyScaler(0.0, 1.0), np.zeros((1, 3, 3)), protocol="best", seed_index=2)
    w = model.regressor.weights.detach().numpy()
    n_fm = QNNCircuitConfig(n_features=feat.n_features, **qnn_circuit_config(cfg, "H2O")).n_feature_map_weights
    expect = 1 / math.sqrt(108) if fm_init == "auto" else fm_init
    np.testing.assert_allclose(w[:n_fm], expect)
    assert np.all(np.abs(w[n_fm:]) <= rotations) and np.abs(w[n_fm:]).max() > 0.5 * rotations
    assert model.seed == init_seed(cfg, "H2O", "qnn", 2)


def test_protocol_init_overrides_the_model_init(paper_config):
    cfg = paper_config
    cfg["systems"]["H2O"]["models"]["qnn"]["protocols"]["paper"]["init"] = {"feature_map_weights": 1.0}
    check_config(cfg)
    assert qnn_init(cfg, "H2O", "paper")["feature_map_weights"] == 1.0
    assert qnn_init(cfg, "H2O", "best")["feature_map_weights"] == "auto"
    cfg["systems"]["H2O"]["models"]["nn"]["protocols"]["best"]["init"] = {"feature_map_weights": 1.0}
    with pytest.raises(ConfigError, match=r"systems\.H2O\.models\.nn\.protocols\.best\.init"):
        check_config(cfg)


def test_high_frequency_fraction_of_known_signals():
    x = np.linspace(-20, 20, 4000)
    assert high_frequency_fraction(np.sin(2 * x), x[1] - x[0], 4.0) < 1e-3
    assert high_frequency_fraction(np.sin(6 * x), x[1] - x[0], 4.0) > 0.999
    mix = high_frequency_fraction(np.sin(2 * x) + np.sin(6 * x), x[1] - x[0], 4.0)
    assert mix == pytest.approx(0.5, abs=0.02)


def _regressor(fm_init, seed):
    from qnnff.features import CoordinateFamily, Featurizer

    fams = [CoordinateFamily(f"r{i}", "bond", ((0, i + 1),)) for i in range(2)]
    feat = Featurizer(families=fams, feature_map="arcsin", lo=[0.9, 0.9], hi=[1.2, 1.2], symbols=["O", "H", "H"])
    cfg = {k: v for k, v in SMALL.items() if k != "n_features"}
    return QNNForceField(featurizer=feat, energy_scaler=EnergyScaler(0.0, 1.0), circuit=cfg, seed=seed,
                         feature_map_init=fm_init).regressor


def test_default_initial_spectrum_is_not_dominated_by_high_frequencies():
    # 48 encodings per feature: at lambda_0 = 1 a third or more of the initial model's variance lies above angular
    # frequency 4 (a rough start no optimiser recovers from on H2O); the default 1/sqrt(48) keeps it below 1%.
    rough = [line_spectrum_fraction(_regressor(1.0, s), 2, feature=f) for s in range(4) for f in range(2)]
    smooth = [line_spectrum_fraction(_regressor("auto", s), 2, feature=f) for s in range(4) for f in range(2)]
    assert np.mean(rough) > 0.2
    assert max(smooth) < 0.01


def test_qnn_init_config_errors(paper_config):
    cfg = paper_config
    cfg["systems"]["H2O"]["models"]["qnn"]["init"] = {"feature_map_weights": "smooth"}
    with pytest.raises(ConfigError, match="feature_map_weights"):
        check_config(cfg)
    cfg["systems"]["H2O"]["models"]["qnn"]["init"] = {"feature_map_weights": 0.1, "rotation": 1.0}
    with pytest.raises(ConfigError, match="rotation"):
        check_config(cfg)


def test_config_yaml_documents_every_protocol(paper_config):
    # the paper config trains every model with >= 5 seeds, and QNN/NN of H2O and H3O+ under both protocols
    assert paper_config["seeds"] >= 5
    for system in ("H2O", "H3O+"):
        for kind in ("qnn", "nn"):
            assert {"paper", "best"} <= set(paper_config["systems"][system]["models"][kind]["protocols"])

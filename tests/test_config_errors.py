"""Bad input gets an early error that names the offending key or value."""

import copy
import math

import pytest

from qnnff.checks import check_config
from qnnff.config import ConfigError


def _err(cfg) -> str:
    with pytest.raises(ConfigError) as exc:
        check_config(cfg)
    return str(exc.value)


def test_paper_and_test_configs_are_valid(paper_config, test_config):
    check_config(paper_config)
    check_config(test_config)


def test_unknown_key(paper_config):
    cfg = copy.deepcopy(paper_config)
    cfg["systems"]["H2O"]["temperature"] = 300
    msg = _err(cfg)
    assert "systems.H2O" in msg and "temperature" in msg


def test_unknown_top_level_key(paper_config):
    cfg = copy.deepcopy(paper_config)
    cfg["dft"]["fuctional"] = "pbe"
    assert "fuctional" in _err(cfg)


def test_inverted_range(paper_config):
    cfg = copy.deepcopy(paper_config)
    cfg["systems"]["H2O"]["variables"]["r1"] = [1.3, 0.8]
    msg = _err(cfg)
    assert "systems.H2O.variables.r1" in msg and "inverted" in msg


def test_unknown_element(paper_config):
    cfg = copy.deepcopy(paper_config)
    cfg["systems"]["LiH"]["zmatrix"][1][0] = "Hx"
    msg = _err(cfg)
    assert "systems.LiH.zmatrix[1]" in msg and "'Hx'" in msg


def test_nan_coordinate(paper_config):
    cfg = copy.deepcopy(paper_config)
    cfg["systems"]["H3O+"]["variables"]["d"] = [110.0, math.nan]
    msg = _err(cfg)
    assert "systems.H3O+.variables.d" in msg and "NaN" in msg


def test_nan_fixed_zmatrix_value(paper_config):
    cfg = copy.deepcopy(paper_config)
    cfg["systems"]["H2O"]["zmatrix"][2][4] = math.nan
    cfg["systems"]["H2O"]["variables"].pop("theta")
    msg = _err(cfg)
    assert "systems.H2O.zmatrix" in msg and "nan" in msg.lower()


def test_undefined_variable_and_bad_reference(paper_config):
    cfg = copy.deepcopy(paper_config)
    cfg["systems"]["H2O"]["zmatrix"][2] = ["H", 0, "r9", 1, "theta"]
    assert "'r9'" in _err(cfg)
    cfg = copy.deepcopy(paper_config)
    cfg["systems"]["H2O"]["zmatrix"][1] = ["H", 5, "r1"]
    assert "systems.H2O.zmatrix" in _err(cfg)


def test_coordinate_atom_out_of_range(paper_config):
    cfg = copy.deepcopy(paper_config)
    cfg["systems"]["H2O"]["coordinates"][0]["atoms"] = [[0, 1], [0, 3]]
    msg = _err(cfg)
    assert "systems.H2O.coordinates[0]" in msg and "3" in msg


def test_inconsistent_charge_and_multiplicity(paper_config):
    cfg = copy.deepcopy(paper_config)
    cfg["systems"]["H3O+"]["charge"] = 0
    assert "systems.H3O+" in _err(cfg)


def test_grid_needs_perfect_power(paper_config):
    cfg = copy.deepcopy(paper_config)
    cfg["systems"]["H2O"]["sampling"]["train"] = {"design": "grid", "n": 30}
    assert "systems.H2O.sampling.train.n" in _err(cfg)


def test_data_hash_ignores_model_and_md_settings(paper_config):
    from qnnff.config import config_hash, system_spec

    h = config_hash(system_spec(paper_config, "H3O+").subconfig(paper_config))
    cfg = copy.deepcopy(paper_config)
    cfg["systems"]["H3O+"]["models"]["qnn"]["protocols"]["best"]["iterations"] = 7
    cfg["systems"]["H3O+"]["md"]["n_steps"] = 7
    assert config_hash(system_spec(cfg, "H3O+").subconfig(cfg)) == h
    cfg["systems"]["H3O+"]["variables"]["d"] = [100.0, 260.0]
    assert config_hash(system_spec(cfg, "H3O+").subconfig(cfg)) != h


def test_protocol_errors_name_the_key(paper_config):
    cfg = copy.deepcopy(paper_config)
    cfg["systems"]["H2O"]["models"]["qnn"]["protocols"]["best"]["lr_final"] = 1.0  # above lr
    assert "systems.H2O.models.qnn.protocols.best.lr_final" in _err(cfg)
    cfg = copy.deepcopy(paper_config)
    cfg["systems"]["H2O"]["models"]["qnn"]["protocols"]["paper"]["batch_size"] = 10  # COBYLA is full batch
    assert "systems.H2O.models.qnn.protocols.paper.batch_size" in _err(cfg)
    cfg = copy.deepcopy(paper_config)
    cfg["systems"]["H2O"]["models"]["nn"]["protocols"] = {}
    assert "systems.H2O.models.nn.protocols" in _err(cfg)
    cfg = copy.deepcopy(paper_config)
    cfg["systems"]["H2O"]["models"]["nn"]["protocols"]["Best"] = {"optimizer": "adam", "iterations": 5, "chi": 1.0}
    assert "Best" in _err(cfg)
    cfg = copy.deepcopy(paper_config)
    cfg["figures"] = {"protocol": "bset"}
    assert "figures.protocol" in _err(cfg)
    cfg = copy.deepcopy(paper_config)
    cfg["seeds"] = 0
    assert "seeds" in _err(cfg)


def test_reproduction_block_errors(paper_config):
    cfg = copy.deepcopy(paper_config)
    cfg["reproduction"]["paper"]["NH3"] = {"qnn": {"rmse_e": 0.1}}
    assert "reproduction.paper.NH3" in _err(cfg)
    cfg = copy.deepcopy(paper_config)
    cfg["reproduction"]["protocol"] = "fast"
    assert "reproduction.protocol" in _err(cfg)
    cfg = copy.deepcopy(paper_config)
    cfg["reproduction"]["md_period"] = {"system": "H2O"}
    assert "reproduction.md_period.system" in _err(cfg)


def test_model_hash_ignores_other_protocols_seeds_and_aer(paper_config):
    from qnnff.protocols import model_hash

    h = model_hash(paper_config, "H2O", "qnn", "best")
    cfg = copy.deepcopy(paper_config)
    cfg["systems"]["H2O"]["models"]["qnn"]["protocols"]["paper"]["iterations"] = 7
    cfg["systems"]["H2O"]["models"]["qnn"]["aer"]["shots"] = 100
    cfg["seeds"] = 9
    assert model_hash(cfg, "H2O", "qnn", "best") == h
    cfg["systems"]["H2O"]["models"]["qnn"]["protocols"]["best"]["lr"] = 0.02
    assert model_hash(cfg, "H2O", "qnn", "best") != h
    cfg = copy.deepcopy(paper_config)
    cfg["systems"]["H2O"]["models"]["qnn"]["init"] = {"feature_map_weights": 0.5}
    assert model_hash(cfg, "H2O", "qnn", "best") != h


@pytest.mark.parametrize("protocol, key", [
    ({"optimizer": "adam+lbfgs", "iterations": 100, "chi": 1.0}, "lbfgs_evaluations: optimizer adam+lbfgs needs it"),
    ({"optimizer": "adam", "iterations": 100, "chi": 1.0, "lbfgs_evaluations": 50}, "lbfgs_evaluations: only for optimizer adam+lbfgs"),
    ({"optimizer": "adam", "iterations": 100, "chi": 1.0, "history_size": 20}, "history_size: an L-BFGS setting needs optimizer: lbfgs"),
    ({"optimizer": "lbfgs", "iterations": 100, "chi": 1.0, "batch_size": 50}, "batch_size: LBFGS evaluates the full training set"),
    ({"optimizer": "lbfgs", "iterations": 100, "chi": 1.0, "lr_final": 1e-3}, "lr_final: a learning-rate schedule needs optimizer: adam"),
])
def test_lbfgs_protocol_errors_name_the_key(paper_config, protocol, key):
    cfg = copy.deepcopy(paper_config)
    cfg["systems"]["H2O"]["models"]["nn"]["protocols"]["best"] = protocol
    msg = _err(cfg)
    assert "systems.H2O.models.nn.protocols.best." + key in msg, msg


def test_lbfgs_protocols_are_valid(paper_config):
    cfg = copy.deepcopy(paper_config)
    cfg["systems"]["H2O"]["models"]["nn"]["protocols"] |= {
        "l": {"optimizer": "lbfgs", "iterations": 100, "chi": 1.0, "history_size": 20, "tolerance_grad": 0.0},
        "al": {"optimizer": "adam+lbfgs", "iterations": 100, "lbfgs_evaluations": 300, "lr": 0.01, "lr_final": 1e-3, "chi": 1.0}}
    check_config(cfg)


@pytest.mark.parametrize("where", [
    ("systems", "H2O", "models", "qnn", "protocols", "best", "lr"),
    ("systems", "H2O", "models", "qnn", "protocols", "best", "chi"),
    ("systems", "H2O", "md", "temperature_K"),
    ("features", "margin"),
    ("dft", "max_failed_fraction"),
    ("systems", "LiH", "md", "shots_tolerance_A"),
])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_non_finite_number_is_refused_with_its_key(paper_config, where, value):
    """NaN passes every schema bound (``nan > 0`` and ``nan < 1`` are both false); it is refused at start-up."""
    cfg = copy.deepcopy(paper_config)
    node = cfg
    for k in where[:-1]:
        node = node[k]
    node[where[-1]] = value
    msg = _err(cfg)
    assert ".".join(where) in msg and "not a finite number" in msg


# ---------------------------------------------------------------- issue 26, item 16: a circuit too large to simulate
def test_a_circuit_too_large_for_memory_is_refused_at_start_up_naming_the_key_and_the_estimate(paper_config):
    """depth 100000 reached 3.3 GB with no iteration in 150 s: the estimate (config/README.md "Circuit size limits")
    refuses it before any job starts."""
    cfg = copy.deepcopy(paper_config)
    cfg["systems"]["H2O"]["models"]["qnn"]["depth"] = 100000
    msg = _err(cfg)
    assert "systems.H2O.models.qnn.depth" in msg and "100000" in msg
    assert "GB of memory" in msg and "limit of 8 GB" in msg and "Circuit size limits" in msg


def test_a_circuit_too_slow_to_train_is_refused_at_start_up(paper_config):
    cfg = copy.deepcopy(paper_config)
    qnn = cfg["systems"]["H2O"]["models"]["qnn"]
    qnn["n_qubits"] = 16  # 2^16 amplitudes per sample, 300 samples, 3000 evaluations
    msg = _err(cfg)
    assert "systems.H2O.models.qnn.protocols." in msg and "n_qubits 16" in msg and "h of training" in msg


def test_the_paper_circuits_are_far_inside_the_limits(paper_config):
    from qnnff.protocols import qnn_circuit_estimates

    for system in ("LiH", "H2O", "H3O+"):
        for protocol, (memory, seconds) in qnn_circuit_estimates(paper_config, system).items():
            assert memory < 0.1 * 8e9 and seconds < 0.1 * 24 * 3600, (system, protocol, memory, seconds)


def test_a_study_point_with_a_too_large_circuit_is_refused(paper_config):
    cfg = copy.deepcopy(paper_config)
    cfg["studies"] = {"deep": {"system": "LiH", "kind": "qnn", "grid": {"model.depth": [10, 200000]}}}
    msg = _err(cfg)
    assert "studies.deep.grid" in msg and "depth" in msg and "GB of memory" in msg


# ---------------------------------------------------------------- issue 26, item 17: electrons and basis sets at start-up
def test_more_unpaired_electrons_than_electrons_is_refused_at_start_up(paper_config):
    """LiH has 4 electrons: multiplicity 7 (6 unpaired) has the right parity, and failed only in the DFT job."""
    cfg = copy.deepcopy(paper_config)
    cfg["systems"]["LiH"]["multiplicity"] = 7
    msg = _err(cfg)
    assert "systems.LiH.multiplicity" in msg and "7" in msg and "4 electrons" in msg


def test_multiplicity_of_the_wrong_parity_is_refused_naming_the_key(paper_config):
    cfg = copy.deepcopy(paper_config)
    cfg["systems"]["H2O"]["multiplicity"] = 2
    msg = _err(cfg)
    assert "systems.H2O.multiplicity" in msg and "2" in msg and "10 electrons" in msg


def test_an_element_without_the_configured_basis_is_refused_at_start_up(paper_config):
    cfg = copy.deepcopy(paper_config)
    cfg["systems"]["LiH"]["zmatrix"][0][0] = "Ts"  # tennessine (118 electrons with the H): no def2-svp basis
    cfg["systems"]["LiH"]["charge"] = 0
    cfg["systems"]["LiH"]["multiplicity"] = 1
    msg = _err(cfg)
    assert "systems.LiH" in msg and "'Ts'" in msg and "def2-svp" in msg and "dft.basis" in msg


def test_a_basis_name_pyscf_does_not_know_is_refused_naming_the_system_key(paper_config):
    cfg = copy.deepcopy(paper_config)
    cfg["systems"]["LiH"]["dft"] = {"basis": "def2-svpp"}
    msg = _err(cfg)
    assert "systems.LiH.dft.basis" in msg and "def2-svpp" in msg


def test_a_repeated_key_is_an_error_naming_both_lines(tmp_path):
    """PyYAML keeps the last of two equal keys and drops the first without a word; a config must not."""
    from qnnff.config import ConfigError, load_yaml

    path = tmp_path / "dup.yaml"
    path.write_text("seed: 1\nsystems:\n  LiH: {charge: 0}\n  H2O: {charge: 0}\n  LiH: {charge: 1}\nseeds: 5\n")
    with pytest.raises(ConfigError, match=r"dup.yaml, line 5, column 3: .*duplicate key 'LiH' \(first on line 3\)"):
        load_yaml(path)


@pytest.mark.parametrize("name", ["schema.yaml", "config.yaml", "studies.yaml", "test.yaml"])
def test_the_committed_yaml_files_have_no_repeated_key(repo, name):
    from qnnff.config import load_yaml

    assert load_yaml(repo / "config" / name)

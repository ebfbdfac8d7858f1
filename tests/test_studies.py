"""Studies (qnnff.studies): parsing and start-up errors, stable point names, the data-efficiency slope and the tables.
The workflow run of a tiny study on the smoke config is in tests/test_workflow.py (it reuses the smoke run)."""

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from qnnff.checks import check_config
from qnnff.config import ConfigError
from qnnff.jobs import StudyJob
from qnnff.stages.studies import loglog_slope, study_table
from qnnff.studies import apply_point, parse_studies, parse_study, reuses_pipeline_model


def _with_study(cfg: dict, **study) -> dict:
    cfg = copy.deepcopy(cfg)
    cfg["studies"] = {"s": {"system": "H2O", "kind": "qnn", **study}}
    return cfg


def _err(cfg) -> str:
    with pytest.raises(ConfigError) as exc:
        check_config(cfg)
    return str(exc.value)


def test_committed_studies_are_valid(paper_config, repo):
    cfg = {**paper_config, **yaml.safe_load((repo / "config" / "studies.yaml").read_text())}
    check_config(cfg)
    studies = parse_studies(cfg)
    assert {"H2O_init", "H3O+_capacity", "H2O_data_qnn", "H3O+_shots"} <= set(studies)
    init = studies["H2O_init"]
    assert len(init.points) == 8 and init.seeds == 5
    # the full-size point and the shot studies reuse the pipeline's models instead of training them again
    full = studies["H2O_data_nn"].point("n_train-300")
    assert reuses_pipeline_model(cfg, studies["H2O_data_nn"], full)
    assert not reuses_pipeline_model(cfg, studies["H2O_data_nn"], studies["H2O_data_nn"].point("n_train-25"))
    assert [p.name for p in studies["H3O+_shots"].points] == ["base"]


def test_unknown_grid_key_is_named(test_config):
    msg = _err(_with_study(test_config, grid={"n_trian": [5]}))
    assert "studies.s.grid.n_trian" in msg and "n_train" in msg  # the key, and a suggestion


def test_training_set_size_above_the_data(test_config):
    n = test_config["systems"]["H2O"]["sampling"]["train"]["n"]
    msg = _err(_with_study(test_config, grid={"n_train": [5, n + 1]}))
    assert "studies.s.grid.n_train" in msg and str(n + 1) in msg


def test_zero_shots_and_shots_for_a_classical_model(test_config):
    msg = _err(_with_study(test_config, evaluate={"shots": [0]}))
    assert "studies.s.evaluate.shots" in msg
    msg = _err(_with_study(test_config, kind="nn", evaluate={"shots": [128]}))
    assert "studies.s.evaluate.shots" in msg and "nn" in msg


def test_impossible_values_fail_through_the_pipelines_own_checks(test_config):
    msg = _err(_with_study(test_config, grid={"lr": [-0.1]}))
    assert "studies.s.grid" in msg and "lr" in msg
    msg = _err(_with_study(test_config, grid={"init.feature_map_weights": ["big"]}))
    assert "studies.s.grid" in msg and "feature_map_weights" in msg
    msg = _err(_with_study(test_config, system="CH4"))
    assert "studies.s.system" in msg
    msg = _err(_with_study(test_config, protocol="fast"))
    assert "studies.s.protocol" in msg
    msg = _err(_with_study(test_config, grid={"optimizer": ["adam", "adam"]}))
    assert "repeated" in msg


def test_point_names_are_stable_when_a_value_is_added(test_config):
    a = parse_study(_with_study(test_config, grid={"n_train": [5, 10], "chi": [0.0, 1.0]}), "s")
    b = parse_study(_with_study(test_config, grid={"n_train": [5, 8, 10], "chi": [0.0, 1.0]}), "s")
    names_a, names_b = {p.name for p in a.points}, {p.name for p in b.points}
    assert names_a < names_b and names_b - names_a == {"n_train-8__chi-0", "n_train-8__chi-1"}


def test_union_of_grids_and_the_base_point(test_config):
    st = parse_study(_with_study(test_config, grid=[{}, {"model.depth": [2]}, {"chi": [0.1, 0.5]}]), "s")
    assert [p.name for p in st.points] == ["base", "depth-2", "chi-0.1", "chi-0.5"]
    assert st.grid_keys == ("model.depth", "chi")


def test_apply_point_reaches_protocol_init_model_and_system(test_config):
    cfg = _with_study(test_config)
    d = apply_point(cfg, parse_study(cfg, "s"), {"chi": 0.25, "init.rotations": 0.1, "model.depth": 3, "system.feature_map": "linear"})
    sc = d["systems"]["H2O"]
    assert sc["models"]["qnn"]["protocols"]["best"]["chi"] == 0.25
    assert sc["models"]["qnn"]["protocols"]["best"]["init"]["rotations"] == 0.1
    assert sc["models"]["qnn"]["depth"] == 3 and sc["feature_map"] == "linear"
    assert test_config["systems"]["H2O"]["models"]["qnn"]["depth"] != 3  # the base config is untouched
    assert "studies" not in d


def test_loglog_slope_recovers_a_power_law():
    n = np.array([25, 50, 100, 200, 400])
    assert loglog_slope(n, 3.0 * n**-0.5) == pytest.approx(-0.5, abs=1e-12)
    assert loglog_slope(n, np.full(5, 0.1)) == pytest.approx(0.0, abs=1e-12)
    assert np.isnan(loglog_slope([50, 50], [0.1, 0.2]))


def _fake_metrics(tmp_path, cfg, study, rmse):
    """metrics.json files as run_point writes them, with prescribed errors."""
    st = parse_study(cfg, study)
    files = []
    for p in st.points:
        for k in range(st.seeds):
            e = rmse(p, k)
            d = {"study": study, "point": p.name, "settings": p.settings, "seed": k, "n_train": p.n_train or 10,
                 "reused_pipeline_model": False, "RMSE(E) [scaled]": e, "RMSE(F) [scaled, 1/A]": 2 * e,
                 "RMSE(E) [meV]": 100 * e, "RMSE(F) [meV/A]": 200 * e, "parameters": 10, "iterations": 5,
                 "train time [s]": 1.0, "shots": []}
            f = tmp_path / p.name / f"seed{k}" / "metrics.json"
            f.parent.mkdir(parents=True)
            f.write_text(json.dumps(d))
            files.append(str(f))
    return files


def test_study_table_rows_means_and_slopes(tmp_path, test_config):
    cfg = _with_study(test_config, grid={"n_train": [2, 4, 8], "chi": [0.0, 1.0]}, seeds=3)
    # RMSE(E) = n^-0.5 (chi 0) and n^-0.25 (chi 1), times a seed factor around 1
    files = _fake_metrics(tmp_path, cfg, "s", lambda p, k: p.n_train ** (-0.5 if p.settings["chi"] == 0 else -0.25) * (1 + 0.01 * (k - 1)))
    out = {n: str(tmp_path / f"table.{n}") for n in ("csv", "md", "png", "pdf")}
    study_table(StudyJob.of(cfg, study="s"), files, out["csv"], out["md"], out["png"], out["pdf"])
    rows = pd.read_csv(out["csv"])
    assert len(rows) == 6 * 3 and sorted(rows["seed"].unique()) == [0, 1, 2]
    md = (tmp_path / "table.md").read_text()
    assert "slope RMSE(E)" in md
    lines = [ln for ln in md.splitlines() if ln.startswith("| 0") or ln.startswith("| 1")]
    slopes = {ln.split("|")[1].strip(): float(ln.split("|")[2]) for ln in lines}
    assert slopes == {"0.0": pytest.approx(-0.5, abs=0.01), "1.0": pytest.approx(-0.25, abs=0.01)}
    g = rows[(rows["n_train"] == 4) & (rows["chi"] == 0.0)]
    assert f"{g['RMSE(E) [scaled]'].mean():.3g}" in md  # the mean over seeds of the CSV's rows is in the table
    assert (tmp_path / "table.png").stat().st_size > 0 and (tmp_path / "table.pdf").stat().st_size > 0


def test_coordinate_alternatives_are_labelled(test_config):
    coords = test_config["systems"]["H2O"]["coordinates"]
    plain = [{"name": "r1", "type": "bond", "atoms": [[0, 1]]}, {"name": "r2", "type": "bond", "atoms": [[0, 2]]},
             {"name": "a", "type": "angle", "atoms": [[1, 0, 2]]}]
    st = parse_study(_with_study(test_config, grid={"system.coordinates": {"moments": coords, "plain": plain}}), "s")
    assert [p.name for p in st.points] == ["coordinates-moments", "coordinates-plain"]
    assert [p.labels for p in st.points] == [{"system.coordinates": "moments"}, {"system.coordinates": "plain"}]
    cfg = _with_study(test_config, grid={"system.coordinates": {"moments": coords, "plain": plain}})
    assert reuses_pipeline_model(cfg, st, st.points[0]) and not reuses_pipeline_model(cfg, st, st.points[1])
    msg = _err(_with_study(test_config, grid={"system.coordinates": [coords]}))
    assert "studies.s.grid.system.coordinates" in msg and "mapping of labels" in msg


def test_a_union_of_grids_prints_the_base_values_where_a_point_leaves_a_key(tmp_path, test_config):
    """An optimiser study (one grid per optimiser): the base row shows the base protocol's own settings (H2O QNN: Adam,
    20 steps, lr 0.02), a key the base protocol does not set prints '-', and integers stay integers."""
    from qnnff.studies import base_values

    cfg = _with_study(test_config, seeds=2, grid=[{}, {"optimizer": ["lbfgs"], "iterations": [30]},
                                                  {"optimizer": ["cobyla"], "iterations": [40], "rhobeg": [0.3]}])
    st = parse_study(cfg, "s")
    assert base_values(cfg, st) == {"optimizer": "adam", "iterations": "20", "rhobeg": "-"}
    files = _fake_metrics(tmp_path, cfg, "s", lambda p, k: 0.01 * (1 + k))
    out = {n: str(tmp_path / f"table.{n}") for n in ("csv", "md", "png", "pdf")}
    study_table(StudyJob.of(cfg, study="s"), files, out["csv"], out["md"], out["png"], out["pdf"])
    rows = {ln.split("|")[1].strip(): [c.strip() for c in ln.split("|")[2:5]] for ln in Path(out["md"]).read_text().splitlines()
            if ln.startswith("| base") or ln.startswith("| optimizer")}
    assert rows["base"] == ["adam", "20", "-"]
    assert rows["optimizer-lbfgs__iterations-30"] == ["lbfgs", "30", "-"]
    assert rows["optimizer-cobyla__iterations-40__rhobeg-0.3"] == ["cobyla", "40", "0.3"]

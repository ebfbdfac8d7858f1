"""sGDML in the pipeline (issue 27): a closed-form kind has one protocol and one seed, its error-table row says
n = 1 (deterministic), "n/a: kernel model" and counts kernel coefficients, and the scorecard gains its reference rows
and the QNN / sGDML gap, with the paper column "-"."""

from __future__ import annotations

import pytest
from test_reproduction import SCALE, effdim_file, make_variant

from qnnff.checks import load_config
from qnnff.evaluation import error_table, write_error_table
from qnnff.kinds import CLOSED_FORM_PROTOCOL, KINDS
from qnnff.protocols import protocols, seeds_of, variants
from qnnff.reproduction import scorecard, write_scorecard
from qnnff.settings import ReproductionSettings, SGDMLSettings, rule_settings


@pytest.fixture(scope="module")
def paper():
    return load_config("config/config.yaml")


def test_a_closed_form_kind_has_one_protocol_and_one_seed(paper):
    assert KINDS["sgdml"].closed_form and not KINDS["sgdml"].effdim
    assert protocols(paper, "H2O", "sgdml") == [CLOSED_FORM_PROTOCOL]
    assert seeds_of(paper, "sgdml") == [0] and seeds_of(paper, "qnn") == list(range(paper["seeds"]))
    assert [v.protocol for v in variants(paper, "H3O+") if v.kind == "sgdml"] == ["best"]
    s = SGDMLSettings.of(paper, "H2O")
    assert s.sigmas and all(isinstance(x, int) for x in s.sigmas) and 0 < s.validation_fraction < 1
    # its training slice has no optimiser protocol, and its job no training settings
    from qnnff.jobs import TrainJob

    sl = rule_settings(paper, "train", system="H2O", kind="sgdml", protocol="best")
    assert "protocols" not in sl["systems"]["H2O"]["models"]["sgdml"]
    job = TrainJob.of(sl, system="H2O", kind="sgdml", protocol="best", seed_index=0)
    assert job.training is None and isinstance(job.model, SGDMLSettings)


def tables(tmp_path, with_sgdml=True):
    make_variant(tmp_path, "qnn", "best", [(0.002, 0.05), (0.003, 0.06), (0.0025, 0.055)])
    sels = [tmp_path / "qnn" / "best" / "seeds.json"]
    if with_sgdml:
        make_variant(tmp_path, "sgdml", "best", [(0.0001, 0.002)])
        sels.append(tmp_path / "sgdml" / "best" / "seeds.json")
    eds = {"qnn": effdim_file(tmp_path, "qnn", 0.6, 0.005, 87)}
    df = error_table("H2O", sels, eds, {}, [], SCALE)
    write_error_table(df, tmp_path / "H2O_errors.csv", tmp_path / "H2O_errors.md", title="t")
    return tmp_path / "H2O_errors.csv", (tmp_path / "H2O_errors.md").read_text()


def test_error_table_row_of_a_closed_form_model(tmp_path):
    _, md = tables(tmp_path)
    row = next(line for line in md.splitlines() if line.startswith("| sGDML"))
    assert "best (closed-form fit)" in row and "| 1 (deterministic) |" in row
    assert "n/a: kernel model" in row and "kernel coefficients" in row and "±" not in row
    qnn = next(line for line in md.splitlines() if line.startswith("| QNN"))
    assert "±" in qnn  # the seeded kinds keep their spread


def test_scorecard_reference_rows_and_the_gap(tmp_path):
    csv, _ = tables(tmp_path)
    rep = ReproductionSettings.of({"reproduction": {"protocol": "best", "paper": {"H2O": {"qnn": {"rmse_e": 0.005}}}}})
    sc = scorecard(rep, {"H2O": csv}, {}, [])
    ref = sc[(sc["kind"] == "sgdml")]
    assert set(ref["metric"]) == {"RMSE(E)", "RMSE(F)"} and (ref["n"] == 1).all()
    assert ref["verdict"].str.startswith("reference").all() and (ref["target met"] == "").all()
    gap = sc[sc["model"] == "QNN / sGDML"].set_index("metric")
    # QNN mean RMSE(E) = mean(0.002, 0.003, 0.0025) / 0.5; sGDML 0.0001 / 0.5: a gap of 25x
    assert gap.loc["RMSE(E)", "ours"] == pytest.approx(25.0)
    assert "25x more accurate" in gap.loc["RMSE(E)", "verdict"]
    write_scorecard(sc, tmp_path / "r.csv", tmp_path / "r.md")
    text = (tmp_path / "r.md").read_text()
    line = next(x for x in text.splitlines() if x.startswith("| H2O | sGDML | RMSE(E)"))
    assert line.split(" | ")[4] == "-"  # paper column: beyond the 2022 paper
    assert (sc[sc["kind"] == "sgdml"]["target"] == "").all()  # a reference, never a target


def test_without_sgdml_the_scorecard_has_no_reference_rows(tmp_path):
    csv, _ = tables(tmp_path, with_sgdml=False)
    rep = ReproductionSettings.of({"reproduction": {"protocol": "best", "paper": {"H2O": {"qnn": {"rmse_e": 0.005}}}}})
    sc = scorecard(rep, {"H2O": csv}, {}, [])
    assert not (sc["kind"] == "sgdml").any() and not (sc["model"] == "QNN / sGDML").any()

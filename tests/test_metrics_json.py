"""Issue 26.20: metrics.json is strict JSON: a missing number (NaN, infinite) is written as null, never as the ``NaN``
literal strict parsers reject; its readers take null where they took NaN."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from qnnff.io import write_json_atomic
from qnnff.jobs import MetricsJob


def strict_loads(text):
    def refuse(const):
        raise ValueError(f"non-standard JSON constant {const}")

    return json.loads(text, parse_constant=refuse)


def test_metrics_json_writes_null_for_missing_numbers(tmp_path):
    from qnnff.stages.figures import metrics

    errors = tmp_path / "LiH_errors.csv"
    pd.DataFrame([{"system": "LiH", "kind": "bpnn", "seed": 0, "RMSE(E) [scaled]": 0.01, "d_n/d": np.nan, "d_n/d sd": np.nan},
                  {"system": "LiH", "kind": "qnn", "seed": 0, "RMSE(E) [scaled]": 0.02, "d_n/d": 0.4, "d_n/d sd": 0.01}]
                 ).to_csv(errors, index=False)
    md = tmp_path / "md.csv"
    pd.DataFrame([{"system": "LiH", "model": "nn", "period [fs]": np.nan, "drift": np.inf}]).to_csv(md, index=False)
    out = tmp_path / "metrics.json"
    metrics(MetricsJob(run_hash="0" * 16), [str(errors)], str(md), [str(errors), str(md)], str(out), str(tmp_path / "MANIFEST"))
    text = out.read_text()
    rec = strict_loads(text)  # raises on NaN / Infinity
    assert rec["errors"]["LiH"][0]["d_n/d"] is None and rec["errors"]["LiH"][1]["d_n/d"] == 0.4
    assert rec["md"][0]["period [fs]"] is None and rec["md"][0]["drift"] is None


def test_strict_json_writer_maps_every_non_finite_number_to_null(tmp_path):
    p = tmp_path / "x.json"
    write_json_atomic(p, {"a": float("nan"), "b": [1.0, np.float64("inf"), np.float32("nan")], "c": np.array([1.0, np.nan]),
                          "d": {"e": -math.inf, "f": 2}}, strict=True)
    assert strict_loads(p.read_text()) == {"a": None, "b": [1.0, None, None], "c": [1.0, None], "d": {"e": None, "f": 2}}


def test_study_tables_read_null_as_they_read_nan(tmp_path):
    """A study point's metrics.json with null (its information floor, an error) gives the study's tables what the same
    file with NaN gave."""
    from qnnff.stages.studies import FLOOR, study_frames, summarise_study

    def files(strict):
        out = []
        for k, floor in enumerate((math.nan, 0.02, 0.04)):
            d = {"point": "n_train-10", "settings": {"n_train": 10}, "seed": k, "n_train": 10, "reused_pipeline_model": False,
                 "RMSE(E) [scaled]": 0.1, "RMSE(F) [scaled, 1/A]": math.nan if k == 0 else 0.2, "RMSE(E) [meV]": 10.0,
                 "RMSE(F) [meV/A]": 20.0, "parameters": 5, "train time [s]": 1.0, "shots": [], FLOOR: floor}
            f = tmp_path / f"{'strict' if strict else 'nan'}{k}.json"
            write_json_atomic(f, d, strict=strict)
            out.append(str(f))
        return out

    assert "null" in open(files(True)[0]).read() and "NaN" in open(files(False)[0]).read()
    (rows, shots), (rows_nan, shots_nan) = study_frames(files(True)), study_frames(files(False))
    pd.testing.assert_frame_equal(rows, rows_nan)
    assert rows[FLOOR].dtype == float and np.isnan(rows[FLOOR].iloc[0])
    for got, want in zip(summarise_study(rows, shots, ["n_train"]), summarise_study(rows_nan, shots_nan, ["n_train"])):
        pd.testing.assert_frame_equal(got, want)
    assert summarise_study(rows, shots, ["n_train"])[0][FLOOR].iloc[0] == pytest.approx(0.03)


def test_the_committed_metrics_json_is_strict(repo):
    path = repo / "results" / "metrics.json"
    if not path.is_file():
        pytest.skip("no committed results/metrics.json")
    strict_loads(path.read_text())

"""Seed statistics, the error tables, the reproduction scorecard and the fresh-versus-committed comparison."""

import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest

from qnnff import dataset as ds
from qnnff.compare import compare_tables
from qnnff.compare import main as compare_main
from qnnff.evaluation import error_table, mean_sd, select_seeds, write_error_table
from qnnff.reproduction import effdim_verdict, error_verdict, oscillation_period, scorecard, write_scorecard
from qnnff.settings import ReproductionSettings

SCALE = 0.5  # eV


def fake_seed(tmp, kind, protocol, seed, e_err, f_err, n=6, iterations=100):
    """Predictions whose energy errors are +-e_err eV and force errors +-f_err eV/A, and the training summary."""
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n):
        pos = rng.normal(size=(3, 3))
        f_ref = rng.normal(size=(3, 3))
        a = ds.make_frame(["O", "H", "H"], pos, -10.0 + k, f_ref, {"point": f"p{k}"})
        a.info["MODEL_energy"] = -10.0 + k + (e_err if k % 2 else -e_err)
        a.new_array("MODEL_forces", f_ref + f_err * np.where(np.arange(9).reshape(3, 3) % 2, 1.0, -1.0))
        frames.append(a)
    d = tmp / kind / protocol / f"seed{seed}"
    d.mkdir(parents=True, exist_ok=True)
    ds.write_frames(d / "test_predictions.extxyz", frames)
    summary = {"model": kind, "protocol": protocol, "seed_index": seed, "n_parameters": 87, "iterations": iterations,
               "iterations_configured": 100, "train_seconds": 1.5,
               "provenance": {"training": {"optimizer": "adam", "chi": 1.0}}}
    (d / "train_summary.json").write_text(json.dumps(summary))
    return str(d / "test_predictions.extxyz"), str(d / "train_summary.json")


def make_variant(tmp, kind, protocol, errors):
    preds, sums = zip(*(fake_seed(tmp, kind, protocol, s, e, f) for s, (e, f) in enumerate(errors)))
    return select_seeds("H2O", kind, protocol, preds, sums, SCALE, tmp / kind / protocol / "seeds.json")


def effdim_file(tmp, kind, mean, sd, n_params):
    p = tmp / kind / "effective_dimension.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps({"d_n_over_d": mean, "d_n_over_d_sd": sd, "n_params": n_params, "draws": [mean - sd, mean + sd]}))
    return str(p)


def test_seed_selection_statistics(tmp_path):
    errs = [(0.004, 0.02), (0.001, 0.03), (0.003, 0.01), (0.002, 0.05), (0.010, 0.04)]
    sel = make_variant(tmp_path, "qnn", "best", errs)
    e_scaled = [e / SCALE for e, _ in errs]  # RMSE of +-e is e
    assert [r["RMSE(E) [scaled]"] for r in sel["seeds"]] == pytest.approx(e_scaled)
    assert sel["stats"]["RMSE(E) [scaled]"]["mean"] == pytest.approx(np.mean(e_scaled))
    assert sel["stats"]["RMSE(E) [scaled]"]["sd"] == pytest.approx(np.std(e_scaled, ddof=1))
    assert [r["RMSE(F) [meV/A]"] for r in sel["seeds"]] == pytest.approx([1000 * f for _, f in errs])


def test_median_seed_is_the_middle_by_energy_error(tmp_path):
    errs = [(0.004, 0.02), (0.001, 0.03), (0.003, 0.01), (0.002, 0.05), (0.010, 0.04)]
    sel = make_variant(tmp_path, "qnn", "best", errs)
    order = np.argsort([e for e, _ in errs])
    assert sel["median_seed"] == int(order[2]) == 2
    sel4 = make_variant(tmp_path, "nn", "best", errs[:4])  # even count: the lower middle
    assert sel4["median_seed"] == int(np.argsort([e for e, _ in errs[:4]])[1])


def test_error_table_rows_and_mean_sd_agree_with_the_csv(tmp_path):
    a = make_variant(tmp_path, "qnn", "paper", [(0.02, 0.2), (0.03, 0.3), (0.025, 0.1)])
    b = make_variant(tmp_path, "qnn", "best", [(0.002, 0.02), (0.003, 0.03), (0.001, 0.04)])
    sels = [tmp_path / "qnn" / "paper" / "seeds.json", tmp_path / "qnn" / "best" / "seeds.json"]
    df = error_table("H2O", sels, {"qnn": effdim_file(tmp_path, "qnn", 0.6, 0.01, 87)}, {}, [], SCALE)
    write_error_table(df, tmp_path / "t.csv", tmp_path / "t.md", title="t")
    csv = pd.read_csv(tmp_path / "t.csv")
    assert len(csv) == 6 and set(csv["protocol"]) == {"paper", "best"}
    assert list(csv["seed"]) == [0, 1, 2, 0, 1, 2]
    md = (tmp_path / "t.md").read_text()
    for sel in (a, b):
        g = csv[csv["protocol"] == sel["protocol"]]
        m, sd = mean_sd(g["RMSE(E) [scaled]"])
        assert m == pytest.approx(sel["stats"]["RMSE(E) [scaled]"]["mean"])
        assert f"{m:.3g} ± {sd:.2g}" in md
        mf, sdf = mean_sd(g["RMSE(F) [scaled, 1/A]"])
        assert f"{mf:.3g} ± {sdf:.2g}" in md
    assert "0.6 ± 0.01" in md and "100/100" in md


def test_verdicts_follow_from_the_ratios():
    assert [error_verdict(r) for r in (0.5, 1.0, 1.0001, 2.0, 2.0001, math.nan)] == \
        ["better", "better", "within 2x", "within 2x", "worse", "missing"]
    assert [effdim_verdict(r) for r in (0.49, 0.5, 1.7, 2.0, 2.1)] == \
        ["outside 2x (lower)", "within 2x", "within 2x", "within 2x", "outside 2x (higher)"]


def scorecard_inputs(tmp_path, qnn_best_errors):
    make_variant(tmp_path, "qnn", "paper", [(0.2, 2.0), (0.3, 3.0)])
    make_variant(tmp_path, "qnn", "best", qnn_best_errors)
    sels = [tmp_path / "qnn" / "paper" / "seeds.json", tmp_path / "qnn" / "best" / "seeds.json"]
    eds = {"qnn": effdim_file(tmp_path, "qnn", 0.6, 0.005, 87)}
    write_error_table(error_table("H2O", sels, eds, {}, [], SCALE), tmp_path / "H2O_errors.csv", tmp_path / "H2O_errors.md", title="t")
    cfg = {"reproduction": {"protocol": "best", "paper": {"H2O": {"qnn": {"rmse_e": 0.005, "rmse_f": 0.06, "dn_over_d": 0.72, "d": 87}}},
                            "targets": {"H2O": {"qnn": {"rmse_e": 1.0, "rmse_f": 1.0}}}}}
    md = tmp_path / "md_summary.json"
    md.write_text(json.dumps({"system": "H2O", "model": "qnn", "protocol": "best", "n_steps": 227, "completed": False,
                              "stopped_at_fs": 56.75}))
    return cfg, {"H2O": tmp_path / "H2O_errors.csv"}, {("H2O", "qnn"): eds["qnn"]}, [md]


def test_scorecard_numbers_ratios_and_verdicts(tmp_path):
    # best protocol: RMSE(E) = 0.001/0.5 = 0.002 scaled (better than 0.005); RMSE(F) = 0.05/0.5 = 0.1 (within 2x of 0.06)
    cfg, errors, effdims, md = scorecard_inputs(tmp_path, [(0.001, 0.05)] * 3)
    sc = scorecard(ReproductionSettings.of(cfg), errors, effdims, md)
    write_scorecard(sc, tmp_path / "r.csv", tmp_path / "r.md")
    back = pd.read_csv(tmp_path / "r.csv", keep_default_na=False)
    assert len(back) == len(sc)
    for _, r in sc.iterrows():
        if r["metric"] in ("RMSE(E)", "RMSE(F)", "d_n/d"):
            assert r["ratio"] == pytest.approx(r["ours"] / r["paper"])
            verdict = error_verdict(r["ratio"]) if r["metric"] != "d_n/d" else effdim_verdict(r["ratio"])
            assert r["verdict"] == verdict
    row = lambda m, p: sc[(sc["metric"] == m) & (sc["protocol"] == p)].iloc[0]  # noqa: E731
    assert row("RMSE(E)", "best")["ours"] == pytest.approx(0.002) and row("RMSE(E)", "best")["verdict"] == "better"
    assert row("RMSE(E)", "best")["target met"] == "yes"
    assert row("RMSE(F)", "best")["verdict"] == "within 2x" and row("RMSE(F)", "best")["target met"] == "no"
    assert row("RMSE(E)", "paper")["verdict"] == "worse" and row("RMSE(E)", "paper")["target met"] == ""
    assert row("d", "")["verdict"] == "equal"
    assert row("MD", "best")["verdict"] == "failure" and "56.8 fs" in row("MD", "best")["note"]
    text = (tmp_path / "r.md").read_text()
    assert "Targets met: 1 of 3." in text


def test_oscillation_period_of_a_sine():
    t = np.linspace(0, 200, 2001)
    assert oscillation_period(t, 1.6 + 0.3 * np.sin(2 * np.pi * t / 27.3 + 0.4)) == pytest.approx(27.3, rel=1e-4)
    assert math.isnan(oscillation_period(t[:50], np.sin(t[:50] / 100)))


def results_dir(tmp_path, name, errors):
    d = tmp_path / name / "tables"
    d.mkdir(parents=True)
    work = tmp_path / f"{name}-work"
    make_variant(work, "qnn", "best", errors)
    sel = [work / "qnn" / "best" / "seeds.json"]
    df = error_table("H2O", sel, {"qnn": effdim_file(work, "qnn", 0.6, 0.005, 87)}, {}, [], SCALE)
    write_error_table(df, d / "H2O_errors.csv", d / "H2O_errors.md", title="t")
    pd.DataFrame([{"system": "H2O", "model": "qnn", "protocol": "best", "seed": 1, "completed": "yes"}]).to_csv(d / "md.csv", index=False)
    return tmp_path / name


def test_comparison_passes_on_a_rerun_and_fails_on_a_perturbed_table(tmp_path, capsys):
    committed = results_dir(tmp_path, "committed", [(0.002, 0.02), (0.003, 0.03), (0.0025, 0.025)])
    same = results_dir(tmp_path, "same", [(0.0021, 0.021), (0.0029, 0.03), (0.0026, 0.024)])
    checks = compare_tables(committed, same)
    assert checks and all(c.ok for c in checks)
    assert compare_main([str(committed), str(same)]) == 0
    # perturb: the fresh energies are 3x worse
    bad = tmp_path / "bad"
    shutil.copytree(same, bad)
    csv = pd.read_csv(bad / "tables" / "H2O_errors.csv")
    csv["RMSE(E) [scaled]"] *= 3
    csv.to_csv(bad / "tables" / "H2O_errors.csv", index=False)
    failed = [c for c in compare_tables(committed, bad) if c.ok is False]
    assert [c.what for c in failed] == ["H2O qnn/best RMSE(E) [scaled]"]
    assert compare_main([str(committed), str(bad)]) == 1
    assert "FAIL H2O qnn/best RMSE(E) [scaled]" in capsys.readouterr().out
    # an MD run that completed before and fails now is a failure too
    md = pd.read_csv(same / "tables" / "md.csv")
    md["completed"] = "left the model's domain at 10.0 fs"
    md.to_csv(same / "tables" / "md.csv", index=False)
    assert any(c.ok is False and "MD" in c.what for c in compare_tables(committed, same))


def test_comparison_fails_when_the_fresh_run_has_fewer_seeds(tmp_path):
    """A 1-seed run is not a reproduction of a 3-seed table: the seed-count check fails (issue 26, item 4)."""
    committed = results_dir(tmp_path, "committed", [(0.002, 0.02), (0.003, 0.03), (0.0025, 0.025)])
    one = results_dir(tmp_path, "one", [(0.0025, 0.025)])
    failed = [c.what for c in compare_tables(committed, one) if c.ok is False]
    assert failed == ["H2O qnn/best seeds: committed 3, fresh 1 (a different number of seeds: the means are not comparable "
                      "at 2 sd; rerun with the committed seed count)"]
    assert compare_main([str(committed), str(one)]) == 1


def test_comparison_of_unusable_inputs_is_a_clear_error_naming_the_file(tmp_path, capsys):
    """Missing directories, empty and header-only tables, a missing column, a bad --n-sd: one line each, no traceback."""
    committed = results_dir(tmp_path, "committed", [(0.002, 0.02), (0.003, 0.03)])
    fresh = results_dir(tmp_path, "fresh", [(0.002, 0.02), (0.003, 0.03)])
    assert compare_main([str(tmp_path / "nowhere"), str(fresh)]) == 2
    assert "nowhere: no tables/ directory" in capsys.readouterr().err
    csv = fresh / "tables" / "H2O_errors.csv"
    good = csv.read_text()
    for text, expect in (("", "empty file"), (good.splitlines()[0] + "\n", "a header and no rows"),
                         (good.replace("RMSE(E) [scaled]", "energy error"), "column(s) ['RMSE(E) [scaled]'] missing")):
        csv.write_text(text)
        assert compare_main([str(committed), str(fresh)]) == 2
        err = capsys.readouterr().err
        assert str(csv) in err and expect in err and "Traceback" not in err
    csv.write_text(good)
    for bad in ("nan", "-5", "inf", "two"):
        with pytest.raises(SystemExit) as exc:
            compare_main([str(committed), str(fresh), "--n-sd", bad])
        assert exc.value.code == 2 and "--n-sd" in capsys.readouterr().err

"""The per-rule settings slices (qnnff.settings): what each job receives as params.settings, and so what reruns it."""

import copy
import re
from pathlib import Path

import pytest

from qnnff.config import data_hash, replace_with_cli_configfiles, system_spec
from qnnff.protocols import closed_form, model_hash, variants
from qnnff.settings import RULES, rule_settings
from qnnff.studies import parse_studies, parse_study, point_hash, reuses_pipeline_model

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def full_config() -> dict:
    """The paper config with the committed studies, as `snakemake studies` reads them."""
    cfg: dict = {}
    replace_with_cli_configfiles(cfg, [REPO / "config" / "config.yaml", REPO / "config" / "studies.yaml"], {})
    return cfg


def jobs(cfg: dict):
    """(rule, wildcards) of every job that receives settings."""
    for s in cfg["systems"]:
        for rule in ("sample_points", "dft_chunk", "assemble_dataset", "featurize", "run_md", "run_md_dft", "run_md_shots",
                     "dft_slice", "figures_system", "aer_evaluation"):
            yield rule, {"system": s}
        for v in variants(cfg, s):
            yield "train", {"system": s, "kind": v.kind, "protocol": v.protocol}
    for rule in ("effective_dimension", "reproduction_table", "metrics"):
        yield rule, {}
    for name, study in parse_studies(cfg).items():
        yield "study_table", {"study": name}
        for p in study.points:
            yield "study_point", {"study": name, "point": p.name}


def test_every_rule_that_reads_settings_gets_a_slice_and_no_script_reads_the_config():
    rules = (REPO / "workflow" / "rules")
    declared = set()
    for f in rules.glob("*.smk"):
        declared |= set(re.findall(r'settings=settings\("([a-z_]+)"', f.read_text()))
    assert declared == set(RULES)
    for script in (REPO / "workflow" / "scripts").glob("*.py"):
        assert "snakemake.config" not in script.read_text(), script.name


def test_slices_give_the_hashes_and_specs_of_the_whole_config(full_config):
    n = 0
    for rule, wc in jobs(full_config):
        sl = rule_settings(full_config, rule, **wc)
        assert repr(sl) == repr(rule_settings(full_config, rule, **wc)), rule  # a stable rerun trigger
        s = wc.get("system")
        if rule in ("sample_points", "dft_chunk", "assemble_dataset", "featurize", "train", "run_md", "dft_slice"):
            assert data_hash(sl, s) == data_hash(full_config, s), (rule, wc)
            assert system_spec(sl, s) == system_spec(full_config, s)
        if rule == "train":
            assert model_hash(sl, s, wc["kind"], wc["protocol"]) == model_hash(full_config, s, wc["kind"], wc["protocol"])
            assert list(sl["systems"][s]["models"]) == [wc["kind"]]
            if closed_form(wc["kind"]):  # fitted once: no protocols block
                assert "protocols" not in sl["systems"][s]["models"][wc["kind"]]
            else:
                assert list(sl["systems"][s]["models"][wc["kind"]]["protocols"]) == [wc["protocol"]]
        if rule == "study_point":
            full, own = parse_studies(full_config)[wc["study"]], parse_study(sl, wc["study"])
            assert [p.name for p in own.points] == [wc["point"]]  # the grid reduced to the job's point, named the same
            pf, po = full.point(wc["point"]), own.point(wc["point"])
            assert po.settings == pf.settings and po.n_train == pf.n_train
            assert point_hash(sl, own, po) == point_hash(full_config, full, pf)
            assert reuses_pipeline_model(sl, own, po) == reuses_pipeline_model(full_config, full, pf)
        if rule == "study_table":
            assert parse_study(sl, wc["study"]) == parse_studies(full_config)[wc["study"]]
        n += 1
    assert n > 100


def changed(cfg: dict, edit) -> dict:
    out = copy.deepcopy(cfg)
    edit(out)
    return out


def slice_changes(cfg: dict, edit) -> set[str]:
    """The jobs (rule and wildcards) whose slice an edit of the config changes: the jobs it reruns."""
    new = changed(cfg, edit)
    return {f"{rule} {sorted(wc.values())}" for rule, wc in jobs(cfg)
            if rule_settings(cfg, rule, **wc) != rule_settings(new, rule, **wc)}


def test_an_edit_reruns_exactly_the_jobs_that_read_it(full_config):
    cfg = full_config

    def md_steps(c):
        c["systems"]["H2O"]["md"]["n_steps"] = 7

    def md_shots(c):
        c["systems"]["LiH"]["md"]["shots"] = [64]

    assert slice_changes(cfg, md_steps) == {"run_md ['H2O']", "run_md_dft ['H2O']", "run_md_shots ['H2O']", "metrics []"}
    assert slice_changes(cfg, md_shots) == {"run_md_shots ['LiH']", "metrics []"}  # never the exact trajectories

    def aer_shots(c):
        c["systems"]["H2O"]["models"]["qnn"]["aer"]["shots"] = 99

    assert slice_changes(cfg, aer_shots) == {"aer_evaluation ['H2O']", "metrics []"}  # never a training

    def qnn_paper_lr(c):
        c["systems"]["H3O+"]["models"]["qnn"]["protocols"]["paper"]["lr"] = 0.02

    hit = slice_changes(cfg, qnn_paper_lr)
    # and the points of NN studies: an NN sized to the QNN keeps the QNN's block in its slice (a point may change the
    # features, and so the QNN's weight count the NN matches)
    nn_studies = {n for n, st in parse_studies(cfg).items() if st.kind == "nn" and st.system == "H3O+"}
    assert {h for h in hit if not h.startswith("study_")} == {"train ['H3O+', 'paper', 'qnn']", "metrics []"}
    assert {h.split("'")[1] for h in hit if h.startswith("study_")} <= nn_studies

    def dft_tol(c):
        c["dft"]["conv_tol"] = 1e-9

    hit = slice_changes(cfg, dft_tol)
    assert "train ['H2O', 'best', 'qnn']" in hit and "dft_chunk ['LiH']" in hit and "effective_dimension []" not in hit


def test_an_nn_sized_to_the_qnn_retrains_when_the_circuit_changes_and_only_then(full_config):
    cfg = full_config
    nn = rule_settings(cfg, "train", system="H2O", kind="nn", protocol="best")["systems"]["H2O"]["models"]["nn"]
    assert nn["target_parameters"] == 87  # the paper's H2O QNN: N=3, D=12, l=3 (config/README.md)
    deeper = changed(cfg, lambda c: c["systems"]["H2O"]["models"]["qnn"].update(depth=13))
    assert model_hash(deeper, "H2O", "nn", "best") != model_hash(cfg, "H2O", "nn", "best")
    assert rule_settings(deeper, "train", system="H2O", kind="nn", protocol="best") != rule_settings(
        cfg, "train", system="H2O", kind="nn", protocol="best")
    qnn_lr = changed(cfg, lambda c: c["systems"]["H2O"]["models"]["qnn"]["protocols"]["best"].update(lr=0.5))
    assert model_hash(qnn_lr, "H2O", "nn", "best") == model_hash(cfg, "H2O", "nn", "best")


def test_adding_a_grid_value_or_seed_to_a_study_reruns_no_point(full_config):
    cfg = full_config
    name, study = next(iter(parse_studies(cfg).items()))
    axis = next(k for k, v in (cfg["studies"][name]["grid"] if isinstance(cfg["studies"][name]["grid"], dict)
                               else cfg["studies"][name]["grid"][0]).items() if isinstance(v, list))

    def more(c):
        grid = c["studies"][name]["grid"]
        g = grid if isinstance(grid, dict) else grid[0]
        g[axis] = [*g[axis], 0.123 if not isinstance(g[axis][0], str) else "adam"]
        c["studies"][name]["seeds"] = 7

    new = changed(cfg, more)
    for p in study.points:
        assert rule_settings(new, "study_point", study=name, point=p.name) == rule_settings(cfg, "study_point", study=name, point=p.name)
    assert rule_settings(new, "study_table", study=name) != rule_settings(cfg, "study_table", study=name)


def test_a_rule_without_its_wildcard_or_an_unknown_rule_fails_clearly(full_config):
    with pytest.raises(KeyError, match="wildcard 'system'"):
        rule_settings(full_config, "dft_chunk")
    with pytest.raises(KeyError, match="no settings slice for rule 'nope'"):
        rule_settings(full_config, "nope")


# the mappings whose order means something (a user's names, in the user's order): the sampled variables (the columns
# of the sampling design), the protocols (the first is the figures' fallback), a study's grid (its points' names), and
# the collections of systems, studies and the paper's numbers (the order of tables' rows). Every other mapping (the
# keys of a block, md.start, slice.values, ...) is reversed.
ORDERED = {"systems", "variables", "protocols", "studies"}
ORDERED_TREES = {"grid", "paper", "targets"}  # and every mapping inside them


def reordered(value, ordered: bool = False, tree: bool = False):
    """``value`` with the keys of every mapping reversed, but those of ORDERED and ORDERED_TREES."""
    if isinstance(value, dict):
        keys = list(value) if ordered or tree else list(reversed(value))
        return {k: reordered(value[k], k in ORDERED, tree or k in ORDERED_TREES) for k in keys}
    if isinstance(value, list):
        return [reordered(v, ordered, tree) for v in value]
    return value


def test_the_same_config_with_its_keys_in_another_order_reruns_no_job(full_config):
    """Snakemake compares a job's params by their repr (issue 26, item 6): equal content, equal repr."""
    other = reordered(full_config)
    assert other == full_config and list(other) != list(full_config)
    assert list(other["dft"]) != list(full_config["dft"])
    n = 0
    for rule, wc in jobs(full_config):
        assert repr(rule_settings(other, rule, **wc)) == repr(rule_settings(full_config, rule, **wc)), (rule, wc)
        n += 1
    assert n > 100


def test_reordering_the_sampled_variables_is_a_change(full_config):
    """The variables' order is the sampling design's column order: a new order is new data, so it reruns."""
    def swap(c):
        v = c["systems"]["H2O"]["variables"]
        c["systems"]["H2O"]["variables"] = dict(reversed(v.items()))

    new = changed(full_config, swap)
    assert repr(rule_settings(new, "sample_points", system="H2O")) != repr(rule_settings(full_config, "sample_points", system="H2O"))

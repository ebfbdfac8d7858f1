"""The job specs (qnnff.jobs): parsed once from a rule's settings slice at the job boundary, they carry the same
settings, hashes and seeds as the whole config gives; and the stage functions take them, not a config dict."""

import dataclasses
import importlib
import inspect
import typing
from pathlib import Path

import pytest
from rule_helpers import rule_scripts
from test_settings import jobs

from qnnff import jobs as job_specs
from qnnff.config import SystemSpec, config_hash, data_hash, replace_with_cli_configfiles, system_spec
from qnnff.jobs import AerJob, DataJob, EffdimJob, FiguresJob, FloorJob, MDJob, MetricsJob, StudyJob, StudyPointJob, TrainJob
from qnnff.protocols import init_seed, model_hash, model_kinds, protocols, qnn_circuit_config, qnn_init, train_seed, variants
from qnnff.seeding import derive_seed
from qnnff.settings import RULES, SHOT_MD_KEYS, MDSettings, NNSettings, QNNSettings, ReproductionSettings, rule_settings
from qnnff.studies import apply_point, parse_studies, point_hash, reuses_pipeline_model

REPO = Path(__file__).resolve().parents[1]
STAGE_MODULES = ("data", "features", "train", "evaluate", "md", "figures", "studies")


@pytest.fixture(scope="module")
def cfg() -> dict:
    """The paper config with the committed studies, as `snakemake studies` reads them."""
    out: dict = {}
    replace_with_cli_configfiles(out, [REPO / "config" / "config.yaml", REPO / "config" / "studies.yaml"], {})
    return out


# ------------------------------------------------------------------ (a) the hashes and seeds of the whole config
def test_specs_carry_the_hashes_and_seeds_of_the_whole_config(cfg):
    seed = cfg["seed"]
    n = 0
    for s in cfg["systems"]:
        data = DataJob.of(rule_settings(cfg, "featurize", system=s), system=s)
        assert data.data_hash == data_hash(cfg, s) and data.seed == seed and data.spec == system_spec(cfg, s)
        for v in variants(cfg, s):
            for k in (0, 3):
                sl = rule_settings(cfg, "train", system=s, kind=v.kind, protocol=v.protocol)
                job = TrainJob.of(sl, system=s, kind=v.kind, protocol=v.protocol, seed_index=k)
                assert job.model_hash == model_hash(cfg, s, v.kind, v.protocol)
                assert job.init_seed == init_seed(cfg, s, v.kind, k) == derive_seed(seed, "init", s, v.kind, k)
                assert job.train_seed == train_seed(cfg, s, v.kind, v.protocol, k)
                assert job.train_seed == derive_seed(seed, "train", s, v.kind, v.protocol, k)
                if v.kind == "qnn":
                    init = qnn_init(cfg, s, v.protocol)
                    assert job.model == QNNSettings(qnn_circuit_config(cfg, s), float(init["rotations"]),
                                                    init["feature_map_weights"])
                n += 1
        md = MDJob.of(rule_settings(cfg, "run_md_shots", system=s), system=s)
        assert md.velocity_seed == derive_seed(seed, "md", s)
        assert md.md == MDSettings.of(cfg, s) and md.shot_seeds == {n: derive_seed(seed, "md-shots", s, n) for n in md.md.shots}
        for kind in model_kinds(cfg, s):
            ed = EffdimJob.of(rule_settings(cfg, "effective_dimension"), system=s, kind=kind)
            assert list(ed.draw_seeds) == [derive_seed(seed, "effdim", s, kind, k) for k in range(ed.effdim.n_draws)]
            fl = FloorJob.of(rule_settings(cfg, "information_floor"), system=s, kind=kind)
            assert fl.seed == derive_seed(seed, "information_floor", s) and fl.floor.n_restarts == 1
        if "qnn" in model_kinds(cfg, s):
            for p in protocols(cfg, s, "qnn"):
                aer = AerJob.of(rule_settings(cfg, "aer_evaluation", system=s), system=s, protocol=p)
                for label in ("shots", "shots+noise"):
                    assert aer.energy_seeds[label] == derive_seed(seed, "aer", s, p, label)
                    assert aer.force_seeds[label] == derive_seed(seed, "aer-forces", s, p, label)
                assert aer.runtime_seed == derive_seed(seed, "runtime", s, p)
    assert n >= 20
    assert MetricsJob.of(rule_settings(cfg, "metrics")).run_hash == config_hash({k: v for k, v in cfg.items() if k != "studies"})
    nn = TrainJob.of(rule_settings(cfg, "train", system="H2O", kind="nn", protocol="best"), system="H2O", kind="nn",
                     protocol="best", seed_index=0)
    assert nn.model == NNSettings(hidden=None, target_parameters=87, activation="tanh")  # sized to the paper's H2O QNN


def test_study_point_specs_carry_the_hashes_and_seeds_of_the_whole_config(cfg):
    seed = cfg["seed"]
    n = 0
    for name, study in parse_studies(cfg).items():
        for point in study.points[:3]:
            for k in (0, 2):
                job = StudyPointJob.of(rule_settings(cfg, "study_point", study=name, point=point.name), study=name,
                                       point=point.name, seed_index=k)
                derived = apply_point(cfg, study, point.settings)
                assert job.point_hash == point_hash(cfg, study, point)
                assert job.reuses_pipeline_model == reuses_pipeline_model(cfg, study, point)
                assert job.subset_seed == derive_seed(seed, "study-subset", study.system, point.n_train or 0, k)
                assert job.shot_seeds == {(int(n_), nz): derive_seed(seed, "study-shots", name, point.name, k, int(n_), nz)
                                          for nz in study.evaluate["noise"] for n_ in study.evaluate["shots"]}
                assert job.train.model_hash == model_hash(derived, study.system, study.kind, study.protocol)
                assert job.train.train_seed == train_seed(derived, study.system, study.kind, study.protocol, k)
                assert job.train.init_seed == init_seed(derived, study.system, study.kind, k)
                assert job.data.spec == system_spec(derived, study.system)
                n += 1
    assert n >= 10


# ------------------------------------------------------------------ (c) a slice's spec is the whole config's
def spec_of(cfg: dict, rule: str, wc: dict):
    """(spec class, its keyword arguments) of each job of ``rule`` with wildcards ``wc`` (one per extra wildcard the
    rule's script passes: seed index, kind, protocol)."""
    s = wc.get("system")
    if rule in ("sample_points", "dft_chunk", "assemble_dataset", "featurize"):
        return [(DataJob, {"system": s})]
    if rule == "train":
        return [(TrainJob, {**wc, "seed_index": k}) for k in (0, 4)]
    if rule in ("run_md", "run_md_dft", "run_md_shots"):
        return [(MDJob, {"system": s})]
    if rule in ("dft_slice", "figures_system"):
        return [(FiguresJob, {"system": s})]
    if rule == "aer_evaluation":
        qnn = "qnn" in model_kinds(cfg, s)
        return [(AerJob, {"system": s, "protocol": p}) for p in (protocols(cfg, s, "qnn") if qnn else [])]
    if rule == "effective_dimension":
        return [(EffdimJob, {"system": x, "kind": k}) for x in cfg["systems"] for k in model_kinds(cfg, x)]
    if rule == "reproduction_table":
        return [(ReproductionSettings, {})]
    if rule == "metrics":
        return [(MetricsJob, {})]
    if rule == "study_point":
        return [(StudyPointJob, {**wc, "seed_index": 1})]
    if rule == "study_table":
        return [(StudyJob, wc)]
    raise AssertionError(f"no spec for rule {rule}")


def comparable(spec, rule: str):
    """The spec's content the job reads: the shot-noise MD keys are not in the slice of run_md and run_md_dft (their
    spec holds the defaults there, unused); a study point's slice holds its study reduced to the point (its grid keys
    those the point sets) and no seeds."""
    if isinstance(spec, MDJob) and rule != "run_md_shots":
        md = {k: v for k, v in dataclasses.asdict(spec.md).items() if k not in SHOT_MD_KEYS}
        return spec.spec, md, spec.velocity_seed
    if isinstance(spec, StudyPointJob):
        st = spec.study
        return ((st.name, st.system, st.kind, st.protocol, st.evaluate),
                *(getattr(spec, f.name) for f in dataclasses.fields(spec) if f.name != "study"))
    return spec


def test_a_spec_from_a_slice_equals_the_spec_from_the_whole_config(cfg):
    n, done = 0, set()
    for rule, wc in jobs(cfg):
        for cls, kwargs in spec_of(cfg, rule, wc):
            key = (rule, cls.__name__, tuple(sorted(kwargs.items())))
            if key in done:
                continue
            done.add(key)
            own = cls.of(rule_settings(cfg, rule, **wc), **kwargs)
            full = cls.of(cfg, **kwargs)
            assert comparable(own, rule) == comparable(full, rule), (rule, kwargs)
            n += 1
    assert n > 100
    # and a study's table spec is the whole study's (every point and the seeds)
    name = next(iter(parse_studies(cfg)))
    assert StudyJob.of(rule_settings(cfg, "study_table", study=name), study=name).study == parse_studies(cfg)[name]


def test_specs_are_frozen_and_typed():
    for name in ("DataJob", "TrainJob", "EffdimJob", "AerJob", "MDJob", "FiguresJob", "MetricsJob", "StudyPointJob", "StudyJob"):
        cls = getattr(job_specs, name)
        assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen, name
        assert cls.__doc__ and callable(cls.of), name
        hints = typing.get_type_hints(cls)
        assert all(f.name in hints for f in dataclasses.fields(cls)), name
    job = DataJob.of({"seed": 1, "systems": {"LiH": _lih()}}, system="LiH")
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.seed = 2  # type: ignore[misc]
    assert isinstance(job.spec, SystemSpec) and job.system == "LiH"


def _lih() -> dict:
    import yaml

    return yaml.safe_load((REPO / "config" / "test.yaml").read_text())["systems"]["LiH"]


# ------------------------------------------------------------------ (b) the stage functions take specs
def stage_functions():
    for stem in STAGE_MODULES:
        module = importlib.import_module(f"qnnff.stages.{stem}")
        for name, fn in vars(module).items():
            if inspect.isfunction(fn) and fn.__module__ == module.__name__ and not name.startswith("_"):
                yield stem, name, fn


def test_no_stage_function_takes_a_config_dict():
    seen = 0
    for stem, name, fn in stage_functions():
        for p in inspect.signature(fn).parameters.values():
            where = f"qnnff.stages.{stem}.{name}({p.name}: {p.annotation})"
            assert p.name not in ("cfg", "config", "settings"), where
            assert p.annotation not in ("dict", "dict[str, Any]", "Mapping[str, Any]", "Mapping"), where
        seen += 1
    assert seen >= 20


def test_every_rule_with_settings_gets_its_spec_as_the_first_argument():
    specs = {DataJob, TrainJob, EffdimJob, FloorJob, AerJob, MDJob, FiguresJob, MetricsJob, StudyPointJob, StudyJob, ReproductionSettings}
    with_settings = {r for r in rule_scripts() if r in RULES or r.startswith("train_")}  # the train_* rules share "train"
    assert len(with_settings) == len(RULES) + 4  # train_qnn, train_nn, train_bpnn, train_eqnn, train_sgdml share "train"
    functions = {name: (stem, fn) for stem, name, fn in stage_functions()}
    for rule in with_settings:
        names = ["train"] if rule.startswith("train_") else ["run_md", "run_md_dft"] if rule in ("run_md", "run_md_dft") else [rule]
        for name in names:
            stem, fn = functions[name]
            first = next(iter(inspect.signature(fn).parameters.values()))
            assert first.name == "job" or name == "reproduction_table", (rule, name, first)
            # the script imports the spec from the stage module, under the name of the annotation
            assert getattr(importlib.import_module(f"qnnff.stages.{stem}"), first.annotation) in specs, (rule, name)

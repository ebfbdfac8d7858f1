# Helpers shared by all rule files: config validation and the wildcard domains.
import re
from snakemake.exceptions import WorkflowError
import os
from qnnff.checks import check_config, check_run_directory
from qnnff.integrity import damaged_data_files, set_invocation
from qnnff.config import replace_with_cli_configfiles, system_spec
from qnnff.kinds import KINDS
from qnnff.protocols import Variant, figure_protocol, model_kinds, n_seeds, seeds_of, variants
from qnnff.settings import rule_settings

# 0. `--configfile my.yaml` replaces config/config.yaml instead of being merged on top of it (config/README.md)
_user_files = replace_with_cli_configfiles(config, workflow.config_settings.configfiles, workflow.config_settings.config)
_source = " + ".join(_user_files) or "config/config.yaml"
# 1. the schema (config/schema.yaml, the one schema, applied once: jsonschema, the validator behind Snakemake's
#    `validate`), then the semantics (ranges, elements, Z-matrix references, MD start, slice, Aer backends, circuit
#    size, electrons and, in the main process, every element's basis set in PySCF: its import costs 0.4 s, which the
#    spawned jobs, re-reading a config their run has checked, do not pay); every error names the file and the key.
#    Defaults are not written into `config`: each rule's settings slice carries the user's keys, and the typed
#    settings fill the schema's defaults (qnnff.settings).
check_config(config, source=_source, basis_sets=workflow.is_main_process)
# 1b. a config other than the committed paper config never runs in the repository root, whose results/ are committed
#     (issue 26.8): the error names the --directory to use. In the main process only: a job re-reading this file
#     belongs to a run that passed the check, and in a copy of the code without results (the SLURM proof's) the
#     run's own results/MANIFEST.sha256 appears mid-run since the target `extended` builds the paper scope's first
if workflow.is_main_process:
    check_run_directory(config, workdir=os.getcwd(), repo=workflow.basedir, paper_config=PAPER_CONFIG, user_files=_user_files)

# 1c. every rebuild hint of this run and its jobs repeats its directory, Snakefile and config files (issue 26.9)
set_invocation(workdir=os.getcwd(), repo=workflow.basedir, configfiles=_user_files)

# 2. a damaged model artifact stops the run here, before any job reads it (a failing job would delete valid outputs),
#    and so does a damaged dataset, trajectory or feature file (issue 26.10: a truncated train.npz made every training
#    rerun, which deleted 16 valid models before failing; files: in the main process only, a job re-reading this file
#    belongs to a run that checked them). A dry run, --unlock or a listing only warns (issue 26.14).
import sys
from qnnff.integrity import command_mode, fresh_clone_regeneration, held_locks, lock_message
from qnnff.models.artifact import damaged_models

_damaged = damaged_models(".") + (damaged_data_files(".") if workflow.is_main_process else [])
if _damaged:
    _text = "damaged file(s):\n  " + "\n  ".join(_damaged)
    if command_mode(sys.argv) == "exec":
        raise WorkflowError(_text)
    print(f"qnnff: warning: {_text}\n(a run will stop here until they are rebuilt)", file=sys.stderr)
# 2b. a bare figure or table target in a fresh clone would recompute the committed results upstream of it (issue 26.11)
_fresh = fresh_clone_regeneration(sys.argv, os.getcwd(), workflow.basedir) if workflow.is_main_process else None
if _fresh:
    raise WorkflowError(_fresh)
# 3. another run holds the directory: say so, for a run and for a dry run (Snakemake would first advise
#    --rerun-incomplete for the other run's jobs in progress); not for --unlock, --nolock, --report, nor in the run's
#    own spawned jobs (they re-read this file while their run holds the lock).
if workflow.is_main_process and held_locks("."):
    _mode = command_mode(sys.argv)
    if _mode in ("exec", "dryrun"):
        raise WorkflowError(
            lock_message(held_locks("."))
            + (" A dry run now would list that run's jobs in progress as incomplete." if _mode == "dryrun" else "")
        )

SYSTEMS = list(config["systems"])
SPECS = {name: system_spec(config, name) for name in SYSTEMS}


wildcard_constraints:
    system="|".join(re.escape(s) for s in SYSTEMS),
    chunk=r"(train|test)-\d{3}",
    split="train|test",


def chunks(system):
    return SPECS[system].chunk_ids()


def log_path(rule, *parts):
    return "results/logs/" + rule + "/" + "_".join(parts) + ".log"


def bench_path(rule, *parts):
    return "results/benchmarks/" + rule + "/" + "_".join(parts) + ".tsv"


MODELS = {name: model_kinds(config, name) for name in SYSTEMS}
VARIANTS = {name: variants(config, name) for name in SYSTEMS}
SEEDS = list(range(n_seeds(config)))
SEEDS_OF = {k: seeds_of(config, k) for k in KINDS}  # a closed-form (deterministic) kind: seed 0 only
SEEDS_IN_ONE_JOB = bool(config.get("seeds_in_one_job", False))  # job layout only: the models are the same


wildcard_constraints:
    kind="|".join(KINDS),
    protocol=r"[a-z][a-z0-9_]*",
    seed=r"\d+",


# Scopes (README "Targets"). The default target `all` builds the paper's scope: the kinds of the paper's tables
# (qnnff.kinds.ModelKind.paper), without the circuit evaluations on qiskit-aer and the shot-noise MD. The target
# `extended` builds everything configured: also the kinds beyond the paper (sGDML, eqnn), the Aer evaluations and the
# shot-noise MD, and its own tables, figures, metrics and manifest under results/extended/ (the scope's path prefix:
# "" or "extended/"). Per-model files are shared: the extended target reuses every model the default one trained.
SCOPES = ("", "extended/")


wildcard_constraints:
    scope="|extended/",


def in_scope(kind, scope):
    return scope == "extended/" or KINDS[kind].paper


def scope_models(system, scope=""):
    """The kinds of `system` in `scope`."""
    return [k for k in MODELS[system] if in_scope(k, scope)]


def variant_files(name, systems=None, kinds=tuple(KINDS), scope=""):
    """results/{system}/models/{kind}/{protocol}/{name} for every configured (system, kind, protocol) of the scope."""
    return [
        f"{v.model_dir()}/{name}"
        for s in (systems or SYSTEMS)
        for v in VARIANTS[s]
        if v.kind in kinds and in_scope(v.kind, scope)
    ]


def seed_files(name, systems=None, kinds=tuple(KINDS), scope=""):
    """results/{system}/models/{kind}/{protocol}/seed{k}/{name} for every variant and seed of the scope."""
    return [
        f"{v.model_dir(k)}/{name}"
        for s in (systems or SYSTEMS)
        for v in VARIANTS[s]
        if v.kind in kinds and in_scope(v.kind, scope)
        for k in SEEDS_OF[v.kind]
    ]


def kinds_with(name, system, scope=""):
    """The kinds of a system (in the scope) that have the per-kind output `name`: the effective dimension only where it
    applies (not to a kernel model: qnnff.kinds.ModelKind.effdim)."""
    if name == "effective_dimension.json":
        return [k for k in scope_models(system, scope) if KINDS[k].effdim]
    return scope_models(system, scope)


def kind_files(name, systems=None, scope=""):
    """results/{system}/models/{kind}/{name}: one per (system, kind), e.g. the effective dimension."""
    return [f"results/{s}/models/{k}/{name}" for s in (systems or SYSTEMS) for k in kinds_with(name, s, scope)]


def aer_files(systems=None, scope=""):
    """The circuit (Aer / Runtime) evaluation of each system's QNN: the median seed of the figure protocol (one
    protocol only: parameter-shift forces cost 1 + 2K circuits per geometry); extended scope only."""
    if scope != "extended/":
        return []
    return [
        f"results/{s}/models/qnn/{figure_protocol(config, s, 'qnn')}/aer_evaluation.json"
        for s in (systems or SYSTEMS)
        if "qnn" in MODELS[s]
    ]


def seed_set(system, kind, protocol, name):
    """The seeds of one (kind, protocol): its selection file and one `name` file per seed (params for scripts)."""
    v = Variant(system, kind, protocol)
    return {
        "kind": kind,
        "protocol": protocol,
        "selection": f"{v.model_dir()}/seeds.json",
        "files": [f"{v.model_dir(k)}/{name}" for k in SEEDS_OF[kind]],
    }


def figure_sets(system, name, scope=""):
    """Per kind of the scope, the seeds of the protocol the figures show."""
    return [seed_set(system, k, figure_protocol(config, system, k), name) for k in scope_models(system, scope)]


def set_inputs(sets):
    return [p for st in sets for p in [st["selection"], *st["files"]]]


# Every rule that reads settings gets its slice of the config as `params.settings` (qnnff.settings.rule_settings, the
# one place that says which keys a rule reads): its job reads nothing else, and Snakemake reruns the job when, and only
# when, its slice changes (rerun trigger "params"). The provenance hashes are computed from the slice in the job.
def settings(rule, **fixed):
    return lambda wc: rule_settings(config, rule, **dict(wc.items()), **fixed)


def md_variants(name, scope):
    """(kind, protocol) pairs driven in MD: every model variant of the scope, plus ("dft", None) where configured."""
    md = config["systems"][name].get("md", {})
    out = [(v.kind, v.protocol) for v in VARIANTS[name] if in_scope(v.kind, scope)]
    if "qnn" in MODELS[name] and scope == "extended/":  # shot-noise MD (rule run_md_shots) of the figure protocol's QNN
        out += [(f"qnn-shots{int(n)}", figure_protocol(config, name, "qnn")) for n in md.get("shots", [])]
    return out + ([("dft", None)] if md.get("dft", False) else [])


MD_VARIANTS = {scope: {name: md_variants(name, scope) for name in SYSTEMS} for scope in SCOPES}


def md_dir(system, kind, protocol):
    return f"results/{system}/md/dft" if kind == "dft" else f"results/{system}/md/{kind}/{protocol}"


def md_files(name, systems=None, scope=""):
    return [f"{md_dir(s, k, p)}/{name}" for s in (systems or SYSTEMS) for k, p in MD_VARIANTS[scope][s]]


def md_figure_runs(system, scope=""):
    """The runs on a diatomic's MD figure: DFT and each kind's figure protocol."""
    runs = [
        (k, p) for k, p in MD_VARIANTS[scope][system] if k == "dft" or p == figure_protocol(config, system, k.split("-shots")[0])
    ]
    return sorted(runs, key=lambda kp: kp[0] != "dft")


DIATOMICS = [s for s in SYSTEMS if len(SPECS[s].symbols) == 2]
REPRODUCTION = bool(config.get("reproduction"))


def figure_files(scope=""):
    out = []
    for s in SYSTEMS:
        if scope_models(s, scope):
            out += [f"results/{scope}figures/{s}_{n}.{e}" for n in ("parity", "curve") for e in ("png", "pdf")]
    out += [f"results/{scope}figures/{s}_md_distance.{e}" for s in DIATOMICS if MD_VARIANTS[scope][s] for e in ("png", "pdf")]
    out += [
        f"results/{scope}figures/{n}.{e}"
        for n in ("learning_curves", "effective_dimension", "effective_dimension_vs_n")
        for e in ("png", "pdf")
    ]
    return out


def table_files(scope=""):
    out = [f"results/{scope}tables/{s}_errors.{e}" for s in SYSTEMS for e in ("csv", "md")]
    out += [f"results/{scope}tables/md.csv", f"results/{scope}tables/md.md"]
    if REPRODUCTION:
        out += [f"results/{scope}tables/reproduction.csv", f"results/{scope}tables/reproduction.md"]
    return out


def committed_artifacts(scope=""):
    """Everything under results/ that is committed (and listed in the scope's manifest): the extended scope's
    includes the paper scope's, with its metrics.json."""
    out = figure_files(scope) + table_files(scope)
    for s in SYSTEMS:
        out += [f"results/{s}/data/{n}" for n in ("train.extxyz", "test.extxyz", "dft_report.md", "dft_report.json")]
        out += [f"results/{s}/features/scalers.json"]
    for n in ("model.zip", "test_predictions.extxyz", "learning_curve.csv", "train_summary.json"):
        out += seed_files(n, scope=scope)
    out += variant_files("seeds.json", scope=scope)
    out += kind_files("effective_dimension.json", scope=scope) + kind_files("information_floor.json", scope=scope)
    out += aer_files(scope=scope)
    out += md_files("summary.json", scope=scope) + md_files("trajectory.extxyz", scope=scope)
    if scope:
        out = sorted(set(committed_artifacts("") + ["results/metrics.json"] + out))
    return out

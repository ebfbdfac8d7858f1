# Helpers shared by all rule files: config validation and the wildcard domains.
import re
from snakemake.utils import validate
from snakemake.exceptions import WorkflowError
from qnnff.config import check_config, config_hash, model_subconfig, replace_with_cli_configfiles, system_spec
from qnnff.sampling import chunk_ids

# 0. `--configfile my.yaml` replaces config/config.yaml instead of being merged on top of it (config/README.md)
_user_files = replace_with_cli_configfiles(config, workflow.config_settings.configfiles, workflow.config_settings.config)
_source = " + ".join(_user_files) or "config/config.yaml"
# 1. semantics first (schema + ranges, elements, Z-matrix references, MD start, slice, Aer backends), naming the file
#    and the key; 2. Snakemake's schema validation (kept as before)
check_config(config, source=_source)
validate(config, workflow.source_path("../../config/schema.yaml"), set_default=False)

# 3. a damaged model artifact stops the run here, before any job reads it (a failing job would delete valid outputs)
from qnnff.integrity import damaged_models

_damaged = damaged_models(".")
if _damaged:
    raise WorkflowError("damaged model artifact(s):\n  " + "\n  ".join(_damaged))

# 4. another run holds the directory: say so (Snakemake would first advise --rerun-incomplete for the other run's
#    jobs in progress). Only in the main process of a run that executes jobs: not in dry runs, --unlock, --report,
#    --nolock, nor in the run's own spawned jobs (they re-read this file while their run holds the lock).
import sys
from qnnff.integrity import held_locks, lock_message, run_executes_jobs

if workflow.is_main_process and held_locks(".") and run_executes_jobs(sys.argv):
    raise WorkflowError(lock_message(held_locks(".")))

SYSTEMS = list(config["systems"])
SPECS = {name: system_spec(config, name) for name in SYSTEMS}


wildcard_constraints:
    system="|".join(re.escape(s) for s in SYSTEMS),
    chunk=r"(train|test)-\d{3}",
    split="train|test",


def chunks(system):
    return chunk_ids(SPECS[system])


def log_path(rule, *parts):
    return "results/logs/" + rule + "/" + "_".join(parts) + ".log"


def bench_path(rule, *parts):
    return "results/benchmarks/" + rule + "/" + "_".join(parts) + ".tsv"


MODELS = {name: [k for k in ("qnn", "nn", "bpnn") if k in config["systems"][name].get("models", {})] for name in SYSTEMS}


def model_files(name, systems=None, kinds=("qnn", "nn", "bpnn")):
    """results/{system}/models/{kind}/{name} for every configured (system, model) pair."""
    return [f"results/{s}/models/{k}/{name}" for s in (systems or SYSTEMS) for k in MODELS[s] if k in kinds]


# Config hashes passed as `params`: Snakemake reruns a job when the part of the config it depends on changes
# (rerun trigger "params"), and the hash lands in every artifact's provenance.
def data_hash(wildcards):
    return config_hash(SPECS[wildcards.system].subconfig(config))


def model_hash(kind):
    def _hash(wildcards):
        return config_hash({"data": SPECS[wildcards.system].subconfig(config),
                            "model": model_subconfig(config, wildcards.system, kind)})  # without `aer`
    return _hash


def md_kinds(name):
    md = config["systems"][name].get("md", {})
    return MODELS[name] + (["dft"] if md.get("dft", False) else [])


MD_KINDS = {name: md_kinds(name) for name in SYSTEMS}


def md_files(name, systems=None):
    return [f"results/{s}/md/{k}/{name}" for s in (systems or SYSTEMS) for k in MD_KINDS[s]]


DIATOMICS = [s for s in SYSTEMS if len(SPECS[s].symbols) == 2]


def figure_files():
    out = []
    for s in SYSTEMS:
        if MODELS[s]:
            out += [f"results/figures/{s}_{n}.{e}" for n in ("parity", "curve") for e in ("png", "pdf")]
    out += [f"results/figures/{s}_md_distance.{e}" for s in DIATOMICS if MD_KINDS[s] for e in ("png", "pdf")]
    out += [f"results/figures/{n}.{e}" for n in ("learning_curves", "effective_dimension", "effective_dimension_vs_n") for e in ("png", "pdf")]
    return out


def committed_artifacts():
    """Everything under results/ that is committed (and listed in the manifest)."""
    out = figure_files()
    out += [f"results/tables/{s}_errors.{e}" for s in SYSTEMS for e in ("csv", "md")]
    out += ["results/tables/md.csv", "results/tables/md.md"]
    for s in SYSTEMS:
        out += [f"results/{s}/data/{n}" for n in ("train.extxyz", "test.extxyz", "dft_report.md", "dft_report.json")]
        out += [f"results/{s}/features/scalers.json"]
    for n in ("model.zip", "test_predictions.extxyz", "learning_curve.csv", "train_summary.json", "effective_dimension.json"):
        out += model_files(n)
    out += model_files("aer_evaluation.json", kinds=("qnn",))
    out += md_files("summary.json") + md_files("trajectory.extxyz")
    return out

# Helpers shared by all rule files: config validation and the wildcard domains.
import re
from snakemake.utils import validate
from qnnff.config import check_config, config_hash, system_spec
from qnnff.sampling import chunk_ids

# 1. schema (unknown keys, types), 2. semantics (ranges, elements, Z-matrix references): fail early, naming the key
validate(config, workflow.source_path("../../config/schema.yaml"), set_default=False)
check_config(config, source="config")

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
        block = config["systems"][wildcards.system].get("models", {}).get(kind)
        if isinstance(block, dict) and "hardware" in block:  # evaluation-only settings never retrain a model
            block = {k: v for k, v in block.items() if k != "hardware"}
        return config_hash({"data": SPECS[wildcards.system].subconfig(config), "model": block})
    return _hash


def md_kinds(name):
    md = config["systems"][name].get("md", {})
    shots = [f"qnn-shots{int(n)}" for n in md.get("shots", [])] if "qnn" in MODELS[name] else []  # shot-noise MD (run_md_shots)
    return MODELS[name] + (["dft"] if md.get("dft", False) else []) + shots


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

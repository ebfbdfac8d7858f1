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
        return config_hash({"data": SPECS[wildcards.system].subconfig(config),
                            "model": config["systems"][wildcards.system].get("models", {}).get(kind)})
    return _hash

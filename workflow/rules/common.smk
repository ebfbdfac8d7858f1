# Helpers shared by all rule files: config validation and the wildcard domains.
import re
from snakemake.utils import validate
from qnnff.config import check_config, system_spec
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

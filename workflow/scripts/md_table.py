from pathlib import Path

from qnnff.pipeline import setup_logging
from qnnff.stages import md_table

setup_logging(snakemake.log[0])
summaries = {}
for p in snakemake.input:
    system, _, kind = Path(p).parts[-4:-1]
    summaries.setdefault(system, {})[kind] = p
md_table(summaries, snakemake.output.csv, snakemake.output.md)

from qnnff.pipeline import setup_logging
from qnnff.stages import errors_stage

setup_logging(snakemake.log[0])
errors_stage(snakemake.wildcards.system, list(snakemake.input.selections), dict(snakemake.params.effdims), list(snakemake.input.aer),
             snakemake.input.scalers, snakemake.output.csv, snakemake.output.md)

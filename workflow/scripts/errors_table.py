from qnnff.stages import setup_logging
from qnnff.stages.evaluate import errors_table

setup_logging(snakemake.log[0])
errors_table(snakemake.wildcards.system, list(snakemake.input.selections), dict(snakemake.params.effdims), dict(snakemake.params.floors),
             list(snakemake.input.aer),
             snakemake.input.scalers, snakemake.output.csv, snakemake.output.md)

from qnnff.pipeline import setup_logging
from qnnff.stages import errors_stage

setup_logging(snakemake.log[0])
errors_stage(snakemake.config, snakemake.wildcards.system, snakemake.params.kinds, snakemake.input.predictions,
             snakemake.input.summaries, snakemake.input.effdims, snakemake.input.scalers, snakemake.output.csv, snakemake.output.md,
             snakemake.input.aer[0] if snakemake.input.aer else None)

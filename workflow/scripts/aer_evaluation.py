from qnnff.pipeline import setup_logging
from qnnff.stages import aer_stage

setup_logging(snakemake.log[0])
aer_stage(snakemake.config, snakemake.wildcards.system, snakemake.input.model, snakemake.input.test, snakemake.output[0])

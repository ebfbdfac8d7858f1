from qnnff.pipeline import setup_logging
from qnnff.stages import effective_dimension_stage

setup_logging(snakemake.log[0])
effective_dimension_stage(snakemake.config, snakemake.wildcards.system, snakemake.wildcards.kind, snakemake.input.model,
                          snakemake.input.train, snakemake.output[0])

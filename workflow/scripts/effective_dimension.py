from qnnff.stages import setup_logging
from qnnff.stages.evaluate import effective_dimension

setup_logging(snakemake.log[0])
effective_dimension(snakemake.params.settings, snakemake.wildcards.system, snakemake.wildcards.kind, snakemake.input.model,
                    snakemake.input.train, snakemake.output[0])

from qnnff.pipeline import setup_logging
from qnnff.stages import system_figures

setup_logging(snakemake.log[0])
system_figures(snakemake.config, snakemake.wildcards.system, snakemake.params.kinds, snakemake.input.models,
               snakemake.input.predictions, snakemake.input.train, snakemake.input.test, snakemake.input.slice or None,
               dict(snakemake.output.items()))

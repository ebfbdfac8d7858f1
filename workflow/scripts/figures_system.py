from qnnff.stages import setup_logging
from qnnff.stages.figures import figures_system

setup_logging(snakemake.log[0])
figures_system(snakemake.params.settings, snakemake.wildcards.system, snakemake.params.models, snakemake.params.predictions,
               snakemake.input.train, snakemake.input.test, snakemake.input.slice or None, dict(snakemake.output.items()))

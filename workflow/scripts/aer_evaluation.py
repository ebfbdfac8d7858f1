from qnnff.stages import setup_logging
from qnnff.stages.evaluate import aer_evaluation

setup_logging(snakemake.log[0])
aer_evaluation(snakemake.params.settings, snakemake.wildcards.system, snakemake.params.models, snakemake.input.test, snakemake.output[0])

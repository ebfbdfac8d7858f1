from qnnff.stages import setup_logging
from qnnff.stages.evaluate import AerJob, aer_evaluation

setup_logging(snakemake.log[0])
job = AerJob.of(snakemake.params.settings, system=snakemake.wildcards.system, protocol=snakemake.wildcards.protocol)
aer_evaluation(job, snakemake.params.models, snakemake.input.test, snakemake.output[0])

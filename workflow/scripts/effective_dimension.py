from qnnff.stages import setup_logging
from qnnff.stages.evaluate import EffdimJob, effective_dimension

setup_logging(snakemake.log[0])
job = EffdimJob.of(snakemake.params.settings, system=snakemake.wildcards.system, kind=snakemake.wildcards.kind)
effective_dimension(job, snakemake.input.model, snakemake.input.train, snakemake.output[0])

from qnnff.stages import setup_logging
from qnnff.stages.evaluate import FloorJob, information_floor

setup_logging(snakemake.log[0])
job = FloorJob.of(snakemake.params.settings, system=snakemake.wildcards.system, kind=snakemake.wildcards.kind)
information_floor(job, snakemake.input.model, snakemake.input.train, snakemake.input.test, snakemake.output[0])

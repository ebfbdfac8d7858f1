from qnnff.stages import setup_logging
from qnnff.stages.data import DataJob, sample_points

setup_logging(snakemake.log[0])
sample_points(DataJob.of(snakemake.params.settings, system=snakemake.wildcards.system), snakemake.output[0])

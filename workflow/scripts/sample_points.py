from qnnff.stages import setup_logging
from qnnff.stages.data import sample_points

setup_logging(snakemake.log[0])
sample_points(snakemake.params.settings, snakemake.wildcards.system, snakemake.output[0])

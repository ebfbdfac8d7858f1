from qnnff.pipeline import setup_logging
from qnnff.stages import dft_slice_stage

setup_logging(snakemake.log[0])
dft_slice_stage(snakemake.config, snakemake.wildcards.system, snakemake.output[0])

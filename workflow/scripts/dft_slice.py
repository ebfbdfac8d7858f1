from qnnff.stages import setup_logging
from qnnff.stages.figures import dft_slice

setup_logging(snakemake.log[0])
dft_slice(snakemake.params.settings, snakemake.wildcards.system, snakemake.output[0])

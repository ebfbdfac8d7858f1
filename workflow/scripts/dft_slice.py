from qnnff.stages import setup_logging
from qnnff.stages.figures import FiguresJob, dft_slice

setup_logging(snakemake.log[0])
dft_slice(FiguresJob.of(snakemake.params.settings, system=snakemake.wildcards.system), snakemake.output[0])

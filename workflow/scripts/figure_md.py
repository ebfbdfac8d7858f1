from qnnff.pipeline import setup_logging
from qnnff.stages import md_figure

setup_logging(snakemake.log[0])
md_figure(snakemake.wildcards.system, snakemake.params.kinds, snakemake.input.trajectories, snakemake.output.png, snakemake.output.pdf)

from qnnff.stages import setup_logging
from qnnff.stages.figures import figure_md

setup_logging(snakemake.log[0])
figure_md(snakemake.wildcards.system, snakemake.params.kinds, snakemake.input.trajectories, snakemake.output.png, snakemake.output.pdf)

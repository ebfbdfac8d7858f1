from qnnff.stages import setup_logging
from qnnff.stages.figures import figures_summary

setup_logging(snakemake.log[0])
figures_summary(dict(snakemake.params.curves), dict(snakemake.params.effdims), dict(snakemake.output.items()))

from qnnff.stages import setup_logging
from qnnff.stages.md import md_table

setup_logging(snakemake.log[0])
md_table(list(snakemake.input), snakemake.output.csv, snakemake.output.md)

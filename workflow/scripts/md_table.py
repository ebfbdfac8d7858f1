from qnnff.pipeline import setup_logging
from qnnff.stages import md_table

setup_logging(snakemake.log[0])
md_table(list(snakemake.input), snakemake.output.csv, snakemake.output.md)

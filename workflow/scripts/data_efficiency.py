from qnnff.stages import setup_logging
from qnnff.stages.studies import data_efficiency

setup_logging(snakemake.log[0])
o = snakemake.output
data_efficiency(snakemake.wildcards.system, dict(snakemake.params.tables), o.csv, o.md, o.png, o.pdf)

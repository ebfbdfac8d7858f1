from qnnff.stages import setup_logging
from qnnff.stages.evaluate import ReproductionSettings, reproduction_table

setup_logging(snakemake.log[0])
reproduction_table(ReproductionSettings.of(snakemake.params.settings), dict(snakemake.params.errors), snakemake.params.effdims,
                   list(snakemake.input.md), list(snakemake.input.period), snakemake.output.csv, snakemake.output.md)

from qnnff.stages import setup_logging
from qnnff.stages.studies import study_table

setup_logging(snakemake.log[0])
study_table(snakemake.params.settings, snakemake.wildcards.study, list(snakemake.input), snakemake.output.csv, snakemake.output.md,
            snakemake.output.png, snakemake.output.pdf)

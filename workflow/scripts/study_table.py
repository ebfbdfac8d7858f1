from qnnff.stages import setup_logging
from qnnff.stages.studies import StudyJob, study_table

setup_logging(snakemake.log[0])
study_table(StudyJob.of(snakemake.params.settings, study=snakemake.wildcards.study), list(snakemake.input), snakemake.output.csv,
            snakemake.output.md, snakemake.output.png, snakemake.output.pdf)

from qnnff.stages import setup_logging
from qnnff.stages.md import MDJob, run_md_shots

setup_logging(snakemake.log[0])
run_md_shots(MDJob.of(snakemake.params.settings, system=snakemake.wildcards.system), int(snakemake.wildcards.shots),
             snakemake.params.models, snakemake.input.exact, snakemake.output.trajectory, snakemake.output.summary)

from qnnff.pipeline import setup_logging
from qnnff.stages import shot_md_stage

setup_logging(snakemake.log[0])
shot_md_stage(snakemake.config, snakemake.wildcards.system, int(snakemake.wildcards.shots), snakemake.input.model,
              snakemake.input.exact, snakemake.output.trajectory, snakemake.output.summary)

from qnnff.pipeline import setup_logging
from qnnff.stages import md_stage

setup_logging(snakemake.log[0])
md_stage(snakemake.config, snakemake.wildcards.system, snakemake.wildcards.kind, snakemake.input.model or None,
         snakemake.output.trajectory, snakemake.output.summary)

from qnnff.pipeline import setup_logging
from qnnff.stages import select_seeds_stage

setup_logging(snakemake.log[0])
select_seeds_stage(snakemake.wildcards.system, snakemake.wildcards.kind, snakemake.wildcards.protocol,
                   list(snakemake.input.predictions), list(snakemake.input.summaries), snakemake.input.scalers, snakemake.output[0])

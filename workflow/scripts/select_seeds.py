from qnnff.stages import setup_logging
from qnnff.stages.train import select_seeds

setup_logging(snakemake.log[0])
select_seeds(snakemake.wildcards.system, snakemake.wildcards.kind, snakemake.wildcards.protocol, list(snakemake.input.predictions),
             list(snakemake.input.summaries), snakemake.input.scalers, snakemake.output[0])

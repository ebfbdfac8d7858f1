from qnnff.modeling import train_model
from qnnff.pipeline import setup_logging

setup_logging(snakemake.log[0])
train_model(
    snakemake.config,
    snakemake.wildcards.system,
    snakemake.params.kind,
    snakemake.params.protocol,
    snakemake.params.seed,
    snakemake.input.scalers,
    snakemake.input.train,
    snakemake.input.test,
    snakemake.output.model,
    snakemake.output.predictions,
    snakemake.output.curve,
    snakemake.output.summary,
    snakemake.params.checkpoint,
)

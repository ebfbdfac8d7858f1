from qnnff.stages import setup_logging
from qnnff.stages.train import train  # rules train_qnn, train_nn and train_bpnn (params.kind)

setup_logging(snakemake.log[0])
train(snakemake.params.settings, snakemake.wildcards.system, snakemake.params.kind, snakemake.params.protocol, snakemake.params.seed,
      snakemake.input.scalers, snakemake.input.train, snakemake.input.test, snakemake.output.model, snakemake.output.predictions,
      snakemake.output.curve, snakemake.output.summary, snakemake.params.checkpoint)

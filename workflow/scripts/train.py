from qnnff.stages import setup_logging
from qnnff.stages.train import TrainJob, train  # rules train_qnn, train_nn and train_bpnn (params.kind)

setup_logging(snakemake.log[0])
p = snakemake.params
job = TrainJob.of(p.settings, system=snakemake.wildcards.system, kind=p.kind, protocol=p.protocol, seed_index=p.seed)
train(job, snakemake.input.scalers, snakemake.input.train, snakemake.input.test, snakemake.output.model, snakemake.output.predictions,
      snakemake.output.curve, snakemake.output.summary, p.checkpoint)

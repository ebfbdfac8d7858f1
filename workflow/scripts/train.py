from qnnff.stages import setup_logging
from qnnff.stages.train import TrainJob, train_seeds  # rules train_qnn, train_nn and train_bpnn (params.kind)

setup_logging(snakemake.log[0])
p, i, o = snakemake.params, snakemake.input, snakemake.output
jobs = TrainJob.each(p.settings, system=snakemake.wildcards.system, kind=p.kind, protocol=p.protocol, seeds=p.seed)
train_seeds(jobs, i.scalers, i.train, i.test, o.model, o.predictions, o.curve, o.summary, p.checkpoint)

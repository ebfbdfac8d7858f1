from qnnff.stages import setup_logging
from qnnff.stages.train import TrainJob, train  # rules train_qnn, train_nn and train_bpnn (params.kind): one seed or all

setup_logging(snakemake.log[0])
p, i, o = snakemake.params, snakemake.input, snakemake.output
for k, model, predictions, curve, summary, checkpoint in zip(p.seeds, o.model, o.predictions, o.curve, o.summary, p.checkpoint, strict=True):
    job = TrainJob.of(p.settings, system=snakemake.wildcards.system, kind=p.kind, protocol=p.protocol, seed_index=k)
    train(job, i.scalers, i.train, i.test, model, predictions, curve, summary, checkpoint)

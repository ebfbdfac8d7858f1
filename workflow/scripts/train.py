from qnnff.stages import setup_logging
from qnnff.stages.train import train_seeds  # rules train_qnn, train_nn and train_bpnn (params.kind): one seed or all

setup_logging(snakemake.log[0])
p, i, o = snakemake.params, snakemake.input, snakemake.output
train_seeds(p.settings, snakemake.wildcards.system, p.kind, p.protocol, p.seed, i.scalers, i.train, i.test, o.model, o.predictions,
            o.curve, o.summary, p.checkpoint)

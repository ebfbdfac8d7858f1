from qnnff.pipeline import setup_logging
from qnnff.reproduction import scorecard, write_scorecard

setup_logging(snakemake.log[0])
effdims = {(s, k): p for s, k, p in snakemake.params.effdims}
period = tuple(snakemake.input.period) if snakemake.input.period else None
write_scorecard(scorecard(snakemake.config, dict(snakemake.params.errors), effdims, list(snakemake.input.md), period),
                snakemake.output.csv, snakemake.output.md)

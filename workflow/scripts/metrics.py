from qnnff.stages import setup_logging
from qnnff.stages.figures import MetricsJob, metrics

setup_logging(snakemake.log[0])
metrics(MetricsJob.of(snakemake.params.settings), snakemake.input.errors, snakemake.input.md, snakemake.input.artifacts,
        snakemake.output.metrics, snakemake.output.manifest, snakemake.input.reproduction[0] if snakemake.input.reproduction else None)

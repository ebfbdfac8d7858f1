from qnnff.pipeline import setup_logging
from qnnff.stages import metrics_and_manifest

setup_logging(snakemake.log[0])
metrics_and_manifest(snakemake.config, snakemake.input.errors, snakemake.input.md, snakemake.input.artifacts,
                     snakemake.output.metrics, snakemake.output.manifest,
                     snakemake.input.reproduction[0] if snakemake.input.reproduction else None)

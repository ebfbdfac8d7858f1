from qnnff.stages import setup_logging
from qnnff.stages.features import featurize

setup_logging(snakemake.log[0])
featurize(snakemake.params.settings, snakemake.wildcards.system, snakemake.input.train, snakemake.input.test, snakemake.output.scalers,
          snakemake.output.train, snakemake.output.test)

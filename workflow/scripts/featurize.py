from qnnff.stages import setup_logging
from qnnff.stages.features import DataJob, featurize

setup_logging(snakemake.log[0])
featurize(DataJob.of(snakemake.params.settings, system=snakemake.wildcards.system), snakemake.input.train, snakemake.input.test,
          snakemake.output.scalers, snakemake.output.train, snakemake.output.test)

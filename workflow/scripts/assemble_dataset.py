from qnnff.stages import setup_logging
from qnnff.stages.data import DataJob, assemble_dataset

setup_logging(snakemake.log[0])
assemble_dataset(DataJob.of(snakemake.params.settings, system=snakemake.wildcards.system), list(snakemake.input.xyz),
                 list(snakemake.input.status), snakemake.output.train, snakemake.output.test, snakemake.output.report,
                 snakemake.output.report_json)

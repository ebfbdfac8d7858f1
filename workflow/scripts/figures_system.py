from qnnff.stages import setup_logging
from qnnff.stages.figures import FiguresJob, figures_system

setup_logging(snakemake.log[0])
figures_system(FiguresJob.of(snakemake.params.settings, system=snakemake.wildcards.system), snakemake.params.models,
               snakemake.params.predictions, snakemake.input.train, snakemake.input.test, snakemake.input.slice or None,
               dict(snakemake.output.items()))

from qnnff.stages import setup_logging
from qnnff.stages.data import DataJob, dft_chunk

setup_logging(snakemake.log[0])
dft_chunk(DataJob.of(snakemake.params.settings, system=snakemake.wildcards.system), snakemake.input.points, snakemake.wildcards.chunk,
          snakemake.output.xyz, snakemake.output.status, threads=snakemake.threads)

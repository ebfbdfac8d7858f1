from qnnff.pipeline import sample_points, setup_logging

setup_logging(snakemake.log[0])
sample_points(snakemake.config, snakemake.wildcards.system, snakemake.output[0])

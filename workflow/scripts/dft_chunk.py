from qnnff.pipeline import dft_chunk, setup_logging

setup_logging(snakemake.log[0])
dft_chunk(
    snakemake.config,
    snakemake.wildcards.system,
    snakemake.input.points,
    snakemake.wildcards.chunk,
    snakemake.output.xyz,
    snakemake.output.status,
    threads=snakemake.threads,
)

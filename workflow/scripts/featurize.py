from qnnff.pipeline import features, setup_logging

setup_logging(snakemake.log[0])
features(
    snakemake.config,
    snakemake.wildcards.system,
    snakemake.input.train,
    snakemake.input.test,
    snakemake.output.scalers,
    snakemake.output.train,
    snakemake.output.test,
)

from qnnff.pipeline import setup_logging
from qnnff.stages import SeedSet, system_figures


def seed_sets(sets):
    return [SeedSet(m["kind"], m["protocol"], m["selection"], tuple(m["files"])) for m in sets]


setup_logging(snakemake.log[0])
system_figures(snakemake.config, snakemake.wildcards.system, seed_sets(snakemake.params.models), seed_sets(snakemake.params.predictions),
               snakemake.input.train, snakemake.input.test, snakemake.input.slice or None, dict(snakemake.output.items()))

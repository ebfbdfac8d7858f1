from qnnff.pipeline import setup_logging
from qnnff.stages import SeedSet, aer_stage

setup_logging(snakemake.log[0])
m = snakemake.params.models
aer_stage(snakemake.config, snakemake.wildcards.system, SeedSet(m["kind"], m["protocol"], m["selection"], tuple(m["files"])),
          snakemake.input.test, snakemake.output[0])

from qnnff.pipeline import setup_logging
from qnnff.stages import SeedSet, md_stage

setup_logging(snakemake.log[0])
m = snakemake.params.models
if m is None:  # the DFT reference
    md_stage(snakemake.config, snakemake.wildcards.system, "dft", None, snakemake.output.trajectory, snakemake.output.summary)
else:
    seed, model = SeedSet(m["kind"], m["protocol"], m["selection"], tuple(m["files"])).median()
    md_stage(snakemake.config, snakemake.wildcards.system, m["kind"], model, snakemake.output.trajectory, snakemake.output.summary,
             protocol=m["protocol"], seed=seed)

from qnnff.pipeline import setup_logging
from qnnff.stages import SeedSet, shot_md_stage

setup_logging(snakemake.log[0])
m = snakemake.params.models
seed, model = SeedSet(m["kind"], m["protocol"], m["selection"], tuple(m["files"])).median()
shot_md_stage(snakemake.config, snakemake.wildcards.system, int(snakemake.wildcards.shots), model, snakemake.input.exact,
              snakemake.output.trajectory, snakemake.output.summary, protocol=m["protocol"], seed_index=seed)

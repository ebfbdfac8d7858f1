from qnnff.pipeline import setup_logging
from qnnff.stages import SeedSet, summary_figures

setup_logging(snakemake.log[0])
curves = {s: [SeedSet(m["kind"], m["protocol"], m["selection"], tuple(m["files"])) for m in sets]
          for s, sets in snakemake.params.curves.items()}
summary_figures(curves, dict(snakemake.params.effdims), dict(snakemake.output.items()))

from pathlib import Path

from qnnff.pipeline import setup_logging
from qnnff.stages import summary_figures


def by_system(paths):
    out = {}
    for p in paths:
        system, _, kind = Path(p).parts[-4:-1]
        out.setdefault(system, {})[kind] = p
    return out


setup_logging(snakemake.log[0])
summary_figures({}, by_system(snakemake.input.curves), by_system(snakemake.input.effdims), dict(snakemake.output.items()))

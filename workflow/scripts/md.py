from qnnff.stages import setup_logging
from qnnff.stages.md import run_md, run_md_dft

setup_logging(snakemake.log[0])
if snakemake.params.models is None:  # rule run_md_dft (the DFT reference); else rule run_md
    run_md_dft(snakemake.params.settings, snakemake.wildcards.system, snakemake.output.trajectory, snakemake.output.summary)
else:
    run_md(snakemake.params.settings, snakemake.wildcards.system, snakemake.params.models, snakemake.output.trajectory, snakemake.output.summary)

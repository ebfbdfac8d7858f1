from qnnff.stages import setup_logging
from qnnff.stages.md import MDJob, run_md, run_md_dft

setup_logging(snakemake.log[0])
job = MDJob.of(snakemake.params.settings, system=snakemake.wildcards.system)
if snakemake.params.models is None:  # rule run_md_dft (the DFT reference); else rule run_md
    run_md_dft(job, snakemake.output.trajectory, snakemake.output.summary)
else:
    run_md(job, snakemake.params.models, snakemake.output.trajectory, snakemake.output.summary)

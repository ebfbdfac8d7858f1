"""Deterministic toy computations for the SLURM self-test (pure Python, no third-party imports).

Each rule writes exact numbers (float.hex), so a local run and a SLURM run must give
byte-identical outputs. The log of every rule records where it ran (SLURM job id or "none").
"""

import math
import os
import random

smk = snakemake  # noqa: F821 (injected by Snakemake's script directive)
cfg = smk.config
rule = smk.rule


def log_where():
    job = os.environ.get("SLURM_JOB_ID", "none")
    with open(smk.log[0], "w") as fh:
        fh.write(f"rule={rule} wildcards={dict(smk.wildcards)} SLURM_JOB_ID={job} "
                 f"threads={smk.threads} mem_mb={smk.resources.get('mem_mb')} "
                 f"runtime={smk.resources.get('runtime')}\n")
    return job


job = log_where()

if rule == "sample_points":
    rng = random.Random(cfg["seed"])
    n = cfg["n_chunks"] * cfg["points_per_chunk"]
    with open(smk.output[0], "w") as fh:
        fh.write("index,x\n")
        for i in range(n):
            fh.write(f"{i},{rng.uniform(0.5, 3.0).hex()}\n")

elif rule == "dft_chunk":
    k = int(smk.wildcards.chunk)
    p = cfg["points_per_chunk"]
    with open(smk.input[0]) as fh:
        rows = [line.strip().split(",") for line in fh.readlines()[1:]]
    mine = rows[k * p:(k + 1) * p]
    with open(smk.output[0], "w") as fh:
        for idx, xhex in mine:
            x = float.fromhex(xhex)
            # a Morse-like "energy" and its analytic "force"
            e = (1.0 - math.exp(-1.3 * (x - 1.6))) ** 2
            f = -2.0 * 1.3 * (1.0 - math.exp(-1.3 * (x - 1.6))) * math.exp(-1.3 * (x - 1.6))
            fh.write(f"{idx} {x.hex()} {e.hex()} {f.hex()}\n")

elif rule == "assemble_dataset":
    lines = []
    for path in smk.input:
        with open(path) as fh:
            lines.extend(fh.readlines())
    lines.sort(key=lambda s: int(s.split()[0]))
    with open(smk.output[0], "w") as fh:
        fh.writelines(lines)

elif rule == "report":
    if job != "none":
        raise SystemExit(f"localrule report ran inside SLURM job {job}")
    with open(smk.input[0]) as fh:
        energies = [float.fromhex(line.split()[2]) for line in fh]
    with open(smk.output[0], "w") as fh:
        fh.write(f"points {len(energies)}\n")
        fh.write(f"sum_energy {math.fsum(energies).hex()}\n")
        fh.write(f"min_energy {min(energies).hex()}\n")

else:
    raise SystemExit(f"unknown rule {rule}")

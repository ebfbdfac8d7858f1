"""qnnff: quantum-neural-network force fields (Kiss et al., MLST 3, 035004, 2022), reproducibly.

All real logic of the pipeline lives in this package; the Snakemake scripts are thin adapters.
"""

__version__ = "0.1.0"

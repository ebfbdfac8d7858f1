"""Unit conversions. Internally PySCF works in Hartree and Bohr; everything a user sees is eV and Angstrom."""

from ase import units as _u

HARTREE_TO_EV: float = _u.Hartree  # eV per Hartree
BOHR_TO_ANGSTROM: float = _u.Bohr  # Angstrom per Bohr
ANGSTROM_TO_BOHR: float = 1.0 / _u.Bohr
#: Ha/Bohr -> eV/Angstrom
HA_PER_BOHR_TO_EV_PER_ANG: float = _u.Hartree / _u.Bohr
#: eV -> meV (errors in tables are meV and meV/Angstrom)
MEV_PER_EV: float = 1000.0
#: ps -> fs (MD times)
FS_PER_PS: float = 1000.0

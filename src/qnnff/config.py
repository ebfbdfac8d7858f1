"""Configuration: schema validation, semantic checks with clear errors, and parsed system specs.

The schema (``config/schema.yaml``, shipped inside the package as ``qnnff/schema.yaml``) catches unknown keys
and wrong types; :func:`check_config` then catches what a schema cannot: inverted ranges, NaN, unknown
elements, dangling Z-matrix references, coordinates that point at missing atoms, etc. Every error names the
offending key.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .dft import LevelOfTheory
from .features import CoordinateFamily
from .geometry import ZRow

DFT_DEFAULTS: dict[str, Any] = {
    "method": "dft",
    "xc": "b3lyp",
    "basis": "def2-svp",
    "grid_level": 2,
    "conv_tol": 1e-10,
    "max_cycle": 100,
    "continuity_tol": 0.02,
    "chunk_size": 50,
    "max_failed_fraction": 0.02,
}
DOWNSTREAM_KEYS = ("models", "md", "slice")  # system keys that do not affect the reference data
ANGLE_LIMITS = {"angle": (0.0, 180.0), "dihedral": (-360.0, 720.0)}


class ConfigError(ValueError):
    """A configuration problem; the message names the offending key."""


def schema() -> dict:
    return yaml.safe_load(resources.files("qnnff").joinpath("schema.yaml").read_text())


def load_config(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    with path.open() as fh:
        cfg = yaml.safe_load(fh)
    check_config(cfg, source=str(path))
    return cfg


def _validate_schema(cfg: Any, source: str) -> None:
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(cfg), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for e in errors[:10]:
            key = ".".join(str(p) for p in e.absolute_path) or "<top level>"
            lines.append(f"  {key}: {e.message}")
        raise ConfigError(f"{source}: invalid configuration:\n" + "\n".join(lines))


def check_config(cfg: Any, *, source: str = "config") -> None:
    """Schema + semantic validation. Raises :class:`ConfigError` naming the key."""
    _validate_schema(cfg, source)
    for name in cfg["systems"]:
        system_spec(cfg, name)
    if any((sc.get("models", {}).get("qnn") or {}).get("hardware") for sc in cfg["systems"].values()):
        from .qnn.runtime import check_hardware_config

        try:  # hardware backend names and credentials (no network): a real backend without an account fails here
            check_hardware_config(cfg)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None


def dft_settings(cfg: dict, system: str) -> dict[str, Any]:
    return {**DFT_DEFAULTS, **cfg.get("dft", {}), **cfg["systems"][system].get("dft", {})}


def config_hash(cfg: dict) -> str:
    """sha256 of the canonical JSON of the config (the provenance key of every artifact)."""
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class SystemSpec:
    name: str
    symbols: tuple[str, ...]
    charge: int
    spin: int  # 2S
    zmatrix: tuple[ZRow, ...]
    variables: dict[str, tuple[float, float]]
    families: tuple[CoordinateFamily, ...]
    feature_map: str
    level: LevelOfTheory
    dft: dict[str, Any]
    sampling: dict[str, dict[str, Any]]

    @property
    def variable_names(self) -> list[str]:
        return list(self.variables)

    def n_points(self, split: str) -> int:
        return int(self.sampling[split]["n"])

    def n_chunks(self, split: str) -> int:
        return math.ceil(self.n_points(split) / int(self.dft["chunk_size"]))

    def geometry(self, values: dict[str, float]) -> np.ndarray:
        from .geometry import zmatrix_to_cartesian

        return zmatrix_to_cartesian(self.zmatrix, values)

    def subconfig(self, cfg: dict) -> dict:
        """The part of the config that determines this system's data and features (their provenance hash):
        not the models, MD or figure settings, so changing those never reruns the DFT."""
        system = {k: v for k, v in cfg["systems"][self.name].items() if k not in DOWNSTREAM_KEYS}
        return {"seed": cfg["seed"], "system": system, "dft": self.dft, "features": cfg.get("features", {})}


def system_spec(cfg: dict, name: str) -> SystemSpec:
    from ase.data import chemical_symbols

    if name not in cfg["systems"]:
        raise ConfigError(f"systems: no system named {name!r} (have {sorted(cfg['systems'])})")
    sc = cfg["systems"][name]
    key = f"systems.{name}"
    rows = []
    for i, row in enumerate(sc["zmatrix"]):
        try:
            zr = ZRow.parse(row, i)
        except ValueError as exc:
            raise ConfigError(f"{key}.zmatrix: {exc}") from None
        if zr.element not in chemical_symbols[1:]:
            raise ConfigError(f"{key}.zmatrix[{i}]: unknown element {zr.element!r}")
        rows.append(zr)
    variables: dict[str, tuple[float, float]] = {}
    for vname, rng in sc["variables"].items():
        lo, hi = (float(v) for v in rng)
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ConfigError(f"{key}.variables.{vname}: range {rng} contains NaN or infinity")
        if not hi > lo:
            raise ConfigError(f"{key}.variables.{vname}: inverted or empty range [{lo}, {hi}] (low must be < high)")
        variables[vname] = (lo, hi)
    used = {v for r in rows for v in r.variables()}
    for v in sorted(used - set(variables)):
        raise ConfigError(f"{key}.zmatrix uses variable {v!r}, which is not defined under {key}.variables")
    for v in sorted(set(variables) - used):
        raise ConfigError(f"{key}.variables.{v} is not used by {key}.zmatrix")
    for i, r in enumerate(rows):
        for kind, pair in (("bond", r.bond), ("angle", r.angle), ("dihedral", r.dihedral)):
            if pair is None:
                continue
            vals = variables[pair[1]] if isinstance(pair[1], str) else (pair[1], pair[1])
            if kind == "bond" and min(vals) <= 0:
                raise ConfigError(f"{key}.zmatrix[{i}]: bond length must be positive, got {pair[1]!r} -> {vals}")
            if kind == "angle" and not (0 < min(vals) and max(vals) < 180):
                raise ConfigError(f"{key}.zmatrix[{i}]: angle must lie strictly between 0 and 180 degrees, got {pair[1]!r} -> {vals}")
    families = []
    for j, fam in enumerate(sc["coordinates"]):
        try:
            families.append(CoordinateFamily.from_config(fam, len(rows), f"{key}.coordinates[{j}]"))
        except (ValueError, TypeError) as exc:
            raise ConfigError(str(exc)) from None
    names = [f.name for f in families]
    if len(set(names)) != len(names):
        raise ConfigError(f"{key}.coordinates: duplicate names in {names}")
    dft = dft_settings(cfg, name)
    try:
        level = LevelOfTheory(**{k: dft[k] for k in ("method", "xc", "basis", "grid_level", "conv_tol", "max_cycle", "continuity_tol")})
    except ValueError as exc:
        raise ConfigError(f"{key}.dft: {exc}") from None
    sampling = {split: {"design": "lhs", **sc["sampling"][split]} for split in ("train", "test")}
    for split, s in sampling.items():
        if s["design"] == "grid":
            k = len(variables)
            side = round(s["n"] ** (1.0 / k))
            if side**k != s["n"]:
                raise ConfigError(f"{key}.sampling.{split}.n: a grid over {k} variables needs a perfect {k}-th power, got {s['n']}")
    spin = int(sc["multiplicity"]) - 1
    from ase.data import atomic_numbers

    n_el = sum(atomic_numbers[r.element] for r in rows) - int(sc["charge"])
    if n_el < 0 or (n_el - spin) % 2:
        raise ConfigError(f"{key}: charge {sc['charge']} and multiplicity {sc['multiplicity']} are inconsistent with {n_el} electrons")
    return SystemSpec(
        name=name,
        symbols=tuple(r.element for r in rows),
        charge=int(sc["charge"]),
        spin=spin,
        zmatrix=tuple(rows),
        variables=variables,
        families=tuple(families),
        feature_map=sc["feature_map"],
        level=level,
        dft=dft,
        sampling=sampling,
    )


def deepcopy(cfg: dict) -> dict:
    return copy.deepcopy(cfg)

"""Configuration: schema validation, semantic checks with clear errors, and parsed system specs.

The schema (``config/schema.yaml``, shipped inside the package as ``qnnff/schema.yaml``) catches unknown keys
and wrong types; the checks here then catch what a schema cannot: inverted ranges, NaN, unknown elements, dangling
Z-matrix references, coordinates that point at missing atoms, etc. Every error names the offending key.

This is the bottom of the configuration layer: it imports nothing above it. :func:`qnnff.checks.check_config` (the
top) runs these checks and those of the models, protocols, studies and hardware blocks.
"""

from __future__ import annotations

import ast
import copy
import difflib
import functools
import hashlib
import importlib.metadata as md
import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .dft import LevelOfTheory
from .geometry import CoordinateFamily, ZRow

SPLITS = ("train", "test")  # the reference data sets, in this order
DOWNSTREAM_KEYS = ("models", "md", "slice")  # system keys that do not affect the reference data


class ConfigError(ValueError):
    """A configuration problem; the message names the offending key."""


@functools.lru_cache(maxsize=1)
def _schema_text() -> str:
    return resources.files("qnnff").joinpath("schema.yaml").read_text()


def schema() -> dict:
    return yaml.load(_schema_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


@functools.cache
def _schema_defaults(block: str) -> tuple:
    root = node = schema()
    parts = [p for p in block.split(".") if p]
    if block.startswith("#"):
        node = root["$defs"][parts.pop(0)[1:]]
    for part in [*parts, None]:
        while "$ref" in node:
            node = root["$defs"][node["$ref"].rsplit("/", 1)[-1]]
        if part is not None:
            node = node["additionalProperties"] if part == "*" else node["properties"][part]
    return tuple((k, v["default"]) for k, v in node.get("properties", {}).items() if "default" in v)


def schema_defaults(block: str) -> dict[str, Any]:
    """The defaults the schema declares for the keys of one block: ``"#dft"`` (a ``$defs`` entry), ``"#system.md"``
    (a property below it), ``"effective_dimension"`` (from the root), ``"studies.*.evaluate"`` (``*``: the
    ``additionalProperties`` of a map). The schema is the only home of default values; code merges these under the
    user's keys (``{**schema_defaults(block), **section}``) and never spells a default itself. A fresh copy per call."""
    return copy.deepcopy(dict(_schema_defaults(block)))


@functools.lru_cache(maxsize=1)
def _validator():
    import jsonschema

    return jsonschema.Draft202012Validator(schema())


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key repeated in one mapping is an error (PyYAML keeps the last value and
    drops the others without a word: a second ``seed:`` or a pasted block would silently replace the first)."""

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=deep)
                try:
                    first = seen.setdefault(key, key_node.start_mark.line)
                except TypeError:  # an unhashable key: PyYAML's own error follows
                    continue
                if first != key_node.start_mark.line:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark,
                        f"found duplicate key {key!r} (first on line {first + 1})", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: str | Path) -> dict:
    """A YAML config file as a dict; a syntax error names the file, line and column, an empty file names the file,
    and a key repeated in one mapping is an error naming both lines (:class:`_UniqueKeyLoader`)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    text = path.read_text()
    try:
        cfg = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = " ".join(str(x) for x in (getattr(exc, "context", None), getattr(exc, "problem", None)) if x) or str(exc)
        raise ConfigError(f"{path}{where}: YAML syntax error: {what}") from None
    if cfg is None:
        raise ConfigError(f"{path} is empty (no configuration in it)")
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys (seed, dft, features, systems, ...), "
                          f"got a {type(cfg).__name__}")
    return cfg


def replace_with_cli_configfiles(config: dict, configfiles: Any, overrides: Any) -> list[str]:
    """``--configfile`` *replaces* ``config/config.yaml`` (Snakemake merges it on top; see config/README.md).

    ``config`` (Snakemake's global config, changed in place) becomes the merge of the command-line config files, in
    order, plus any ``--config key=value`` overrides. Keys a user file leaves out are not filled from the paper config:
    the schema then reports the missing required keys. Without ``--configfile``, ``config`` is left as it is
    (``config/config.yaml`` + ``--config`` overrides). Returns the files used (for the error messages' source).
    """
    files = [str(f) for f in (configfiles or [])]
    if not files:
        return []
    new: dict = {}
    for f in files:
        _deep_update(new, load_yaml(f))
    _deep_update(new, copy.deepcopy(dict(overrides or {})))
    config.clear()
    config.update(new)
    return files


def _deep_update(base: dict, other: dict) -> None:
    for k, v in other.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _deep_update(base[k], v)
        else:
            base[k] = copy.deepcopy(v)


def _validate_schema(cfg: Any, source: str, validator: Any = None) -> None:
    """Schema errors (the first 10) as one ConfigError naming each key; ``validator`` defaults to the whole config's."""
    errors = sorted((validator or _validator()).iter_errors(cfg), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for e in errors[:10]:
            key = ".".join(str(p) for p in e.absolute_path) or "<top level>"
            lines.append(f"  {key}: {e.message}")
        raise ConfigError(f"{source}: invalid configuration:\n" + "\n".join(lines))


def check_finite(cfg: Any, source: str = "config") -> None:
    """Every number in ``cfg`` is finite: a NaN or an infinity anywhere (``lr: .nan``, ``max_failed_fraction: .nan``,
    which would switch the DFT failure limit off since ``x > nan`` is always false) is a ConfigError naming its key."""

    def walk(node: Any, path: list[str]) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, [*path, str(k)])
        elif isinstance(node, (list, tuple)):
            for i, v in enumerate(node):
                walk(v, [*path, f"[{i}]"])
        elif isinstance(node, float) and not math.isfinite(node):
            key = ".".join(path).replace(".[", "[") or "<top level>"
            raise ConfigError(f"{source}: {key}: {node!r} is not a finite number (NaN and infinity are never valid here)")

    walk(cfg, [])


def fake_backend_names() -> set[str]:
    """Class names of qiskit_ibm_runtime.fake_provider's fake backends, read from its source (importing the package
    costs seconds at every workflow start-up); falls back to importing it."""
    try:
        init = md.distribution("qiskit-ibm-runtime").locate_file("qiskit_ibm_runtime/fake_provider/backends/__init__.py")
        tree = ast.parse(Path(str(init)).read_text())
        names = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
        if names:
            return names
    except (md.PackageNotFoundError, OSError, SyntaxError):
        pass
    from qiskit_ibm_runtime import fake_provider

    return {n for n in dir(fake_provider) if n.startswith("Fake") and isinstance(getattr(fake_provider, n), type)}


def _close(name: str, options: Any) -> str:
    near = difflib.get_close_matches(str(name), sorted(options), n=3)
    return f" (did you mean {', '.join(map(repr, near))}?)" if near else ""


def check_downstream(cfg: dict, name: str, spec: SystemSpec) -> None:
    """Start-up checks of the keys that are only used after the DFT and training (MD start, slice, Aer noise), so that a
    typo fails in seconds, not after an hour: every key names a Z-matrix variable or a known backend."""
    sc = cfg["systems"][name]
    key = f"systems.{name}"
    variables = spec.variable_names
    diatomic = len(spec.symbols) == 2
    md = sc.get("md", {}) or {}
    if diatomic and "start" in md:
        raise ConfigError(f"{key}.md.start: {name} is a diatomic; give its start bond length as md.r_start (Angstrom)")
    if not diatomic and "r_start" in md:
        raise ConfigError(f"{key}.md.r_start applies to diatomics only; give {name}'s start geometry as md.start "
                          f"{{variable: value}} over {variables}")
    for v, val in (md.get("start") or {}).items():
        if v not in spec.variables:
            raise ConfigError(f"{key}.md.start.{v}: not a Z-matrix variable of {name} (have {variables}){_close(v, variables)}")
        if not math.isfinite(float(val)):
            raise ConfigError(f"{key}.md.start.{v}: {val} is not a finite number")
    sl = sc.get("slice")
    if sl is not None:
        if diatomic:
            raise ConfigError(f"{key}.slice: {name} is a diatomic; its curve is the bond itself (remove the slice block)")
        var = sl.get("variable")
        if var is not None and var not in spec.variables:
            raise ConfigError(f"{key}.slice.variable: {var!r} is not a sampled variable of {name} (have {variables})"
                              f"{_close(var, variables)}")
        for v in sl.get("values") or {}:
            if v not in spec.variables:
                raise ConfigError(f"{key}.slice.values.{v}: not a Z-matrix variable of {name} (have {variables})"
                                  f"{_close(v, variables)}")
            if v == (var or variables[-1]):
                raise ConfigError(f"{key}.slice.values.{v}: {v!r} is the scanned variable; it cannot also be held fixed")
    noise = ((sc.get("models") or {}).get("qnn") or {}).get("aer", {}).get("noise", "none")
    if noise not in ("none", "depolarizing"):
        fakes = fake_backend_names()
        if noise not in fakes:
            raise ConfigError(f"{key}.models.qnn.aer.noise: {noise!r} is neither 'none', 'depolarizing' nor a fake backend "
                              f"of qiskit_ibm_runtime.fake_provider{_close(noise, fakes)}")


def check_basis(cfg: dict, name: str, spec: SystemSpec) -> None:
    """Every element of the system has the configured basis set in PySCF (``pyscf.gto.basis.load``, milliseconds per
    element; importing PySCF costs about 0.4 s, so the workflow runs this in its main process only), so that a missing
    basis fails at start-up rather than in the DFT jobs."""
    import warnings

    from pyscf.gto import basis as pyscf_basis

    key = f"systems.{name}.dft.basis" if "basis" in (cfg["systems"][name].get("dft") or {}) else "dft.basis"
    for element in dict.fromkeys(spec.symbols):
        try:
            with warnings.catch_warnings():  # "may be available in basis-set-exchange": the error below says what is missing
                warnings.simplefilter("ignore")
                pyscf_basis.load(spec.level.basis, element)
        except Exception as exc:  # noqa: BLE001 - PySCF raises BasisNotFoundError, KeyError or others; each is named below
            raise ConfigError(f"systems.{name}: PySCF has no basis {spec.level.basis!r} for element {element!r} ({key}; "
                              f"PySCF: {exc}); choose a basis set that covers every element of {name}") from None


MODEL_EVALUATION_KEYS = ("aer", "hardware")  # model keys that only affect evaluation, never the trained weights


def dft_settings(cfg: dict, system: str) -> dict[str, Any]:
    return {**schema_defaults("#dft"), **cfg.get("dft", {}), **cfg["systems"][system].get("dft", {})}


def config_hash(cfg: dict) -> str:
    """sha256 of the canonical JSON of the config (the provenance key of every artifact)."""
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()


def data_hash(cfg: dict, system: str) -> str:
    """The provenance and rerun hash of one system's reference data and features (:meth:`SystemSpec.subconfig`): the
    one formula, used by the rules' ``params`` and written into the artifacts (models hash it in, see
    :func:`qnnff.protocols.model_hash`)."""
    return config_hash(system_spec(cfg, system).subconfig(cfg))


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
    def n_features(self) -> int:
        """Features per geometry (:attr:`qnnff.features.Featurizer.n_features`): one per internal coordinate, three
        with the ``pi_arcsin_arccos`` map."""
        return sum(len(f) for f in self.families) * (3 if self.feature_map == "pi_arcsin_arccos" else 1)

    @property
    def variable_names(self) -> list[str]:
        return list(self.variables)

    def n_points(self, split: str) -> int:
        return int(self.sampling[split]["n"])

    def n_chunks(self, split: str) -> int:
        return math.ceil(self.n_points(split) / int(self.dft["chunk_size"]))

    def chunk_ids(self) -> list[str]:
        """The ids of the DFT chunks (one ``dft_chunk`` job each): ``train-000``, ..., ``test-000``, ..."""
        return [f"{split}-{k:03d}" for split in SPLITS for k in range(self.n_chunks(split))]

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
    for j, fam in enumerate(families):
        if fam.couple_with is not None:
            partner = next((f for f in families if f.name == fam.couple_with and f is not fam), None)
            if partner is None:
                raise ConfigError(f"{key}.coordinates[{j}].couple_with: no other family named {fam.couple_with!r} (have {names})")
            if len(partner.atoms) != len(fam.atoms):
                raise ConfigError(f"{key}.coordinates[{j}].couple_with: {fam.couple_with!r} has {len(partner.atoms)} tuples, "
                                  f"{fam.name!r} has {len(fam.atoms)}; the pairs are tuple i with tuple i")
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
    if n_el < 0:
        raise ConfigError(f"{key}.charge: {sc['charge']} leaves {n_el} electrons (the nuclei carry {n_el + int(sc['charge'])})")
    if (n_el - spin) % 2 or spin > n_el:
        why = (f"{spin} unpaired electrons need the electron count's parity" if (n_el - spin) % 2
               else f"{spin} unpaired electrons are more than there are")
        raise ConfigError(f"{key}.multiplicity: {sc['multiplicity']} is impossible with {n_el} electrons (charge {sc['charge']}): "
                          f"{why}; use an {'odd' if n_el % 2 == 0 else 'even'} multiplicity <= {n_el + 1}, or change the charge")
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

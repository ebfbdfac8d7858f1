"""Studies: config-declared grids over the pipeline's own settings, one Snakemake job per (grid point, seed).

A study (``studies.{name}`` in the config; config/README.md) names a base ``system``, model ``kind`` and training
``protocol`` of the pipeline and a ``grid``: for every key a list of values, the grid being their Cartesian
product. Grid keys:

* training keys of a protocol: ``optimizer``, ``iterations``, ``lr``, ``lr_final``, ``chi``, ``rhobeg``, ``history_size``, ``lbfgs_evaluations``,
  ``batch_size``, and the QNN initialisation ``init.feature_map_weights``, ``init.rotations``;
* ``model.<key>``: a key of the model kind's block (``model.depth``, ``model.entanglement``,
  ``model.trainable_feature_map``, ``model.hidden``, ...);
* ``system.feature_map`` and ``system.coordinates`` (a mapping label -> coordinate list: e.g. symmetrised or not):
  the features are rebuilt in the job from the pipeline's reference data;
* ``n_train``: the training-set size, a seeded subset of the pipeline's training set (a new subset per seed).

``evaluate`` adds evaluation axes that need no retraining: every trained QNN of the study is evaluated on
qiskit-aer at each of ``shots`` x ``noise``.

The reference data are never recomputed: every point reads ``results/{system}/data/{train,test}.extxyz``. The
featurizer and the energy scaler are always those of the full training set (the domain of the reference data), so
a training-set size changes the training targets only. A point whose settings equal the base protocol's (same
model hash, full data) reuses the pipeline's trained model of the same seed instead of training it again.

Each point is named by a readable slug of its settings (``chi-1__optimizer-adam``), so adding a value to the grid
adds jobs and leaves the finished points alone.
"""

from __future__ import annotations

import copy
import difflib
import functools
import hashlib
import itertools
import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from .config import ConfigError, _validate_schema, config_hash, fake_backend_names, schema, schema_defaults, system_spec
from .kinds import KINDS
from .protocols import (
    check_models,
    closed_form,
    model_config,
    model_hash,
    model_kinds,
    n_seeds,
    protocol_config,
    protocols,
    qnn_init,
)

log = logging.getLogger("qnnff")

TRAINING_KEYS = ("optimizer", "iterations", "lr", "lr_final", "chi", "rhobeg", "batch_size", "history_size", "lbfgs_evaluations")
INIT_KEYS = ("init.feature_map_weights", "init.rotations")
SYSTEM_KEYS = ("system.feature_map", "system.coordinates")
MODEL_EXCLUDED = ("protocols", "aer", "hardware", "init")  # evaluation settings and the protocols themselves are not model axes
MIN_TRAIN = 2
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_+-]*$")


@dataclass(frozen=True)
class StudyPoint:
    """One grid point: its slug, the settings it changes (grid key -> value) and the training-set size (None: all)."""

    name: str
    settings: dict[str, Any] = field(hash=False)
    n_train: int | None = None
    labels: dict[str, str] = field(default_factory=dict, hash=False)  # grid key -> the value's label in tables



@dataclass(frozen=True)
class Study:
    name: str
    system: str
    kind: str
    protocol: str
    seeds: int
    points: tuple[StudyPoint, ...]
    evaluate: dict[str, Any] = field(hash=False)
    grid_keys: tuple[str, ...] = ()

    def point(self, name: str) -> StudyPoint:
        for p in self.points:
            if p.name == name:
                return p
        raise ConfigError(f"studies.{self.name}: no grid point named {name!r} (have {[p.name for p in self.points]})")

    def metrics_file(self, point: str, seed: int) -> str:
        return f"results/studies/{self.name}/{point}/seed{seed}/metrics.json"

    def metrics_files(self) -> list[str]:
        return [self.metrics_file(p.name, k) for p in self.points for k in range(self.seeds)]


# ------------------------------------------------------------------ parsing and checking
def _label(value: Any) -> str:
    """A path-safe label of one grid value: numbers and words as they are, lists of numbers joined by x, else a hash."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return f"{value:g}"
    if isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9.+-]+", value):
        return value
    if isinstance(value, list) and value and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return "x".join(f"{v:g}" for v in value)
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:8]


def _slug(settings: dict[str, Any], labels: dict[str, str]) -> str:
    if not settings:
        return "base"
    parts = [f"{key.split('.')[-1]}-{labels.get(key, _label(v))}" for key, v in settings.items()]
    return "__".join(parts)


def _grid_values(where: str, key: str, values: Any) -> tuple[list[Any], dict[int, str]]:
    """A grid axis as a list of values; ``system.coordinates`` is a mapping label -> coordinate list."""
    if key == "system.coordinates":
        if not isinstance(values, dict) or not values:
            raise ConfigError(f"{where}: give a mapping of labels to coordinate lists (e.g. symmetrised: [...], plain: [...])")
        for label in values:
            if not re.fullmatch(r"[A-Za-z0-9.+-]+", str(label)):
                raise ConfigError(f"{where}: label {label!r} must consist of letters, digits, '.', '+' or '-'")
        return list(values.values()), {i: str(label) for i, label in enumerate(values)}
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{where}: give a non-empty list of values, got {values!r}")
    return values, {}


def known_grid_keys(kind: str) -> list[str]:
    """The grid keys a study of a ``kind`` model accepts (the model keys are read from the schema)."""
    model_keys = [f"model.{k}" for k in _model_schema_keys(kind) if k not in MODEL_EXCLUDED]
    init = list(INIT_KEYS) if kind == "qnn" else []
    return [*TRAINING_KEYS, *init, *model_keys, *SYSTEM_KEYS, "n_train"]


@functools.cache
def _model_schema_keys(kind: str) -> list[str]:
    return list(schema()["$defs"][kind].get("properties", {}))


def apply_point(cfg: dict, study: Study | dict, settings: dict[str, Any]) -> dict:
    """A copy of ``cfg`` in which the study's base protocol (and model and system) carry the point's settings."""
    system, kind, protocol = (study.system, study.kind, study.protocol) if isinstance(study, Study) else \
        (study["system"], study["kind"], study.get("protocol", "best"))
    out = {k: v for k, v in cfg.items() if k != "studies"}  # shared, read-only; only the study's system is copied
    out["systems"] = {**cfg["systems"], system: copy.deepcopy(cfg["systems"][system])}
    sc = out["systems"][system]
    mc = sc["models"][kind]
    pc = {} if closed_form(kind) else mc["protocols"][protocol]  # a closed-form kind has no protocols block
    for key, value in settings.items():
        value = copy.deepcopy(value)
        if key == "n_train":
            continue
        if key in TRAINING_KEYS:
            if closed_form(kind):
                raise ConfigError(f"studies: {key} is a training key; {kind} is fitted in closed form, without an optimiser")
            pc[key] = value
        elif key.startswith("init."):
            pc.setdefault("init", {})[key.split(".", 1)[1]] = value
        elif key.startswith("model."):
            mc[key.split(".", 1)[1]] = value
        elif key.startswith("system."):
            sc[key.split(".", 1)[1]] = value
    return out


def parse_study(cfg: dict, name: str) -> Study:
    """The study ``studies.{name}``, checked: every grid key known, every point a valid configuration of the pipeline
    (the schema of the changed system block and the semantic checks run on each point), sizes and shots possible."""

    sd = cfg["studies"][name]
    key = f"studies.{name}"
    if not NAME_RE.match(name):
        raise ConfigError(f"{key}: a study name starts with a letter and has letters, digits, '_', '+', '-' only")
    system, kind = sd["system"], sd["kind"]
    if system not in cfg["systems"]:
        raise ConfigError(f"{key}.system: no system named {system!r} (systems: {sorted(cfg['systems'])})")
    if kind not in model_kinds(cfg, system):
        raise ConfigError(f"{key}.kind: systems.{system}.models has no {kind!r} (has {model_kinds(cfg, system)})")
    protocol = sd.get("protocol", "best")
    if protocol not in protocols(cfg, system, kind):
        raise ConfigError(f"{key}.protocol: {protocol!r} is not a protocol of systems.{system}.models.{kind} "
                          f"(has {protocols(cfg, system, kind)})")
    grids = sd.get("grid") or {}
    grids = grids if isinstance(grids, list) else [grids]  # a list of grids is their union (e.g. one axis at a time)
    known = known_grid_keys(kind)
    n_full = system_spec(cfg, system).n_points("train")
    points, grid_keys = [], []
    for j, grid in enumerate(grids):
        gkey = f"{key}.grid" + (f"[{j}]" if len(grids) > 1 else "")
        if not isinstance(grid, dict):
            raise ConfigError(f"{gkey}: a grid is a mapping of keys to lists of values, got {grid!r}")
        axes, labels = [], {}
        for gk, values in grid.items():
            if gk not in known:
                near = difflib.get_close_matches(gk, known, n=3)
                hint = f" (did you mean {', '.join(map(repr, near))}?)" if near else ""
                raise ConfigError(f"{gkey}.{gk}: unknown grid key{hint}; known keys: {', '.join(known)}")
            vals, lab = _grid_values(f"{gkey}.{gk}", gk, values)
            axes.append((gk, vals))
            labels[gk] = lab
            if gk not in grid_keys:
                grid_keys.append(gk)
        for combo in itertools.product(*[range(len(v)) for _, v in axes]):
            settings = {gk: vals[i] for (gk, vals), i in zip(axes, combo)}
            slug_labels = {gk: labels[gk][i] for (gk, _), i in zip(axes, combo) if i in labels[gk]}
            n_train = settings.get("n_train")
            if n_train is not None:
                if isinstance(n_train, bool) or not isinstance(n_train, int) or not MIN_TRAIN <= n_train <= n_full:
                    raise ConfigError(f"{gkey}.n_train: {n_train!r} is impossible: a training-set size is an integer in "
                                      f"[{MIN_TRAIN}, {n_full}] (systems.{system}.sampling.train.n)")
            derived = apply_point(cfg, sd | {"protocol": protocol}, settings)
            try:
                _validate_system(derived["systems"][system], f"{gkey} point {settings}: systems.{system}")
                system_spec(derived, system)
                check_models(derived, system)
            except ConfigError as exc:
                raise ConfigError(f"{gkey}: the point {settings} is not a valid configuration: {exc}") from None
            ts = {} if closed_form(kind) else derived["systems"][system]["models"][kind]["protocols"][protocol]
            if n_train is not None and ts.get("batch_size") is not None and int(ts["batch_size"]) > n_train:
                raise ConfigError(f"{gkey}.n_train: {n_train} is below the protocol's batch_size {ts['batch_size']}")
            point_labels = {gk: slug_labels.get(gk, _label(v)) for gk, v in settings.items()}
            points.append(StudyPoint(name=_slug(settings, slug_labels), settings=settings, n_train=n_train,
                                     labels=point_labels))
    names = [p.name for p in points]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ConfigError(f"{key}.grid: repeated grid points {dup} (a value is listed twice)")
    ev = {**schema_defaults("studies.*.evaluate"), **(sd.get("evaluate") or {})}
    if ev["shots"] and not KINDS[kind].quantum:
        raise ConfigError(f"{key}.evaluate.shots: only a study of a quantum model (qnn) is evaluated with shots (kind is {kind!r})")
    for s in ev["shots"]:
        if isinstance(s, bool) or not isinstance(s, int) or s < 1:
            raise ConfigError(f"{key}.evaluate.shots: {s!r} is impossible; shots are positive integers")
    if sd.get("evaluate", {}).get("noise") and not ev["shots"]:
        raise ConfigError(f"{key}.evaluate.noise: give evaluate.shots too (noise is evaluated with shots)")
    for nz in ev["noise"]:
        if nz not in ("none", "depolarizing"):
            if nz not in fake_backend_names():
                raise ConfigError(f"{key}.evaluate.noise: {nz!r} is neither 'none', 'depolarizing' nor a fake backend of "
                                  "qiskit_ibm_runtime.fake_provider")
    seeds = int(sd.get("seeds", n_seeds(cfg)))
    return Study(name=name, system=system, kind=kind, protocol=protocol, seeds=seeds, points=tuple(points), evaluate=ev,
                 grid_keys=tuple(grid_keys))


@functools.lru_cache(maxsize=1)
def _system_validator():
    import jsonschema

    s = schema()
    return jsonschema.Draft202012Validator({"$defs": s["$defs"], "$ref": "#/$defs/system"})


def _validate_system(sc: dict, source: str) -> None:
    """Schema check of one (derived) system block; the rest of a point's configuration is the checked base config."""
    _validate_schema(sc, source, _system_validator())


_PARSED: dict[str, dict[str, Study]] = {}
_PARSED_KEEP = 4  # configurations remembered (a caller comparing two configs job by job alternates between them)


def parse_studies(cfg: dict) -> dict[str, Study]:
    """Every configured study, parsed and checked (memoised per configuration, the last few: the workflow asks twice
    per start-up, and comparing the settings of an edited config with the original's asks for both in turn)."""
    h = config_hash(cfg)
    if h in _PARSED:
        _PARSED[h] = _PARSED.pop(h)  # most recently used last
    else:
        while len(_PARSED) >= _PARSED_KEEP:
            _PARSED.pop(next(iter(_PARSED)))
        _PARSED[h] = {name: parse_study(cfg, name) for name in (cfg.get("studies") or {})}
    return _PARSED[h]


def check_studies(cfg: dict) -> None:
    parse_studies(cfg)


# ------------------------------------------------------------------ per-point settings
def point_hash(cfg: dict, study: Study, point: StudyPoint) -> str:
    """The rerun/provenance hash of one point: the derived model hash, the training-set size and the evaluation."""

    derived = apply_point(cfg, study, point.settings)
    return config_hash({"model": model_hash(derived, study.system, study.kind, study.protocol), "n_train": point.n_train,
                        "evaluate": study.evaluate if KINDS[study.kind].quantum else None})


def reuses_pipeline_model(cfg: dict, study: Study, point: StudyPoint) -> bool:
    """True when the point trains exactly the pipeline's base model (full data, same model hash, same seeds)."""

    if point.n_train is not None and point.n_train != system_spec(cfg, study.system).n_points("train"):
        return False
    derived = apply_point(cfg, study, point.settings)
    return model_hash(derived, study.system, study.kind, study.protocol) == model_hash(cfg, study.system, study.kind, study.protocol)


def base_values(cfg: dict, study: Study) -> dict[str, str]:
    """What each grid key is in the study's base protocol, as the tables print it: the configured value, the schema's
    default for a model key, or ``-`` for a training key the base protocol does not set (e.g. ``lr`` of L-BFGS)."""
    system, kind, protocol = study.system, study.kind, study.protocol
    pc, mc, sc = protocol_config(cfg, system, kind, protocol), model_config(cfg, system, kind), cfg["systems"][system]
    out = {}
    for key in study.grid_keys:
        if key == "n_train":
            continue
        if key in TRAINING_KEYS:
            v = pc.get(key)
        elif key.startswith("init."):
            v = qnn_init(cfg, system, protocol).get(key.split(".", 1)[1])
        elif key.startswith("model."):
            name = key.split(".", 1)[1]
            v = mc.get(name, schema()["$defs"][kind].get("properties", {}).get(name, {}).get("default"))
        elif key == "system.coordinates":
            v = "(base)"
        else:
            v = sc.get(key.split(".", 1)[1])
        out[key] = "-" if v is None else (f"{v:g}" if isinstance(v, float) else str(v) if isinstance(v, (int, str, bool)) else _label(v))
    return out

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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .config import ConfigError, _validate_schema, config_hash, fake_backend_names, schema, schema_defaults, system_spec
from .floor import AT_FLOOR_RATIO, FLOOR
from .integrity import stamp_arrays
from .io import atomic_path, write_json_atomic
from .protocols import check_models, model_hash, model_kinds, n_seeds, protocols
from .units import MEV_PER_EV

if TYPE_CHECKING:
    from .jobs import StudyJob, StudyPointJob

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
    pc = mc["protocols"][protocol]
    for key, value in settings.items():
        value = copy.deepcopy(value)
        if key == "n_train":
            continue
        if key in TRAINING_KEYS:
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
            ts = derived["systems"][system]["models"][kind]["protocols"][protocol]
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
    if ev["shots"] and kind != "qnn":
        raise ConfigError(f"{key}.evaluate.shots: only a qnn study is evaluated with shots (kind is {kind!r})")
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


def parse_studies(cfg: dict) -> dict[str, Study]:
    """Every configured study, parsed and checked (memoised per configuration: the workflow asks twice per start-up)."""
    h = config_hash(cfg)
    if h not in _PARSED:
        _PARSED.clear()
        _PARSED[h] = {name: parse_study(cfg, name) for name in (cfg.get("studies") or {})}
    return _PARSED[h]


def check_studies(cfg: dict) -> None:
    parse_studies(cfg)


# ------------------------------------------------------------------ per-point settings
def point_hash(cfg: dict, study: Study, point: StudyPoint) -> str:
    """The rerun/provenance hash of one point: the derived model hash, the training-set size and the evaluation."""

    derived = apply_point(cfg, study, point.settings)
    return config_hash({"model": model_hash(derived, study.system, study.kind, study.protocol), "n_train": point.n_train,
                        "evaluate": study.evaluate if study.kind == "qnn" else None})


def reuses_pipeline_model(cfg: dict, study: Study, point: StudyPoint) -> bool:
    """True when the point trains exactly the pipeline's base model (full data, same model hash, same seeds)."""

    if point.n_train is not None and point.n_train != system_spec(cfg, study.system).n_points("train"):
        return False
    derived = apply_point(cfg, study, point.settings)
    return model_hash(derived, study.system, study.kind, study.protocol) == model_hash(cfg, study.system, study.kind, study.protocol)


# ------------------------------------------------------------------ one job
def _subset(n_total: int, n: int | None, seed: int) -> np.ndarray:
    if n is None:
        return np.arange(n_total)
    return np.sort(np.random.default_rng(seed).choice(n_total, size=n, replace=False))


def run_point(job: StudyPointJob, *, train_xyz: str, test_xyz: str, out_json: str, workdir: str,
              pipeline_model: str | None = None, pipeline_predictions: str | None = None,
              pipeline_summary: str | None = None) -> dict:
    """Train (or reuse) seed ``job.seed_index`` of the grid point ``job.point`` (:class:`qnnff.jobs.StudyPointJob`: the
    point's settings applied and parsed), evaluate it on the test set (and with shots), write its metrics.

    ``workdir`` keeps the trained model, learning curve and a training checkpoint (a killed job resumes from it)."""
    from . import dataset as ds
    from .evaluation import prediction_errors, rmse
    from .stages.features import build_featurizer, feature_arrays
    from .stages.train import train

    study, point, seed_index = job.study, job.point, job.seed_index
    wd = Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    train_frames = ds.read_frames(train_xyz)
    test_frames = ds.read_frames(test_xyz)
    feat, scaler = build_featurizer(job.data, train_frames)  # the full training set's domain and scale
    outside = feat.out_of_domain(_positions(test_frames)).tolist()
    excluded = [a.info.get("point", str(i)) for i, (a, o) in enumerate(zip(test_frames, outside)) if o]
    if excluded:  # as in the pipeline's features stage: arcsin is undefined there; listed, never hidden
        log.warning("%s %s: %d test point(s) outside the training range are excluded: %s", study.name, point.name,
                    len(excluded), ", ".join(excluded))
    test_frames = [a for a, o in zip(test_frames, outside) if not o]
    idx = _subset(len(train_frames), point.n_train, job.subset_seed)
    reused = pipeline_model is not None and job.reuses_pipeline_model
    if reused:
        predictions, summary_path = pipeline_predictions, pipeline_summary
    else:
        scalers = wd / "scalers.json"
        write_json_atomic(scalers, {"featurizer": feat.to_dict(), "energy_scaler": scaler.to_dict()})
        npz = {}
        for split, frames in (("train", [train_frames[i] for i in idx]), ("test", test_frames)):
            npz[split] = wd / f"{split}.npz"
            with atomic_path(npz[split]) as tmp:
                np.savez(tmp, **stamp_arrays(feature_arrays(feat, scaler, frames), len(frames)))
        predictions, summary_path = str(wd / "test_predictions.extxyz"), str(wd / "train_summary.json")
        train(job.train, str(scalers), str(npz["train"]), str(npz["test"]), str(wd / "model.zip"), predictions,
              str(wd / "learning_curve.csv"), summary_path, str(wd / "checkpoint.pt"))
        for split in npz.values():
            split.unlink(missing_ok=True)
    err = prediction_errors(ds.read_frames(predictions))
    summary = json.loads(Path(summary_path).read_text())
    scale = float(scaler.scale)
    out = {
        "study": study.name, "system": study.system, "kind": study.kind, "protocol": study.protocol, "point": point.name,
        "settings": point.settings, "seed": int(seed_index), "n_train": len(idx), "n_test": len(err["dE"]),
        "excluded_test_points": excluded,
        "reused_pipeline_model": bool(reused), "point_hash": job.point_hash,
        "RMSE(E) [scaled]": rmse(err["dE"]) / scale, "RMSE(F) [scaled, 1/A]": rmse(err["dF"]) / scale,
        "RMSE(E) [meV]": MEV_PER_EV * rmse(err["dE"]), "RMSE(F) [meV/A]": MEV_PER_EV * rmse(err["dF"]),
        "parameters": int(summary["n_parameters"]), "iterations": int(summary["iterations"]),
        "train time [s]": float(summary["train_seconds"]), "energy scale [eV]": scale, "shots": [],
    }
    if study.evaluate["shots"] or job.floor is not None:
        from .models.base import load_model

        model = load_model(pipeline_model if reused else str(wd / "model.zip"))
    if job.floor is not None:
        out.update(_point_floor(job, model, [train_frames[i] for i in idx], test_frames, scaler))
    if study.evaluate["shots"]:
        n = min(int(study.evaluate["n_points"]), len(test_frames))
        pos = _positions(test_frames[:n]).numpy()
        e_ref = np.array([a.info["REF_energy"] for a in test_frames[:n]])
        for noise in study.evaluate["noise"]:
            for shots in study.evaluate["shots"]:
                r = model.aer_energy(pos, shots=int(shots), noise=noise, p1=float(study.evaluate["p1"]),
                                     p2=float(study.evaluate["p2"]),
                                     seed=job.shot_seeds[int(shots), noise])
                e, exact = np.asarray(r["energy"]), np.asarray(r["exact"])
                out["shots"].append({
                    "shots": int(shots), "noise": noise, "n_points": n,
                    "RMSE(E) vs DFT [meV]": MEV_PER_EV * rmse(e - e_ref),
                    "RMSE(E) vs exact QNN [meV]": MEV_PER_EV * rmse(e - exact),
                    "RMSE(E) vs DFT [scaled]": rmse(e - e_ref) / scale,
                })
                log.info("%s %s seed %d: %d shots, noise %s: RMSE(E) vs DFT %.2f meV, vs exact %.2f meV", study.name,
                         point.name, seed_index, shots, noise, out["shots"][-1]["RMSE(E) vs DFT [meV]"],
                         out["shots"][-1]["RMSE(E) vs exact QNN [meV]"])
    log.info("%s %s seed %d (n_train %d%s): RMSE(E) %.4g, RMSE(F) %.4g (scaled)", study.name, point.name, seed_index,
             len(idx), ", pipeline model reused" if reused else "", out["RMSE(E) [scaled]"], out["RMSE(F) [scaled, 1/A]"])
    write_json_atomic(out_json, out)
    return out


def _point_floor(job: StudyPointJob, model, train_frames, test_frames, scaler) -> dict:
    """The information floor of the inputs ``model`` sees, on the point's training set (:mod:`qnnff.floor`)."""
    from .floor import model_floor

    y_train, y_test = ((np.array([a.info["REF_energy"] for a in f]) - scaler.center) / scaler.scale for f in (train_frames, test_frames))
    res = model_floor(model, _positions(train_frames), y_train, _positions(test_frames), y_test, seed=job.floor_seed,
                      n_restarts=job.floor.n_restarts, label=f"{job.study.name} {job.point.name}")
    log.info("%s %s seed %d: information floor of the inputs %.4g (scaled), GP fit %.1f s", job.study.name, job.point.name,
             job.seed_index, res["rmse"], res["seconds"])
    return {FLOOR: res["rmse"], "floor_gp": res}


def _positions(frames):
    import torch

    return torch.as_tensor(np.stack([a.get_positions() for a in frames]), dtype=torch.float64)


# ------------------------------------------------------------------ table and figure
METRICS = ("RMSE(E) [scaled]", "RMSE(F) [scaled, 1/A]", "RMSE(E) [meV]", "RMSE(F) [meV/A]")


def study_frames(metrics_jsons: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:  # noqa: F821
    """Per-seed rows (one per point and seed) and shot rows (one per point, seed, noise and shots)."""
    import pandas as pd

    rows, shot_rows = [], []
    for p in metrics_jsons:
        d = json.loads(Path(p).read_text())
        base = {"point": d["point"], **{k: _cell(v) for k, v in d["settings"].items()}, "seed": d["seed"],
                "n_train": d["n_train"]}
        rows.append({**base, **{m: d[m] for m in METRICS}, "parameters": d["parameters"], "train time [s]": d["train time [s]"],
                     "reused pipeline model": d["reused_pipeline_model"], **({FLOOR: d[FLOOR]} if FLOOR in d else {})})
        for s in d["shots"]:
            shot_rows.append({**base, "noise": s["noise"], "shots": s["shots"], "RMSE(E) vs DFT [meV]": s["RMSE(E) vs DFT [meV]"],
                              "RMSE(E) vs exact QNN [meV]": s["RMSE(E) vs exact QNN [meV]"],
                              "RMSE(E) vs DFT [scaled]": s["RMSE(E) vs DFT [scaled]"]})
    return pd.DataFrame(rows), pd.DataFrame(shot_rows)


def _cell(v: Any) -> Any:
    return v if isinstance(v, (int, float, str, bool)) or v is None else _label(v)


def loglog_slope(n: Sequence[float], y: Sequence[float]) -> float:
    """Least-squares slope of log(y) against log(n) (NaN with fewer than two distinct sizes)."""
    n, y = np.asarray(n, float), np.asarray(y, float)
    ok = (n > 0) & (y > 0) & np.isfinite(y)
    if len(np.unique(n[ok])) < 2:
        return float("nan")
    return float(np.polyfit(np.log(n[ok]), np.log(y[ok]), 1)[0])


def summarise_study(rows: pd.DataFrame, shot_rows: pd.DataFrame, axes: Sequence[str]):  # noqa: F821
    """Mean +- sd over seeds per point (and per noise and shots); with an ``n_train`` axis, the fitted log-log slope of
    the mean errors against the training-set size per combination of the other axes."""
    import pandas as pd

    from .evaluation import mean_sd

    other = [a for a in axes if a != "n_train"]
    summ = []
    for point, g in rows.groupby("point", sort=False):
        rec = {"point": point, **{a: g[a].iloc[0] for a in axes}, "n_train": int(g["n_train"].iloc[0]), "seeds": len(g)}
        for m in METRICS + ((FLOOR,) if FLOOR in g else ()):
            rec[m], rec[m + " sd"] = mean_sd(g[m].dropna()) if m == FLOOR else mean_sd(g[m])
        rec["train time [s]"] = float(g["train time [s]"].mean())
        summ.append(rec)
    summary = pd.DataFrame(summ)
    slopes = []
    if "n_train" in axes and len(summary):
        groups = summary.groupby(other, sort=False) if other else [((), summary)]
        for key, g in groups:
            key = key if isinstance(key, tuple) else (key,)
            slopes.append({**dict(zip(other, key)),
                           "slope RMSE(E)": loglog_slope(g["n_train"], g["RMSE(E) [scaled]"]),
                           "slope RMSE(F)": loglog_slope(g["n_train"], g["RMSE(F) [scaled, 1/A]"])})
    shots = []
    if len(shot_rows):
        for (point, noise, s), g in shot_rows.groupby(["point", "noise", "shots"], sort=False):
            m, sd = mean_sd(g["RMSE(E) vs DFT [meV]"])
            mx, sdx = mean_sd(g["RMSE(E) vs exact QNN [meV]"])
            shots.append({"point": point, "noise": noise, "shots": int(s), "seeds": len(g), "RMSE(E) vs DFT [meV]": m,
                          "RMSE(E) vs DFT [meV] sd": sd, "RMSE(E) vs exact QNN [meV]": mx, "RMSE(E) vs exact QNN [meV] sd": sdx})
    return summary, pd.DataFrame(slopes), pd.DataFrame(shots)


def study_table(job: StudyJob, metrics_jsons: Sequence[str], out_csv: str, out_md: str, out_png: str, out_pdf: str) -> None:
    """``table.csv`` (one row per point and seed, and per shots and noise), ``table.md`` (mean +- sd per point, the
    fitted slopes, the shot-noise table) and the study's figure (``job``: :class:`qnnff.jobs.StudyJob`)."""
    import pandas as pd

    from .evaluation import floor_cell, pm

    study = job.study
    rows, shot_rows = study_frames(metrics_jsons)
    axes = list(study.grid_keys)
    labels = {p.name: p.labels for p in study.points}
    for frame in (rows, shot_rows):  # non-scalar values (a coordinate list) appear by their label (`moments`)
        for a in axes:
            if len(frame) and a in frame and a != "n_train":
                frame[a] = [labels.get(pt, {}).get(a, v) if not isinstance(v, (int, float, bool)) else v
                            for pt, v in zip(frame["point"], frame[a])]
    for frame in (rows, shot_rows):  # a point of a union of grids leaves the other grids' keys at the base protocol
        for a in axes:
            if len(frame) and a != "n_train":
                frame[a] = frame[a].astype(object).where(frame[a].notna(), "base") if a in frame else "base"
    summary, slopes, shots = summarise_study(rows, shot_rows, axes)
    per_seed = rows.assign(evaluation="exact")
    if len(shot_rows):
        per_seed = pd.concat([per_seed, shot_rows.assign(evaluation="aer")], ignore_index=True)
    with atomic_path(out_csv) as tmp:
        per_seed.to_csv(tmp, index=False, float_format="%.6g")
    what = job.description
    md = [f"# Study {study.name}: {study.system} {study.kind} from protocol `{study.protocol}`", "",
          *([what, ""] if what else []),
          f"Grid over {', '.join(f'`{a}`' for a in axes) or 'nothing (the base protocol)'}; {study.seeds} seeds per point; "
          f"test set errors, mean ± sd over seeds. Scaled units: divided by the energy scale "
          f"({float(rows['RMSE(E) [meV]'].iloc[0] / MEV_PER_EV / rows['RMSE(E) [scaled]'].iloc[0]):.4g} eV, half the training "
          "energy range); forces then in 1/A. One row per seed in table.csv.", ""]
    with_floor = FLOOR in summary
    cols = ["point", *[a for a in axes if a != "n_train"], "n_train", "seeds", "RMSE(E) [scaled]",
            *([FLOOR] if with_floor else []), "RMSE(F) [scaled, 1/A]", "RMSE(E) [meV]", "RMSE(F) [meV/A]", "train time [s]"]
    md.append("| " + " | ".join(cols) + " |")
    md.append("|" + "---|" * len(cols))
    for _, r in summary.iterrows():
        cells = [str(r["point"]), *[str(r[a]) for a in axes if a != "n_train"], str(int(r["n_train"])), str(int(r["seeds"]))]
        cells += [pm(r[m], r[m + " sd"]) for m in METRICS]
        if with_floor:
            cells.insert(len(cells) - 3, floor_cell(r["RMSE(E) [scaled]"], r[FLOOR]))
        cells.append(f"{r['train time [s]']:.1f}")
        md.append("| " + " | ".join(cells) + " |")
    if with_floor:
        md += ["", f"{FLOOR}: the information floor of the point's inputs (qnnff.floor: test RMSE(E) of a Gaussian process "
               "fitted to the inputs the model sees, energies only, on the point's training set); 'at floor': the model's mean "
               f"RMSE(E) lies within {AT_FLOOR_RATIO:g}x of it."]
    if len(slopes):
        md += ["", "Fitted slope of log(mean test RMSE) against log(training-set size) (0: no gain from data; "
               "-0.5: the 1/sqrt(n) of a well-specified parametric model):", ""]
        oc = [c for c in slopes.columns if not c.startswith("slope")]
        md.append("| " + " | ".join([*oc, "slope RMSE(E)", "slope RMSE(F)"]) + " |")
        md.append("|" + "---|" * (len(oc) + 2))
        for _, r in slopes.iterrows():
            md.append("| " + " | ".join([*(str(r[c]) for c in oc), f"{r['slope RMSE(E)']:.2f}", f"{r['slope RMSE(F)']:.2f}"]) + " |")
    if len(shots):
        md += ["", f"qiskit-aer, energies of the first {study.evaluate['n_points']} test geometries, mean ± sd over seeds "
               "(meV; 'vs exact' is the shot and noise error alone):", "",
               "| point | noise | shots | RMSE(E) vs DFT [meV] | RMSE(E) vs exact QNN [meV] |", "|---|---|---|---|---|"]
        for _, r in shots.iterrows():
            md.append(f"| {r['point']} | {r['noise']} | {int(r['shots'])} | {pm(r['RMSE(E) vs DFT [meV]'], r['RMSE(E) vs DFT [meV] sd'])} | "
                      f"{pm(r['RMSE(E) vs exact QNN [meV]'], r['RMSE(E) vs exact QNN [meV] sd'])} |")
    with atomic_path(out_md) as tmp:
        Path(tmp).write_text("\n".join(md) + "\n")
    study_figure(study, summary, shots, axes, out_png, out_pdf)


def _integer_ticks(ax, values) -> None:
    """Log axis ticks at the grid's own values, as plain integers (no overlapping minor labels)."""
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator, ScalarFormatter

    ax.xaxis.set_major_locator(FixedLocator([float(v) for v in values]))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())


def study_figure(study: Study, summary, shots, axes: Sequence[str], out_png: str, out_pdf: str) -> None:
    """Shots on the x axis when evaluated with shots (with the 1/sqrt(shots) line); else the training-set size
    (log-log) when it is an axis; else one error bar per point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    other = [a for a in axes if a != "n_train"]
    if len(shots):
        fig, ax = plt.subplots(figsize=(6, 4.5))
        for (point, noise), g in shots.groupby(["point", "noise"], sort=False):
            g = g.sort_values("shots")
            ax.errorbar(g["shots"], g["RMSE(E) vs exact QNN [meV]"], yerr=g["RMSE(E) vs exact QNN [meV] sd"], marker="o",
                        capsize=3, label=f"{point}, noise {noise}" if len(summary) > 1 else f"noise {noise}")
        ref = shots[shots["noise"] == "none"].sort_values("shots")
        if len(ref):
            s0, y0 = float(ref["shots"].iloc[0]), float(ref["RMSE(E) vs exact QNN [meV]"].iloc[0])
            s = np.geomspace(float(shots["shots"].min()), float(shots["shots"].max()), 50)
            ax.plot(s, y0 * np.sqrt(s0 / s), "k--", lw=1, label="1/sqrt(shots)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        _integer_ticks(ax, sorted(shots["shots"].unique()))
        ax.set_xlabel("shots per circuit")
        ax.set_ylabel("RMSE(E) vs exact QNN [meV]")
        ax.set_title(f"{study.system} {study.kind}: shot noise on qiskit-aer")
        ax.legend(fontsize=7)
    elif "n_train" in axes:
        fig, axs = plt.subplots(1, 2, figsize=(10, 4.2))
        groups = summary.groupby(other, sort=False) if other else [((), summary)]
        for key, g in groups:
            key = key if isinstance(key, tuple) else (key,)
            g = g.sort_values("n_train")
            label = ", ".join(f"{a.split('.')[-1]}={k}" for a, k in zip(other, key)) or study.kind
            for ax, m in zip(axs, ("RMSE(E) [scaled]", "RMSE(F) [scaled, 1/A]")):
                slope = loglog_slope(g["n_train"], g[m])
                ax.errorbar(g["n_train"], g[m], yerr=g[m + " sd"], marker="o", capsize=3, label=f"{label} (slope {slope:.2f})")
        for ax, m in zip(axs, ("RMSE(E) [scaled]", "RMSE(F) [scaled, 1/A]")):
            ax.set_xscale("log")
            ax.set_yscale("log")
            _integer_ticks(ax, sorted(summary["n_train"].unique()))
            ax.set_xlabel("training-set size")
            ax.set_ylabel(f"test {m}")
            ax.legend(fontsize=7)
        fig.suptitle(f"{study.system} {study.kind}: data efficiency (mean ± sd over {study.seeds} seeds)")
    else:
        fig, axs = plt.subplots(1, 2, figsize=(max(8, 1.1 * len(summary) + 4), 4.5))
        x = np.arange(len(summary))
        for ax, m in zip(axs, ("RMSE(E) [scaled]", "RMSE(F) [scaled, 1/A]")):
            ax.errorbar(x, summary[m], yerr=summary[m + " sd"], fmt="o", capsize=3)
            ax.set_xticks(x, summary["point"], rotation=60, ha="right", fontsize=7)
            ax.set_yscale("log")
            ax.set_ylabel(f"test {m}")
        fig.suptitle(f"{study.system} {study.kind}: mean ± sd over {study.seeds} seeds")
    fig.tight_layout()
    for out in (out_png, out_pdf):
        with atomic_path(out) as tmp:
            fig.savefig(tmp, dpi=150, format=Path(out).suffix[1:])
    plt.close(fig)

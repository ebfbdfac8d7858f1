"""The settings each rule's job receives: one function, :func:`rule_settings`, cuts the slice of the configuration a
rule needs (the way pypsa-eur's ``config_provider`` does), and the rule passes it to its job as ``params.settings``.

A slice has the shape of a configuration (``{"seed": ..., "systems": {system: {...}}, ...}``) reduced to the keys its
rule reads, so the job specs (:mod:`qnnff.jobs`) parse it with the same typed readers as a whole config
(:func:`qnnff.config.system_spec`, :func:`qnnff.protocols.training_settings`, ...), and the hashes written into the
artifacts' provenance (:func:`qnnff.config.data_hash`, :func:`qnnff.protocols.model_hash`) come out the same from a
slice as from the whole config (``tests/test_settings.py``, ``tests/test_jobs.py``). Because ``params`` are one of Snakemake's rerun triggers,
the slice is also what reruns a job: a job reruns when, and only when, a key in its slice changes. So the slices are
as narrow as the rules allow:

* the reference data and features (``sample_points``, ``dft_chunk``, ``assemble_dataset``, ``featurize``): the seed,
  ``dft``, ``features`` and the system without its ``models``, ``md`` and ``slice`` keys;
* a training job (``train_qnn`` / ``train_nn`` / ``train_bpnn``): that, plus its model's block with only its own
  protocol and without the evaluation-only ``aer`` and ``hardware`` keys. An NN sized to the QNN (neither ``hidden``
  nor ``target_parameters``) receives the QNN's weight count as ``target_parameters``, so a change of the QNN circuit
  retrains it and a change of the QNN's training does not;
* ``effective_dimension``: the seed and ``effective_dimension``; ``aer_evaluation``: the seed and the QNN's ``aer``
  and ``hardware`` blocks; ``reproduction_table``: ``reproduction``;
* the MD runs: the data slice plus ``md`` (without the shot-noise keys for ``run_md`` and ``run_md_dft``);
  ``dft_slice`` and ``figures_system``: the data slice plus ``slice``;
* ``metrics``: the whole configuration but ``studies`` (its provenance hash is the run's);
* ``study_point``: the study's system data, its model (only its base protocol; an NN sized to the QNN keeps the
  QNN's block) and the study with its grid reduced to the one point and without ``seeds`` and ``description``, so
  adding grid values or seeds adds jobs and reruns none; ``study_table``: the same with the whole study and ``seeds``.

Rules that read only files (``select_seeds``, ``errors_table``, ``md_table``, ``figure_md``, ``figures_summary``) get
no settings. A job's script parses its slice once, at the job boundary, into its job's spec (:mod:`qnnff.jobs`), made
of the typed settings below (:class:`TrainingSettings`, :class:`QNNSettings`, :class:`NNSettings`,
:class:`BPNNSettings`, :class:`MDSettings`, :class:`SliceSettings`, :class:`EffdimSettings`, :class:`AerSettings`,
:class:`ReproductionSettings`), :class:`qnnff.config.SystemSpec` and :class:`qnnff.studies.Study`, each over the
schema's defaults, with its seeds and hashes; the stage function and what it calls read their attributes, not the
config's keys. This module imports the standard library and :mod:`qnnff.config` at its top (the workflow parses it at
every start-up; torch is never loaded by it).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from .config import DOWNSTREAM_KEYS, MODEL_EVALUATION_KEYS, ConfigError, schema, schema_defaults, system_spec
from .kinds import KINDS

SHOT_MD_KEYS = ("shots", "n_steps_shots", "shots_tolerance_A")  # md keys of rule run_md_shots only


def data_settings(cfg: dict, system: str) -> dict:
    """What a system's reference data and features depend on (the content of :meth:`SystemSpec.subconfig`)."""
    if system not in cfg["systems"]:
        raise ConfigError(f"systems: no system named {system!r} (have {sorted(cfg['systems'])})")
    sc = cfg["systems"][system]
    out = {"seed": cfg["seed"], "systems": {system: {k: copy.deepcopy(v) for k, v in sc.items() if k not in DOWNSTREAM_KEYS}}}
    for key in ("dft", "features"):
        if key in cfg:
            out[key] = copy.deepcopy(cfg[key])
    return out


def model_settings(cfg: dict, system: str, kind: str, protocol: str) -> dict:
    """What one (kind, protocol) of a system trains from: the data slice, the resolved model block, the protocol."""
    from .protocols import closed_form, protocol_config, resolved_model_config

    out = data_settings(cfg, system)
    mc = resolved_model_config(cfg, system, kind)
    if not closed_form(kind):  # a closed-form kind has no protocols block (qnnff.kinds)
        mc["protocols"] = {protocol: copy.deepcopy(protocol_config(cfg, system, kind, protocol))}
    out["systems"][system]["models"] = {kind: mc}
    return out


def _with_system_keys(cfg: dict, system: str, keys: tuple[str, ...], drop: tuple[str, ...] = ()) -> dict:
    out = data_settings(cfg, system)
    sc = cfg["systems"][system]
    for key in keys:
        if key in sc:
            value = copy.deepcopy(sc[key])
            out["systems"][system][key] = {k: v for k, v in value.items() if k not in drop} if drop else value
    return out


def _qnn_evaluation(cfg: dict, system: str) -> dict:
    qc = (cfg["systems"][system].get("models") or {}).get("qnn") or {}
    return {"seed": cfg["seed"],
            "systems": {system: {"models": {"qnn": {k: copy.deepcopy(qc[k]) for k in MODEL_EVALUATION_KEYS if k in qc}}}}}


def study_settings(cfg: dict, study: str, point: str | None = None) -> dict:
    """A study's system data, its model (only the study's base protocol; an NN sized to the QNN keeps the QNN's block,
    whose circuit it matches) and the study. With ``point`` (rule ``study_point``): the study's grid reduced to that
    point (the same point, named the same, with the same settings) and without ``seeds`` and ``description``, so adding
    grid values or seeds adds jobs and reruns none; without ``point`` (rule ``study_table``): the whole study and
    ``seeds``."""
    from .protocols import closed_form, model_config, protocol_config
    from .studies import parse_studies

    if study not in (cfg.get("studies") or {}):
        raise ConfigError(f"studies: no study named {study!r} (have {sorted(cfg.get('studies') or {})})")
    sd = copy.deepcopy(cfg["studies"][study])
    system, kind, protocol = sd["system"], sd["kind"], sd.get("protocol", "best")
    out = data_settings(cfg, system)
    mc = {k: copy.deepcopy(v) for k, v in model_config(cfg, system, kind).items() if k not in (*MODEL_EVALUATION_KEYS, "protocols")}
    if not closed_form(kind):
        mc["protocols"] = {protocol: copy.deepcopy(protocol_config(cfg, system, kind, protocol))}
    models = {kind: mc}
    if kind == "nn" and mc.get("hidden") is None and mc.get("target_parameters") is None and "qnn" in cfg["systems"][system]["models"]:
        models["qnn"] = {k: copy.deepcopy(v) for k, v in model_config(cfg, system, "qnn").items() if k not in MODEL_EVALUATION_KEYS}
    out["systems"][system]["models"] = models
    if (sd.get("evaluate") or {}).get("floor") and "information_floor" in cfg:
        out["information_floor"] = copy.deepcopy(cfg["information_floor"])
    if point is None:
        if "seeds" in cfg:
            out["seeds"] = cfg["seeds"]
    else:
        pt = parse_studies(cfg)[study].point(point)  # memoised per config: one parse per workflow start-up
        sd["grid"] = {k: ({pt.labels[k]: v} if k == "system.coordinates" else [v]) for k, v in pt.settings.items()}
        for key in ("seeds", "description"):
            sd.pop(key, None)
    out["studies"] = {study: sd}
    return out


# rule -> the slice of its settings, from (config, wildcards)
RULES: dict[str, Callable[..., dict]] = {
    "sample_points": lambda cfg, w: data_settings(cfg, w["system"]),
    "dft_chunk": lambda cfg, w: data_settings(cfg, w["system"]),
    "assemble_dataset": lambda cfg, w: data_settings(cfg, w["system"]),
    "featurize": lambda cfg, w: data_settings(cfg, w["system"]),
    "train": lambda cfg, w: model_settings(cfg, w["system"], w["kind"], w["protocol"]),
    "effective_dimension": lambda cfg, w: {"seed": cfg["seed"],
                                           **({"effective_dimension": copy.deepcopy(cfg["effective_dimension"])}
                                              if "effective_dimension" in cfg else {})},
    "information_floor": lambda cfg, w: {"seed": cfg["seed"],
                                         **({"information_floor": copy.deepcopy(cfg["information_floor"])}
                                            if "information_floor" in cfg else {})},
    "aer_evaluation": lambda cfg, w: _qnn_evaluation(cfg, w["system"]),
    "reproduction_table": lambda cfg, w: {"reproduction": copy.deepcopy(cfg["reproduction"])},
    "run_md": lambda cfg, w: _with_system_keys(cfg, w["system"], ("md",), drop=SHOT_MD_KEYS),
    "run_md_dft": lambda cfg, w: _with_system_keys(cfg, w["system"], ("md",), drop=SHOT_MD_KEYS),
    "run_md_shots": lambda cfg, w: _with_system_keys(cfg, w["system"], ("md",)),
    "dft_slice": lambda cfg, w: _with_system_keys(cfg, w["system"], ("slice",)),
    "figures_system": lambda cfg, w: _with_system_keys(cfg, w["system"], ("slice",)),
    "metrics": lambda cfg, w: {k: copy.deepcopy(v) for k, v in cfg.items() if k != "studies"},
    "study_point": lambda cfg, w: study_settings(cfg, w["study"], w["point"]),
    "study_table": lambda cfg, w: study_settings(cfg, w["study"]),
}


def rule_settings(cfg: dict, rule: str, **wildcards: Any) -> dict:
    """The settings slice of ``rule`` for one job (``wildcards``: its system, kind, protocol, study, point), in its
    canonical key order (:func:`canonical`): Snakemake compares params by their ``repr``."""
    if rule not in RULES:
        raise KeyError(f"no settings slice for rule {rule!r} (rules with settings: {sorted(RULES)})")
    try:
        return canonical(RULES[rule](cfg, wildcards))
    except KeyError as exc:
        raise KeyError(f"rule {rule!r} needs the wildcard {exc} for its settings") from None


@functools.cache
def _schema() -> dict:
    """The schema, parsed once per process (read, never changed, by :func:`canonical`)."""
    return schema()


def canonical(value: Any, node: Any = None, defs: dict | None = None) -> Any:
    """``value`` (a config or a slice of one; ``node``: its schema, default the whole config's) with the keys of every
    *record* sorted and every *collection* in the user's order. Snakemake compares a job's params by their ``repr``,
    so without this the same config with its keys in another order would rerun every job.

    A record is a mapping whose keys the schema names (``properties`` with ``additionalProperties: false``: ``dft``,
    a system, a model block, a protocol's settings, ...); the code reads its keys by name, so their order is no
    content. So is the order of a mapping the schema marks ``x-unordered: true`` (and of every mapping inside it:
    ``md.start``, ``slice.values``, a BPNN's ``hidden`` per element and ``symmetry_functions``). A collection's keys
    are the user's names (``systems``, ``variables``, ``protocols``, a study's ``grid``, ...): their order can be
    content (the variables' order is the sampling design's column order, the first protocol is the figures'
    fallback, a grid's order names its points), so it is kept, and so is the order of every mapping the schema does
    not describe."""
    if defs is None:
        root = _schema()
        node, defs = (root if node is None else node), root.get("$defs", {})
    while isinstance(node, dict) and isinstance(node.get("$ref"), str) and node["$ref"].startswith("#/$defs/"):
        node = defs[node["$ref"].removeprefix("#/$defs/")]
    node = node if isinstance(node, dict) else {}
    if node.get("x-unordered") is True:
        return _sorted_keys(value)
    if isinstance(value, dict):
        props, extra = node.get("properties"), node.get("additionalProperties")
        if isinstance(props, dict) and extra is False:
            return {k: canonical(value[k], props.get(k), defs) for k in sorted(value, key=str)}
        return {k: canonical(v, extra, defs) for k, v in value.items()}
    if isinstance(value, list):
        return [canonical(v, node.get("items"), defs) for v in value]
    return value


def _sorted_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted_keys(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, list):
        return [_sorted_keys(v) for v in value]
    return value


# ------------------------------------------------------------------ typed settings of the blocks the stages read
# Each is parsed once per job from the rule's slice, over the schema's defaults (the only home of default values);
# the stage functions and what they call read attributes, never keys.
@dataclass(frozen=True)
class TrainingSettings:
    """One protocol's optimiser settings (``systems.{s}.models.{kind}.protocols.{p}`` without ``init``)."""

    optimizer: str
    iterations: int
    chi: float
    lr: float
    lr_final: float | None
    batch_size: int | None
    rhobeg: float
    checkpoint_every: int
    history_size: int = 50
    tolerance_grad: float = 1e-10
    tolerance_change: float = 1e-14
    lbfgs_evaluations: int | None = None

    @classmethod
    def of(cls, cfg: dict, system: str, kind: str, protocol: str) -> TrainingSettings:
        from .protocols import training_settings

        t = training_settings(cfg, system, kind, protocol)
        return cls(optimizer=str(t["optimizer"]), iterations=int(t["iterations"]), chi=float(t["chi"]), lr=float(t["lr"]),
                   lr_final=None if t["lr_final"] is None else float(t["lr_final"]),
                   batch_size=None if t["batch_size"] is None else int(t["batch_size"]), rhobeg=float(t["rhobeg"]),
                   checkpoint_every=int(t["checkpoint_every"]), history_size=int(t["history_size"]),
                   tolerance_grad=float(t["tolerance_grad"]), tolerance_change=float(t["tolerance_change"]),
                   lbfgs_evaluations=None if t["lbfgs_evaluations"] is None else int(t["lbfgs_evaluations"]))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MDSettings:
    """A system's ``md`` block: NVE runs driven by the models (``n_steps``), DFT (``n_steps_dft``) and shot noise."""

    timestep_fs: float
    n_steps: int
    log_every: int
    temperature_K: float
    dft: bool
    n_steps_dft: int
    shots: tuple[int, ...]
    n_steps_shots: int
    shots_tolerance_A: float
    max_energy_error: float = 0.1  # energy conservation threshold (qnnff.md.energy_conserved)
    r_start: float | None = None  # diatomics: the stretched start bond (Angstrom); absent: the centre of the range
    start: dict[str, float] = field(default_factory=dict)  # others: Z-matrix values of the start geometry

    @classmethod
    def of(cls, cfg: dict, system: str) -> MDSettings:
        m = {**schema_defaults("#system.md"), **(cfg["systems"][system].get("md") or {})}
        return cls(timestep_fs=float(m["timestep_fs"]), n_steps=int(m["n_steps"]), log_every=int(m["log_every"]),
                   temperature_K=float(m["temperature_K"]), dft=bool(m["dft"]), n_steps_dft=int(m["n_steps_dft"]),
                   shots=tuple(int(n) for n in m["shots"]), n_steps_shots=int(m["n_steps_shots"]),
                   shots_tolerance_A=float(m["shots_tolerance_A"]), max_energy_error=float(m["max_energy_error"]),
                   r_start=None if m.get("r_start") is None else float(m["r_start"]),
                   start={k: float(v) for k, v in (m.get("start") or {}).items()})


@dataclass(frozen=True)
class SliceSettings:
    """A polyatomic system's one-coordinate slice for the curve figure: ``variable`` scanned over its sampled range at
    ``n`` points, the other variables at ``values`` (default: the centre of their ranges)."""

    variable: str
    n: int
    values: dict[str, float]

    @classmethod
    def of(cls, cfg: dict, system: str, spec: Any = None) -> SliceSettings:
        """``spec``: the system's :class:`~qnnff.config.SystemSpec`, if the caller has parsed it already."""
        spec = spec if spec is not None else system_spec(cfg, system)
        sc = {**schema_defaults("#system.slice"), **(cfg["systems"][system].get("slice") or {})}
        var = sc.get("variable", spec.variable_names[-1])
        if var not in spec.variables:
            raise ConfigError(f"systems.{system}.slice.variable: {var!r} is not a sampled variable ({spec.variable_names})")
        return cls(variable=var, n=int(sc["n"]), values={k: float(v) for k, v in (sc.get("values") or {}).items()})


@dataclass(frozen=True)
class EffdimSettings:
    """``effective_dimension``: Monte-Carlo sizes, gamma, the n grid and the parameter range per model kind."""

    n_theta: int
    n_inputs: int
    n_draws: int
    gamma: float
    n_grid: tuple[int, ...]
    theta_range: dict[str, tuple[float, float]]

    @classmethod
    def of(cls, cfg: dict) -> EffdimSettings:
        e = {**schema_defaults("effective_dimension"), **(cfg.get("effective_dimension") or {})}
        ranges = {**schema_defaults("effective_dimension.theta_range"), **(e.get("theta_range") or {})}
        return cls(n_theta=int(e["n_theta"]), n_inputs=int(e["n_inputs"]), n_draws=int(e["n_draws"]), gamma=float(e["gamma"]),
                   n_grid=tuple(int(n) for n in e["n_grid"]),
                   theta_range={k: (float(lo), float(hi)) for k, (lo, hi) in ranges.items()})


@dataclass(frozen=True)
class FloorSettings:
    """``information_floor``: the Gaussian process of :func:`qnnff.floor.information_floor`."""

    n_restarts: int

    @classmethod
    def of(cls, cfg: dict) -> FloorSettings:
        f = {**schema_defaults("information_floor"), **(cfg.get("information_floor") or {})}
        return cls(n_restarts=int(f["n_restarts"]))


@dataclass(frozen=True)
class AerSettings:
    """``models.qnn.aer``: the circuit evaluation of the median-seed QNN on qiskit-aer; ``force_points`` absent: as
    many geometries as fit the circuit budget. ``hardware``: the ``models.qnn.hardware`` block over its defaults (the
    settings of :meth:`qnnff.qnn.runtime.RuntimeEvaluator.from_settings`)."""

    shots: int
    noise: str
    p1: float
    p2: float
    n_points: int
    forces: bool
    force_points: int | None
    hardware: dict[str, Any]

    @classmethod
    def of(cls, cfg: dict, system: str) -> AerSettings:
        qc = (cfg["systems"][system].get("models") or {}).get("qnn") or {}
        a = {**schema_defaults("#qnn.aer"), **(qc.get("aer") or {})}
        return cls(shots=int(a["shots"]), noise=str(a["noise"]), p1=float(a["p1"]), p2=float(a["p2"]), n_points=int(a["n_points"]),
                   forces=bool(a["forces"]), force_points=None if a.get("force_points") is None else int(a["force_points"]),
                   hardware={**schema_defaults("#qnn.hardware"), **(qc.get("hardware") or {})})


@dataclass(frozen=True)
class QNNSettings:
    """A QNN's architecture and one protocol's initialisation: ``circuit``, the circuit keys over the schema's defaults
    (:func:`qnnff.protocols.qnn_circuit_config`: the arguments of :class:`qnnff.qnn.spec.QNNCircuitConfig` but
    ``n_features``), the rotation half-width and the feature-map weights (a number or ``auto``) of
    :func:`qnnff.protocols.qnn_init`."""

    circuit: dict[str, Any]
    init_rotations: float
    feature_map_weights: float | str
    kind: ClassVar[str] = "qnn"

    @classmethod
    def of(cls, cfg: dict, system: str, protocol: str | None = None) -> QNNSettings:
        """``protocol``: whose initialisation (default: the QNN's first protocol)."""
        from .protocols import protocols, qnn_circuit_config, qnn_init

        init = qnn_init(cfg, system, protocol or protocols(cfg, system, "qnn")[0])
        fm = init["feature_map_weights"]
        return cls(circuit=qnn_circuit_config(cfg, system), init_rotations=float(init["rotations"]),
                   feature_map_weights=fm if isinstance(fm, str) else float(fm))


@dataclass(frozen=True)
class NNSettings:
    """An NN's architecture: its hidden widths and/or its parameter count (an NN with neither is sized to the QNN:
    :func:`qnnff.protocols.resolved_model_config` fills in the QNN's weight count) and its activation."""

    hidden: tuple[int, ...] | None
    target_parameters: int | None
    activation: str
    kind: ClassVar[str] = "nn"

    @classmethod
    def of(cls, cfg: dict, system: str, protocol: str | None = None) -> NNSettings:
        """(``protocol``: unused; an NN's architecture is the same under every protocol.)"""
        from .protocols import resolved_model_config

        mc = {**schema_defaults("#nn"), **resolved_model_config(cfg, system, "nn")}
        hidden, target = mc.get("hidden"), mc.get("target_parameters")
        return cls(hidden=None if hidden is None else tuple(int(h) for h in hidden),
                   target_parameters=None if target is None else int(target), activation=str(mc["activation"]))


@dataclass(frozen=True)
class BPNNSettings:
    """A BPNN's architecture: hidden widths (one list, or one per element), symmetry functions (absent: the defaults
    of :class:`qnnff.acsf.ACSF`) and activation, as the config gives them over the schema's defaults."""

    hidden: Any
    symmetry_functions: Any
    activation: str
    kind: ClassVar[str] = "bpnn"

    @classmethod
    def of(cls, cfg: dict, system: str, protocol: str | None = None) -> BPNNSettings:
        """(``protocol``: unused; a BPNN's architecture is the same under every protocol.)"""
        from .protocols import model_config

        mc = {**schema_defaults("#bpnn"), **model_config(cfg, system, "bpnn")}
        return cls(hidden=copy.deepcopy(mc["hidden"]), symmetry_functions=copy.deepcopy(mc.get("symmetry_functions")),
                   activation=str(mc["activation"]))


@dataclass(frozen=True)
class SGDMLSettings:
    """An sGDML model's kernel settings (the ``sgdml`` block over the schema's defaults): the candidate kernel widths
    ``sigmas``, chosen among on a held-out ``validation_fraction`` of the training set by validation RMSE(F), the
    kernel's regularisation ``lam`` and whether energies constrain the fit (``energy_constraints``). Fitted in closed
    form (:mod:`qnnff.models.sgdml`)."""

    sigmas: tuple[int, ...]
    validation_fraction: float
    energy_constraints: bool
    lam: float
    kind: ClassVar[str] = "sgdml"

    @classmethod
    def of(cls, cfg: dict, system: str, protocol: str | None = None) -> SGDMLSettings:
        """(``protocol``: unused; a closed-form model has one.)"""
        from .protocols import model_config

        mc = {**schema_defaults("#sgdml"), **model_config(cfg, system, "sgdml")}
        return cls(sigmas=tuple(int(s) for s in mc["sigmas"]), validation_fraction=float(mc["validation_fraction"]),
                   energy_constraints=bool(mc["energy_constraints"]), lam=float(mc["lam"]))


@dataclass(frozen=True)
class EQNNSettings:
    """A symmetry-invariant QNN's architecture (the ``eqnn`` block over the schema's defaults): ``circuit``, the
    keyword arguments of :class:`qnnff.qnn.eqnn.EquivariantQNNConfig` but the species (the system's), and its
    initialisation: the couplings' half-width and the encoding weights (a number or ``auto``)."""

    circuit: dict[str, Any]
    init_couplings: float
    init_alpha: float | str
    kind: ClassVar[str] = "eqnn"

    @classmethod
    def of(cls, cfg: dict, system: str, protocol: str | None = None) -> EQNNSettings:
        """(``protocol``: unused; the initialisation is the model's.)"""
        from .protocols import EQNN_CIRCUIT_KEYS, model_config

        mc = {**schema_defaults("#eqnn"), **model_config(cfg, system, "eqnn")}
        init = {**schema_defaults("#eqnn_init"), **(mc.get("init") or {})}
        alpha = init["alpha"]
        return cls(circuit={k: copy.deepcopy(mc[k]) for k in EQNN_CIRCUIT_KEYS}, init_couplings=float(init["couplings"]),
                   init_alpha=alpha if isinstance(alpha, str) else float(alpha))


ModelSettings = QNNSettings | NNSettings | BPNNSettings | SGDMLSettings | EQNNSettings


def model_settings_of(cfg: dict, system: str, kind: str, protocol: str | None = None) -> ModelSettings:
    """The architecture of ``kind``: its settings class as :data:`qnnff.kinds.KINDS` registers it (a QNN's with the
    initialisation of ``protocol``, default: its first)."""
    if kind not in KINDS:
        raise ConfigError(f"unknown model kind {kind!r} (use one of {tuple(KINDS)})")
    cls = globals()[KINDS[kind].settings]
    if getattr(cls, "kind", None) != kind:
        raise ConfigError(f"model kind {kind!r}: qnnff.settings.{KINDS[kind].settings} is not its settings class")
    return cls.of(cfg, system, protocol)


@dataclass(frozen=True)
class ReproductionSettings:
    """``reproduction``: the paper's numbers (system -> kind -> metric -> value), the largest accepted ratios
    (``targets``, same shape), the protocol held to them and the MD period check (``md_period``; absent: none)."""

    paper: dict[str, dict[str, dict[str, float]]]
    targets: dict[str, dict[str, dict[str, float]]]
    protocol: str
    md_period: dict[str, Any] | None

    @classmethod
    def of(cls, cfg: dict) -> ReproductionSettings:
        r = {**schema_defaults("reproduction"), **cfg["reproduction"]}
        return cls(paper=copy.deepcopy(r["paper"]), targets=copy.deepcopy(r.get("targets") or {}), protocol=str(r["protocol"]),
                   md_period=copy.deepcopy(r.get("md_period")))

"""Model variants: every configured (model kind, training protocol, seed) of a system, and their settings.

A system's ``models`` block lists model kinds (``qnn``, ``nn``, ``bpnn``). Each kind has one or more named
*protocols*: training settings (optimiser, budget, learning rate and schedule, chi, ...), e.g. the paper's
``paper`` protocol (H2O: COBYLA, chi = 1) beside a ``best`` protocol (Adam, chi = 1). Every (kind, protocol) is
trained with the top-level ``seeds`` seeds; seed ``k``'s model lives in
``results/{system}/models/{kind}/{protocol}/seed{k}/``.

Seeds: the one config ``seed`` drives everything. Seed index ``k`` of a kind gives the model's initial weights
(:func:`init_seed`, the same for every protocol of that kind, so protocols are compared from the same starting
points) and, per protocol, the optimiser's randomness (:func:`train_seed`: minibatches).

QNN initialisation (``init`` of a ``qnn`` model, overridable per protocol): rotation angles uniform in
``[-rotations, rotations]`` (default pi) and trainable feature-map weights ``lambda_0`` =
``feature_map_weights``: a number, or ``auto`` = ``1 / sqrt(K)`` with ``K`` the number of encoding gates of the
feature in the circuit (see :func:`qnnff.qnn.circuit.encoding_counts` and config/README.md for the evidence).

A closed-form kind (:attr:`qnnff.kinds.ModelKind.closed_form`, e.g. ``sgdml``) has no ``protocols`` block: it is
fitted once, deterministically, under its one protocol :data:`~qnnff.kinds.CLOSED_FORM_PROTOCOL` (``best``), with one
seed (:func:`seeds_of`).

Every function here takes the config dict and raises :class:`~qnnff.config.ConfigError` naming the key.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from .config import ConfigError, config_hash, schema_defaults, system_spec
from .kinds import CLOSED_FORM_PROTOCOL, kind_names
from .kinds import KINDS as _KIND_SPECS
from .seeding import derive_seed

KINDS = kind_names()  # the registered model kinds (qnnff.kinds), in table order
DEFAULT_SEEDS = 5
FIGURE_PROTOCOL = "best"  # the protocol shown in figures when a kind has it (else its first protocol)
MODEL_HASH_EXCLUDE = ("protocols", "aer", "hardware")  # per-protocol settings are hashed separately; evaluation never retrains


@dataclass(frozen=True)
class Variant:
    """One (system, kind, protocol): trained with :func:`n_seeds` seeds."""

    system: str
    kind: str
    protocol: str

    @property
    def label(self) -> str:
        return f"{self.kind}-{self.protocol}"

    def model_dir(self, seed: int | None = None) -> str:
        base = f"results/{self.system}/models/{self.kind}/{self.protocol}"
        return base if seed is None else f"{base}/seed{seed}"


def n_seeds(cfg: dict) -> int:
    return int(cfg.get("seeds", DEFAULT_SEEDS))


def closed_form(kind: str) -> bool:
    """Whether ``kind`` is fitted in closed form (deterministic: one seed, no optimiser protocols)."""
    return kind in _KIND_SPECS and _KIND_SPECS[kind].closed_form


def seeds_of(cfg: dict, kind: str) -> list[int]:
    """The seed indices trained for ``kind``: ``range(seeds)``, or ``[0]`` for a closed-form (deterministic) kind."""
    return [0] if closed_form(kind) else list(range(n_seeds(cfg)))


def model_config(cfg: dict, system: str, kind: str) -> dict:
    models = cfg["systems"][system].get("models", {})
    if kind not in models:
        raise ConfigError(f"systems.{system}.models has no {kind!r} entry (has {sorted(models)})")
    return models[kind]


def model_kinds(cfg: dict, system: str) -> list[str]:
    models = cfg["systems"][system].get("models", {})
    return [k for k in KINDS if k in models]


def protocols(cfg: dict, system: str, kind: str) -> list[str]:
    if closed_form(kind):
        model_config(cfg, system, kind)  # it must be configured
        return [CLOSED_FORM_PROTOCOL]
    prot = model_config(cfg, system, kind).get("protocols") or {}
    if not prot:
        raise ConfigError(f"systems.{system}.models.{kind}.protocols: give at least one training protocol")
    return list(prot)


def variants(cfg: dict, system: str) -> list[Variant]:
    return [Variant(system, k, p) for k in model_kinds(cfg, system) for p in protocols(cfg, system, k)]


def protocol_config(cfg: dict, system: str, kind: str, protocol: str) -> dict:
    if closed_form(kind):
        if protocol != CLOSED_FORM_PROTOCOL:
            raise ConfigError(f"systems.{system}.models.{kind}: a closed-form model has the one protocol "
                              f"{CLOSED_FORM_PROTOCOL!r}, not {protocol!r}")
        return {}
    prot = model_config(cfg, system, kind).get("protocols") or {}
    if protocol not in prot:
        raise ConfigError(f"systems.{system}.models.{kind}.protocols has no protocol {protocol!r} (has {sorted(prot)})")
    return prot[protocol]


def training_settings(cfg: dict, system: str, kind: str, protocol: str) -> dict:
    """The protocol's optimiser settings with the defaults filled in (no ``init``)."""
    pc = protocol_config(cfg, system, kind, protocol)
    # lr_final, batch_size, lbfgs_evaluations absent: a constant rate, the full batch, no L-BFGS phase (the schema has no
    # value for "absent")
    return {"lr_final": None, "batch_size": None, "lbfgs_evaluations": None, **schema_defaults("#training"),
            **{k: v for k, v in pc.items() if k != "init"}}


def qnn_init(cfg: dict, system: str, protocol: str) -> dict:
    """QNN initialisation: the model's ``init`` block, then the protocol's, over the defaults."""
    mc = model_config(cfg, system, "qnn")
    return {**schema_defaults("#qnn_init"), **mc.get("init", {}), **protocol_config(cfg, system, "qnn", protocol).get("init", {})}


QNN_CIRCUIT_KEYS = ("n_qubits", "depth", "feature_map", "feature_map_reps", "trainable_feature_map",
                    "trainable_feature_map_reps", "entanglement", "rotations", "final_rotations")


EQNN_CIRCUIT_KEYS = ("depth", "rep", "trainable_reps", "reference", "share_like_atoms", "layout", "symmetry_breaking")


def qnn_circuit_config(cfg: dict, system: str) -> dict:
    """A system's QNN circuit keys over the schema's defaults (the arguments of :class:`qnnff.qnn.spec.QNNCircuitConfig`
    but ``n_features``)."""
    mc = model_config(cfg, system, "qnn")
    out = {**schema_defaults("#qnn"), **{k: mc[k] for k in QNN_CIRCUIT_KEYS if k in mc}}
    out = {k: out[k] for k in QNN_CIRCUIT_KEYS if k in out}
    out["rotations"] = list(out["rotations"])
    return out


def qnn_parameter_count(cfg: dict, system: str, n_features: int) -> int:
    """The QNN's number of trainable circuit weights (an NN without ``hidden`` or ``target_parameters`` is sized to it);
    loads neither Qiskit nor torch."""
    from .qnn.spec import QNNCircuitConfig

    return QNNCircuitConfig(n_features=n_features, **qnn_circuit_config(cfg, system)).n_weights


def qnn_circuit_estimates(cfg: dict, system: str) -> dict[str, tuple[int, float]]:
    """Per protocol of the system's QNN: the memory (bytes) and time (seconds) estimates of its training
    (:meth:`qnnff.qnn.spec.QNNCircuitConfig.memory_estimate`, ``time_estimate``) at its batch (``batch_size``, else
    the training set) and its loss evaluations (``iterations``, plus ``lbfgs_evaluations`` after Adam)."""
    from .qnn.spec import QNNCircuitConfig

    spec = system_spec(cfg, system)
    circuit = QNNCircuitConfig(n_features=spec.n_features, **qnn_circuit_config(cfg, system))
    out = {}
    for name in protocols(cfg, system, "qnn"):
        ts = training_settings(cfg, system, "qnn", name)
        batch = int(ts["batch_size"]) if ts["batch_size"] is not None else spec.n_points("train")
        evaluations = int(ts["iterations"]) + int(ts["lbfgs_evaluations"] or 0)
        out[name] = (circuit.memory_estimate(batch), circuit.time_estimate(batch, evaluations))
    return out


def check_qnn_size(cfg: dict, system: str) -> None:
    """A QNN whose training would exceed the memory or time limit (config/README.md "Circuit size limits") is refused
    at start-up, naming the key and the estimate (a depth of 100000 took 3.3 GB and no iteration in 150 s)."""
    from .qnn.spec import MEMORY_LIMIT_BYTES, TIME_LIMIT_SECONDS, QNNCircuitConfig

    key = f"systems.{system}.models.qnn"
    cc = qnn_circuit_config(cfg, system)
    try:
        circuit = QNNCircuitConfig(n_features=system_spec(cfg, system).n_features, **cc)
    except ValueError as exc:
        raise ConfigError(f"{key}: {exc}") from None
    what = (f"n_qubits {circuit.n_qubits}, depth {circuit.depth}: {circuit.n_gates} gates, {circuit.n_weights} weights, "
            f"{circuit.n_features} features")
    limits = 'config/README.md "Circuit size limits"'
    for name, (memory, seconds) in qnn_circuit_estimates(cfg, system).items():
        if memory > MEMORY_LIMIT_BYTES:
            # the dense angle map grows with depth squared: name depth when it is what the memory comes from
            big = "depth" if 8 * circuit.n_angles * circuit.n_weights > memory / 2 else "n_qubits"
            raise ConfigError(f"{key}.{big}: {cc[big]} is too large: the circuit ({what}) needs about {memory / 1e9:.3g} GB "
                              f"of memory to train (protocol {name!r}), over the limit of {MEMORY_LIMIT_BYTES / 1e9:.0f} GB "
                              f"({limits}); lower depth or n_qubits")
        if seconds > TIME_LIMIT_SECONDS:
            raise ConfigError(f"{key}.protocols.{name}: the circuit ({what}) needs about {seconds / 3600:.3g} h of training "
                              f"on one core, over the limit of {TIME_LIMIT_SECONDS / 3600:.0f} h ({limits}); lower "
                              "iterations, the training set (or batch_size), depth or n_qubits")


def init_seed(cfg: dict, system: str, kind: str, seed_index: int) -> int:
    return derive_seed(cfg["seed"], "init", system, kind, int(seed_index))


def train_seed(cfg: dict, system: str, kind: str, protocol: str, seed_index: int) -> int:
    return derive_seed(cfg["seed"], "train", system, kind, protocol, int(seed_index))


def figure_protocol(cfg: dict, system: str, kind: str) -> str:
    """The protocol whose median-seed model the figures show: ``figures.protocol`` (default ``best``) when the kind
    has it, else the kind's first protocol."""
    wanted = cfg.get("figures", {}).get("protocol", FIGURE_PROTOCOL)
    names = protocols(cfg, system, kind)
    return wanted if wanted in names else names[0]


def resolved_model_config(cfg: dict, system: str, kind: str) -> dict:
    """A model's block with what it takes from other blocks resolved: an NN with neither ``hidden`` nor
    ``target_parameters`` gets the QNN's weight count as ``target_parameters`` (:func:`qnnff.models.factory.build_model`
    sizes it so). Without the protocols and the evaluation-only keys (``MODEL_HASH_EXCLUDE``)."""
    mc = {k: copy.deepcopy(v) for k, v in model_config(cfg, system, kind).items() if k not in MODEL_HASH_EXCLUDE}
    if kind == "nn" and mc.get("hidden") is None and mc.get("target_parameters") is None:
        if "qnn" not in (cfg["systems"][system].get("models") or {}):
            raise ConfigError(f"systems.{system}.models.nn: give `hidden` or `target_parameters` (there is no QNN to match)")
        mc["target_parameters"] = qnn_parameter_count(cfg, system, system_spec(cfg, system).n_features)
    return mc


def model_hash(cfg: dict, system: str, kind: str, protocol: str) -> str:
    """The provenance hash of one (kind, protocol): data settings, the model's resolved architecture
    (:func:`resolved_model_config`: an NN sized to the QNN hashes the QNN's weight count) and this protocol. Other
    protocols, the seed count and the Aer evaluation settings are excluded. The same from a training job's settings
    slice (:func:`qnnff.settings.model_settings`, its rerun trigger) as from the whole config."""
    mc = resolved_model_config(cfg, system, kind)
    return config_hash({"data": system_spec(cfg, system).subconfig(cfg), "model": mc,
                        "protocol": protocol_config(cfg, system, kind, protocol)})


def check_models(cfg: dict, system: str) -> None:
    """What the schema cannot say about a system's models and protocols."""
    key = f"systems.{system}.models"
    for kind in model_kinds(cfg, system):
        if closed_form(kind):
            continue  # no optimiser protocols; its settings are the schema's
        for name in protocols(cfg, system, kind):
            pc = protocol_config(cfg, system, kind, name)
            pkey = f"{key}.{kind}.protocols.{name}"
            if "init" in pc and kind != "qnn":
                raise ConfigError(f"{pkey}.init: only a qnn protocol has an initialisation block")
            ts = training_settings(cfg, system, kind, name)
            if ts["lr_final"] is not None and ts["optimizer"] not in ("adam", "adam+lbfgs"):
                raise ConfigError(f"{pkey}.lr_final: a learning-rate schedule needs optimizer: adam (got {ts['optimizer']})")
            if (ts["lbfgs_evaluations"] is None) == (ts["optimizer"] == "adam+lbfgs"):
                raise ConfigError(f"{pkey}.lbfgs_evaluations: " + ("optimizer adam+lbfgs needs it (the L-BFGS budget after the "
                                  "Adam steps)" if ts["optimizer"] == "adam+lbfgs" else f"only for optimizer adam+lbfgs, not {ts['optimizer']}"))
            if ts["lr_final"] is not None and not 0 < float(ts["lr_final"]) <= float(ts["lr"]):
                raise ConfigError(f"{pkey}.lr_final: must lie in (0, lr = {ts['lr']}], got {ts['lr_final']}")
            if ts["batch_size"] is not None and ts["optimizer"] in ("cobyla", "lbfgs", "adam+lbfgs"):
                raise ConfigError(f"{pkey}.batch_size: {ts['optimizer'].upper()} evaluates the full training set; remove batch_size")
            for k in ("history_size", "tolerance_grad", "tolerance_change"):
                if k in pc and ts["optimizer"] not in ("lbfgs", "adam+lbfgs"):
                    raise ConfigError(f"{pkey}.{k}: an L-BFGS setting needs optimizer: lbfgs (got {ts['optimizer']})")
            n_train = system_spec(cfg, system).n_points("train")
            if ts["batch_size"] is not None and int(ts["batch_size"]) > n_train:
                raise ConfigError(f"{pkey}.batch_size: {ts['batch_size']} exceeds the {n_train} training points")
        if kind == "eqnn":  # the circuit's own checks (even qubit count, reference atom, layout), named by key
            from .qnn.eqnn import EquivariantQNNConfig

            mc = {**schema_defaults("#eqnn"), **model_config(cfg, system, kind)}
            try:
                EquivariantQNNConfig(species=tuple(system_spec(cfg, system).symbols), **{k: mc[k] for k in EQNN_CIRCUIT_KEYS})
            except ValueError as exc:
                raise ConfigError(f"{key}.eqnn: {exc}") from None
        if kind == "qnn":
            for name in protocols(cfg, system, kind):
                init = qnn_init(cfg, system, name)
                fm = init["feature_map_weights"]
                if isinstance(fm, str) and fm != "auto" or (not isinstance(fm, str) and not float(fm) > 0):
                    raise ConfigError(f"{key}.qnn.init.feature_map_weights: a positive number or 'auto', got {fm!r}")
            check_qnn_size(cfg, system)


def check_figure_protocol(cfg: dict) -> None:
    """``figures.protocol`` must name a protocol of at least one model (a typo would silently show other models)."""
    wanted = cfg.get("figures", {}).get("protocol")
    if wanted is None:
        return
    have = {p for s in cfg["systems"] for k in model_kinds(cfg, s) for p in protocols(cfg, s, k)}
    if have and wanted not in have:
        raise ConfigError(f"figures.protocol: no model has a protocol named {wanted!r} (protocols: {sorted(have)})")

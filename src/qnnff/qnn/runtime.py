"""Evaluate circuits through IBM Qiskit Runtime: a fake backend in local testing mode, or a real IBM backend.

The backend is one config string (``systems.<name>.models.qnn.hardware.backend``):

* ``"aer"``: qiskit-aer directly (:mod:`qnnff.qnn.aer`); nothing here is used and nothing costs QPU time;
* the class name of a fake backend in :mod:`qiskit_ibm_runtime.fake_provider` (e.g. ``"FakeManilaV2"``): Qiskit
  Runtime's *local testing mode*, i.e. Runtime's ``EstimatorV2`` with the fake backend as its mode; the fake
  backend's noise model is simulated locally (Runtime ignores every option except shots/precision there, with a
  warning);
* a real IBM backend, named ``ibm_<name>`` (e.g. ``"ibm_brisbane"``); any other name is an error with the nearest
  known names (:func:`backend_kind`). Credentials come only from the user's
  saved :class:`~qiskit_ibm_runtime.QiskitRuntimeService` account (``QiskitRuntimeService.save_account``) or the
  environment (``QISKIT_IBM_TOKEN``, ``QISKIT_IBM_INSTANCE``, ``QISKIT_IBM_CHANNEL``), never from the config, and are
  never logged. :func:`check_credentials` runs at config check (start-up) and only reads the environment and the
  local account file: no network call.

:class:`RuntimeEvaluator` (the ``evaluate`` callable of
:meth:`qnnff.models.qnn.QNNForceField.circuit_energy_and_forces`):

1. transpiles the circuit to the backend's ISA with :func:`~qiskit.transpiler.generate_preset_pass_manager`
   (``optimization_level``, ``seed_transpiler``) and records the layout (physical qubit of each circuit qubit);
2. estimates the cost (:func:`estimate_cost`): circuits x shots x (repetition delay + ISA circuit duration from the
   backend's target) x 3 with zero-noise extrapolation, plus a per-job overhead; prints and records it; asks for
   nothing;
3. refuses (:class:`QPUBudgetError`) before anything is submitted if the estimate exceeds ``max_qpu_seconds``;
4. submits ONE pub (all circuits as one parameter-value array) to Runtime's ``EstimatorV2`` in a
   :class:`~qiskit_ibm_runtime.Batch`, with the configured options (shots or precision, resilience level,
   measurement / ZNE mitigation, twirling, dynamical decoupling) and, in local mode, the simulator seed.

Runtime's ``EstimatorV2`` is deprecated since qiskit-ibm-runtime 0.50 in favour of the executor-based Estimator, which
does not support local testing mode; the legacy class is therefore used (its deprecation warning is silenced here).
"""

from __future__ import annotations

import difflib
import logging
import math
import os
import re
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter
from qiskit.quantum_info import SparsePauliOp
from qiskit.transpiler import generate_preset_pass_manager

from ..config import fake_backend_names, schema_defaults
from .aer import AerResult, isa_layout

log = logging.getLogger("qnnff")

#: Documented fallback figures for the cost estimate when a backend does not report them (IBM Eagle/Heron-class
#: devices: default repetition delay 250 microseconds, a few microseconds per shallow circuit, a few seconds per job).
DEFAULT_REP_DELAY_S = 250e-6
DEFAULT_CIRCUIT_S = 5e-6
DEFAULT_JOB_OVERHEAD_S = 2.0

ENV_TOKEN = "QISKIT_IBM_TOKEN"


class QPUBudgetError(RuntimeError):
    """The estimated QPU time exceeds the configured cap; nothing was submitted."""


class CredentialsError(ValueError):
    """A real IBM backend is configured but no saved account or environment credentials exist."""


IBM_BACKEND_NAME = re.compile(r"ibm_[a-z0-9_]+")  # IBM's real backends: ibm_brisbane, ibm_torino, ibm_fez, ...


def backend_kind(name: str, *, where: str = "hardware.backend") -> str:
    """``"aer"`` | ``"fake"`` (a class in qiskit_ibm_runtime.fake_provider) | ``"ibm"`` (a real backend name, of the
    form ``ibm_<name>``). Anything else is an error with the nearest names (a mistyped ``Aer`` or ``fakemanilav2`` is
    not taken for a real backend, which would then ask for credentials)."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{where} must be a non-empty string, got {name!r}")
    if name == "aer":
        return "aer"
    fakes = fake_backend_names()
    if name in fakes:
        return "fake"
    if IBM_BACKEND_NAME.fullmatch(name):
        return "ibm"
    near = ", ".join(map(repr, _backend_suggestions(name, fakes)))
    raise ValueError(f"{where}: {name!r} is neither 'aer', a fake backend of qiskit_ibm_runtime.fake_provider (e.g. "
                     "FakeManilaV2, FakeLagosV2) nor a real IBM backend name of the form ibm_<name> (e.g. ibm_brisbane)"
                     + (f"; did you mean {near}?" if near else ""))


def _backend_suggestions(name: str, fakes: set[str]) -> list[str]:
    """The known names nearest to ``name``, ignoring case: 'aer', the fake backends, and ``name`` as an ibm_ name."""
    low = name.strip().lower().replace("-", "_").replace(" ", "_")
    known = {"aer": "aer", **{f.lower(): f for f in sorted(fakes)}}
    if low in known:
        return [known[low]]
    ibm = "ibm_" + re.sub(r"^ibmq?_?", "", low)
    out = [ibm] if not low.startswith("fake") and IBM_BACKEND_NAME.fullmatch(ibm) else []
    return out + [known[k] for k in difflib.get_close_matches(low, known, n=3)]


def check_credentials(backend: str, *, channel: str | None = None, accounts_file: str | None = None,
                      where: str = "hardware.backend") -> str:
    """For a real backend: where its credentials will come from (``"environment"`` or ``"saved account"``).

    Reads only the environment and the local account file (no network). Raises :class:`CredentialsError` with the
    remedy if neither has an account. Never returns or logs the token itself.
    """
    if os.environ.get(ENV_TOKEN):
        return "environment"
    from qiskit_ibm_runtime.accounts import AccountManager
    from qiskit_ibm_runtime.accounts.management import _DEFAULT_ACCOUNT_CONFIG_JSON_FILE

    path = os.path.expanduser(accounts_file or _DEFAULT_ACCOUNT_CONFIG_JSON_FILE)
    try:  # AccountManager.list would create an empty account file: look first
        accounts = AccountManager.list(channel=channel, filename=path) if os.path.isfile(path) else {}
    except Exception as exc:  # unreadable account file: still a clear start-up error
        raise CredentialsError(
            f"{where}: {backend!r} is a real IBM backend, but the saved Qiskit Runtime accounts could not be read ({exc})") from None
    if accounts:
        return "saved account"
    raise CredentialsError(
        f"{where}: {backend!r} is a real IBM backend, but no IBM Quantum credentials were found: no saved "
        f"QiskitRuntimeService account{f' for channel {channel!r}' if channel else ''} and no {ENV_TOKEN} in the environment. "
        "Save one once with QiskitRuntimeService.save_account(token=..., instance=..., set_as_default=True) or export "
        f"{ENV_TOKEN} (and QISKIT_IBM_INSTANCE); credentials are never read from the config. To test without hardware, "
        "use a fake backend such as FakeManilaV2 (local testing mode) or 'aer'.")


def check_hardware_config(cfg: Mapping[str, Any]) -> None:
    """Start-up check of every ``systems.<name>.models.qnn.hardware`` block (backend name, credentials, options)."""
    for system, sc in cfg.get("systems", {}).items():
        hw = (sc.get("models", {}).get("qnn") or {}).get("hardware")
        if not hw:
            continue
        where = f"systems.{system}.models.qnn.hardware"
        settings = {**schema_defaults("#qnn.hardware"), **hw}
        kind = backend_kind(str(settings["backend"]), where=f"{where}.backend")
        if settings.get("precision") is not None and hw.get("shots") is not None:
            raise ValueError(f"{where}: give shots or precision, not both (precision {settings['precision']}, shots {hw['shots']})")
        if kind == "ibm":
            check_credentials(settings["backend"], channel=settings.get("channel"), where=f"{where}.backend")


def resolve_backend(name: str, *, channel: str | None = None, instance: str | None = None) -> Any:
    """The backend object: a fake backend instance, or a real backend through the saved/environment account.

    ``"aer"`` returns a noiseless :class:`~qiskit_aer.AerSimulator` (Runtime's local mode accepts it too).
    """
    kind = backend_kind(name)
    if kind == "aer":
        from qiskit_aer import AerSimulator

        return AerSimulator()
    if kind == "fake":
        from qiskit_ibm_runtime import fake_provider

        return getattr(fake_provider, name)()
    check_credentials(name, channel=channel)
    from qiskit_ibm_runtime import QiskitRuntimeService

    service = QiskitRuntimeService(channel=channel, instance=instance) if (channel or instance) else QiskitRuntimeService()
    return service.backend(name)


def estimator_options(settings: Mapping[str, Any], *, seed: int, local: bool) -> dict[str, Any]:
    """Runtime EstimatorV2 options from the config block (only keys that are set)."""
    opts: dict[str, Any] = {}
    if settings.get("precision") is not None:
        opts["default_precision"] = float(settings["precision"])
    else:
        opts["default_shots"] = int(settings["shots"])
    if settings.get("resilience_level") is not None:
        opts["resilience_level"] = int(settings["resilience_level"])
    res = {}
    if settings.get("measure_mitigation") is not None:
        res["measure_mitigation"] = bool(settings["measure_mitigation"])
    if settings.get("zne_mitigation") is not None:
        res["zne_mitigation"] = bool(settings["zne_mitigation"])
    if res:
        opts["resilience"] = res
    if settings.get("twirling") is not None:
        tw = settings["twirling"]
        opts["twirling"] = dict(tw) if isinstance(tw, Mapping) else {"enable_gates": bool(tw), "enable_measure": bool(tw)}
    dd = settings.get("dynamical_decoupling")
    if dd is not None:
        opts["dynamical_decoupling"] = dict(dd) if isinstance(dd, Mapping) else {"enable": bool(dd)}
    if local:
        opts["simulator"] = {"seed_simulator": int(seed)}
    return opts


def shots_for(settings: Mapping[str, Any]) -> int:
    """Shots per circuit: the configured shots, or ceil(1 / precision^2) for a target precision."""
    if settings.get("precision") is not None:
        p = float(settings["precision"])
        if not p > 0:
            raise ValueError(f"hardware.precision must be positive, got {p}")
        return int(math.ceil(1.0 / p**2))
    s = int(settings["shots"])
    if s < 1:
        raise ValueError(f"hardware.shots must be a positive integer, got {s}")
    return s


ZNE_DEFAULT_NOISE_FACTORS = 3  # Runtime's ZneOptions.noise_factors default (1, 3, 5): every circuit runs 3 times


def mitigation_factor(settings: Mapping[str, Any]) -> int:
    """How many times Runtime executes each circuit's shots: 3 with zero-noise extrapolation (``zne_mitigation`` or
    ``resilience_level: 2`` unless ZNE is switched off), else 1. Calibration shots of measurement mitigation and
    twirling randomisations are not counted (they are small for shallow circuits)."""
    zne = settings.get("zne_mitigation")
    on = bool(zne) if zne is not None else settings.get("resilience_level") == 2
    return ZNE_DEFAULT_NOISE_FACTORS if on else 1


def estimate_cost(backend: Any, isa: QuantumCircuit, *, n_circuits: int, shots: int, n_jobs: int = 1,
                  job_overhead_s: float = DEFAULT_JOB_OVERHEAD_S, repetitions: int = 1) -> dict[str, Any]:
    """QPU seconds ~ repetitions * n_circuits * shots * (rep_delay + circuit duration) + n_jobs * job_overhead_s.

    ``repetitions`` is :func:`mitigation_factor` (3 with zero-noise extrapolation).

    ``rep_delay`` is the backend's ``default_rep_delay`` (fake and real IBM backends report it) and the circuit
    duration is :meth:`~qiskit.QuantumCircuit.estimate_duration` on the backend's target (gate and measurement
    durations); where a figure is missing the documented defaults of this module are used and named in ``source``.
    """
    source = []
    rep = getattr(backend, "default_rep_delay", None)
    if rep is None and hasattr(backend, "configuration"):
        rep = getattr(backend.configuration(), "default_rep_delay", None)
    if rep is None:
        rep, _ = DEFAULT_REP_DELAY_S, source.append("rep_delay: documented default")
    else:
        source.append("rep_delay: backend")
    meas = isa.copy()
    if not meas.num_clbits:
        meas.measure_all()
    try:
        dur = float(meas.estimate_duration(backend.target, unit="s"))
        source.append("circuit duration: backend target")
    except Exception:
        dur = DEFAULT_CIRCUIT_S
        source.append("circuit duration: documented default")
    per_shot = float(rep) + dur
    total = int(repetitions) * int(n_circuits) * int(shots)
    seconds = total * per_shot + n_jobs * float(job_overhead_s)
    return {"n_circuits": int(n_circuits), "shots": int(shots), "repetitions": int(repetitions), "total_shots": total,
            "rep_delay_s": float(rep), "circuit_duration_s": dur, "per_shot_s": per_shot, "n_jobs": int(n_jobs),
            "job_overhead_s": float(job_overhead_s), "qpu_seconds": float(seconds), "source": "; ".join(source)}


@dataclass(kw_only=True)
class RuntimeEvaluator:
    """``evaluate(circuit, parameters, values, observable) -> AerResult`` through Qiskit Runtime (module docstring)."""

    backend: str
    shots: int | None = 4096
    precision: float | None = None
    optimization_level: int = 1
    resilience_level: int | None = None
    measure_mitigation: bool | None = None
    zne_mitigation: bool | None = None
    twirling: Any = None
    dynamical_decoupling: Any = None
    max_qpu_seconds: float | None = 600.0
    job_overhead_s: float = DEFAULT_JOB_OVERHEAD_S
    seed: int = 0
    channel: str | None = None
    instance: str | None = None
    backend_object: Any = None
    records: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.kind = backend_kind(self.backend)
        if self.kind == "aer":
            raise ValueError("hardware.backend 'aer' runs on qiskit-aer directly (qnnff.qnn.aer), not through Runtime")
        if self.kind == "ibm" and self.backend_object is None:
            check_credentials(self.backend, channel=self.channel)  # fail before any work, without network
        if self.max_qpu_seconds is not None and not float(self.max_qpu_seconds) > 0:
            raise ValueError(f"hardware.max_qpu_seconds must be positive (or null for no cap), got {self.max_qpu_seconds}")

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], *, seed: int) -> RuntimeEvaluator:
        s = {**schema_defaults("#qnn.hardware"), **settings}
        return cls(backend=str(s["backend"]), shots=None if s.get("precision") is not None else int(s["shots"]),
                   precision=s.get("precision"), optimization_level=int(s["optimization_level"]),
                   resilience_level=s.get("resilience_level"), measure_mitigation=s.get("measure_mitigation"),
                   zne_mitigation=s.get("zne_mitigation"), twirling=s.get("twirling"),
                   dynamical_decoupling=s.get("dynamical_decoupling"), max_qpu_seconds=s.get("max_qpu_seconds"),
                   job_overhead_s=float(s["job_overhead_s"]), seed=int(seed), channel=s.get("channel"), instance=s.get("instance"))

    def _settings(self) -> dict[str, Any]:
        return {"shots": self.shots, "precision": self.precision, "resilience_level": self.resilience_level,
                "measure_mitigation": self.measure_mitigation, "zne_mitigation": self.zne_mitigation,
                "twirling": self.twirling, "dynamical_decoupling": self.dynamical_decoupling}

    def get_backend(self) -> Any:
        if self.backend_object is None:
            self.backend_object = resolve_backend(self.backend, channel=self.channel, instance=self.instance)
        return self.backend_object

    def prepare(self, circuit: QuantumCircuit, observable: SparsePauliOp, n_circuits: int) -> tuple[QuantumCircuit, SparsePauliOp, dict[str, Any]]:
        """ISA circuit, observable on its layout, and the cost estimate (raises QPUBudgetError over the cap)."""
        backend = self.get_backend()
        nq = getattr(backend, "num_qubits", None)
        if nq is not None and nq < circuit.num_qubits:
            raise ValueError(f"hardware.backend {self.backend!r} has {nq} qubits, the circuit needs {circuit.num_qubits}")
        pm = generate_preset_pass_manager(optimization_level=self.optimization_level, backend=backend, seed_transpiler=int(self.seed))
        isa = pm.run(circuit)
        obs = observable.apply_layout(isa.layout)
        cost = estimate_cost(backend, isa, n_circuits=n_circuits, shots=shots_for(self._settings()), job_overhead_s=self.job_overhead_s,
                             repetitions=mitigation_factor(self._settings()))
        cost["max_qpu_seconds"] = self.max_qpu_seconds
        reps = f" x {cost['repetitions']} (ZNE)" if cost["repetitions"] > 1 else ""
        msg = (f"Runtime cost estimate on {self.backend}: {cost['n_circuits']} circuits x {cost['shots']} shots{reps} = "
               f"{cost['total_shots']} shots, ~{cost['qpu_seconds']:.1f} QPU seconds ({cost['source']}); cap "
               f"{self.max_qpu_seconds if self.max_qpu_seconds is not None else 'none'} s")
        print(msg, flush=True)
        log.info(msg)
        if self.max_qpu_seconds is not None and cost["qpu_seconds"] > float(self.max_qpu_seconds):
            raise QPUBudgetError(f"hardware.max_qpu_seconds: the estimated {cost['qpu_seconds']:.1f} QPU seconds on {self.backend} "
                                 f"exceed the cap of {self.max_qpu_seconds} s ({cost['n_circuits']} circuits x {cost['shots']} shots); "
                                 "nothing was submitted. Lower shots / n_points or raise the cap.")
        return isa, obs, cost

    def __call__(self, circuit: QuantumCircuit, parameters: Sequence[Parameter], values: np.ndarray,
                 observable: SparsePauliOp) -> AerResult:
        t0 = time.perf_counter()
        params = list(parameters)
        vals = np.asarray(values, dtype=float)
        if vals.shape[-1] != len(params):
            raise ValueError(f"values have {vals.shape[-1]} columns, the circuit has {len(params)} parameters")
        batch_shape = vals.shape[:-1]
        n_circuits = int(np.prod(batch_shape)) if batch_shape else 1
        isa, obs, cost = self.prepare(circuit, observable, n_circuits)
        col = {p: j for j, p in enumerate(params)}
        pv = vals[..., [col[p] for p in isa.parameters]]
        from qiskit_ibm_runtime import Batch, EstimatorV2

        opts = estimator_options(self._settings(), seed=self.seed, local=self.kind == "fake")
        backend = self.get_backend()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*EstimatorV2 class is deprecated.*", category=DeprecationWarning)
            warnings.filterwarnings("ignore", message=".*no effect in local testing mode.*")
            with Batch(backend=backend) as batch:
                est = EstimatorV2(mode=batch, options=opts)
                job = est.run([(isa, obs, pv)])
                res = job.result()[0]
        evs = np.asarray(res.data.evs, dtype=float).reshape(batch_shape)
        stds = np.asarray(res.data.stds, dtype=float).reshape(batch_shape)
        info = {
            "backend": self.backend, "backend_kind": self.kind, "mode": "local testing" if self.kind == "fake" else "IBM Quantum",
            "shots": cost["shots"], "seed": int(self.seed), "optimization_level": self.optimization_level,
            "n_circuits": n_circuits, "n_primitive_calls": 1, "job_ids": [str(job.job_id())],
            "options": {k: v for k, v in opts.items() if k != "simulator"},
            "isa_depth": isa.depth(), "isa_ops": {k: int(v) for k, v in isa.count_ops().items()}, "layout": isa_layout(isa),
            "cost": cost, "seconds": round(time.perf_counter() - t0, 3),
        }
        self.records.append(info)
        return AerResult(values=evs, stderr=stds, info=info)

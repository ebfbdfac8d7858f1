"""Quantum neural network force field (model kind ``"qnn"``): the paper's QNN on the paper's features.

``E = center + scale * y``, ``y = a <Z_0>(x; w) + b``: the :class:`~qnnff.features.Featurizer` maps positions to
features ``x``, the circuit of :func:`qnnff.qnn.circuit.build_qnn_circuit` (weights ``w``) gives ``<Z_0>``, the
classical readout ``a, b`` (trainable, initialised to 1 and 0) rescales it, and the
:class:`~qnnff.features.EnergyScaler` maps it to eV. Forces are ``-dE/dR`` through the feature Jacobian.

* Training and prediction run on the exact torch engine (:mod:`qnnff.qnn.engine`), compiled once from the circuit.
* :meth:`QNNForceField.aer_energy` evaluates the same circuit with its trained weights on qiskit-aer, with shots
  and optionally device noise (:mod:`qnnff.qnn.aer`).
* Parameter counts: ``n_circuit_parameters`` is the circuit's (the paper's count: 50 / 87 / 135); the readout adds
  2 (``n_readout_parameters``); ``n_parameters()`` is the total of trainable tensors (circuit + readout).
* Initialisation (seeded, ``torch.Generator().manual_seed(seed)``): rotation weights uniform in
  ``[-init_scale, init_scale]`` (default pi), trainable feature-map weights ``feature_map_init``: ``"auto"``
  (default) = ``1/sqrt(K)`` with ``K`` the number of encoding gates of the feature, so that the initial model is
  smooth (:func:`qnnff.qnn.circuit.initial_feature_map_weights`), or a number (``1`` = the plain feature map, the
  choice that keeps the H2O QNN from fitting: see config/README.md); ``a = 1``, ``b = 0``.
* Artifact: the circuit as QPY bytes (``blobs["circuit.qpy"]``), the weights and readout as arrays, the featurizer,
  circuit config, observable and parameter-vector names in the metadata. :meth:`from_artifact` rebuilds the model
  from the QPY circuit alone (the loaded circuit is the single definition; no training code is involved).
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from qiskit import QuantumCircuit, qpy
from qiskit.circuit import Parameter
from qiskit.quantum_info import SparsePauliOp

from ..features import EnergyScaler, Featurizer
from ..qnn.circuit import QNNCircuitConfig, build_qnn_circuit, initial_feature_map_weights, z_observable
from ..qnn.engine import CompiledCircuit, QNNRegressor
from ..revision import Revisioned
from .base import FeatureForceField, register_model

CIRCUIT_BLOB = "circuit.qpy"


def _vector_parameters(circuit: QuantumCircuit, name: str) -> list[Parameter]:
    """All elements (in index order) of the circuit's ParameterVector called ``name``."""
    for p in circuit.parameters:
        vec = getattr(p, "vector", None)
        if vec is not None and vec.name == name:
            return list(vec)
    raise ValueError(f"circuit has no ParameterVector named {name!r} (parameters: {[str(p) for p in circuit.parameters][:8]}...)")


def circuit_blobs(circuit: QuantumCircuit) -> dict[str, bytes]:
    """The artifact blobs of a circuit model: the circuit as QPY bytes (``CIRCUIT_BLOB``)."""
    buf = io.BytesIO()
    qpy.dump(circuit, buf)
    return {CIRCUIT_BLOB: buf.getvalue()}


def observable_meta(observable: SparsePauliOp) -> dict[str, Any]:
    """A Pauli-sum observable (real coefficients) as JSON metadata; :func:`load_circuit` reads it back."""
    return {"labels": observable.paulis.to_labels(), "coeffs": [float(np.real(c)) for c in observable.coeffs]}


def load_circuit(blobs: dict[str, bytes], meta: dict[str, Any], kind: str) -> tuple[QuantumCircuit, SparsePauliOp]:
    """The circuit and observable of a circuit model's artifact (QNN, EQNN): the QPY blob, with the names of its input
    and weight vectors in its metadata, and the observable of ``meta["observable"]``."""
    if CIRCUIT_BLOB not in blobs:
        raise ValueError(f"{kind} artifact has no {CIRCUIT_BLOB} blob")
    (qc,) = qpy.load(io.BytesIO(blobs[CIRCUIT_BLOB]))
    qc.metadata = {**(qc.metadata or {}), "inputs": meta.get("inputs", "x"), "weights": meta.get("weights", "w")}
    obs = SparsePauliOp(meta["observable"]["labels"], np.asarray(meta["observable"]["coeffs"], dtype=complex))
    return qc, obs


@register_model
class QNNForceField(Revisioned, FeatureForceField):
    """Featurizer + QNN regressor (compiled Qiskit circuit, readout a, b) + energy scaler."""

    kind = "qnn"

    @classmethod
    def from_settings(cls, settings: Any, *, seed: int, featurizer: Featurizer, energy_scaler: EnergyScaler,
                      train_positions: np.ndarray) -> QNNForceField:
        """A fresh QNN of :class:`qnnff.settings.QNNSettings` ``settings`` (its circuit and initialisation)."""
        return cls(featurizer=featurizer, energy_scaler=energy_scaler, circuit=dict(settings.circuit), seed=seed,
                   init_scale=settings.init_rotations, feature_map_init=settings.feature_map_weights)

    def __init__(
        self,
        *,
        featurizer: Featurizer,
        energy_scaler: EnergyScaler,
        circuit: Mapping[str, Any] | None = None,
        seed: int = 0,
        quantum_circuit: QuantumCircuit | None = None,
        weights: np.ndarray | torch.Tensor | None = None,
        readout: tuple[float, float] = (1.0, 0.0),
        observable: SparsePauliOp | None = None,
        init_scale: float = math.pi,
        feature_map_init: float | str = "auto",
        mode: str = "adjoint",
    ) -> None:
        if not featurizer.symbols:
            raise ValueError("qnn model: the featurizer has no chemical symbols; build it with symbols=[...] of the system")
        super().__init__(featurizer=featurizer, energy_scaler=energy_scaler)
        d = featurizer.n_features
        self.seed = int(seed)
        if quantum_circuit is None:
            if circuit is None:
                raise ValueError("qnn model: give the circuit settings `circuit` (or a built `quantum_circuit`)")
            cfg = dict(circuit)
            if "n_features" in cfg and int(cfg["n_features"]) != d:
                raise ValueError(f"qnn model: circuit n_features={cfg['n_features']} but the featurizer gives {d} features")
            cfg["n_features"] = d
            self.circuit_config = QNNCircuitConfig(**cfg).to_dict()
            qc, xv, wv = build_qnn_circuit(**self.circuit_config)
            inputs, wparams = list(xv), list(wv)
        else:
            qc = quantum_circuit
            meta = qc.metadata or {}
            self.circuit_config = dict(circuit) if circuit is not None else dict(meta.get("qnnff_circuit", {}))
            inputs = _vector_parameters(qc, meta.get("inputs", "x"))
            wparams = _vector_parameters(qc, meta.get("weights", "w"))
        if len(inputs) != d:
            raise ValueError(f"qnn model: the circuit has {len(inputs)} inputs but the featurizer gives {d} features")
        self.quantum_circuit = qc
        self.inputs = inputs
        self.weight_parameters = wparams
        self.observable = observable if observable is not None else z_observable(qc.num_qubits)
        self.program = CompiledCircuit(qc, inputs=inputs, weights=wparams, observable=self.observable)
        if weights is None:
            weights = self._initial_weights(len(wparams), float(init_scale), feature_map_init)
        self.regressor = QNNRegressor(self.program, weights, readout=readout, mode=mode)

    def _initial_weights(self, n: int, scale: float, feature_map_init: float | str) -> torch.Tensor:
        if not scale > 0:
            raise ValueError(f"qnn model: init_scale (rotation half-width) must be positive, got {scale}")
        g = torch.Generator().manual_seed(self.seed)
        w = (torch.rand(n, generator=g, dtype=torch.float64) * 2.0 - 1.0) * scale
        for t, lam in initial_feature_map_weights(self.quantum_circuit, self.inputs, self.weight_parameters, feature_map_init).items():
            w[t] = lam
        return w

    # ---- counts
    @property
    def n_circuit_parameters(self) -> int:
        return len(self.weight_parameters)

    @property
    def n_readout_parameters(self) -> int:
        return 2

    def effdim_module(self) -> QNNForceField:
        """A copy for the effective dimension (:mod:`qnnff.effdim`): same circuit and weights, readout fixed at
        ``a = 1, b = 0`` and not trainable, so ``y = <Z_0>`` lies in [-1, 1] and ``d`` is the circuit's parameter
        count (the paper's 87 / 135)."""
        m = QNNForceField(featurizer=self.featurizer, energy_scaler=self.energy_scaler, circuit=self.circuit_config, seed=self.seed,
                          quantum_circuit=self.quantum_circuit, weights=self.regressor.weights.detach().clone(), readout=(1.0, 0.0),
                          observable=self.observable, mode=self.regressor.mode)
        m.regressor.a.requires_grad_(False)
        m.regressor.b.requires_grad_(False)
        return m

    # ---- fast path for the training loss
    def regressor_value_and_input_grad(self, x: torch.Tensor, *, create_graph: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        return self.regressor.value_and_input_grad(x, create_graph=create_graph)

    # ---- qiskit-aer evaluation
    def aer_energy(
        self,
        positions: torch.Tensor | np.ndarray,
        *,
        shots: int | None = 4096,
        noise: str = "none",
        p1: float = 1e-3,
        p2: float = 1e-2,
        seed: int = 0,
        optimization_level: int = 1,
    ) -> dict[str, Any]:
        """Energies (eV) of ``positions`` evaluated on qiskit-aer with the trained weights.

        Returns ``{"energy": [B], "stderr": [B] (eV, 0 if exact), "exact": [B] (torch engine, eV), "info": {...}}``.
        """
        from ..qnn.aer import aer_expectations

        pos = self.check_positions(positions)
        with torch.no_grad():
            x = self.featurizer(pos)
            exact = self.energy(pos, check=False).numpy()
        res = aer_expectations(
            self.quantum_circuit, inputs=self.inputs, weights=self.weight_parameters, x=x.numpy(),
            weight_values=self.regressor.weights.detach().numpy(), observable=self.observable, shots=shots, noise=noise,
            p1=p1, p2=p2, seed=seed, optimization_level=optimization_level,
        )
        a, b = self.regressor.a.detach().item(), self.regressor.b.detach().item()
        sc = self.energy_scaler
        energy = sc.center + sc.scale * (a * res.values + b)
        stderr = abs(sc.scale * a) * res.stderr
        return {"energy": energy, "stderr": stderr, "exact": exact, "info": res.info}

    # ---- forces from circuits (parameter shift), on Aer or any primitive
    def shift_circuit(self):
        """The trained circuit with one parameter per input occurrence (:func:`qnnff.qnn.shift.build_shift_circuit`)."""
        from ..qnn.shift import build_shift_circuit

        return build_shift_circuit(self.quantum_circuit, inputs=self.inputs, weights=self.weight_parameters,
                                   weight_values=self.regressor.weights.detach().numpy())

    def circuit_energy_and_forces(self, positions: torch.Tensor | np.ndarray, *, evaluate: Any) -> dict[str, Any]:
        """Energies (eV) and forces (eV/Angstrom) of ``positions`` measured with circuits: parameter-shift input
        gradients (:mod:`qnnff.qnn.shift`) through the feature Jacobian, all circuits of all geometries in one call
        ``evaluate(circuit, parameters, values, observable) -> AerResult`` (values ``[B, 1 + 2K, K]``).

        Returns ``{"energy": [B], "energy_stderr": [B], "forces": [B, n, 3], "forces_stderr": [B, n, 3],
        "exact_energy": [B], "exact_forces": [B, n, 3] (torch engine), "info": {...}}``.
        """
        pos = self.check_positions(positions)
        x, jac = self.featurizer.features_and_jacobian(pos)
        exact_e, exact_f = self.energy_and_forces(pos, check=False)
        sc = self.shift_circuit()
        res = evaluate(sc.circuit, sc.thetas, sc.parameter_values(x.numpy()), self.observable)
        g = sc.gradients(np.asarray(res.values).reshape(len(pos), -1), np.asarray(res.stderr).reshape(len(pos), -1))
        a, b = self.regressor.a.detach().item(), self.regressor.b.detach().item()
        es = self.energy_scaler
        dedr, dedr_err = sc.cartesian(g, jac.detach().numpy(), es.scale * a)
        info = {**res.info, "n_occurrences": sc.n_occurrences, "circuits_per_geometry": sc.circuits_per_input,
                "n_geometries": len(pos)}
        return {"energy": es.center + es.scale * (a * g.value + b), "energy_stderr": abs(es.scale * a) * g.value_stderr,
                "forces": -dedr, "forces_stderr": dedr_err, "exact_energy": exact_e.numpy(), "exact_forces": exact_f.numpy(),
                "info": info}

    def aer_energy_and_forces(
        self,
        positions: torch.Tensor | np.ndarray,
        *,
        shots: int | None = 4096,
        noise: str = "none",
        p1: float = 1e-3,
        p2: float = 1e-2,
        seed: int = 0,
        optimization_level: int = 1,
    ) -> dict[str, Any]:
        """:meth:`circuit_energy_and_forces` on qiskit-aer (exact with ``shots=None``, else sampled; optional noise)."""
        from ..qnn.aer import aer_pub_expectations

        def evaluate(circuit, parameters, values, observable):
            return aer_pub_expectations(circuit, parameters=parameters, values=values, observable=observable, shots=shots,
                                        noise=noise, p1=p1, p2=p2, seed=seed, optimization_level=optimization_level)

        return self.circuit_energy_and_forces(positions, evaluate=evaluate)

    # ---- persistence
    def to_artifact(self) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, bytes]]:
        arrays = {
            "weights": self.regressor.weights.detach().cpu().numpy(),
            "readout": np.array([self.regressor.a.detach().item(), self.regressor.b.detach().item()]),
        }
        meta = {
            "featurizer": self.featurizer.to_dict(),
            "circuit": self.circuit_config,
            "inputs": self.inputs[0].vector.name if self.inputs else "x",
            "weights": self.weight_parameters[0].vector.name if self.weight_parameters else "w",
            "observable": observable_meta(self.observable),
            "seed": self.seed,
            "mode": self.regressor.mode,
            "n_parameters": self.n_parameters(),
            "n_circuit_parameters": self.n_circuit_parameters,
            "n_readout_parameters": self.n_readout_parameters,
            "engine": self.program.describe(),
        }
        return arrays, meta, circuit_blobs(self.quantum_circuit)

    @classmethod
    def from_artifact(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any], blobs: dict[str, bytes]) -> QNNForceField:
        qc, obs = load_circuit(blobs, meta, "qnn")
        readout = tuple(float(v) for v in np.asarray(arrays["readout"]).ravel())
        model = cls(
            featurizer=Featurizer.from_dict(meta["featurizer"]),
            energy_scaler=EnergyScaler.from_dict(meta["energy_scaler"]),
            circuit=meta.get("circuit"),
            seed=int(meta.get("seed", 0)),
            quantum_circuit=qc,
            weights=np.asarray(arrays["weights"], dtype=float),
            readout=(readout[0], readout[1]),
            observable=obs,
            mode=meta.get("mode", "adjoint"),
        )
        if model.n_parameters() != meta["n_parameters"]:
            raise ValueError(f"qnn artifact: rebuilt {model.n_parameters()} parameters, artifact says {meta['n_parameters']}")
        return model

"""Symmetry-invariant QNN force field (model kind ``"eqnn"``): the follow-up's invariant QNN on Cartesian positions.

Le, Kiss, Schuhmacher, Tavernelli & Tacchino, New J. Phys. 27, 023015 (2025); the circuit is
:func:`qnnff.qnn.eqnn.build_eqnn_circuit` (its module docstring describes the architecture, the layouts, the parameter
sharing and the averaging over like-atom permutations).

``E = center + scale * y``, ``y = a <O>_avg + b``: the circuit sees the positions of the active atoms relative to the
reference atom (``x = r_active - r_ref`` in Angstrom, :func:`qnnff.qnn.eqnn.relative_inputs`; no featurizer, no
internal coordinates); ``<O>_avg`` is the invariant observable averaged over the circuit's averaging permutations of
like atoms (one for LiH and H2O, two for H3O+); the classical readout ``a, b`` (trainable, initialised to 1 and 0)
rescales it and the :class:`~qnnff.features.EnergyScaler` maps it to eV. Forces are ``-dE/dR``: the engine's exact
input gradient ``dy/dx``, un-permuted and averaged, on the active atoms, and minus their sum on the reference atom.

* Invariances (exact, by construction): translations (relative positions), proper rotations (equivariant encoding,
  SU(2)-invariant layers, invariant initial state and observable) and permutations of like atoms (shared parameters,
  and averaging where sharing alone cannot make the circuit invariant). Mirror images are not identified (for three or
  more active atoms a reflection is not a rotation).
* Training and prediction run on the exact engine (:mod:`qnnff.qnn.engine`; the ``rv`` encoding gates natively).
* Domain: the system's featurizer (the box of its scaled internal coordinates) is kept for the guards only, as for
  sGDML: a geometry outside the training box raises :class:`~qnnff.errors.OutOfDomainError` like the other kinds'.
* Parameters: ``n_circuit_parameters`` (alphas, couplings; the count the tables state) plus the readout (2).
* Initialisation (seeded): couplings ``J`` uniform in ``[-couplings, couplings]``; encoding weights ``alpha`` uniform
  in ``[alpha_0 / 2, 3 alpha_0 / 2]``, ``alpha_0 = 1/sqrt(K)`` with ``K = rep (D + 1)`` the encoding gates of one atom
  (``"auto"``, the rule that keeps the paper's QNN smooth at the start) or a number (equal alphas are a saddle point
  for LiH: see :meth:`EQNNForceField._initial_weights`); symmetry-breaking angles 0.
* Artifact: the circuit as QPY bytes, weights and readout as arrays, the circuit settings, observable and featurizer in
  the metadata; :meth:`EQNNForceField.from_artifact` rebuilds from the QPY circuit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from qiskit import QuantumCircuit
from qiskit.quantum_info import SparsePauliOp

from ..errors import domain_error_message
from ..features import EnergyScaler, Featurizer
from ..geometry import inverse_distances
from ..qnn.engine import CompiledCircuit, QNNRegressor
from ..qnn.eqnn import EquivariantQNNConfig, build_eqnn_circuit, permute_inputs, relative_inputs
from .base import ForceField, TrainingBatch, register_model
from .qnn import _vector_parameters, circuit_blobs, load_circuit, observable_meta

DTYPE = torch.float64


def _inverse(perm: Sequence[int]) -> list[int]:
    inv = [0] * len(perm)
    for a, p in enumerate(perm):
        inv[p] = a
    return inv


def rv_u_angles(v: np.ndarray) -> np.ndarray:
    """``[B, 3] -> [B, 3]``: the angles ``(theta, phi, lambda)`` of Qiskit's ``U`` gate equal, up to a global phase, to
    ``RV(v) = exp(-i (v . sigma) / 2)`` (the encoding gate), for every row of ``v``; exact also on the axes and at
    ``v = 0``."""
    v = np.asarray(v, dtype=float).reshape(-1, 3)
    t = np.linalg.norm(v, axis=1)
    c, s = np.cos(t / 2), np.sin(t / 2)
    n = np.divide(v, t[:, None], out=np.zeros_like(v), where=t[:, None] > 0)
    m00 = c - 1j * s * n[:, 2]
    m10 = s * (n[:, 1] - 1j * n[:, 0])
    m01 = s * (-n[:, 1] - 1j * n[:, 0])
    m11 = c + 1j * s * n[:, 2]
    theta = 2 * np.arctan2(np.abs(m10), np.abs(m00))
    # M = e^{i gamma} U: gamma from M00 = e^{i gamma} cos(theta / 2), unless theta = pi (then phi = 0 fixes gamma)
    has00 = np.abs(m00) > 1e-300
    gamma = np.where(has00, np.angle(m00), np.angle(m10))
    phi = np.where(has00, np.angle(m10) - gamma, 0.0)
    lam = np.where(np.abs(m01) > np.abs(m11), np.angle(-m01) - gamma, np.angle(m11) - gamma - phi)
    return np.stack([theta, phi, lam], axis=1)


@register_model
class EQNNForceField(ForceField):
    """Relative positions -> invariant circuit (compiled, readout a, b), averaged over like-atom permutations -> eV."""

    kind = "eqnn"
    inputs_label = "positions relative to the reference atom, Angstrom"
    floor_inputs_label = ("measured on the inverse interatomic distances, which these positions determine and which "
                          "determine them up to a rotation or reflection, neither of which changes the energy")

    @classmethod
    def from_settings(cls, settings: Any, *, seed: int, featurizer: Featurizer, energy_scaler: EnergyScaler,
                      train_positions: np.ndarray) -> EQNNForceField:
        """A fresh model of :class:`qnnff.settings.EQNNSettings` ``settings`` for the featurizer's species."""
        return cls(featurizer=featurizer, energy_scaler=energy_scaler, circuit=dict(settings.circuit), seed=seed,
                   init_couplings=settings.init_couplings, init_alpha=settings.init_alpha)

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
        init_couplings: float = 0.1,
        init_alpha: float | str = "auto",
        mode: str = "adjoint",
    ) -> None:
        if not featurizer.symbols:
            raise ValueError("eqnn model: the featurizer has no chemical symbols; build it with symbols=[...] of the system")
        super().__init__(symbols=featurizer.symbols, energy_scaler=energy_scaler)
        self.featurizer = featurizer
        self.seed = int(seed)
        settings = {k: v for k, v in dict(circuit or {}).items() if k != "species"}
        if circuit is not None and "species" in circuit and tuple(circuit["species"]) != tuple(self.symbols):
            raise ValueError(f"eqnn model: circuit species {list(circuit['species'])} differ from the system's {self.symbols}")
        if "depth" not in settings:
            raise ValueError("eqnn model: the circuit settings need `depth` (the number of layers D)")
        self.config = EquivariantQNNConfig(species=tuple(self.symbols), **settings)
        if quantum_circuit is None:
            built = build_eqnn_circuit(self.config)
            qc, inputs, wparams, obs = built.circuit, list(built.inputs), list(built.weights), built.observable
        else:
            qc = quantum_circuit
            meta = qc.metadata or {}
            inputs = _vector_parameters(qc, meta.get("inputs", "x"))
            wparams = _vector_parameters(qc, meta.get("weights", "w"))
            if observable is None:
                raise ValueError("eqnn model: a given quantum_circuit needs its observable")
            obs = observable
        if len(inputs) != self.config.n_inputs or len(wparams) != self.config.n_weights:
            raise ValueError(f"eqnn model: the circuit has {len(inputs)} inputs and {len(wparams)} weights, the settings "
                             f"{self.config.n_inputs} and {self.config.n_weights}")
        self.quantum_circuit = qc
        self.inputs = inputs
        self.weight_parameters = wparams
        self.observable = obs
        self.permutations = [tuple(p) for p in self.config.averaging_permutations]
        self._inverse = [_inverse(p) for p in self.permutations]
        self.program = CompiledCircuit(qc, inputs=inputs, weights=wparams, observable=obs)
        self.init_couplings, self.init_alpha = float(init_couplings), init_alpha
        if weights is None:
            weights = self._initial_weights()
        self.regressor = QNNRegressor(self.program, weights, readout=readout, mode=mode)

    # ---- initialisation
    def initial_alpha(self) -> float:
        if self.init_alpha == "auto":
            return 1.0 / math.sqrt(self.config.rep * (self.config.depth + 1))
        a = float(self.init_alpha)
        if not a > 0:
            raise ValueError(f"eqnn model: init alpha must be positive or 'auto', got {self.init_alpha!r}")
        return a

    def _initial_weights(self) -> torch.Tensor:
        c = self.init_couplings
        if not c > 0:
            raise ValueError(f"eqnn model: init couplings (half-width of the uniform draw) must be positive, got {c}")
        cfg = self.config
        g = torch.Generator().manual_seed(self.seed)
        w = (torch.rand(cfg.n_weights, generator=g, dtype=DTYPE) * 2.0 - 1.0) * c
        # alpha uniform in [alpha_0 / 2, 3 alpha_0 / 2] per (slot, qubit class): equal alphas on the two qubits of one
        # singlet that encode the same atom (LiH) rotate it as a whole, the singlet stays an eigenstate of every
        # Heisenberg gate and <O> = -3 at every geometry, a saddle point of the loss (zero gradient)
        alpha = self.initial_alpha()
        u = torch.rand(cfg.n_weights, generator=g, dtype=DTYPE)
        for slot in range(cfg.depth + 1):
            for q in range(cfg.n_qubits):
                k = cfg.alpha_index(slot, q)
                w[k] = alpha * (0.5 + u[k])
        if cfg.symmetry_breaking:
            for layer in range(cfg.depth):
                for q in range(cfg.n_qubits):
                    w[cfg.epsilon_index(layer, q)] = 0.0
        return w

    # ---- counts
    @property
    def n_circuit_parameters(self) -> int:
        return len(self.weight_parameters)

    @property
    def n_readout_parameters(self) -> int:
        return 2

    # ---- inputs
    def model_inputs(self, positions: torch.Tensor) -> torch.Tensor:
        """The positions of the active atoms relative to the reference atom [B, 3 n_active] (Angstrom): the circuit
        sees nothing else."""
        return relative_inputs(torch.as_tensor(positions, dtype=DTYPE), self.config)

    def floor_inputs(self, positions: torch.Tensor) -> torch.Tensor:
        """The inverse interatomic distances of the molecule (:func:`qnnff.geometry.inverse_distances`): the same
        information about the energy as the relative positions, without their frame (they fix the positions up to a
        rotation or reflection, and the energy depends on neither). A Gaussian process on the raw
        Cartesian components would have to learn the rotation invariance the circuit has built in, so its error is no
        floor for this model (H3O+: 0.0135 scaled on the 9 relative positions, 2.8x above the trained invariant QNN)."""
        return inverse_distances(torch.as_tensor(positions, dtype=DTYPE))

    def circuit_inputs(self, positions: torch.Tensor) -> torch.Tensor:
        """[m B, 3 n_active]: the relative positions under each averaging permutation (permutation-major)."""
        x = self.model_inputs(positions)
        if len(self.permutations) == 1:
            return permute_inputs(x, self.permutations[0])
        return torch.cat([permute_inputs(x, p) for p in self.permutations])

    def _average(self, z: torch.Tensor, batch: int) -> torch.Tensor:
        return z.reshape(len(self.permutations), batch).mean(0)

    def _unpermute_grad(self, g: torch.Tensor, batch: int) -> torch.Tensor:
        """dy/dx of the averaged output [B, n_active, 3] from the per-permutation input gradients [m B, 3 n_active]."""
        n = self.config.n_active
        g = g.reshape(len(self.permutations), batch, n, 3)
        return sum(g[i][:, inv] for i, inv in enumerate(self._inverse)) / len(self.permutations)

    def _cartesian(self, gx: torch.Tensor) -> torch.Tensor:
        """dy/dR [B, n_atoms, 3] from dy/dx [B, n_active, 3] (x = r_active - r_ref)."""
        cfg = self.config
        parts: list[torch.Tensor | None] = [None] * len(self.symbols)
        for a, i in enumerate(cfg.active_atoms):
            parts[i] = gx[:, a]
        parts[cfg.reference] = -gx.sum(1)
        return torch.stack(parts, 1)

    # ---- ForceField
    def scaled_energy(self, positions: torch.Tensor) -> torch.Tensor:
        pos = torch.as_tensor(positions, dtype=DTYPE)
        return self._average(self.regressor(self.circuit_inputs(pos)), pos.shape[0])

    def scaled_energy_and_forces(self, batch: TrainingBatch, *, create_graph: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        pos = batch.positions
        y, g = self.regressor.value_and_input_grad(self.circuit_inputs(pos), create_graph=create_graph)
        B = pos.shape[0]
        return self._average(y, B), -self._cartesian(self._unpermute_grad(g, B))

    def energy_and_forces(self, positions: torch.Tensor | np.ndarray, *, create_graph: bool = False,
                          check: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """(eV [B], eV/Angstrom [B, n, 3]) from the engine's exact input gradient (no second autograd pass)."""
        if create_graph:
            return super().energy_and_forces(positions, create_graph=True, check=check)
        pos = (self.check_domain(positions) if check else self.check_positions(positions)).detach()
        y, f = self.scaled_energy_and_forces(TrainingBatch(pos, torch.zeros(0), torch.zeros(0)), create_graph=False)
        sc = self.energy_scaler
        return (sc.center + sc.scale * y).detach(), (sc.scale * f).detach()

    def out_of_domain(self, positions: torch.Tensor) -> torch.Tensor:
        """bool [B]: a scaled internal coordinate left [-1, 1] (the featurizer's training range with its margin)."""
        return self.featurizer.out_of_domain(torch.as_tensor(positions, dtype=DTYPE).detach())

    def domain_message(self, positions: torch.Tensor) -> str:
        feat = self.featurizer
        pos = torch.as_tensor(positions, dtype=DTYPE).detach()
        with torch.no_grad():
            q = feat.internal(pos)[0]
            s = feat.scale(q.unsqueeze(0))[0]
        return domain_error_message(self.kind, feat.coordinate_labels(), q.tolist(), s.tolist(), feat.lo.tolist(), feat.hi.tolist())

    # ---- effective dimension
    def effdim_module(self) -> EQNNForceField:
        """A copy for the effective dimension (:mod:`qnnff.effdim`): same circuit and weights, readout fixed at
        ``a = b = 1/2``, so ``y = (<O> + 1) / 2`` lies in [-1, 1] (the observable's spectrum is [-3, 1]) and ``d`` is
        the circuit's parameter count."""
        m = EQNNForceField(featurizer=self.featurizer, energy_scaler=self.energy_scaler, circuit=self.config.to_dict(),
                           seed=self.seed, quantum_circuit=self.quantum_circuit, weights=self.regressor.weights.detach().clone(),
                           readout=(0.5, 0.5), observable=self.observable, mode=self.regressor.mode)
        m.regressor.a.requires_grad_(False)
        m.regressor.b.requires_grad_(False)
        return m

    def value_and_parameter_jacobian(self, x: torch.Tensor, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Hook of :mod:`qnnff.effdim` (flattened positions ``x [N, 3 n_atoms]``): the scaled energy and its per-sample
        gradient w.r.t. the trainable parameters ``theta`` (``named_parameters`` order), from the adjoint engine."""
        pos = torch.as_tensor(x, dtype=DTYPE).reshape(x.shape[0], len(self.symbols), 3)
        B = pos.shape[0]
        y, jac = self.regressor.value_and_parameter_jacobian(self.circuit_inputs(pos), theta)
        return self._average(y, B), jac.reshape(len(self.permutations), B, -1).mean(0)

    # ---- qiskit-aer
    def aer_circuit(self) -> tuple[QuantumCircuit, list, list[tuple[int, int]]]:
        """The trained circuit for qiskit-aer: weights bound, and every encoding ``RV(alpha x_a)`` replaced by
        ``RZ(phi) RY(theta) RZ(lambda)`` (the ``U`` gate up to a global phase) with three fresh parameters (a
        parametrised RV cannot be transpiled: its decomposition is not a polynomial of its parameters). Returns the
        circuit, its parameters (3 per encoding gate, in circuit order) and, per encoding gate, ``(alpha weight index,
        active atom)``: :func:`rv_u_angles` gives the values of the U parameters for a geometry, so that one
        transpilation serves every geometry."""
        from qiskit.circuit import Parameter
        from qiskit.circuit import QuantumCircuit as _QC

        wv = dict(zip(self.weight_parameters, self.regressor.weights.detach().numpy().tolist()))
        index = {p: i for i, p in enumerate(self.weight_parameters)}
        qc = _QC(self.quantum_circuit.num_qubits, name="eqnn_aer")
        params, encodings = [], []
        for inst in self.quantum_circuit.data:
            op = inst.operation
            if op.name == "rv":
                (alpha,) = [p for p in op.params[0].parameters if p in index]
                (xp,) = [p for p in op.params[0].parameters if p not in index]
                k = len(encodings)
                th = [Parameter(f"u{k}_{c}") for c in "tpl"]
                params += th
                encodings.append((index[alpha], self.inputs.index(xp) // 3))
                (q,) = inst.qubits  # U(theta, phi, lambda) = RZ(phi) RY(theta) RZ(lambda) up to a global phase; as
                qc.rz(th[2], q)  # rotations (not a U gate) the circuit transpiles like the QNN's: a parametrised U
                qc.ry(th[0], q)  # gate leaves a parametrised global phase after translation to a noise model's basis
                qc.rz(th[1], q)  # gates, which Aer's parameter binding rejects
            else:
                qc.append(op, inst.qubits, inst.clbits)
        return qc.assign_parameters({p: v for p, v in wv.items() if p in qc.parameters}), params, encodings

    def aer_energy(self, positions: torch.Tensor | np.ndarray, *, shots: int | None = 4096, noise: str = "none",
                   p1: float = 1e-3, p2: float = 1e-2, seed: int = 0, optimization_level: int = 1) -> dict[str, Any]:
        """Energies (eV) of ``positions`` on qiskit-aer with the trained weights: every averaging permutation's circuit
        is run and the expectation values are averaged (standard errors combined). Returns ``{"energy", "stderr",
        "exact" (the engine, eV), "info"}``."""
        from ..qnn.aer import aer_pub_expectations

        pos = self.check_positions(positions)
        B, m = pos.shape[0], len(self.permutations)
        with torch.no_grad():
            xs = self.circuit_inputs(pos).numpy()
            exact = self.energy(pos, check=False).numpy()
        qc, params, encodings = self.aer_circuit()
        w = self.regressor.weights.detach().numpy()
        values = np.concatenate([rv_u_angles(w[k][None, None] * xs[:, 3 * a:3 * a + 3]) for k, a in encodings], axis=1)
        res = aer_pub_expectations(qc, parameters=params, values=values, observable=self.observable, shots=shots, noise=noise,
                                   p1=p1, p2=p2, seed=seed, optimization_level=optimization_level)
        vals = np.asarray(res.values).reshape(m, B).mean(0)
        err = np.sqrt((np.asarray(res.stderr).reshape(m, B) ** 2).sum(0)) / m
        a, b = self.regressor.a.detach().item(), self.regressor.b.detach().item()
        sc = self.energy_scaler
        return {"energy": sc.center + sc.scale * (a * vals + b), "stderr": abs(sc.scale * a) * err, "exact": exact,
                "info": {**res.info, "averaging_permutations": m}}

    # ---- persistence
    def to_artifact(self) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, bytes]]:
        arrays = {"weights": self.regressor.weights.detach().cpu().numpy(),
                  "readout": np.array([self.regressor.a.detach().item(), self.regressor.b.detach().item()])}
        meta = {
            "featurizer": self.featurizer.to_dict(),
            "circuit": {k: v for k, v in self.config.to_dict().items() if k != "species"},
            "inputs": self.inputs[0].vector.name,
            "weights": self.weight_parameters[0].vector.name,
            "observable": observable_meta(self.observable),
            "seed": self.seed,
            "mode": self.regressor.mode,
            "init": {"couplings": self.init_couplings, "alpha": self.init_alpha},
            "averaging_permutations": [list(p) for p in self.permutations],
            "n_parameters": self.n_parameters(),
            "n_circuit_parameters": self.n_circuit_parameters,
            "n_readout_parameters": self.n_readout_parameters,
            "engine": self.program.describe(),
        }
        return arrays, meta, circuit_blobs(self.quantum_circuit)

    @classmethod
    def from_artifact(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any], blobs: dict[str, bytes]) -> EQNNForceField:
        qc, obs = load_circuit(blobs, meta, "eqnn")
        readout = tuple(float(v) for v in np.asarray(arrays["readout"]).ravel())
        init = meta.get("init", {})
        model = cls(featurizer=Featurizer.from_dict(meta["featurizer"]), energy_scaler=EnergyScaler.from_dict(meta["energy_scaler"]),
                    circuit=meta["circuit"], seed=int(meta.get("seed", 0)), quantum_circuit=qc,
                    weights=np.asarray(arrays["weights"], dtype=float), readout=(readout[0], readout[1]), observable=obs,
                    init_couplings=float(init.get("couplings", 0.1)), init_alpha=init.get("alpha", "auto"),
                    mode=meta.get("mode", "adjoint"))
        if model.n_parameters() != meta["n_parameters"]:
            raise ValueError(f"eqnn artifact: rebuilt {model.n_parameters()} parameters, artifact says {meta['n_parameters']}")
        return model

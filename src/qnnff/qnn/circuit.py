"""The paper's quantum neural network as a Qiskit :class:`~qiskit.circuit.QuantumCircuit`.

Kiss, Tacchino, Vallecorsa & Tavernelli, MLST 3, 035004 (2022): a hardware-efficient ansatz with the inputs
re-uploaded in every layer through a (trainable) feature map, and the observable Z on the first qubit.
:func:`build_qnn_circuit` is the single definition of the circuit; the torch engine
(:mod:`qnnff.qnn.engine`) and the Aer path (:mod:`qnnff.qnn.aer`) both execute exactly this circuit.

Architecture (decided for this project; ``N`` qubits, ``n_f`` features ``x_j``, ``D`` layers)
------------------------------------------------------------------------------------------
* ``D`` layers; each layer = an *encoding block* followed by a *variational block*.
* Encoding block (data re-uploading, in every layer)::

      for r in range(l):                       # l = feature_map_reps
          for q in range(N):
              for j in feats(q):
                  R_{axis(r, q, j)}(lambda_{r, j} * x_j) on qubit q   # axis cycles Y, Z, X over r

  ``feats(q)`` = all features for ``feature_map="full"``; ``[q mod n_f]`` for ``"linear"`` (when
  ``n_f > N`` with ``"linear"``, qubit ``q`` takes features ``q, q+N, q+2N, ...`` so nothing is dropped, the
  ``k``-th of them about axis ``(r + k) mod 3`` so that they do not merge into their sum:
  :meth:`QNNCircuitConfig.encoding_axis`).
* Trainable feature map weights ``lambda``, SHARED across layers: ``"full"`` = one weight per
  (repetition, feature) -> ``n_f * l_t`` weights; ``"linear"`` = one weight per repetition, shared across
  features -> ``l_t`` weights; ``"none"`` -> ``lambda = 1`` (the angle is ``x_j`` itself). If ``l_t`` differs
  from ``l``, repetition ``r`` uses weight index ``r mod l_t``.
* Variational block: on every qubit the listed ``rotations`` (default RY then RZ), each with its own weight,
  then the CNOT entangler: ``"linear"`` chain ``q -> q+1`` or ``"full"`` all pairs ``i < j`` (control ``i``).
* Final rotation layer (one more set of the ``rotations`` on every qubit) if ``final_rotations``.
* Observable: Z on qubit 0 (Qiskit little-endian: the right-most Pauli label, ``"I...IZ"``); <Z> in [-1, 1].

Parameter count (the paper's count is the circuit's)::

    P = D * len(rotations) * N + T + (len(rotations) * N if final_rotations else 0),
    T = n_f * l_t (full), l_t (linear), 0 (none).

Paper settings: LiH N=2, n_f=3 (r -> (pi r, arcsin r, arccos r)), D=10, full l=2, full l_t=2: 40 + 6 + 4 = 50;
H2O N=3, n_f=3, D=12, full l=3, full l_t=3: 72 + 9 + 6 = 87; H3O+ N=6, n_f=6, D=10, linear l=3, linear l_t=3:
120 + 3 + 12 = 135.

The model adds a classical readout ``y = a <Z> + b`` (a, b trainable, initialised 1 and 0; see
:mod:`qnnff.models.qnn`); those two are reported separately from the circuit count.

Weight vector layout (``w``, one :class:`~qiskit.circuit.ParameterVector`): first the ``T`` feature-map
weights (index ``r * n_f + j`` for full, ``r`` for linear), then layer by layer, qubit by qubit, rotation by
rotation (``T + (d * N + q) * len(rotations) + k``), then the final rotations in the same qubit/rotation order.
The inputs are the ParameterVector ``x`` of length ``n_f``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from qiskit.circuit import ParameterVector, QuantumCircuit
from qiskit.quantum_info import SparsePauliOp

from .spec import QNNCircuitConfig


def qnn_parameter_count(**config: Any) -> int:
    """Circuit parameter count for keyword settings as in :func:`build_qnn_circuit` (no circuit is built)."""
    return QNNCircuitConfig(**config).n_weights


def z_observable(n_qubits: int, qubit: int = 0) -> SparsePauliOp:
    """Z on ``qubit`` (Qiskit little-endian labels: qubit 0 is the right-most character)."""
    label = ["I"] * n_qubits
    label[n_qubits - 1 - qubit] = "Z"
    return SparsePauliOp("".join(label))


def build_qnn_circuit(
    *,
    n_qubits: int,
    n_features: int,
    depth: int,
    feature_map: str = "full",
    feature_map_reps: int = 1,
    trainable_feature_map: str = "full",
    trainable_feature_map_reps: int = 1,
    entanglement: str = "linear",
    rotations: Sequence[str] = ("ry", "rz"),
    final_rotations: bool = True,
    input_name: str = "x",
    weight_name: str = "w",
) -> tuple[QuantumCircuit, ParameterVector, ParameterVector]:
    """The QNN circuit (architecture in the module docstring) and its input and weight ParameterVectors.

    Returns ``(circuit, x, w)`` with ``len(x) == n_features`` and ``len(w)`` the circuit parameter count.
    The circuit has no measurements; the observable is :func:`z_observable` ``(n_qubits)``.
    """
    cfg = QNNCircuitConfig(
        n_qubits=n_qubits, n_features=n_features, depth=depth, feature_map=feature_map, feature_map_reps=feature_map_reps,
        trainable_feature_map=trainable_feature_map, trainable_feature_map_reps=trainable_feature_map_reps,
        entanglement=entanglement, rotations=tuple(rotations), final_rotations=final_rotations,
    )
    N, nf = cfg.n_qubits, cfg.n_features
    x = ParameterVector(input_name, nf)
    w = ParameterVector(weight_name, cfg.n_weights)
    T = cfg.n_feature_map_weights
    lt = cfg.trainable_feature_map_reps

    def angle(r: int, j: int):
        if cfg.trainable_feature_map == "full":
            return w[(r % lt) * nf + j] * x[j]
        if cfg.trainable_feature_map == "linear":
            return w[r % lt] * x[j]
        return x[j]

    qc = QuantumCircuit(N, name="qnn")
    qc.metadata = {"qnnff_circuit": cfg.to_dict(), "inputs": input_name, "weights": weight_name}
    feats = [cfg.features_of_qubit(q) for q in range(N)]
    k = T
    for _ in range(cfg.depth):
        for r in range(cfg.feature_map_reps):
            for q in range(N):
                for j in feats[q]:
                    getattr(qc, cfg.encoding_axis(r, q, j))(angle(r, j), q)
        for q in range(N):
            for rot in cfg.rotations:
                getattr(qc, rot)(w[k], q)
                k += 1
        if N > 1:
            pairs = [(q, q + 1) for q in range(N - 1)] if cfg.entanglement == "linear" else [(i, j) for i in range(N) for j in range(i + 1, N)]
            for c, t in pairs:
                qc.cx(c, t)
    if cfg.final_rotations:
        for q in range(N):
            for rot in cfg.rotations:
                getattr(qc, rot)(w[k], q)
                k += 1
    assert k == cfg.n_weights, (k, cfg.n_weights)
    return qc, x, w


def encoding_counts(circuit: QuantumCircuit, inputs: Sequence, weights: Sequence) -> tuple[list[int], dict[int, set[int]]]:
    """How often each input is encoded, read from the circuit's gates.

    Returns ``(K, shares)``: ``K[j]`` = number of gates whose angle depends on input ``inputs[j]`` (the number of
    times feature ``j`` is re-uploaded), and ``shares[t]`` = the inputs that weight ``weights[t]`` multiplies in some
    encoding gate (only trainable feature-map weights appear). The initial bandwidth of the model in feature ``j``
    grows with ``lambda * K[j]`` (worst case) or ``lambda * sqrt(K[j])`` (random phases), which is what
    :func:`initial_feature_map_weights` uses.
    """
    in_index = {p: j for j, p in enumerate(inputs)}
    w_index = {p: t for t, p in enumerate(weights)}
    counts = [0] * len(in_index)
    shares: dict[int, set[int]] = {}
    for instruction in circuit.data:
        for param in instruction.operation.params:
            params = getattr(param, "parameters", ())
            js = [in_index[p] for p in params if p in in_index]
            ts = [w_index[p] for p in params if p in w_index]
            for j in js:
                counts[j] += 1
                for t in ts:
                    shares.setdefault(t, set()).add(j)
    return counts, shares


def initial_feature_map_weights(circuit: QuantumCircuit, inputs: Sequence, weights: Sequence, value: float | str = "auto") -> dict[int, float]:
    """Initial trainable feature-map weights ``{weight index: lambda_0}``.

    ``value="auto"``: ``lambda_0 = 1 / sqrt(K)``, ``K`` the number of encoding gates of the feature the weight
    multiplies (the most-encoded one if the weight is shared), so that the random-phase bandwidth
    ``lambda_0 sqrt(K)`` is 1 whatever the depth and width of the circuit (H2O paper circuit: K = 108 ->
    0.096; H3O+: K = 30 -> 0.18; LiH: K = 40 -> 0.16). A number sets every feature-map weight to it (the paper's
    plain feature map is ``1``).
    """
    counts, shares = encoding_counts(circuit, inputs, weights)
    if isinstance(value, str):
        if value != "auto":
            raise ValueError(f"feature-map weight initialisation must be a positive number or 'auto', got {value!r}")
        return {t: 1.0 / math.sqrt(max(counts[j] for j in js)) for t, js in shares.items()}
    if not float(value) > 0:
        raise ValueError(f"feature-map weight initialisation must be positive, got {value!r}")
    return {t: float(value) for t in shares}

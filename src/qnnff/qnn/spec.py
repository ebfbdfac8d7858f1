"""The QNN circuit's settings as a typed, validated spec (:class:`QNNCircuitConfig`): what
:func:`qnnff.qnn.circuit.build_qnn_circuit` builds, and the counts derived from it (the paper's parameter count).

This module does not import Qiskit: a job that only needs the count (a classical NN sized to the QNN,
:func:`qnnff.models.factory.qnn_parameter_count`) does not pay for it. The architecture is described in
:mod:`qnnff.qnn.circuit`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

FEATURE_MAPS = ("full", "linear")
TRAINABLE_FEATURE_MAPS = ("full", "linear", "none")
ENTANGLEMENTS = ("linear", "full")
ROTATIONS = ("rx", "ry", "rz")
ENCODING_AXES = ("ry", "rz", "rx")  # axis(r) cycles Y, Z, X over the repetitions

# The start-up limits of a QNN's simulation (config/README.md "Circuit size limits"): the cluster profile's memory and
# wall time of a training job (profiles/slurm: train_qnn, study_point), and the rate of the engine (qnnff.qnn.engine)
# in amplitude updates per second on one core, measured for a force-trained step (8-qubit: 5e8, 3-qubit: 1-2e8).
MEMORY_LIMIT_BYTES = 8 * 10**9
TIME_LIMIT_SECONDS = 24 * 3600
AMPLITUDE_UPDATES_PER_SECOND = 1e8


@dataclass(frozen=True)
class QNNCircuitConfig:
    """Validated circuit settings (keyword-only, as in :func:`build_qnn_circuit`)."""

    n_qubits: int
    n_features: int
    depth: int
    feature_map: str = "full"
    feature_map_reps: int = 1
    trainable_feature_map: str = "full"
    trainable_feature_map_reps: int = 1
    entanglement: str = "linear"
    rotations: tuple[str, ...] = ("ry", "rz")
    final_rotations: bool = True

    def __post_init__(self) -> None:
        def pos_int(name: str, v: Any) -> None:
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"qnn circuit: {name} must be a positive integer, got {v!r}")

        for name in ("n_qubits", "n_features", "depth", "feature_map_reps", "trainable_feature_map_reps"):
            pos_int(name, getattr(self, name))
        if self.feature_map not in FEATURE_MAPS:
            raise ValueError(f"qnn circuit: feature_map must be one of {FEATURE_MAPS}, got {self.feature_map!r}")
        if self.trainable_feature_map not in TRAINABLE_FEATURE_MAPS:
            raise ValueError(f"qnn circuit: trainable_feature_map must be one of {TRAINABLE_FEATURE_MAPS}, got {self.trainable_feature_map!r}")
        if self.entanglement not in ENTANGLEMENTS:
            raise ValueError(f"qnn circuit: entanglement must be one of {ENTANGLEMENTS}, got {self.entanglement!r}")
        rot = tuple(str(r).lower() for r in self.rotations)
        if not rot or any(r not in ROTATIONS for r in rot):
            raise ValueError(f"qnn circuit: rotations must be a non-empty list of {ROTATIONS}, got {list(self.rotations)!r}")
        object.__setattr__(self, "rotations", rot)
        object.__setattr__(self, "final_rotations", bool(self.final_rotations))

    # ---- counts
    @property
    def n_feature_map_weights(self) -> int:
        if self.trainable_feature_map == "full":
            return self.n_features * self.trainable_feature_map_reps
        if self.trainable_feature_map == "linear":
            return self.trainable_feature_map_reps
        return 0

    @property
    def n_weights(self) -> int:
        per_layer = len(self.rotations) * self.n_qubits
        return self.depth * per_layer + self.n_feature_map_weights + (per_layer if self.final_rotations else 0)

    @property
    def n_gates(self) -> int:
        """Gates of the circuit: per layer the encoding rotations, the variational rotations and the CNOTs; then the
        final rotations (what :func:`qnnff.qnn.circuit.build_qnn_circuit` builds)."""
        N = self.n_qubits
        encoding = self.feature_map_reps * sum(len(self.features_of_qubit(q)) for q in range(N))
        cnots = (N - 1 if self.entanglement == "linear" else N * (N - 1) // 2) if N > 1 else 0
        per_layer = len(self.rotations) * N
        return self.depth * (encoding + per_layer + cnots) + (per_layer if self.final_rotations else 0)

    @property
    def n_angles(self) -> int:
        """An upper bound on the distinct rotation angles the engine compiles (``CompiledCircuit.n_angles``): one per
        variational weight, and one per (repetition, feature) of the encoding (the same in every layer)."""
        return self.n_weights - self.n_feature_map_weights + self.feature_map_reps * self.n_features

    def memory_estimate(self, batch: int) -> int:
        """Bytes the engine needs to train on ``batch`` samples (config/README.md "Circuit size limits"): the dense
        angle map (8 A (d + P)), the per-sample angles, their gradients and autograd tensors (256 A B), the
        kernels' tile of state vectors (64 2^N min(B, 256)) and the compiled circuit (5 kB per gate)."""
        A, B = self.n_angles, int(batch)
        return 8 * A * (self.n_features + self.n_weights) + 256 * A * B + 64 * (1 << self.n_qubits) * min(B, 256) + 5000 * self.n_gates

    def time_estimate(self, batch: int, evaluations: int) -> float:
        """Seconds of ``evaluations`` loss evaluations on ``batch`` samples: gates x batch x 2^N amplitude updates each,
        at :data:`AMPLITUDE_UPDATES_PER_SECOND`."""
        return float(evaluations) * self.n_gates * int(batch) * (1 << self.n_qubits) / AMPLITUDE_UPDATES_PER_SECOND

    def features_of_qubit(self, q: int) -> list[int]:
        if self.feature_map == "full":
            return list(range(self.n_features))
        if self.n_features <= self.n_qubits:
            return [q % self.n_features]
        return [j for j in range(self.n_features) if j % self.n_qubits == q]

    def encoding_axis(self, r: int, q: int, j: int) -> str:
        """The rotation gate that encodes feature ``j`` on qubit ``q`` in repetition ``r``.

        Axis ``r mod 3`` (Y, Z, X). With ``"linear"`` and ``n_f > N``, the ``k``-th feature a qubit carries uses
        axis ``(r + k) mod 3``: two rotations about one axis commute and merge, ``R(a x_j) R(a x_{j+N}) =
        R(a (x_j + x_{j+N}))``, so with a shared weight the circuit would see only the sum of the two features
        (measured: the 9-feature H3O+ QNN could not train). For ``n_f <= N`` (every paper circuit) and for
        ``"full"`` nothing changes; there every feature a qubit carries shares the axis, and the circuit sees the
        learned combination ``sum_j lambda_rj x_j`` (the paper's classical feature map W).
        """
        k = self.features_of_qubit(q).index(j) if self.feature_map == "linear" else 0
        return ENCODING_AXES[(r + k) % 3]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["rotations"] = list(self.rotations)
        return d

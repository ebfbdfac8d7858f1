"""The paper's QNN: the Qiskit circuit (:mod:`.circuit`), the exact torch statevector engine (:mod:`.engine`)
and evaluation on qiskit-aer with shots and noise (:mod:`.aer`, imported on demand)."""

from .circuit import QNNCircuitConfig, build_qnn_circuit, qnn_parameter_count, z_observable
from .engine import CompiledCircuit, QNNRegressor, UnsupportedCircuitError, parse_angle

__all__ = [
    "QNNCircuitConfig", "build_qnn_circuit", "qnn_parameter_count", "z_observable",
    "CompiledCircuit", "QNNRegressor", "UnsupportedCircuitError", "parse_angle",
]

"""The paper's QNN: the Qiskit circuit (:mod:`.circuit`), the exact torch statevector engine (:mod:`.engine`)
and evaluation on qiskit-aer with shots and noise (:mod:`.aer`, imported on demand).

The names below are loaded from their modules on first use (PEP 562): a job that needs only the circuit's settings
(the NN's parameter count matches the QNN's, :func:`qnnff.models.factory.qnn_parameter_count`) does not load the
numba kernels of the engine.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "QNNCircuitConfig": "spec", "build_qnn_circuit": "circuit", "qnn_parameter_count": "circuit", "z_observable": "circuit",
    "CompiledCircuit": "engine", "QNNRegressor": "engine", "UnsupportedCircuitError": "engine", "parse_angle": "engine",
}
__all__ = list(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

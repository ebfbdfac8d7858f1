"""Evaluate a (trained) QNN circuit on qiskit-aer: finite shots and, optionally, device noise.

The circuit is the same :class:`~qiskit.circuit.QuantumCircuit` the torch engine executes. The weights are bound,
the circuit is transpiled to an ISA circuit for the simulator's target with a preset pass manager
(:func:`~qiskit.transpiler.generate_preset_pass_manager`), and a batch of inputs is run as one parameter-bound pub:

* ``shots`` given: :class:`qiskit_aer.primitives.SamplerV2` measures the observable's qubits ``shots`` times per
  input; the expectation value is the sample mean of the observable's diagonal and its standard error is
  ``std(samples) / sqrt(shots)`` (for Z: ``sqrt((1 - <Z>^2) / shots)``);
* ``shots=None``: :class:`qiskit_aer.primitives.EstimatorV2` with precision 0, i.e. the exact expectation value of
  the (noisy, then density-matrix) simulation; standard errors are 0.

Noise: ``"none"``; ``"depolarizing"`` (a :class:`~qiskit_aer.noise.NoiseModel` with a depolarising channel of
probability ``p1`` after every one-qubit gate and ``p2`` after every two-qubit gate, on the basis
``rz, sx, x, cx``); or the class name of a fake IBM backend from :mod:`qiskit_ibm_runtime.fake_provider`
(e.g. ``"FakeManilaV2"``), simulated with ``AerSimulator.from_backend`` (its coupling map, basis, gate and readout
errors, T1/T2). Everything is seeded (transpiler and simulator); Aer binds the batch of parameter values at run
time (``runtime_parameter_bind_enable=True``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from qiskit import ClassicalRegister, QuantumCircuit
from qiskit.circuit import Parameter
from qiskit.quantum_info import SparsePauliOp
from qiskit.transpiler import generate_preset_pass_manager
from qiskit_aer import AerSimulator
from qiskit_aer.noise import NoiseModel, depolarizing_error


@dataclass
class AerResult:
    """Expectation values ``[B]`` and their standard errors ``[B]`` (0 for exact evaluation)."""

    values: np.ndarray
    stderr: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


def make_simulator(noise: str = "none", *, p1: float = 1e-3, p2: float = 1e-2, seed: int = 0,
                   exact: bool = False) -> AerSimulator:
    """An AerSimulator for ``noise`` = "none" | "depolarizing" | fake backend class name (see module docstring)."""
    opts: dict[str, Any] = {"seed_simulator": int(seed), "runtime_parameter_bind_enable": True}
    if noise in (None, "none"):
        sim = AerSimulator(method="statevector", **opts)
    elif noise == "depolarizing":
        if not (0.0 <= p1 <= 1.0 and 0.0 <= p2 <= 1.0):
            raise ValueError(f"depolarizing probabilities must lie in [0, 1], got p1={p1}, p2={p2}")
        nm = NoiseModel(basis_gates=["rz", "sx", "x", "cx"])
        if p1 > 0:
            nm.add_all_qubit_quantum_error(depolarizing_error(p1, 1), ["sx", "x", "rz"])
        if p2 > 0:
            nm.add_all_qubit_quantum_error(depolarizing_error(p2, 2), ["cx"])
        sim = AerSimulator(noise_model=nm, basis_gates=nm.basis_gates,
                           method="density_matrix" if exact else "automatic", **opts)
    else:
        from qiskit_ibm_runtime import fake_provider

        cls = getattr(fake_provider, str(noise), None)
        if cls is None or not isinstance(cls, type):
            raise ValueError(f"aer noise: {noise!r} is neither 'none', 'depolarizing' nor a fake backend of qiskit_ibm_runtime.fake_provider")
        sim = AerSimulator.from_backend(cls())
        sim.set_options(method="density_matrix" if exact else "automatic", **opts)
    return sim


def _support(observable: SparsePauliOp) -> tuple[list[int], SparsePauliOp]:
    """Qubits the diagonal observable acts on, and the observable restricted to them (little-endian order)."""
    n = observable.num_qubits
    labels = observable.paulis.to_labels()
    for lab in labels:
        if set(lab) - {"I", "Z"}:
            raise ValueError(f"aer evaluation supports diagonal observables (I/Z) only, got term {lab}")
    sup = sorted({q for lab in labels for q in range(n) if lab[n - 1 - q] == "Z"}) or [0]
    reduced = SparsePauliOp(["".join(lab[n - 1 - q] for q in reversed(sup)) for lab in labels], observable.coeffs)
    return sup, reduced


def _diagonal(obs: SparsePauliOp) -> np.ndarray:
    n = obs.num_qubits
    idx = np.arange(1 << n)
    diag = np.zeros(1 << n)
    for lab, c in zip(obs.paulis.to_labels(), obs.coeffs):
        term = np.ones(1 << n)
        for q in range(n):
            if lab[n - 1 - q] == "Z":
                term = term * (1.0 - 2.0 * ((idx >> q) & 1))
        diag += float(np.real(c)) * term
    return diag


def aer_expectations(
    circuit: QuantumCircuit,
    *,
    inputs: Sequence[Parameter],
    weights: Sequence[Parameter],
    x: np.ndarray,
    weight_values: np.ndarray,
    observable: SparsePauliOp | None = None,
    shots: int | None = 4096,
    noise: str = "none",
    p1: float = 1e-3,
    p2: float = 1e-2,
    seed: int = 0,
    optimization_level: int = 1,
) -> AerResult:
    """Expectation values of ``observable`` (default Z on qubit 0) for each row of ``x`` on qiskit-aer.

    ``weight_values`` are bound first; the inputs ``x [B, d]`` then go in as one batch of parameter values
    (:func:`aer_pub_expectations`).
    """
    x = np.atleast_2d(np.asarray(x, dtype=float))
    wv = np.asarray(weight_values, dtype=float).ravel()
    if x.shape[1] != len(inputs):
        raise ValueError(f"x has {x.shape[1]} columns, the circuit has {len(inputs)} inputs")
    if wv.shape[0] != len(weights):
        raise ValueError(f"{wv.shape[0]} weight values for {len(weights)} weights")
    bound = circuit.assign_parameters(dict(zip(weights, wv.tolist())), inplace=False)
    return aer_pub_expectations(bound, parameters=inputs, values=x, observable=observable, shots=shots, noise=noise,
                                p1=p1, p2=p2, seed=seed, optimization_level=optimization_level)


def aer_pub_expectations(
    circuit: QuantumCircuit,
    *,
    parameters: Sequence[Parameter],
    values: np.ndarray,
    observable: SparsePauliOp | None = None,
    shots: int | None = 4096,
    noise: str = "none",
    p1: float = 1e-3,
    p2: float = 1e-2,
    seed: int = 0,
    optimization_level: int = 1,
    max_shots_per_call: int = 2_000_000,
) -> AerResult:
    """Expectation values for an array of parameter values ``values [..., len(parameters)]`` in ONE primitive call.

    Like :func:`aer_expectations`, but for any circuit whose only free parameters are ``parameters`` (e.g. the
    per-occurrence circuit of :mod:`qnnff.qnn.shift`) and any batch shape: the result arrays have shape
    ``values.shape[:-1]``. Exact (``shots=None``: Aer EstimatorV2, precision 0) or sampled (Aer SamplerV2, the sample
    mean of the observable's diagonal and its standard error; at most ``max_shots_per_call`` shots per SamplerV2 call,
    because Aer returns every shot as a Python string: 10 points of LiH at 4,096 shots would otherwise peak at 1.5 GB;
    call ``i`` is seeded ``seed + i``). ``info`` records the ISA circuit's depth, operations and
    layout (physical qubit of each virtual qubit), the number of circuits and the shots.
    """
    if shots is not None and observable is not None and _non_diagonal(observable):
        return _grouped_expectations(circuit, parameters=parameters, values=values, observable=observable, shots=shots,
                                     noise=noise, p1=p1, p2=p2, seed=seed, optimization_level=optimization_level,
                                     max_shots_per_call=max_shots_per_call)
    t0 = time.perf_counter()
    n = circuit.num_qubits
    params = list(parameters)
    vals_in = np.asarray(values, dtype=float)
    if vals_in.shape[-1] != len(params):
        raise ValueError(f"values have {vals_in.shape[-1]} columns, the circuit has {len(params)} parameters")
    free = set(circuit.parameters) - set(params)
    if free:
        raise ValueError(f"circuit has parameters without values: {sorted(str(p) for p in free)[:5]}")
    if shots is not None and int(shots) < 1:
        raise ValueError(f"shots must be a positive integer or None (exact), got {shots}")
    if observable is None:
        observable = SparsePauliOp("I" * (n - 1) + "Z")
    if shots is not None and len(_support(observable)[0]) > 16:
        raise ValueError("aer_pub_expectations with shots supports observables on at most 16 qubits")
    batch_shape = vals_in.shape[:-1]
    sim = make_simulator(noise, p1=p1, p2=p2, seed=seed, exact=shots is None)
    nq = getattr(sim.target, "num_qubits", None) if noise not in (None, "none", "depolarizing") else None
    if nq is not None and nq < n:
        raise ValueError(f"backend {noise!r} has {nq} qubits, the circuit needs {n}")
    pm = generate_preset_pass_manager(optimization_level=optimization_level, backend=sim, seed_transpiler=int(seed))
    col = {p: j for j, p in enumerate(params)}
    if shots is None:
        from qiskit_aer.primitives import EstimatorV2

        isa = pm.run(circuit)
        obs = observable.apply_layout(isa.layout)
        pv = vals_in[..., [col[p] for p in isa.parameters]]
        est = EstimatorV2.from_backend(sim, options={"default_precision": 0.0, "run_options": {"seed_simulator": int(seed)}})
        ev = est.run([(isa, obs, pv)]).result()[0].data.evs
        out, err = np.asarray(ev, dtype=float).reshape(batch_shape), np.zeros(batch_shape)
        calls = 1
    else:
        from qiskit_aer.primitives import SamplerV2

        sup, reduced = _support(observable)
        meas = circuit.copy()
        creg = ClassicalRegister(len(sup), "obs")
        meas.add_register(creg)
        for k, q in enumerate(sup):
            meas.measure(q, creg[k])
        isa = pm.run(meas)
        pv = vals_in[..., [col[p] for p in isa.parameters]].reshape(-1, len(isa.parameters))
        diag = _diagonal(reduced)
        freq = np.zeros((len(pv), len(diag)))
        # Aer's SamplerV2 keeps every shot as a Python string: bound the shots per call (memory), one call if they fit
        per_call = max(1, int(max_shots_per_call) // int(shots))
        calls = 0
        for start in range(0, len(pv), per_call):
            sampler = SamplerV2.from_backend(sim, seed=int(seed) + calls)
            bits = sampler.run([(isa, pv[start:start + per_call])], shots=int(shots)).result()[0].data.obs
            b = bits.to_bool_array(order="little").reshape(-1, int(shots), len(sup))
            index = np.zeros(b.shape[:-1], dtype=np.uint16 if len(sup) > 8 else np.uint8)
            for k in range(len(sup)):
                index |= b[..., k].astype(index.dtype) << k
            freq[start:start + per_call] = np.stack([(index == v).mean(-1) for v in range(len(diag))], axis=-1)
            calls += 1
        freq = freq.reshape(*batch_shape, len(diag))
        out = freq @ diag
        err = np.sqrt(np.maximum(freq @ diag**2 - out**2, 0.0)) / np.sqrt(int(shots))
    info = {
        "backend": "aer", "shots": shots, "noise": noise, "seed": int(seed), "optimization_level": optimization_level,
        "n_circuits": int(np.prod(batch_shape)) if batch_shape else 1, "n_primitive_calls": calls,
        "isa_depth": isa.depth(), "isa_ops": {k: int(v) for k, v in isa.count_ops().items()},
        "layout": isa_layout(isa), "seconds": round(time.perf_counter() - t0, 3),
    }
    if noise == "depolarizing":
        info.update(p1=p1, p2=p2)
    return AerResult(values=out, stderr=err, info=info)


def _non_diagonal(observable: SparsePauliOp) -> bool:
    return any(set(lab) - {"I", "Z"} for lab in observable.paulis.to_labels())


def _grouped_expectations(circuit: QuantumCircuit, *, parameters: Sequence[Parameter], values: np.ndarray,
                          observable: SparsePauliOp, shots: int, **kw: Any) -> AerResult:
    """Sampled expectation of a non-diagonal observable: its Pauli terms in qubit-wise commuting groups
    (``SparsePauliOp.group_commuting(qubit_wise=True)``, e.g. XX, YY and ZZ of a Heisenberg observable), each measured
    with ``shots`` shots after the basis change that makes it diagonal (H for X, S^dagger then H for Y; seeds
    ``seed + 1000 g`` for group ``g``); the values add up and their (independent) standard errors add in quadrature."""
    seed = int(kw.pop("seed"))
    groups = observable.group_commuting(qubit_wise=True)
    n = circuit.num_qubits
    total = err2 = None
    infos = []
    for g, group in enumerate(groups):
        basis = ["I"] * n
        for lab in group.paulis.to_labels():
            for q in range(n):
                if lab[n - 1 - q] != "I":
                    basis[q] = lab[n - 1 - q]
        rotated = circuit.copy()
        for q, b in enumerate(basis):
            if b == "X":
                rotated.h(q)
            elif b == "Y":
                rotated.sdg(q)
                rotated.h(q)
        labels = ["".join("Z" if c != "I" else "I" for c in lab) for lab in group.paulis.to_labels()]
        res = aer_pub_expectations(rotated, parameters=parameters, values=values, observable=SparsePauliOp(labels, group.coeffs),
                                   shots=shots, seed=seed + 1000 * g, **kw)
        total = res.values if total is None else total + res.values
        err2 = res.stderr**2 if err2 is None else err2 + res.stderr**2
        infos.append(res.info)
    info = {**infos[0], "measurement_groups": len(groups), "n_circuits": sum(i["n_circuits"] for i in infos),
            "n_primitive_calls": sum(i["n_primitive_calls"] for i in infos),
            "seconds": round(sum(i["seconds"] for i in infos), 3)}
    return AerResult(values=total, stderr=np.sqrt(err2), info=info)


def isa_layout(isa: QuantumCircuit) -> list[int]:
    """Physical qubit of each virtual (circuit) qubit after transpilation (identity if the circuit has no layout)."""
    if isa.layout is None:
        return list(range(isa.num_qubits))
    return [int(q) for q in isa.layout.final_index_layout()]

"""The QNN circuit: paper parameter counts and the documented architecture."""

import pytest
from qiskit.circuit import ParameterExpression

from qnnff.qnn.circuit import QNNCircuitConfig, build_qnn_circuit, qnn_parameter_count, z_observable

PAPER = {
    # LiH: r -> (pi r, arcsin r, arccos r); H2O and H3O+: arcsin of the internal coordinates
    "LiH": (dict(n_qubits=2, n_features=3, depth=10, feature_map="full", feature_map_reps=2,
                 trainable_feature_map="full", trainable_feature_map_reps=2), 50),
    "H2O": (dict(n_qubits=3, n_features=3, depth=12, feature_map="full", feature_map_reps=3,
                 trainable_feature_map="full", trainable_feature_map_reps=3), 87),
    "H3O+": (dict(n_qubits=6, n_features=6, depth=10, feature_map="linear", feature_map_reps=3,
                  trainable_feature_map="linear", trainable_feature_map_reps=3), 135),
}


@pytest.mark.parametrize("system", sorted(PAPER))
def test_paper_parameter_counts(system):
    kw, count = PAPER[system]
    qc, x, w = build_qnn_circuit(**kw)
    assert len(w) == count == qnn_parameter_count(**kw)
    assert len(x) == kw["n_features"]
    assert qc.num_parameters == count + kw["n_features"]  # every weight and every input is used
    assert qc.num_qubits == kw["n_qubits"]
    assert not any(inst.operation.name == "measure" for inst in qc.data)


def test_paper_counts_from_the_project_config(paper_config):
    """The config's QNN sections, read the way the pipeline reads them, give 50 / 87 / 135."""
    from qnnff.models.factory import qnn_circuit_config

    n_features = {"LiH": 3, "H2O": 3, "H3O+": 6}
    want = {"LiH": 50, "H2O": 87, "H3O+": 135}
    for system, d in n_features.items():
        _, _, w = build_qnn_circuit(n_features=d, **qnn_circuit_config(paper_config, system))
        assert len(w) == want[system], system


def _rotations(qc):
    out = []
    for inst in qc.data:
        if inst.operation.name in ("rx", "ry", "rz"):
            (p,) = inst.operation.params
            out.append((inst.operation.name, qc.find_bit(inst.qubits[0]).index, p))
    return out


def test_encoding_axes_cycle_and_feature_map_weights_are_shared_across_layers():
    kw = dict(n_qubits=2, n_features=2, depth=3, feature_map="full", feature_map_reps=4,
              trainable_feature_map="full", trainable_feature_map_reps=2)
    qc, x, w = build_qnn_circuit(**kw)
    rots = _rotations(qc)
    per_layer = 4 * 2 * 2 + 2 * 2  # encoding (reps x qubits x features) + variational
    for d in range(3):
        enc = rots[d * per_layer: d * per_layer + 16]
        for k, (name, q, p) in enumerate(enc):
            r, rest = divmod(k, 4)
            qq, j = divmod(rest, 2)
            assert name == ("ry", "rz", "rx")[r % 3] and q == qq
            assert isinstance(p, ParameterExpression)
            # lambda index (r mod l_t) * n_f + j, the same in every layer
            assert set(p.parameters) == {w[(r % 2) * 2 + j], x[j]}
        var = rots[d * per_layer + 16: (d + 1) * per_layer]
        assert [n for n, _, _ in var] == ["ry", "rz", "ry", "rz"]
        assert [q for _, q, _ in var] == [0, 0, 1, 1]
        assert [p for _, _, p in var] == [w[4 + d * 4 + k] for k in range(4)]
    final = rots[3 * per_layer:]
    assert [p for _, _, p in final] == [w[4 + 12 + k] for k in range(4)]


def test_linear_feature_map_covers_every_feature():
    # more features than qubits: qubit q takes q, q + N, ...
    qc, x, w = build_qnn_circuit(n_qubits=2, n_features=5, depth=1, feature_map="linear", feature_map_reps=1,
                                 trainable_feature_map="linear", trainable_feature_map_reps=1)
    enc = [(q, set(p.parameters) - {w[0]}) for name, q, p in _rotations(qc)[:5]]
    assert enc == [(0, {x[0]}), (0, {x[2]}), (0, {x[4]}), (1, {x[1]}), (1, {x[3]})]
    # ... each about its own axis, so that they do not merge into their sum
    assert [name for name, _, _ in _rotations(qc)[:5]] == ["ry", "rz", "rx", "ry", "rz"]
    # fewer features than qubits: qubit q takes q mod n_f
    cfg = QNNCircuitConfig(n_qubits=4, n_features=3, depth=1, feature_map="linear")
    assert [cfg.features_of_qubit(q) for q in range(4)] == [[0], [1], [2], [0]]


def test_trainable_feature_map_variants():
    base = dict(n_qubits=2, n_features=3, depth=2, feature_map="full", feature_map_reps=3)
    _, _, w_full = build_qnn_circuit(**base, trainable_feature_map="full", trainable_feature_map_reps=2)
    _, _, w_lin = build_qnn_circuit(**base, trainable_feature_map="linear", trainable_feature_map_reps=2)
    qc_none, x, w_none = build_qnn_circuit(**base, trainable_feature_map="none")
    var = 2 * 2 * 2 + 2 * 2
    assert (len(w_full), len(w_lin), len(w_none)) == (var + 6, var + 2, var)
    first = _rotations(qc_none)[0]
    assert first[2] == x[0]  # lambda = 1: the angle is the input itself


def test_entanglers_and_observable():
    for ent, pairs in (("linear", [(0, 1), (1, 2), (2, 3)]), ("full", [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)])):
        qc, _, _ = build_qnn_circuit(n_qubits=4, n_features=2, depth=1, feature_map="linear", entanglement=ent)
        got = [tuple(qc.find_bit(q).index for q in inst.qubits) for inst in qc.data if inst.operation.name == "cx"]
        assert got == pairs
    assert z_observable(3).paulis.to_labels() == ["IIZ"]
    qc, _, w = build_qnn_circuit(n_qubits=2, n_features=1, depth=2, rotations=("rx",), final_rotations=False,
                                 trainable_feature_map="none")
    assert len(w) == 2 * 1 * 2


@pytest.mark.parametrize("bad", [
    dict(n_qubits=0), dict(depth=0), dict(feature_map="circular"), dict(trainable_feature_map="half"),
    dict(entanglement="ring"), dict(rotations=("ry", "u")), dict(rotations=()), dict(feature_map_reps=1.5),
])
def test_bad_settings_are_rejected(bad):
    kw = {**dict(n_qubits=2, n_features=2, depth=1), **bad}
    with pytest.raises(ValueError):
        build_qnn_circuit(**kw)


def test_features_sharing_a_qubit_are_not_merged_into_their_sum():
    """Regression: with ``"linear"`` and n_f > N the features of one qubit once shared the rotation axis, so the
    circuit was a function of x_j + x_{j+N} only (the 9-feature H3O+ QNN could not train). Measured on the
    statevector: moving d from x_0 to x_2 (same qubit) must change <Z>."""
    import numpy as np
    from qiskit.quantum_info import Statevector

    qc, x, w = build_qnn_circuit(n_qubits=2, n_features=3, depth=2, feature_map="linear", feature_map_reps=2,
                                 trainable_feature_map="linear", trainable_feature_map_reps=1)
    rng = np.random.default_rng(3)
    weights = dict(zip(w, rng.uniform(-np.pi, np.pi, len(w))))
    obs = z_observable(2)

    def value(xs):
        bound = qc.assign_parameters({**weights, **dict(zip(x, xs))})
        return float(np.real(Statevector(bound).expectation_value(obs)))

    a = value([0.3, -0.2, 0.5])
    b = value([0.3 + 0.4, -0.2, 0.5 - 0.4])
    assert abs(a - b) > 1e-3


@pytest.mark.parametrize("kw", [PAPER["LiH"][0], PAPER["H2O"][0], PAPER["H3O+"][0],
                                dict(n_qubits=3, n_features=7, depth=2, feature_map="linear", feature_map_reps=2,
                                     trainable_feature_map="none", entanglement="full", final_rotations=False)])
def test_the_size_estimates_count_the_gates_and_bound_the_angles_the_engine_compiles(kw):
    """The start-up size limits (config/README.md "Circuit size limits") read the counts without building a circuit."""
    from qnnff.qnn.engine import CompiledCircuit

    qc, x, w = build_qnn_circuit(**kw)
    spec = QNNCircuitConfig(**kw)
    assert spec.n_gates == len(qc.data)
    prog = CompiledCircuit(qc, inputs=list(x), weights=list(w), observable=z_observable(kw["n_qubits"]))
    assert prog.n_angles <= spec.n_angles
    assert spec.memory_estimate(100) < spec.memory_estimate(200) and spec.time_estimate(100, 10) == 2 * spec.time_estimate(50, 10)

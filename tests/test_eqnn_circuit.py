"""The invariant QNN circuit (qnnff.qnn.eqnn): the PennyLane demo's H2O model, exact rotation and like-atom permutation
invariance, the documented layouts and parameter counts, and the settings' errors. Energies are Qiskit's exact
Statevector expectation values of the bound circuit (qnnff.qnn.eqnn.reference_energy_function)."""

import itertools

import numpy as np
import pytest
from scipy.linalg import expm
from scipy.spatial.transform import Rotation

from qnnff.qnn.eqnn import (
    DEMO_H2O,
    PAPER_SIZED,
    EquivariantQNNConfig,
    append_heisenberg,
    append_heisenberg_cx,
    build_eqnn_circuit,
    eqnn_parameter_count,
    fit_depth,
    permute_inputs,
    reference_energy_function,
    relative_inputs,
)

PAULI = {"X": np.array([[0, 1], [1, 0]], dtype=complex), "Y": np.array([[0, -1j], [1j, 0]]), "Z": np.diag([1.0 + 0j, -1.0])}
HEIS = sum(np.kron(P, P) for P in PAULI.values())


def molecule(rng, n_atoms):
    """A random geometry: reference atom anywhere, the others 0.85-1.15 A from it in random directions."""
    d = rng.normal(size=(n_atoms - 1, 3))
    d *= rng.uniform(0.85, 1.15, (n_atoms - 1, 1)) / np.linalg.norm(d, axis=1, keepdims=True)
    origin = rng.normal(size=3)
    return np.vstack([origin, origin + d])


def random_weights(cfg, rng):
    return rng.uniform(-np.pi, np.pi, cfg.n_weights)


def reorder(P, cfg, perm):
    """Positions with active slot a holding atom active[perm[a]] (the physical relabelling of like atoms)."""
    out = P.copy()
    for a, p in enumerate(perm):
        out[cfg.active_atoms[a]] = P[cfg.active_atoms[p]]
    return out


# ---------------------------------------------------------------------------------------------------------------
# gates
# ---------------------------------------------------------------------------------------------------------------
def test_heisenberg_gate_is_the_matrix_exponential():
    """The builder's gate (one PauliEvolutionGate) is exp(-i J (XX + YY + ZZ)) exactly, also after Qiskit's synthesis
    for Aer; the 3-CX form equals it up to a global phase; the engine runs the gate as one op and agrees with both."""
    import torch
    from qiskit import QuantumCircuit, transpile
    from qiskit.circuit import Parameter
    from qiskit.quantum_info import Operator, SparsePauliOp

    from qnnff.qnn.engine import CompiledCircuit

    for J in (0.0, 0.37, -1.2, 2.9, 7.5):
        qc, cx = QuantumCircuit(2), QuantumCircuit(2)
        append_heisenberg(qc, J, 0, 1)
        append_heisenberg_cx(cx, J, 0, 1)
        V = expm(-1j * J * HEIS)
        assert np.abs(Operator(qc).data - V).max() < 1e-12
        assert Operator(transpile(qc, basis_gates=["cx", "rz", "sx", "x"])).equiv(Operator(V))  # (up to a global phase)
        U = Operator(cx).data
        phase = np.vdot(V.ravel(), U.ravel()) / 4
        assert abs(abs(phase) - 1) < 1e-12
        assert np.abs(U - phase * V).max() < 1e-12
        assert dict(cx.count_ops()) == {"cx": 3, "rz": 3, "ry": 2}
        assert dict(qc.count_ops()) == {"PauliEvolution": 1}
    # the engine: one op, the same expectation values as the 3-CX form on a state the gate changes
    Jp, a = Parameter("J"), Parameter("a")
    progs = []
    for append in (append_heisenberg, append_heisenberg_cx):
        qc = QuantumCircuit(2)
        qc.ry(a, 0)
        qc.rx(0.4, 1)
        append(qc, Jp, 0, 1)
        progs.append(CompiledCircuit(qc, inputs=[a], weights=[Jp], observable=SparsePauliOp(["XI", "ZY"], [0.6, -0.8])))
    assert progs[0].describe()["involution_rotations"] == 1 and "involution_rotations" not in progs[1].describe()
    X, w = torch.tensor([[0.3], [-1.1], [2.0]], dtype=torch.float64), torch.tensor([0.77], dtype=torch.float64)
    y0, y1 = (p.expectation(X, w) for p in progs)
    assert (y0 - y1).abs().max() < 1e-14 and y0.abs().min() > 1e-3


def test_circuit_uses_only_engine_gates_with_polynomial_angles():
    """h, x, z, cx (fixed); rz, ry with angles c0 + c1 J; rv with components alpha * x_k: what the engine (with rv)
    compiles. Every weight and every input appears."""
    for kw in (*PAPER_SIZED.values(), DEMO_H2O):
        m = build_eqnn_circuit(**kw)
        cfg = m.config
        assert set(m.circuit.count_ops()) <= {"h", "x", "z", "cx", "rz", "PauliEvolution", "rv"}
        assert m.circuit.num_parameters == cfg.n_weights + cfg.n_inputs == len(m.weights) + len(m.inputs)
        w, x = set(m.weights), set(m.inputs)
        for inst in m.circuit.data:
            for p in inst.operation.params:
                ps = set(getattr(p, "parameters", ()))
                if inst.operation.name == "rv":
                    assert len(ps & w) == 1 and len(ps & x) == 1 and len(ps) == 2
                elif ps:
                    assert inst.operation.name in ("rz", "PauliEvolution") and len(ps) == 1 and ps <= w
    m = build_eqnn_circuit(species=("O", "H", "H"), depth=2, symmetry_breaking=True)
    assert m.circuit.count_ops()["rz"] == 2 * 4  # one RZ(epsilon) per qubit and layer
    assert m.circuit.count_ops()["PauliEvolution"] == 2 * 4  # one Heisenberg gate per bond (4) and layer


# ---------------------------------------------------------------------------------------------------------------
# the PennyLane demo (H2O, D = 6, B = 1, rep = 2, 4 qubits, one parameter per qubit and per bond)
# ---------------------------------------------------------------------------------------------------------------
def test_matches_the_pennylane_demo_energies_and_forces():
    """The demo's model in PennyLane (default.qubit, torch backprop) against the builder's circuit on Qiskit's
    Statevector: energies on 20 random H2O geometries to 1e-10, and on the first 8 of them the forces (autograd, all
    three atoms) against central finite differences of the Statevector energies (18 evaluations each, the slow part);
    and against qnnff's exact engine (:class:`qnnff.qnn.engine.CompiledCircuit`, which trains the ``eqnn`` kind):
    energies and forces (its exact input gradient) on all 20 geometries to 1e-10.

    Parameter layout (explicit, instead of the demo's ``weights[i, d + 1, b]`` on an axis of length D, which jax
    clamps): ``alphas[q, e]`` encodes qubit q in slot e (0 = initial, d + 1 after layer d), ``weights[i, d, b]`` couples
    the bond (i, i + 1 mod 4) in repetition b of layer d."""
    qml = pytest.importorskip("pennylane")
    torch = pytest.importorskip("torch")

    D, B, rep, n = 6, 1, 2, 2
    N = n * rep
    sig = torch.tensor(np.array([PAULI[k] for k in "XYZ"]))
    heis = torch.tensor(HEIS)
    dev = qml.device("default.qubit", wires=N)
    observable = qml.Hamiltonian([1.0, 1.0, 1.0], [qml.PauliX(0) @ qml.PauliX(1), qml.PauliY(0) @ qml.PauliY(1),
                                                   qml.PauliZ(0) @ qml.PauliZ(1)])

    def singlet(wires):
        qml.Hadamard(wires=wires[0]); qml.PauliZ(wires=wires[0]); qml.PauliX(wires=wires[1]); qml.CNOT(wires=wires)

    def encoding(alpha, v, wire):
        qml.QubitUnitary(torch.linalg.matrix_exp(-0.5j * alpha * torch.einsum("i,ijk->jk", v.to(torch.complex128), sig)), wires=[wire])

    def trainable(J, wires):
        qml.QubitUnitary(torch.linalg.matrix_exp(-1j * J * heis), wires=wires)

    @qml.qnode(dev, interface="torch", diff_method="backprop")
    def vqlm(data, alphas, weights):
        for i in range(rep):
            singlet([n * i, n * i + 1])
        for i in range(N):
            encoding(alphas[i, 0], data[i % n], i)
        for d in range(D):
            for b in range(B):
                for i in range(0, N - 1, 2):
                    trainable(weights[i, d, b], [i, (i + 1) % N])
                for i in range(1, N, 2):
                    trainable(weights[i, d, b], [i, (i + 1) % N])
            for i in range(N):
                encoding(alphas[i, d + 1], data[i % n], i)
        return qml.expval(observable)

    rng = np.random.default_rng(7)
    alphas = rng.uniform(0.5, 1.5, (N, D + 1))
    weights = rng.uniform(-np.pi, np.pi, (N, D, B))
    m = build_eqnn_circuit(**DEMO_H2O)
    cfg = m.config
    assert (cfg.n_qubits, cfg.layout, cfg.singlet_pairs, cfg.n_weights) == (4, "ring", [(0, 1), (2, 3)], 52)
    w = np.full(cfg.n_weights, np.nan)
    for q in range(N):
        for e in range(D + 1):
            w[cfg.alpha_index(e, q)] = alphas[q, e]
        for d in range(D):
            for b in range(B):
                w[cfg.coupling_index(d, b, (q, (q + 1) % N))] = weights[q, d, b]
    assert not np.isnan(w).any()  # the mapping is onto: every weight of the circuit is one demo parameter
    energy = reference_energy_function(m, w, average=False)  # the demo evaluates its circuit once
    # qnnff's exact engine (the one that trains the eqnn kind) on the same circuit and weights
    from qnnff.qnn.engine import CompiledCircuit

    program = CompiledCircuit(m.circuit, inputs=list(m.inputs), weights=list(m.weights), observable=m.observable)
    w_t = torch.tensor(w)

    h = 1e-5
    worst_e = worst_f = worst_engine_e = worst_engine_f = 0.0
    for g in range(20):
        P = molecule(rng, 3)
        Pt = torch.tensor(P, requires_grad=True)
        e_pl = vqlm(Pt[1:] - Pt[0], torch.tensor(alphas), torch.tensor(weights))
        (grad,) = torch.autograd.grad(e_pl, Pt)
        F_pl = -grad.numpy()
        worst_e = max(worst_e, abs(float(e_pl.detach()) - energy(P)))
        y, gx = program.expectation_and_input_grad(torch.tensor((P[1:] - P[0]).reshape(1, -1)), w_t, create_graph=False)
        gx = gx.detach().numpy().reshape(2, 3)
        F_engine = -np.vstack([-gx.sum(0, keepdims=True), gx])
        worst_engine_e = max(worst_engine_e, abs(float(e_pl.detach()) - float(y[0])))
        worst_engine_f = max(worst_engine_f, np.abs(F_engine - F_pl).max())
        assert np.abs(F_pl[0] + F_pl[1:].sum(axis=0)).max() < 1e-12  # the reference atom's force is minus the sum
        if g >= 8:
            continue
        F_fd = np.empty_like(P)
        for i in range(3):
            for k in range(3):
                Pp, Pm = P.copy(), P.copy()
                Pp[i, k] += h; Pm[i, k] -= h
                F_fd[i, k] = -(energy(Pp) - energy(Pm)) / (2 * h)
        worst_f = max(worst_f, np.abs(F_pl - F_fd).max())
    assert worst_e < 1e-10, worst_e
    assert worst_f < 1e-7, worst_f
    assert worst_engine_e < 1e-10 and worst_engine_f < 1e-10, (worst_engine_e, worst_engine_f)  # issue 28: the engine


# ---------------------------------------------------------------------------------------------------------------
# invariances
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("system", sorted(PAPER_SIZED))
def test_rotation_and_translation_invariance(system):
    rng = np.random.default_rng(11)
    m = build_eqnn_circuit(**PAPER_SIZED[system])
    energy = reference_energy_function(m, random_weights(m.config, rng))
    P = molecule(rng, len(m.config.species))
    R = Rotation.random(random_state=5).as_matrix()
    e0, e1 = energy(P), energy(P @ R.T + rng.normal(size=3))
    assert abs(e1 - e0) < 1e-10, (e0, e1)
    assert abs(e0) > 1e-3  # not trivially zero


def test_symmetry_breaking_breaks_rotation_invariance():
    """The check above can fail: the RZ(epsilon) option is not rotation-invariant."""
    rng = np.random.default_rng(12)
    m = build_eqnn_circuit(species=("O", "H", "H"), depth=3, symmetry_breaking=True)
    energy = reference_energy_function(m, random_weights(m.config, rng))
    P = molecule(rng, 3)
    assert abs(energy(P @ Rotation.random(random_state=6).as_matrix().T) - energy(P)) > 1e-4


def test_h2o_swap_invariance_with_shared_weights_and_the_demo_without():
    rng = np.random.default_rng(13)
    P = molecule(rng, 3)
    swapped = P[[0, 2, 1]]
    m = build_eqnn_circuit(**PAPER_SIZED["H2O"])
    assert m.config.averaging_permutations == [(0, 1)]  # one evaluation is exactly invariant
    assert m.config.stabilizer == [(0, 1), (1, 0)]
    energy = reference_energy_function(m, random_weights(m.config, rng))
    assert abs(energy(P) - energy(swapped)) < 1e-10
    # the demo's unshared parameters: one evaluation is not swap-invariant, the average over both orders is
    demo = build_eqnn_circuit(**DEMO_H2O)
    w = random_weights(demo.config, rng)
    single = reference_energy_function(demo, w, average=False)
    assert abs(single(P) - single(swapped)) > 1e-4
    averaged = reference_energy_function(demo, w)
    assert abs(averaged(P) - averaged(swapped)) < 1e-10


def test_h3o_permutation_invariance_by_averaging_two_evaluations():
    rng = np.random.default_rng(14)
    m = build_eqnn_circuit(**PAPER_SIZED["H3O+"])
    cfg = m.config
    assert cfg.layout == "bipartite" and cfg.n_qubits == 6
    assert sorted(cfg.stabilizer) == [(0, 1, 2), (1, 2, 0), (2, 0, 1)]  # the cyclic group
    assert len(cfg.averaging_permutations) == 2 and (0, 1, 2) in cfg.averaging_permutations
    w = random_weights(cfg, rng)
    P = molecule(rng, 4)
    perms = cfg.like_atom_permutations
    assert len(perms) == 6
    averaged = reference_energy_function(m, w)
    e = [averaged(reorder(P, cfg, p)) for p in perms]
    assert np.ptp(e) < 1e-10, e
    # one evaluation: invariant under the cyclic permutations only
    single = reference_energy_function(m, w, average=False)
    s = {p: single(reorder(P, cfg, p)) for p in perms}
    assert max(abs(s[p] - s[(0, 1, 2)]) for p in cfg.stabilizer) < 1e-10
    assert abs(s[(0, 2, 1)] - s[(0, 1, 2)]) > 1e-4


def test_h3o_ring_layout_needs_all_six_permutations():
    rng = np.random.default_rng(15)
    m = build_eqnn_circuit(species=("O", "H", "H", "H"), depth=2, layout="ring")
    cfg = m.config
    assert cfg.stabilizer == [(0, 1, 2)] and len(cfg.averaging_permutations) == 6
    energy = reference_energy_function(m, random_weights(cfg, rng))
    P = molecule(rng, 4)
    e = [energy(reorder(P, cfg, p)) for p in cfg.like_atom_permutations]
    assert np.ptp(e) < 1e-10, e


def _compose(g, h):
    return tuple(g[h[a]] for a in range(len(g)))


def test_averaging_with_a_non_normal_stabilizer():
    """CH4 (four like H, 8 qubits, bipartite): the layout's stabiliser H is the cyclic group C4, not normal in S4, so
    the side of the cosets matters. The representatives must cover the cosets g H (composition (g h)[a] = g[h[a]]):
    such a set makes the average invariant under every permutation, a set covering only the cosets H g does not."""
    rng = np.random.default_rng(18)
    m = build_eqnn_circuit(species=("C", "H", "H", "H", "H"), depth=1)
    cfg = m.config
    G, H = cfg.like_atom_permutations, cfg.stabilizer
    assert cfg.layout == "bipartite" and len(H) == 4 and len(cfg.averaging_permutations) == 6
    assert sorted(_compose(g, h) for g in cfg.averaging_permutations for h in H) == sorted(G)
    single = reference_energy_function(m, random_weights(cfg, rng), average=False)
    P = molecule(rng, 5)

    def averaged(R, Q):
        return np.mean([single(reorder(Q, cfg, r)) for r in R])

    e = [averaged(cfg.averaging_permutations, reorder(P, cfg, G[i])) for i in (0, 5, 11, 16, 23)]
    assert np.ptp(e) < 1e-10, e
    # transversals of one side only (found by search): left works, right does not
    left = [sorted({_compose(g, h) for h in H}) for g in G]
    right = [sorted({_compose(h, g) for h in H}) for g in G]
    left_cosets = list({tuple(c) for c in left})
    right_cosets = list({tuple(c) for c in right})

    def transversal(cosets, other):
        for choice in itertools.product(*cosets):
            if len({tuple(c) for g in choice for c in [other[G.index(g)]]}) < len(choice):
                return choice
        raise AssertionError("no one-sided transversal")

    only_left, only_right = transversal(left_cosets, right), transversal(right_cosets, left)
    perms = [G[i] for i in (3, 9, 14, 20)]
    assert max(abs(averaged(only_left, reorder(P, cfg, p)) - averaged(only_left, P)) for p in perms) < 1e-10
    assert max(abs(averaged(only_right, reorder(P, cfg, p)) - averaged(only_right, P)) for p in perms) > 1e-6


def test_reflection_is_only_a_symmetry_for_up_to_two_active_atoms():
    """Documented limitation: proper rotations only. For H2O a mirror image is a rotated copy; for H3O+ it is not."""
    rng = np.random.default_rng(16)
    for system, invariant in (("H2O", True), ("H3O+", False)):
        m = build_eqnn_circuit(species=PAPER_SIZED[system]["species"], depth=3)
        energy = reference_energy_function(m, random_weights(m.config, rng))
        P = molecule(rng, len(m.config.species))
        assert (abs(energy(-P) - energy(P)) < 1e-10) == invariant, system


# ---------------------------------------------------------------------------------------------------------------
# an independent simulation of the documented architecture (numpy, no Qiskit gates)
# ---------------------------------------------------------------------------------------------------------------
def _apply(psi, U, qubits):
    k = len(qubits)
    psi = np.tensordot(U.reshape((2,) * 2 * k), psi, axes=(list(range(k, 2 * k)), list(qubits)))
    return np.moveaxis(psi, list(range(k)), list(qubits))


def _documented_energy(cfg, w, x):
    N = cfg.n_qubits
    psi = np.zeros((2,) * N, dtype=complex)
    psi[(0,) * N] = 1.0
    singlet = np.array([0, 1, -1, 0], dtype=complex) / np.sqrt(2)  # (|01> - |10>) / sqrt 2, first index = first qubit
    for i, j in cfg.singlet_pairs:
        U = np.zeros((4, 4), dtype=complex)
        U[:, 0] = singlet
        U, _ = np.linalg.qr(U)  # any unitary with first column = singlet
        U[:, 0] = singlet
        psi = _apply(psi, U, (i, j))

    def encode(slot):
        nonlocal psi
        for q in range(N):
            a = cfg.atom_of_qubit(q)
            v = w[cfg.alpha_index(slot, q)] * x[3 * a:3 * a + 3]
            psi = _apply(psi, expm(-0.5j * sum(v[k] * PAULI[c] for k, c in enumerate("XYZ"))), (q,))

    encode(0)
    for d in range(cfg.depth):
        for b in range(cfg.trainable_reps):
            for bonds in cfg.sublayers:
                for i, j in bonds:
                    psi = _apply(psi, expm(-1j * w[cfg.coupling_index(d, b, (i, j))] * HEIS), (i, j))
        encode(d + 1)
    e = 0.0
    for i, j in cfg.observable_bonds:
        e += np.vdot(psi, _apply(psi, HEIS, (i, j))).real
    return e / len(cfg.observable_bonds)


@pytest.mark.parametrize("kw", [dict(species=("O", "H", "H", "H"), depth=2, trainable_reps=2),
                                dict(species=("Li", "H"), depth=3), dict(species=("O", "H", "H"), depth=2, rep=4, layout="bipartite")],
                         ids=["H3O+", "LiH", "H2O-rep4"])
def test_circuit_is_the_documented_architecture(kw):
    rng = np.random.default_rng(17)
    m = build_eqnn_circuit(**kw)
    w = random_weights(m.config, rng)
    P = molecule(rng, len(m.config.species))
    x = relative_inputs(P, m.config)
    got = reference_energy_function(m, w, average=False)(P)
    assert abs(got - _documented_energy(m.config, w, x)) < 1e-10


# ---------------------------------------------------------------------------------------------------------------
# layouts, counts, inputs, errors
# ---------------------------------------------------------------------------------------------------------------
def test_layouts():
    lih, h2o, h3o = (EquivariantQNNConfig(**PAPER_SIZED[s]) for s in ("LiH", "H2O", "H3O+"))
    assert (lih.layout, lih.n_qubits, lih.sublayers, lih.singlet_pairs, lih.observable_bonds) == ("ring", 2, [[(0, 1)]], [(0, 1)], [(0, 1)])
    assert h2o.layout == "ring" and h2o.sublayers == [[(0, 1), (2, 3)], [(1, 2), (0, 3)]] and h2o.observable_bonds == [(0, 1)]
    assert h3o.layout == "bipartite" and h3o.singlet_pairs == [(0, 3), (1, 4), (2, 5)] == h3o.observable_bonds
    assert h3o.sublayers == [[(0, 3), (1, 4), (2, 5)], [(0, 4), (1, 5), (2, 3)], [(0, 5), (1, 3), (2, 4)]]
    for cfg in (lih, h2o, h3o, EquivariantQNNConfig(species=("O", "H", "H"), depth=1, rep=4, layout="bipartite")):
        assert sorted(q for pair in cfg.singlet_pairs for q in pair) == list(range(cfg.n_qubits))  # every qubit in a singlet
        for bonds in cfg.sublayers:
            assert len({q for b in bonds for q in b}) == 2 * len(bonds)  # disjoint: the order within a sub-layer is free
    # shared weights: H2O even bonds own couplings, the two odd bonds one; alphas shared by the two H of a block
    d = h2o
    assert d.coupling_index(0, 0, (0, 1)) != d.coupling_index(0, 0, (2, 3))
    assert d.coupling_index(0, 0, (1, 2)) == d.coupling_index(0, 0, (3, 0))
    assert d.alpha_index(0, 0) == d.alpha_index(0, 1) != d.alpha_index(0, 2) == d.alpha_index(0, 3)


def test_parameter_counts():
    assert {s: EquivariantQNNConfig(**kw).n_weights for s, kw in PAPER_SIZED.items()} == {"LiH": 50, "H2O": 87, "H3O+": 134}
    assert eqnn_parameter_count(**DEMO_H2O) == 4 * 7 + 4 * 6 == 52
    for D in (1, 5, 17):
        for B in (1, 2, 3):
            assert eqnn_parameter_count(species=("Li", "H"), depth=D, trainable_reps=B) == 2 * (D + 1) + D * B
            assert eqnn_parameter_count(species=("O", "H", "H"), depth=D, trainable_reps=B) == 2 * (D + 1) + 3 * D * B
            assert eqnn_parameter_count(species=("O", "H", "H", "H"), depth=D, trainable_reps=B) == 2 * (D + 1) + 3 * D * B
    assert eqnn_parameter_count(species=("O", "H", "H"), depth=4, symmetry_breaking=True) == 2 * 5 + 3 * 4 + 2 * 4
    fits = {s: fit_depth(PAPER_SIZED[s]["species"], t) for s, t in (("LiH", 50), ("H2O", 87), ("H3O+", 135))}
    assert {s: (c.depth, c.trainable_reps, c.n_weights) for s, c in fits.items()} == {
        "LiH": (16, 1, 50), "H2O": (17, 1, 87), "H3O+": (12, 3, 134)}
    c = fit_depth(("O", "H", "H", "H"), 135, trainable_reps=(1,))
    assert (c.depth, c.n_weights) == (27, 137)


def test_inputs_and_permutations_numpy_and_torch():
    torch = pytest.importorskip("torch")
    cfg = EquivariantQNNConfig(species=("H", "O", "H"), reference="O", depth=1)
    assert cfg.reference == 1 and cfg.active_atoms == (0, 2)
    P = np.arange(9.0).reshape(3, 3)
    x = relative_inputs(P, cfg)
    np.testing.assert_array_equal(x, [-3, -3, -3, 3, 3, 3])
    np.testing.assert_array_equal(permute_inputs(x, (1, 0)), [3, 3, 3, -3, -3, -3])
    xt = relative_inputs(torch.tensor(np.stack([P, P + 1])), cfg)
    assert tuple(xt.shape) == (2, 6) and torch.equal(xt[1], torch.tensor(x))


@pytest.mark.parametrize("settings, key", [
    (dict(species=("O", "H", "H"), depth=2, reference="N"), "reference"),
    (dict(species=("O", "H", "H"), depth=2, reference="H"), "reference"),
    (dict(species=("O", "H", "H"), depth=2, reference=3), "reference"),
    (dict(species=("O", "H", "H"), depth=0), "depth"),
    (dict(species=("O", "H", "H"), depth=2.0), "depth"),
    (dict(species=("O", "H", "H"), depth=2, rep=0), "rep"),
    (dict(species=("Li", "H"), depth=2, rep=1), "rep"),              # one qubit: no singlet
    (dict(species=("O", "H", "H", "H"), depth=2, rep=3), "rep"),     # nine qubits
    (dict(species=("O", "H", "H"), depth=2, rep=1, layout="bipartite"), "rep"),
    (dict(species=("O", "H", "H"), depth=2, trainable_reps=0), "trainable_reps"),
    (dict(species=("O", "H", "H"), depth=2, layout="star"), "layout"),
    (dict(species=("O",), depth=2), "species"),
    (dict(species="OHH", depth=2), "species"),
    (dict(species=("C",) + ("H",) * 9, depth=2), "species"),         # 9! like-atom permutations
    (dict(species=("O", "H", "H"), depth=2, share_like_atoms="yes"), "share_like_atoms"),
])
def test_bad_settings_name_the_key(settings, key):
    with pytest.raises(ValueError, match=rf"eqnn circuit: {key} must be"):
        EquivariantQNNConfig(**settings)


def test_config_or_settings_not_both_and_index_errors():
    cfg = EquivariantQNNConfig(**PAPER_SIZED["H2O"])
    with pytest.raises(ValueError, match="not both"):
        build_eqnn_circuit(cfg, depth=3)
    with pytest.raises(ValueError, match="not a bond"):
        cfg.coupling_index(0, 0, (0, 2))
    with pytest.raises(ValueError, match="symmetry_breaking"):
        cfg.epsilon_index(0, 0)
    with pytest.raises(ValueError, match="target"):
        fit_depth(("Li", "H"), 0)

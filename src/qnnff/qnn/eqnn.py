"""The rotation- and permutation-invariant QNN ("siVQLM") as a Qiskit circuit: settings, builder, observable, counts.

Le, Kiss, Schuhmacher, Tavernelli & Tacchino, "Symmetry-invariant quantum machine learning force fields",
New J. Phys. 27, 023015 (2025), arXiv:2311.11362; PennyLane demo ``demonstrations/tutorial_eqnn_force_field.py``
(PennyLaneAI/qml). The model takes Cartesian coordinates, not internal coordinates: a *reference* atom is the
origin (translations drop out) and the ``n`` other (*active*) atoms enter through their relative positions
``x_a = r_a - r_ref``. This module is the single definition of the circuit; :class:`EquivariantQNNConfig` holds and
checks the settings and derives everything else (qubits, bonds, parameter sharing, counts) without importing Qiskit.

Architecture (``n`` active atoms, ``rep`` copies, ``N = n * rep`` qubits, ``D`` layers, ``B`` trainable repetitions)
-----------------------------------------------------------------------------------------------------------------
* Qubit ``q = r * n + a`` (block ``r = 0..rep-1``) carries active atom ``a`` (the demo's ``i % n_active``).
* Initial state: a product of two-qubit singlets ``(|01> - |10>) / sqrt 2`` (H, Z on the first qubit, X on the second,
  CX). Every qubit is in a singlet, so the state is SU(2)-invariant; ``N`` must be even (an odd number of spin-1/2
  cannot form a rotation-invariant state, and a qubit left in ``|0>`` would break the invariance).
* Encoding (at the start and after every layer, ``D + 1`` slots ``e``): on qubit ``q`` carrying atom ``a``,
  ``RV(alpha x_a) = exp(-i alpha (x_a . sigma) / 2)`` (Qiskit :class:`~qiskit.circuit.library.RVGate`), a trainable
  ``alpha`` per (slot, qubit class). Rotating the molecule by ``R`` conjugates every encoding gate by the same
  single-qubit ``U_R`` (equivariance).
* Layer ``d``: ``B`` times the sub-layers of the coupling graph in order, each a set of disjoint bonds ``(i, j)``
  with the Heisenberg gate ``exp(-i J (X_i X_j + Y_i Y_j + Z_i Z_j))`` (commutes with ``U_R (x) U_R``); then, only if
  ``symmetry_breaking``, ``RZ(epsilon)`` on every qubit (breaks the rotation invariance on purpose, the paper's
  "symmetry-breaking" option, off by default); then the encoding slot ``d + 1``.
* Observable: the mean of ``X_i X_j + Y_i Y_j + Z_i Z_j`` over the bonds that like-atom permutations make of the first
  singlet pair (for LiH and H2O that is the pair (0, 1) alone: the demo's ``O = X0 X1 + Y0 Y1 + Z0 Z1``); its
  spectrum lies in ``[-3, 1]``. It commutes with ``U_R^{(x) N}`` and with the permutations.

The Heisenberg gate is one Qiskit :class:`~qiskit.circuit.library.PauliEvolutionGate` of ``XX + YY + ZZ`` with time
``J`` (:func:`append_heisenberg`): exact, since the three terms commute, in Qiskit's synthesis for Aer and hardware
(three two-qubit Pauli rotations), and one op in qnnff's engine, a rotation about the SWAP (``XX + YY + ZZ = 2 SWAP -
1``). The circuit uses h, x, z, cx, rv and these evolution gates. (Until issue 28's engine work the builder emitted the
gate as three CX and five rotations, :func:`append_heisenberg_cx`: the same unitary up to a global phase, 8 ops
instead of one.)

Coupling layouts (``layout``)
-----------------------------
``"ring"`` (the demo's H2O layout, its "1-2-3-4-1 ring topology"): singlets on ``(2j, 2j+1)``; sub-layers "even" bonds
``(i, i+1 mod N)`` for even ``i``, then "odd" bonds for odd ``i`` (for ``N = 2`` the single bond (0, 1) once: the demo
code would apply it twice). ``"bipartite"`` (needs ``rep`` even): singlets on the two copies of one atom,
``(2s n + a, (2s+1) n + a)``; sub-layers between neighbouring blocks ``r, r+1`` (even ``r`` first, then odd ``r``),
one per atom shift ``k = 0..n-1``, with bonds ``(r n + a, (r+1) n + (a + k) mod n)`` (for ``rep = 2`` the complete
bipartite graph between the two copies, split into ``n`` perfect matchings). ``"auto"`` (default) takes the layout
that needs the fewest averaging evaluations (below), the ring on ties: the ring for LiH and H2O, the bipartite
layout for H3O+.

Permutations of like atoms: sharing and averaging
-------------------------------------------------
A permutation ``p`` of like active atoms (data: atom slot ``a`` receives the coordinates of atom ``p[a]``) is
represented on the qubits by ``(r, a) -> (r, p[a])``. The circuit is invariant under ``p`` when ``p`` maps the set of
singlet pairs, the bond set of every sub-layer and the observable's bonds onto themselves and the weights are
constant on the orbits (bonds within one sub-layer commute, so their order does not matter). The builder computes
that stabiliser ``H`` of the layout in the group ``G`` of like-atom permutations and, with ``share_like_atoms``
(default), shares ``alpha`` (and ``epsilon``) over the ``H``-orbits of qubits and ``J`` over the ``H``-orbits of bonds
of each sub-layer: the circuit is then exactly ``H``-invariant. Without sharing (the demo's parameters, one per qubit
and per bond) ``H`` is taken as trivial.

For ``H = G`` (LiH; H2O on the ring: the swap maps the even bonds (0,1), (2,3) to themselves and exchanges the odd
bonds (1,2), (3,0), which therefore share one ``J``: the demo text's ``RH^(1,2)(j1) RH^(3,4)(j2) RH^(2,3)(j3)
RH^(1,4)(j3)``) one circuit evaluation is exactly invariant. For three like atoms (H3O+) no sub-layer of disjoint
bonds on the 6 qubits (rep 2) other than the "same atom, other copy" matching is S3-invariant, and that matching
alone decouples the atoms
(the energy becomes a sum of one-atom terms), so a product of non-commuting pair gates is not S3-invariant in
general. The exact construction used here is averaging: ``E(X) = (1/m) sum_i f(g_i X)`` over representatives
``g_i`` of the cosets ``g H`` (:func:`averaging_permutations`); since ``f`` is ``H``-invariant this equals the average
over all of ``G`` and is exactly ``G``-invariant. On the bipartite layout ``H`` is the cyclic group C3 (each atom
shift ``k`` is a C3-invariant matching; a transposition exchanges the shifts 1 and 2), so H3O+ needs ``m = 2``
evaluations (identity and one transposition) instead of ``|S3| = 6`` (ring: ``H`` trivial, ``m = 6``). The cost is
``m`` circuit evaluations (and their gradients) per geometry; the parameter count is unchanged.

Not covered: the model is invariant under proper rotations only. For up to two active atoms a reflection is a
rotation of the configuration, but for three or more it is not (H3O+ and its mirror image can get different
energies; averaging ``E(X)`` and ``E(-X)`` would make it O(3)-invariant at twice the cost).

Parameter layout (one :class:`~qiskit.circuit.ParameterVector` ``w``; ``Q`` qubit classes, ``C`` bond classes summed
over the sub-layers)::

    alpha(e, q)     = w[e * Q + qclass(q)]                                 e = 0..D     (D + 1) Q
    J(d, b, bond)   = w[(D + 1) Q + (d * B + b) * C + offset(s) + bclass]  d < D, b < B  D B C
    epsilon(d, q)   = w[(D + 1) Q + D B C + d * Q + qclass(q)]             only if symmetry_breaking

    P = (D + 1) Q + D B C (+ D Q)

(:meth:`EquivariantQNNConfig.alpha_index`, :meth:`~EquivariantQNNConfig.coupling_index`,
:meth:`~EquivariantQNNConfig.epsilon_index`.) Inputs: ``x`` of length ``3 n``, ``x[3 a + k]`` = component ``k`` of
``r_active[a] - r_ref`` (:func:`relative_inputs`).

Counts (shared, default layouts, ``symmetry_breaking`` off): LiH ``Q = 2, C = 1``: ``P = 2 (D+1) + D B``; H2O
(ring) ``Q = 2, C = 3``: ``P = 2 (D+1) + 3 D B``; H3O+ (bipartite) ``Q = 2, C = 3``: the same. Sized to the paper's
QNN counts (50 / 87 / 135) by :func:`fit_depth`: LiH D = 16, B = 1 -> 50; H2O D = 17, B = 1 -> 87; H3O+ D = 12,
B = 3 -> 134 (:data:`PAPER_SIZED`). The demo's H2O model (D = 6, B = 1, unshared ring) has 4 * 7 + 4 * 6 = 52
(:data:`DEMO_H2O`; the demo's own arrays also hold 52 numbers, of which its code uses 48: it reads
``weights[i, d + 1, b]`` from an axis of length D, so jax clamps the last index: ``weights[:, 0]`` is never read and
the last two layers share ``weights[:, D - 1]``; here layer ``d`` uses its own couplings).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, NamedTuple

LAYOUTS = ("auto", "ring", "bipartite")
MAX_PERMUTATIONS = 40320  # 8 like atoms

Bond = tuple[int, int]
Perm = tuple[int, ...]

__all__ = ["DEMO_H2O", "LAYOUTS", "PAPER_COUNTS", "PAPER_SIZED", "EquivariantQNN", "EquivariantQNNConfig", "append_heisenberg",
           "append_heisenberg_cx",
           "averaging_permutations", "build_eqnn_circuit", "eqnn_parameter_count", "fit_depth", "like_atom_permutations",
           "permute_inputs", "reference_energy", "reference_energy_function", "relative_inputs"]

# The parameter counts of the paper's (non-invariant) QNN, Kiss et al. MLST 2022 (qnnff.qnn.circuit).
PAPER_COUNTS = {"LiH": 50, "H2O": 87, "H3O+": 135}
SPECIES = {"LiH": ("Li", "H"), "H2O": ("O", "H", "H"), "H3O+": ("O", "H", "H", "H")}
# Default settings of the invariant model sized to the paper's counts (fit_depth with B in 1..3): 50, 87, 134.
PAPER_SIZED: dict[str, dict[str, Any]] = {
    "LiH": dict(species=SPECIES["LiH"], depth=16, trainable_reps=1),
    "H2O": dict(species=SPECIES["H2O"], depth=17, trainable_reps=1),
    "H3O+": dict(species=SPECIES["H3O+"], depth=12, trainable_reps=3),
}
# The PennyLane demo's H2O model: D = 6, B = 1, rep = 2, ring, one parameter per qubit and per bond (52).
DEMO_H2O: dict[str, Any] = dict(species=SPECIES["H2O"], depth=6, trainable_reps=1, rep=2, layout="ring", share_like_atoms=False)


def _orbits(items: Sequence, perms: Sequence[Perm], act) -> list[int]:
    """Class index of every item under the group ``perms`` (classes numbered by first appearance)."""
    index = {it: i for i, it in enumerate(items)}
    cls = [-1] * len(items)
    n = 0
    for i, it in enumerate(items):
        if cls[i] >= 0:
            continue
        for p in perms:
            cls[index[act(p, it)]] = n
        n += 1
    return cls


@dataclass(frozen=True, kw_only=True)
class EquivariantQNNConfig:
    """Validated settings of the invariant QNN (keyword-only). ``reference`` is an atom index or a chemical symbol
    that occurs once in ``species``; it is stored as the index."""

    species: tuple[str, ...]
    depth: int
    reference: int | str = 0
    rep: int = 2
    trainable_reps: int = 1
    share_like_atoms: bool = True
    layout: str = "auto"
    symmetry_breaking: bool = False
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        def fail(key: str, what: str, v: Any) -> None:
            raise ValueError(f"eqnn circuit: {key} must be {what}, got {v!r}")

        sp = self.species
        if isinstance(sp, str) or not isinstance(sp, Sequence) or len(sp) < 2 or not all(isinstance(s, str) and s for s in sp):
            fail("species", "a sequence of at least two chemical symbols (reference atom and active atoms)", sp)
        object.__setattr__(self, "species", tuple(sp))
        for key in ("depth", "rep", "trainable_reps"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                fail(key, "a positive integer", v)
        ref = self.reference
        if isinstance(ref, str):
            hits = [i for i, s in enumerate(self.species) if s == ref]
            if len(hits) != 1:
                fail("reference", f"an atom index or a symbol occurring exactly once in species {list(self.species)} "
                     f"({'not present' if not hits else f'{len(hits)} atoms'})", ref)
            ref = hits[0]
        elif isinstance(ref, bool) or not isinstance(ref, int) or not 0 <= ref < len(self.species):
            fail("reference", f"an atom index in [0, {len(self.species) - 1}] or a chemical symbol of species", ref)
        object.__setattr__(self, "reference", ref)
        for key in ("share_like_atoms", "symmetry_breaking"):
            if not isinstance(getattr(self, key), bool):
                fail(key, "true or false", getattr(self, key))
        if self.layout not in LAYOUTS:
            fail("layout", f"one of {LAYOUTS}", self.layout)
        counts: dict[str, int] = {}
        for i in self.active_atoms:
            counts[self.species[i]] = counts.get(self.species[i], 0) + 1
        if math.prod(math.factorial(c) for c in counts.values()) > MAX_PERMUTATIONS:
            fail("species", f"a molecule with at most {MAX_PERMUTATIONS} like-atom permutations (they are enumerated to "
                 f"find the stabiliser and the averaging set; like active atoms: {counts})", self.species)
        if self.n_qubits % 2:
            fail("rep", f"such that n_active * rep is even (the singlet initial state pairs every qubit; "
                 f"{self.n_active} active atom(s) x rep {self.rep} = {self.n_qubits} qubits)", self.rep)
        if self.layout == "bipartite" and self.rep % 2:
            fail("rep", "even for layout 'bipartite' (it pairs the copies of each atom)", self.rep)
        if self.layout == "auto":
            cands = ["ring"] + (["bipartite"] if self.rep % 2 == 0 else [])
            best = min(cands, key=lambda lay: (len(self._structure(lay)["cosets"]), cands.index(lay)))
            object.__setattr__(self, "layout", best)

    # ---- atoms and qubits
    @property
    def active_atoms(self) -> tuple[int, ...]:
        """Indices (into ``species``) of the active atoms, in order; active atom ``a`` is input slot ``a``."""
        return tuple(i for i in range(len(self.species)) if i != self.reference)

    @property
    def n_active(self) -> int:
        return len(self.species) - 1

    @property
    def n_qubits(self) -> int:
        return self.n_active * self.rep

    @property
    def n_inputs(self) -> int:
        return 3 * self.n_active

    def atom_of_qubit(self, q: int) -> int:
        """The active-atom slot qubit ``q`` encodes."""
        return q % self.n_active

    # ---- structure (layout -> pairs, sub-layers, observable bonds, stabiliser, cosets)
    def _structure(self, layout: str) -> dict[str, Any]:
        if layout in self._cache:
            return self._cache[layout]
        n, rep, N = self.n_active, self.rep, self.n_qubits

        def norm(i: int, j: int) -> Bond:
            return (min(i, j), max(i, j))

        if layout == "ring":
            pairs = [(2 * j, 2 * j + 1) for j in range(N // 2)]
            if N == 2:
                sub = [[(0, 1)]]
            else:
                sub = [[norm(i, (i + 1) % N) for i in range(start, N, 2)] for start in (0, 1)]
        else:  # bipartite
            pairs = [(2 * s * n + a, (2 * s + 1) * n + a) for s in range(rep // 2) for a in range(n)]
            sub = []
            for parity in (0, 1):
                for k in range(n):
                    bonds = [norm(r * n + a, (r + 1) * n + (a + k) % n) for r in range(parity, rep - 1, 2) for a in range(n)]
                    if bonds:
                        sub.append(bonds)
        group = self._like_group()

        def qmap(p: Perm, q: int) -> int:
            r, a = divmod(q, n)
            return r * n + p[a]

        def bmap(p: Perm, b: Bond) -> Bond:
            return norm(qmap(p, b[0]), qmap(p, b[1]))

        obs = sorted({bmap(p, norm(*pairs[0])) for p in group})
        sets = [{norm(*b) for b in pairs}, set(obs)] + [set(s) for s in sub]
        stab = [p for p in group if all({bmap(p, b) for b in s} == s for s in sets)]
        used = stab if self.share_like_atoms else [tuple(range(n))]
        # left cosets g H (composition (g h)[a] = g[h[a]]): f((g h) X) = f(h (g X)) = f(g X) for h in H
        cosets: list[Perm] = []
        seen: set[Perm] = set()
        for g in group:
            if g not in seen:
                cosets.append(g)
                seen.update(tuple(g[h[a]] for a in range(n)) for h in used)
        qclass = _orbits(list(range(N)), used, qmap)
        bclass = [_orbits(s, used, bmap) for s in sub]
        out = dict(pairs=pairs, sublayers=sub, observable_bonds=obs, stabilizer=stab, cosets=cosets, qclass=qclass,
                   bclass=bclass, n_qclasses=max(qclass) + 1, n_bclasses=[max(c) + 1 for c in bclass])
        self._cache[layout] = out
        return out

    def _like_group(self) -> list[Perm]:
        n = self.n_active
        groups: dict[str, list[int]] = {}
        for a, i in enumerate(self.active_atoms):
            groups.setdefault(self.species[i], []).append(a)
        perms = []
        for choice in itertools.product(*(itertools.permutations(g) for g in groups.values())):
            p = list(range(n))
            for g, img in zip(groups.values(), choice):
                for a, b in zip(g, img):
                    p[a] = b
            perms.append(tuple(p))
        return sorted(perms)

    @cached_property
    def _s(self) -> dict[str, Any]:
        return self._structure(self.layout)

    @property
    def singlet_pairs(self) -> list[Bond]:
        return list(self._s["pairs"])

    @property
    def sublayers(self) -> list[list[Bond]]:
        """The bonds of each sub-layer (disjoint within a sub-layer), in the order they are applied."""
        return [list(s) for s in self._s["sublayers"]]

    @property
    def observable_bonds(self) -> list[Bond]:
        return list(self._s["observable_bonds"])

    @property
    def like_atom_permutations(self) -> list[Perm]:
        """Every permutation of like active atoms (``p[a]`` = the atom whose coordinates slot ``a`` receives)."""
        return self._like_group()

    @property
    def stabilizer(self) -> list[Perm]:
        """The like-atom permutations that map the layout (singlets, every sub-layer, observable) onto itself."""
        return list(self._s["stabilizer"])

    @property
    def averaging_permutations(self) -> list[Perm]:
        """Coset representatives to average over for exact permutation invariance (``[identity]`` if none needed)."""
        return list(self._s["cosets"])

    # ---- counts and layout of w
    @property
    def n_qubit_classes(self) -> int:
        return self._s["n_qclasses"]

    @property
    def n_bond_classes(self) -> int:
        return sum(self._s["n_bclasses"])

    @property
    def n_alpha(self) -> int:
        return (self.depth + 1) * self.n_qubit_classes

    @property
    def n_couplings(self) -> int:
        return self.depth * self.trainable_reps * self.n_bond_classes

    @property
    def n_weights(self) -> int:
        return self.n_alpha + self.n_couplings + (self.depth * self.n_qubit_classes if self.symmetry_breaking else 0)

    def alpha_index(self, slot: int, qubit: int) -> int:
        """Index in ``w`` of the encoding weight of ``qubit`` in encoding slot ``slot`` (0 = initial, d + 1 after layer d)."""
        if not 0 <= slot <= self.depth:
            raise ValueError(f"eqnn circuit: encoding slot must be in [0, {self.depth}], got {slot}")
        return slot * self.n_qubit_classes + self._s["qclass"][qubit]

    def coupling_index(self, layer: int, b: int, bond: Sequence[int]) -> int:
        """Index in ``w`` of the Heisenberg coupling of ``bond`` in repetition ``b`` of layer ``layer``."""
        key = (min(bond), max(bond))
        offset = 0
        for s, bonds in enumerate(self._s["sublayers"]):
            if key in bonds:
                base = self.n_alpha + (layer * self.trainable_reps + b) * self.n_bond_classes
                return base + offset + self._s["bclass"][s][bonds.index(key)]
            offset += self._s["n_bclasses"][s]
        raise ValueError(f"eqnn circuit: {tuple(bond)} is not a bond of layout {self.layout!r}")

    def epsilon_index(self, layer: int, qubit: int) -> int:
        if not self.symmetry_breaking:
            raise ValueError("eqnn circuit: symmetry_breaking is off, there are no epsilon weights")
        return self.n_alpha + self.n_couplings + layer * self.n_qubit_classes + self._s["qclass"][qubit]

    def to_dict(self) -> dict[str, Any]:
        return {"species": list(self.species), "depth": self.depth, "reference": self.reference, "rep": self.rep,
                "trainable_reps": self.trainable_reps, "share_like_atoms": self.share_like_atoms, "layout": self.layout,
                "symmetry_breaking": self.symmetry_breaking}


def eqnn_parameter_count(**settings: Any) -> int:
    """The circuit's weight count for keyword settings as in :class:`EquivariantQNNConfig` (no circuit is built)."""
    return EquivariantQNNConfig(**settings).n_weights


def fit_depth(species: Sequence[str], target: int, *, trainable_reps: Sequence[int] = (1, 2, 3), max_depth: int = 500,
              **settings: Any) -> EquivariantQNNConfig:
    """The configuration whose weight count is closest to ``target``, searching ``D = 1..max_depth`` and ``B`` in
    ``trainable_reps`` (ties: smaller ``B``, then smaller ``D``); the other settings are passed through."""
    if isinstance(target, bool) or not isinstance(target, int) or target < 1:
        raise ValueError(f"eqnn circuit: target must be a positive integer, got {target!r}")
    if not trainable_reps:
        raise ValueError("eqnn circuit: trainable_reps must list at least one B")
    best = None
    for B in trainable_reps:
        for D in range(1, max_depth + 1):
            cfg = EquivariantQNNConfig(species=tuple(species), depth=D, trainable_reps=B, **settings)
            key = (abs(cfg.n_weights - target), B, D)
            if best is None or key < best[0]:
                best = (key, cfg)
            if cfg.n_weights > target:
                break
    return best[1]


def like_atom_permutations(config: EquivariantQNNConfig) -> list[Perm]:
    return config.like_atom_permutations


def averaging_permutations(config: EquivariantQNNConfig) -> list[Perm]:
    """The permutations ``g_i`` of active atoms over which ``E(X) = mean_i f(g_i X)`` is exactly invariant under every
    permutation of like atoms (``f`` = one circuit evaluation; :func:`permute_inputs` applies ``g_i``)."""
    return config.averaging_permutations


def relative_inputs(positions: Any, config: EquivariantQNNConfig) -> Any:
    """Circuit inputs from Cartesian positions ``[..., n_atoms, 3]`` (numpy or torch): ``[..., 3 n_active]`` with
    ``x[3 a + k] = positions[active[a], k] - positions[reference, k]``."""
    ref = config.reference
    rel = positions[..., list(config.active_atoms), :] - positions[..., ref:ref + 1, :]
    return rel.reshape(*rel.shape[:-2], 3 * config.n_active)


def permute_inputs(x: Any, perm: Sequence[int]) -> Any:
    """Inputs with atom slot ``a`` fed by the coordinates of atom ``perm[a]`` (numpy or torch, last axis)."""
    idx = [3 * p + k for p in perm for k in range(3)]
    return x[..., idx]


# ---------------------------------------------------------------------------------------------------------------
# circuit
# ---------------------------------------------------------------------------------------------------------------
class EquivariantQNN(NamedTuple):
    """What :func:`build_eqnn_circuit` returns."""

    circuit: Any      # qiskit QuantumCircuit, no measurements
    inputs: Any       # ParameterVector x, length 3 n_active
    weights: Any      # ParameterVector w, length config.n_weights
    observable: Any   # SparsePauliOp
    config: EquivariantQNNConfig


def append_heisenberg(qc: Any, J: Any, i: int, j: int) -> None:
    """Append ``exp(-i J (X_i X_j + Y_i Y_j + Z_i Z_j))``: one :class:`~qiskit.circuit.library.PauliEvolutionGate`.

    The gate is symmetric in ``i, j``. Its three Pauli terms commute, so Qiskit's synthesis of it (three two-qubit
    Pauli rotations, for Aer and hardware) is exact; qnnff's engine applies it as one rotation about the SWAP
    (``XX + YY + ZZ = 2 SWAP - 1``, :mod:`qnnff.qnn.engine`). Checked against the matrix exponential in
    tests/test_eqnn_circuit.py.
    """
    from qiskit.circuit.library import PauliEvolutionGate

    qc.append(PauliEvolutionGate(_HEISENBERG(), time=J), [i, j])


def _HEISENBERG() -> Any:
    from qiskit.quantum_info import SparsePauliOp

    return SparsePauliOp(["XX", "YY", "ZZ"])


def append_heisenberg_cx(qc: Any, J: Any, i: int, j: int) -> None:
    """The same gate (up to a global phase) in three CX and five rotations about Z and Y (Vatan & Williams, PRA 69,
    032315 (2004), Fig. 6, in Qiskit's rotation convention): the builder's form before the engine applied the exchange natively;
    kept for the benchmark and as a cross-check of that native exchange (tests/test_eqnn_circuit.py)."""
    h = math.pi / 2
    qc.rz(h, j)
    qc.cx(j, i)
    qc.rz(2 * J + h, i)
    qc.ry(2 * J + h, j)
    qc.cx(i, j)
    qc.ry(-2 * J - h, j)
    qc.cx(j, i)
    qc.rz(-h, i)


def append_singlet(qc: Any, i: int, j: int) -> None:
    """``|00> -> (|01> - |10>) / sqrt 2`` on qubits ``(i, j)`` (the demo's H, Z, X, CNOT)."""
    qc.h(i)
    qc.z(i)
    qc.x(j)
    qc.cx(i, j)


def heisenberg_observable(n_qubits: int, bonds: Sequence[Bond]) -> Any:
    """``mean over bonds of X_i X_j + Y_i Y_j + Z_i Z_j`` as a SparsePauliOp."""
    from qiskit.quantum_info import SparsePauliOp

    c = 1.0 / len(bonds)
    terms = [(p + p, [i, j], c) for i, j in bonds for p in "XYZ"]
    return SparsePauliOp.from_sparse_list(terms, num_qubits=n_qubits).simplify()


def build_eqnn_circuit(config: EquivariantQNNConfig | None = None, /, *, input_name: str = "x", weight_name: str = "w",
                       **settings: Any) -> EquivariantQNN:
    """The invariant QNN (architecture in the module docstring) from a config or from keyword settings."""
    from qiskit.circuit import ParameterVector, QuantumCircuit
    from qiskit.circuit.library import RVGate

    if config is None:
        config = EquivariantQNNConfig(**settings)
    elif settings:
        raise ValueError(f"eqnn circuit: pass a config or keyword settings, not both (got {sorted(settings)})")
    cfg = config
    N, D, B = cfg.n_qubits, cfg.depth, cfg.trainable_reps
    x = ParameterVector(input_name, cfg.n_inputs)
    w = ParameterVector(weight_name, cfg.n_weights)
    qc = QuantumCircuit(N, name="eqnn")
    qc.metadata = {"qnnff_eqnn": cfg.to_dict(), "inputs": input_name, "weights": weight_name}

    def encode(slot: int) -> None:
        for q in range(N):
            a = cfg.atom_of_qubit(q)
            alpha = w[cfg.alpha_index(slot, q)]
            qc.append(RVGate(alpha * x[3 * a], alpha * x[3 * a + 1], alpha * x[3 * a + 2]), [q])

    for i, j in cfg.singlet_pairs:
        append_singlet(qc, i, j)
    encode(0)
    for d in range(D):
        for b in range(B):
            for bonds in cfg.sublayers:
                for i, j in bonds:
                    append_heisenberg(qc, w[cfg.coupling_index(d, b, (i, j))], i, j)
        if cfg.symmetry_breaking:
            for q in range(N):
                qc.rz(w[cfg.epsilon_index(d, q)], q)
        encode(d + 1)
    return EquivariantQNN(qc, x, w, heisenberg_observable(N, cfg.observable_bonds), cfg)


def reference_energy_function(model: EquivariantQNN, weights: Sequence[float], *, average: bool = True) -> Callable[[Any], float]:
    """``positions [n_atoms, 3] -> <O>`` with Qiskit's exact Statevector (slow; the reference for tests), the weights
    bound once and the exchange gates decomposed once into Qiskit's rxx, ryy, rzz (exact: the three terms commute;
    Statevector would otherwise synthesise every PauliEvolutionGate again for each geometry, ~25x slower), averaged over
    :func:`averaging_permutations` unless ``average=False``."""
    import numpy as np
    from qiskit.quantum_info import Statevector

    cfg = model.config
    if len(weights) != cfg.n_weights:
        raise ValueError(f"eqnn circuit: expected {cfg.n_weights} weights, got {len(weights)}")
    bound_w = model.circuit.assign_parameters(dict(zip(model.weights, map(float, weights))))
    bound_w = bound_w.decompose(gates_to_decompose=["PauliEvolution"])
    perms = cfg.averaging_permutations if average else [tuple(range(cfg.n_active))]

    def energy(positions: Any) -> float:
        x = relative_inputs(np.asarray(positions, dtype=float), cfg)
        vals = [float(Statevector(bound_w.assign_parameters(dict(zip(model.inputs, map(float, permute_inputs(x, p))))))
                      .expectation_value(model.observable).real) for p in perms]
        return sum(vals) / len(vals)

    return energy


def reference_energy(model: EquivariantQNN, positions: Any, weights: Sequence[float], *, average: bool = True) -> float:
    """One energy with :func:`reference_energy_function`."""
    return reference_energy_function(model, weights, average=average)(positions)

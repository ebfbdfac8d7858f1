"""Atom-centred symmetry functions (Behler, J. Chem. Phys. 134, 074106 (2011)) in torch.

Written in torch so that the descriptors are differentiable w.r.t. Cartesian positions and a Behler-Parrinello
network's forces come from autograd (no maintained ACSF library gives derivatives we can train through).

Definitions (distances in Angstrom, eta in 1/Angstrom^2, positions ``[B, n, 3]``)
---------------------------------------------------------------------------------
cutoff          fc(R) = 0.5 (cos(pi R / Rc) + 1) for R < Rc, else 0 (value and slope vanish at Rc)
radial          G2_i[e; eta, Rs] = sum_{j != i, Z_j = e} exp(-eta (R_ij - Rs)^2) fc(R_ij)
angular         G3_i[(e1, e2); eta, zeta, lambda] =
                    2^(1 - zeta) sum_{j < k; j, k != i; {Z_j, Z_k} = {e1, e2}}
                        (1 + lambda cos theta_ijk)^zeta exp(-eta (R_ij^2 + R_ik^2 + R_jk^2)) fc(R_ij) fc(R_ik) fc(R_jk)

The angular function is the *narrow* one (Behler 2011's G4, n2p2's type 3), with the cutoff on all three sides
of the triangle. It is summed over unordered neighbour pairs {j, k} (n2p2's convention), i.e. half of Behler's
double sum over ordered pairs j != k; a constant factor that the per-element standardisation removes anyway.
``theta_ijk`` is the angle at the centre atom i.

Element resolution: radial functions per neighbour element e, angular functions per unordered neighbour element
pair (e1 <= e2); elements are ordered by atomic number. The descriptor of atom i is laid out as

    [radial(e) for e in elements, each with all radial functions] + [angular(e1, e2) for pairs, each with all angular]

so its length is ``n_el * n_radial + n_el (n_el + 1) / 2 * n_angular``. Slots that cannot occur in a system (e.g.
the H-H angular slot of an H atom in water) stay 0.

Default set (:data:`DEFAULT_SYMMETRY_FUNCTIONS`), for molecules of a few atoms with bonds of 0.8-2 Angstrom:
Rc = 6 Angstrom (every pair is inside; fc is then a smooth weight, not a neighbour selection), six centred
radial functions (Rs = 0, eta = 0.01, 0.1, 0.3, 0.6, 1.2, 2.5 1/A^2, from nearly flat to ~1 A wide) and two
angular ones (eta = 0.01 1/A^2, zeta = 1, lambda = +1 and -1). For the two elements of H2O or H3O+ that is
2 * 6 + 3 * 2 = 18 values per atom. Any other set comes from a dict, see :meth:`SymmetryFunctionSet.from_dict`.

Vectorisation: the molecules are small and fixed-size, so all ordered pairs (i, j) and all triples (i, {j, k})
are enumerated once per system; each frame is then a few batched tensor ops and one scatter (an einsum with
a fixed 0/1 matrix). No Python loop over atoms or frames in the forward pass.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from ase.data import atomic_numbers

DEFAULT_SYMMETRY_FUNCTIONS: dict[str, Any] = {
    "cutoff": 6.0,
    "radial": [{"eta": eta, "rs": 0.0} for eta in (0.01, 0.1, 0.3, 0.6, 1.2, 2.5)],
    "angular": [{"eta": 0.01, "zeta": 1.0, "lambda": lam} for lam in (1.0, -1.0)],
}


def cutoff_function(r: torch.Tensor, rc: float) -> torch.Tensor:
    """Cosine cutoff fc(R) = 0.5 (cos(pi R / Rc) + 1) for R < Rc, else 0."""
    return torch.where(r < rc, 0.5 * (torch.cos(r * (math.pi / rc)) + 1.0), torch.zeros_like(r))


@dataclass(frozen=True)
class SymmetryFunctionSet:
    """Cutoff radius (Angstrom) and the parameters of the radial (eta, Rs) and angular (eta, zeta, lambda) functions."""

    cutoff: float
    radial: tuple[tuple[float, float], ...]
    angular: tuple[tuple[float, float, float], ...]

    def __post_init__(self) -> None:
        if not (math.isfinite(self.cutoff) and self.cutoff > 0):
            raise ValueError(f"symmetry functions: cutoff must be a positive number of Angstrom, got {self.cutoff}")
        if not self.radial and not self.angular:
            raise ValueError("symmetry functions: need at least one radial or angular function")
        for k, (eta, rs) in enumerate(self.radial):
            if not (eta >= 0 and math.isfinite(eta) and math.isfinite(rs) and rs >= 0):
                raise ValueError(f"symmetry functions: radial[{k}] needs eta >= 0 and Rs >= 0, got eta={eta}, rs={rs}")
        for k, (eta, zeta, lam) in enumerate(self.angular):
            if not (eta >= 0 and math.isfinite(eta)):
                raise ValueError(f"symmetry functions: angular[{k}].eta must be >= 0, got {eta}")
            if not zeta >= 1:
                raise ValueError(f"symmetry functions: angular[{k}].zeta must be >= 1, got {zeta}")
            if lam not in (1.0, -1.0):
                raise ValueError(f"symmetry functions: angular[{k}].lambda must be +1 or -1, got {lam}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> SymmetryFunctionSet:
        """``{"cutoff": Rc, "radial": [{"eta", "rs"}, ...], "angular": [{"eta", "zeta", "lambda"}, ...]}``;
        missing keys take the defaults of :data:`DEFAULT_SYMMETRY_FUNCTIONS`."""
        d = dict(DEFAULT_SYMMETRY_FUNCTIONS if d is None else d)
        unknown = set(d) - {"cutoff", "radial", "angular"}
        if unknown:
            raise ValueError(f"symmetry functions: unknown key(s) {sorted(unknown)} (use cutoff, radial, angular)")
        try:
            radial = tuple((float(f["eta"]), float(f.get("rs", 0.0))) for f in d.get("radial", DEFAULT_SYMMETRY_FUNCTIONS["radial"]))
            angular = tuple(
                (float(f["eta"]), float(f["zeta"]), float(f["lambda"]))
                for f in d.get("angular", DEFAULT_SYMMETRY_FUNCTIONS["angular"])
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"symmetry functions: malformed entry ({exc!r}); radial needs eta (and rs), angular eta, zeta, lambda") from exc
        return cls(float(d.get("cutoff", DEFAULT_SYMMETRY_FUNCTIONS["cutoff"])), radial, angular)

    def to_dict(self) -> dict[str, Any]:
        return {
            "cutoff": self.cutoff,
            "radial": [{"eta": e, "rs": r} for e, r in self.radial],
            "angular": [{"eta": e, "zeta": z, "lambda": lam} for e, z, lam in self.angular],
        }

    def size(self, n_elements: int) -> int:
        """Descriptor length per atom for ``n_elements`` elements."""
        return n_elements * len(self.radial) + n_elements * (n_elements + 1) // 2 * len(self.angular)


def sort_elements(symbols: Sequence[str]) -> tuple[str, ...]:
    """Distinct chemical symbols ordered by atomic number; unknown symbols are an error."""
    bad = sorted({s for s in symbols if s not in atomic_numbers or s == "X"})
    if bad:
        raise ValueError(f"unknown chemical symbol(s) {bad}")
    return tuple(sorted(set(symbols), key=lambda s: atomic_numbers[s]))


class ACSF(torch.nn.Module):
    """positions [B, n, 3] (Angstrom) -> symmetry functions [B, n, size] for one fixed list of ``symbols``."""

    def __init__(self, symbols: Sequence[str], functions: SymmetryFunctionSet | Mapping[str, Any] | None = None,
                 elements: Sequence[str] | None = None) -> None:
        super().__init__()
        self.symbols = list(symbols)
        if not self.symbols:
            raise ValueError("ACSF: need at least one atom")
        self.functions = functions if isinstance(functions, SymmetryFunctionSet) else SymmetryFunctionSet.from_dict(functions)
        self.elements = sort_elements(self.symbols) if elements is None else tuple(elements)
        missing = sorted(set(self.symbols) - set(self.elements))
        if missing:
            raise ValueError(f"ACSF: symbol(s) {missing} are not among the elements {list(self.elements)}")
        sort_elements(self.elements)
        n, ne = len(self.symbols), len(self.elements)
        eidx = [self.elements.index(s) for s in self.symbols]
        self.element_pairs = [(a, b) for a, b in itertools.combinations_with_replacement(range(ne), 2)]
        pair_slot = {p: k for k, p in enumerate(self.element_pairs)}
        self.n_atoms, self.n_elements = n, ne

        f = self.functions
        f64 = torch.float64
        self.register_buffer("rad_eta", torch.tensor([e for e, _ in f.radial], dtype=f64), persistent=False)
        self.register_buffer("rad_rs", torch.tensor([r for _, r in f.radial], dtype=f64), persistent=False)
        self.register_buffer("ang_eta", torch.tensor([e for e, _, _ in f.angular], dtype=f64), persistent=False)
        self.register_buffer("ang_zeta", torch.tensor([z for _, z, _ in f.angular], dtype=f64), persistent=False)
        self.register_buffer("ang_lambda", torch.tensor([lam for _, _, lam in f.angular], dtype=f64), persistent=False)

        # all ordered pairs (i, j), i != j, and their scatter matrix onto (centre i, neighbour element)
        pairs = [(i, j) for i in range(n) for j in range(n) if i != j]
        self.register_buffer("pair_i", torch.tensor([p[0] for p in pairs], dtype=torch.long), persistent=False)
        self.register_buffer("pair_j", torch.tensor([p[1] for p in pairs], dtype=torch.long), persistent=False)
        m_rad = torch.zeros(len(pairs), n * ne, dtype=f64)
        for p, (i, j) in enumerate(pairs):
            m_rad[p, i * ne + eidx[j]] = 1.0
        self.register_buffer("scatter_radial", m_rad, persistent=False)

        # all triples (i, j, k), j < k, j, k != i, and their scatter matrix onto (centre i, neighbour element pair)
        triples = [(i, j, k) for i in range(n) for j, k in itertools.combinations([a for a in range(n) if a != i], 2)]
        self.register_buffer("tri_i", torch.tensor([t[0] for t in triples], dtype=torch.long), persistent=False)
        self.register_buffer("tri_j", torch.tensor([t[1] for t in triples], dtype=torch.long), persistent=False)
        self.register_buffer("tri_k", torch.tensor([t[2] for t in triples], dtype=torch.long), persistent=False)
        npair = len(self.element_pairs)
        m_ang = torch.zeros(len(triples), n * npair, dtype=f64)
        for t, (i, j, k) in enumerate(triples):
            a, b = sorted((eidx[j], eidx[k]))
            m_ang[t, i * npair + pair_slot[(a, b)]] = 1.0
        self.register_buffer("scatter_angular", m_ang, persistent=False)

    @property
    def size(self) -> int:
        return self.functions.size(self.n_elements)

    def labels(self) -> list[str]:
        """One label per descriptor component, e.g. ``G2[O](eta=0.3,rs=0)`` or ``G3[H-O](eta=0.01,zeta=1,lambda=-1)``."""
        out = [f"G2[{e}](eta={eta:g},rs={rs:g})" for e in self.elements for eta, rs in self.functions.radial]
        out += [
            f"G3[{self.elements[a]}-{self.elements[b]}](eta={eta:g},zeta={z:g},lambda={lam:+g})"
            for a, b in self.element_pairs
            for eta, z, lam in self.functions.angular
        ]
        return out

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        if positions.ndim != 3 or positions.shape[1:] != (self.n_atoms, 3):
            raise ValueError(f"ACSF for {''.join(self.symbols)}: positions must have shape [B, {self.n_atoms}, 3], got {tuple(positions.shape)}")
        B, n, ne = positions.shape[0], self.n_atoms, self.n_elements
        rc = self.functions.cutoff
        parts = []
        if len(self.functions.radial):
            if len(self.pair_i):
                r = torch.linalg.vector_norm(positions[:, self.pair_j] - positions[:, self.pair_i], dim=-1)  # [B, P]
                terms = torch.exp(-self.rad_eta * (r.unsqueeze(-1) - self.rad_rs) ** 2) * cutoff_function(r, rc).unsqueeze(-1)
                g = torch.einsum("bpf,pc->bcf", terms, self.scatter_radial)  # [B, n*ne, nr]
            else:
                g = positions.new_zeros(B, n * ne, len(self.functions.radial))
            parts.append(g.reshape(B, n, -1))
        if len(self.functions.angular):
            npair = len(self.element_pairs)
            if len(self.tri_i):
                pi, pj, pk = positions[:, self.tri_i], positions[:, self.tri_j], positions[:, self.tri_k]
                u, v, w = pj - pi, pk - pi, pk - pj
                rij = torch.linalg.vector_norm(u, dim=-1)
                rik = torch.linalg.vector_norm(v, dim=-1)
                rjk = torch.linalg.vector_norm(w, dim=-1)
                cos = (u * v).sum(-1) / (rij * rik)  # [B, T]
                fc = cutoff_function(rij, rc) * cutoff_function(rik, rc) * cutoff_function(rjk, rc)
                base = torch.clamp(1.0 + self.ang_lambda * cos.unsqueeze(-1), min=0.0)  # [B, T, na]
                radial = torch.exp(-self.ang_eta * (rij * rij + rik * rik + rjk * rjk).unsqueeze(-1))
                terms = 2.0 ** (1.0 - self.ang_zeta) * base**self.ang_zeta * radial * fc.unsqueeze(-1)
                g = torch.einsum("btf,tc->bcf", terms, self.scatter_angular)  # [B, n*npair, na]
            else:
                g = positions.new_zeros(B, n * npair, len(self.functions.angular))
            parts.append(g.reshape(B, n, -1))
        return torch.cat(parts, dim=-1)

    def values_and_jacobian(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """G [B, n, size] and dG/dR [B, n, size, n, 3] (per frame), detached."""
        pos = positions.detach()

        def single(p: torch.Tensor) -> torch.Tensor:
            return self.forward(p.unsqueeze(0)).squeeze(0)

        with torch.enable_grad():
            jac = torch.func.vmap(torch.func.jacrev(single))(pos)
        with torch.no_grad():
            g = self.forward(pos)
        return g, jac.detach()

"""Behler-Parrinello neural network (model kind ``"bpnn"``): the paper's n2p2 baseline, in torch.

Behler & Parrinello, Phys. Rev. Lett. 98, 146401 (2007); symmetry functions from :mod:`qnnff.acsf`.

* every atom i gets a descriptor G_i (element-resolved radial + angular symmetry functions, Cartesian ->
  G in torch, so it is differentiable w.r.t. the positions);
* G_i is standardised per element with the training set's mean and standard deviation (components that are
  constant over the training set, e.g. an angular slot that cannot occur, get std 1);
* one feed-forward network per element, shared by all atoms of that element, gives an atomic contribution;
  the scaled energy is their sum, y = sum_i NN_{Z_i}(g_i), and E = center + scale * y (the
  :class:`~qnnff.features.EnergyScaler` of the other models);
* forces are -dE/dR by autograd (``energy_and_forces``) or, for training, by the chain rule through a cached
  Jacobian dG/dR (``scaled_energy_and_forces``), which is exact and avoids differentiating the descriptors
  again at every optimisation step. A trainer that draws mini-batches can precompute (G, dG/dR) once with
  :meth:`BPNNForceField.descriptors_and_jacobian` and pass them as ``TrainingBatch.x`` / ``.jac``.

Architecture and parameter count
--------------------------------
Each element network maps the G-vector (size g) through hidden tanh layers (h_1, h_2) to one output:
(g + 1) h_1 + (h_1 + 1) h_2 + (h_2 + 1) parameters. With the default symmetry functions (g = 18 for two
elements, see :mod:`qnnff.acsf`) the paper's n2p2 counts come out exactly:

========  ========  ==========  ==============================================================
system    elements  hidden      trainable parameters
========  ========  ==========  ==============================================================
H2O       H, O      (20, 20)    2 x (19*20 + 21*20 + 21) = 2 x 821  = 1642
H3O+      H, O      (24, 25)    2 x (19*24 + 25*25 + 26) = 2 x 1107 = 2214
========  ========  ==========  ==============================================================

(:func:`bpnn_parameter_count` computes the count for any set-up.) Initialisation is seeded: Glorot-uniform weights
and zero biases, element networks initialised in order of atomic number from one ``torch.Generator``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..acsf import ACSF, SymmetryFunctionSet, sort_elements
from ..features import EnergyScaler, Featurizer
from .base import ForceField, TrainingBatch, register_model
from .nn import MLP, mlp_parameter_count

DOMAIN_MARGIN = 0.05  # fraction of each element pair's training distance range added on both sides

DEFAULT_HIDDEN = (20, 20)


def _hidden_per_element(hidden: Sequence[int] | Mapping[str, Sequence[int]], elements: Sequence[str]) -> dict[str, tuple[int, ...]]:
    if isinstance(hidden, Mapping):
        missing = [e for e in elements if e not in hidden]
        extra = sorted(set(hidden) - set(elements))
        if missing or extra:
            raise ValueError(f"bpnn hidden widths: per-element dict must name exactly {list(elements)}; missing {missing}, extra {extra}")
        return {e: tuple(int(h) for h in hidden[e]) for e in elements}
    return {e: tuple(int(h) for h in hidden) for e in elements}


def bpnn_parameter_count(symbols: Sequence[str], hidden: Sequence[int] | Mapping[str, Sequence[int]] = DEFAULT_HIDDEN,
                         symmetry_functions: SymmetryFunctionSet | Mapping[str, Any] | None = None) -> int:
    """Trainable parameters of a BPNN for the species in ``symbols`` (one network per element)."""
    elements = sort_elements(symbols)
    sf = symmetry_functions if isinstance(symmetry_functions, SymmetryFunctionSet) else SymmetryFunctionSet.from_dict(symmetry_functions)
    g = sf.size(len(elements))
    return sum(mlp_parameter_count(g, hs) for hs in _hidden_per_element(hidden, elements).values())


@register_model
class BPNNForceField(ForceField):
    """Per-element atomic networks on standardised symmetry functions; E = center + scale * sum_i NN_{Z_i}(g_i)."""

    kind = "bpnn"

    def __init__(
        self,
        *,
        symbols: Sequence[str],
        energy_scaler: EnergyScaler,
        hidden: Sequence[int] | Mapping[str, Sequence[int]] = DEFAULT_HIDDEN,
        symmetry_functions: SymmetryFunctionSet | Mapping[str, Any] | None = None,
        g_mean: Mapping[str, Sequence[float]] | None = None,
        g_std: Mapping[str, Sequence[float]] | None = None,
        activation: str = "tanh",
        seed: int = 0,
    ) -> None:
        super().__init__(symbols=list(symbols), energy_scaler=energy_scaler)
        self.acsf = ACSF(self.symbols, symmetry_functions)
        self.elements = self.acsf.elements
        self.seed = int(seed)
        self.distance_domain: dict[str, tuple[float, float]] = {}  # set by fit_domain (from the training set)
        self.activation = activation
        g = self.acsf.size
        self.hidden = _hidden_per_element(hidden, self.elements)
        gen = torch.Generator().manual_seed(self.seed)
        self.nets = torch.nn.ModuleDict({e: MLP(g, self.hidden[e], activation=activation, generator=gen) for e in self.elements})

        # per-element standardisation, stored per atom for a vectorised forward pass
        ne = len(self.elements)
        mean = torch.zeros(ne, g, dtype=torch.float64)
        std = torch.ones(ne, g, dtype=torch.float64)
        for k, e in enumerate(self.elements):
            for name, src, dst in (("g_mean", g_mean, mean), ("g_std", g_std, std)):
                if src is None:
                    continue
                if e not in src:
                    raise ValueError(f"bpnn: {name} has no entry for element {e!r} (has {sorted(src)})")
                v = torch.as_tensor(np.asarray(src[e], dtype=float), dtype=torch.float64)
                if v.shape != (g,):
                    raise ValueError(f"bpnn: {name}[{e!r}] must have {g} entries (the G-vector size), got shape {tuple(v.shape)}")
                dst[k] = v
        if not torch.all(std > 0):
            raise ValueError("bpnn: g_std must be positive")
        self.register_buffer("g_mean", mean)
        self.register_buffer("g_std", std)
        atom_el = torch.tensor([self.elements.index(s) for s in self.symbols], dtype=torch.long)
        self.register_buffer("atom_element", atom_el, persistent=False)
        self._atoms_of = {e: torch.tensor([i for i, s in enumerate(self.symbols) if s == e], dtype=torch.long) for e in self.elements}
        self._cache: tuple | None = None  # (positions tensor, its version, G, dG/dR) of the last training batch

    # ---- construction from data
    @classmethod
    def from_settings(cls, settings: Any, *, seed: int, featurizer: Featurizer, energy_scaler: EnergyScaler,
                      train_positions: np.ndarray) -> BPNNForceField:
        """A fresh BPNN of :class:`qnnff.settings.BPNNSettings` ``settings`` for the featurizer's species; its descriptor
        standardisation is fitted on ``train_positions`` (:meth:`from_training_data`)."""
        return cls.from_training_data(train_positions, symbols=featurizer.symbols, energy_scaler=energy_scaler,
                                      hidden=settings.hidden, symmetry_functions=settings.symmetry_functions,
                                      activation=settings.activation, seed=seed)

    @classmethod
    def from_training_data(
        cls,
        positions: torch.Tensor | np.ndarray,
        *,
        symbols: Sequence[str],
        energy_scaler: EnergyScaler,
        hidden: Sequence[int] | Mapping[str, Sequence[int]] = DEFAULT_HIDDEN,
        symmetry_functions: SymmetryFunctionSet | Mapping[str, Any] | None = None,
        activation: str = "tanh",
        seed: int = 0,
    ) -> BPNNForceField:
        """A fresh (seeded) model whose descriptor standardisation is fitted on the training positions [B, n, 3]."""
        model = cls(symbols=symbols, energy_scaler=energy_scaler, hidden=hidden, symmetry_functions=symmetry_functions,
                    activation=activation, seed=seed)
        model.fit_standardisation(positions)
        return model

    @torch.no_grad()
    def fit_standardisation(self, positions: torch.Tensor | np.ndarray) -> None:
        """Per-element mean/std of the raw symmetry functions over all atoms of all training frames."""
        pos = self.check_positions(positions)
        G = self.acsf(pos)  # [B, n, g]
        for k, e in enumerate(self.elements):
            vals = G[:, self._atoms_of[e]].reshape(-1, G.shape[-1])
            mean = vals.mean(0)
            std = vals.std(0, unbiased=False) if vals.shape[0] > 1 else torch.zeros_like(mean)
            const = std <= 1e-10 * torch.clamp(mean.abs(), min=1.0)
            self.g_mean[k] = mean
            self.g_std[k] = torch.where(const, torch.ones_like(std), std)
        self._cache = None
        self.fit_domain(pos)

    # ---- domain: the interatomic distances seen in training (per element pair, +- DOMAIN_MARGIN of their range)
    def _pair_distances(self, pos: torch.Tensor) -> dict[str, torch.Tensor]:
        n = len(self.symbols)
        out: dict[str, list[torch.Tensor]] = {}
        for i in range(n):
            for j in range(i + 1, n):
                key = "-".join(sorted((self.symbols[i], self.symbols[j])))
                out.setdefault(key, []).append((pos[:, i] - pos[:, j]).norm(dim=-1))
        return {k: torch.stack(v, dim=-1) for k, v in out.items()}  # [B, pairs of that kind]

    @torch.no_grad()
    def fit_domain(self, positions: torch.Tensor | np.ndarray) -> None:
        """The model's domain: for every element pair, [min, max] of its training distances widened by
        ``DOMAIN_MARGIN`` of their range on each side (stored in the artifact; checked by ``out_of_domain``)."""
        pos = self.check_positions(positions)
        dom = {}
        for k, d in self._pair_distances(pos).items():
            lo, hi = float(d.min()), float(d.max())
            pad = DOMAIN_MARGIN * max(hi - lo, 1e-3)
            dom[k] = (lo - pad, hi + pad)
        self.distance_domain = dom

    def out_of_domain(self, positions: torch.Tensor) -> torch.Tensor:
        """bool [B]: some interatomic distance lies outside the training range of its element pair (see fit_domain)."""
        dom = getattr(self, "distance_domain", None)
        pos = torch.as_tensor(positions, dtype=torch.float64).detach()
        if not dom:
            return torch.zeros(pos.shape[0], dtype=torch.bool)
        bad = torch.zeros(pos.shape[0], dtype=torch.bool)
        for k, d in self._pair_distances(pos).items():
            lo, hi = dom[k]
            bad |= ((d < lo) | (d > hi)).any(-1)
        return bad

    def domain_message(self, positions: torch.Tensor) -> str:
        pos = torch.as_tensor(positions, dtype=torch.float64).detach()
        bad = [f"{k} distance {float(v):.4f} A (training range [{lo:.4f}, {hi:.4f}] A incl. margin)"
               for k, d in self._pair_distances(pos).items() for v in d[0] for lo, hi in [self.distance_domain[k]]
               if not lo <= float(v) <= hi]
        return f"geometry outside the bpnn model's domain: {'; '.join(bad)}"

    # ---- evaluation
    def standardised_descriptors(self, positions: torch.Tensor) -> torch.Tensor:
        """g [B, n, size]: symmetry functions standardised with the element's training statistics."""
        G = self.acsf(positions)
        return (G - self.g_mean[self.atom_element]) / self.g_std[self.atom_element]

    def model_inputs(self, positions: torch.Tensor) -> torch.Tensor:
        """Every atom's standardised symmetry functions, concatenated in atom order [B, n * size]: the atomic networks
        see nothing else (each sees its own atom's part), so their information floor bounds the BPNN's."""
        return self.standardised_descriptors(positions).flatten(1)

    def _atomic_from_g(self, g: torch.Tensor) -> torch.Tensor:
        out = g.new_zeros(g.shape[:2])
        for e, idx in self._atoms_of.items():
            out = out.index_copy(1, idx, self.nets[e](g[:, idx]))
        return out

    def atomic_scaled_energies(self, positions: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Per-atom contributions [B, n] to the scaled energy (their sum is ``scaled_energy``)."""
        return self._atomic_from_g(self.standardised_descriptors(self.check_positions(positions)))

    def scaled_energy(self, positions: torch.Tensor) -> torch.Tensor:
        return self._atomic_from_g(self.standardised_descriptors(positions)).sum(-1)

    def descriptors_and_jacobian(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw G [B, n, g] and dG/dR [B, n, g, n, 3]; cached for the last positions tensor seen (training reuses it)."""
        c = self._cache
        if c is not None and c[0] is positions and c[1] == positions._version:
            return c[2], c[3]
        G, J = self.acsf.values_and_jacobian(positions)
        self._cache = (positions, positions._version, G, J)
        return G, J

    def scaled_energy_and_forces(self, batch: TrainingBatch, *, create_graph: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Scaled energies and forces for the loss.

        ``batch.x`` / ``batch.jac`` may carry precomputed raw descriptors G [B, n, g] and dG/dR [B, n, g, n, 3]
        (from :meth:`descriptors_and_jacobian`; they survive ``TrainingBatch.subset`` for mini-batches); when they
        are None the descriptors of ``batch.positions`` are computed and cached for the next call.
        """
        pos = self.check_positions(batch.positions)
        if batch.x is not None and batch.jac is not None:
            B, n, g = pos.shape[0], len(self.symbols), self.acsf.size
            if tuple(batch.x.shape) != (B, n, g) or tuple(batch.jac.shape) != (B, n, g, n, 3):
                raise ValueError(
                    f"bpnn: batch.x / batch.jac must be raw descriptors [B, {n}, {g}] and their Jacobian [B, {n}, {g}, {n}, 3] "
                    f"(see descriptors_and_jacobian), got {tuple(batch.x.shape)} and {tuple(batch.jac.shape)}"
                )
            G, J = batch.x, batch.jac
        else:
            G, J = self.descriptors_and_jacobian(pos)
        mean, std = self.g_mean[self.atom_element], self.g_std[self.atom_element]
        g = (G - mean) / std
        with torch.set_grad_enabled(create_graph):
            y_atoms = g.new_zeros(g.shape[:2])
            dy_dg = torch.zeros_like(g)
            for e, idx in self._atoms_of.items():
                y_e, d_e = self.nets[e].value_and_input_grad(g[:, idx])
                y_atoms = y_atoms.index_copy(1, idx, y_e)
                dy_dg = dy_dg.index_copy(1, idx, d_e)
            f = -torch.einsum("bag,bagnk->bnk", dy_dg / std, J)
        return y_atoms.sum(-1), f

    # ---- persistence
    def to_artifact(self) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, bytes]]:
        arrays = {f"nets.{k}": v.detach().cpu().numpy() for k, v in self.nets.state_dict().items()}
        for k, e in enumerate(self.elements):
            arrays[f"g_mean.{e}"] = self.g_mean[k].cpu().numpy()
            arrays[f"g_std.{e}"] = self.g_std[k].cpu().numpy()
        meta = {
            "elements": list(self.elements),
            "hidden": {e: list(h) for e, h in self.hidden.items()},
            "symmetry_functions": self.acsf.functions.to_dict(),
            "descriptor_labels": self.acsf.labels(),
            "activation": self.activation,
            "seed": self.seed,
            "n_parameters": self.n_parameters(),
            "distance_domain": {k: list(v) for k, v in (getattr(self, "distance_domain", None) or {}).items()},
        }
        return arrays, meta, {}

    @classmethod
    def from_artifact(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any], blobs: dict[str, bytes]) -> BPNNForceField:
        elements = meta["elements"]
        model = cls(
            symbols=meta["symbols"],
            energy_scaler=EnergyScaler.from_dict(meta["energy_scaler"]),
            hidden=meta["hidden"],
            symmetry_functions=meta["symmetry_functions"],
            g_mean={e: arrays[f"g_mean.{e}"] for e in elements},
            g_std={e: arrays[f"g_std.{e}"] for e in elements},
            activation=meta["activation"],
            seed=meta["seed"],
        )
        if list(model.elements) != list(elements):
            raise ValueError(f"bpnn artifact: elements {elements} do not match the symbols' {list(model.elements)}")
        state = {k[len("nets."):]: torch.as_tensor(v, dtype=torch.float64) for k, v in arrays.items() if k.startswith("nets.")}
        model.nets.load_state_dict(state, strict=True)
        model.distance_domain = {k: tuple(v) for k, v in meta.get("distance_domain", {}).items()}  # older artifacts: none
        if model.n_parameters() != meta["n_parameters"]:
            raise ValueError(f"bpnn artifact: rebuilt {model.n_parameters()} parameters, artifact says {meta['n_parameters']}")
        return model

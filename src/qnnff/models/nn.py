"""Classical feed-forward network of *equal complexity* to the QNN (model kind ``"nn"``).

The paper compares each QNN with a dense network that sees the same features and has exactly as many
trainable parameters as the circuit: 50 (LiH), 87 (H2O) and 135 (H3O+). :class:`NNForceField` is that
network: the QNN's :class:`~qnnff.features.Featurizer` (fixed) + an :class:`MLP` regressor + the
:class:`~qnnff.features.EnergyScaler`.

Architecture and parameter count
--------------------------------
An MLP with ``d`` inputs, hidden widths ``h_1 .. h_L`` (smooth activation, default tanh: forces are a first
derivative and the force loss needs a second, so ReLU is out) and one linear output has

    P(d; h_1..h_L) = sum_{l=1..L+1} (h_{l-1} + 1) h_l,   h_0 = d, h_{L+1} = 1

trainable parameters (weights + biases). With an optional linear *skip* term ``y += w_s . x`` (``d`` weights,
no bias) the count is ``P + d``. One hidden layer gives ``(d + 2) h + 1``, which misses all three targets
(5h + 1 = 50 or 87 and 8h + 1 = 135 have no integer solution), and so do two hidden layers without the skip
for all three targets except a degenerate width-1 bottleneck (1, 15) for 50. :func:`architecture_for_parameters`
therefore uses this documented rule:

1. search plain MLPs with ``n_hidden_layers`` (default 3) hidden layers of widths in [``min_width``, ``max_width``]
   (default [2, 64]) for an exact count;
2. among exact solutions pick the most balanced one (smallest ``max(h) - min(h)``), then the one with the
   widest first layer, then the lexicographically largest;
3. only if no plain MLP fits, repeat with the linear skip term (``P + d``); if that fails too, raise.

This gives the paper's three counts exactly, all as three tanh hidden layers:

==========  ====  ===========  =================================================================
system      d     hidden       count
==========  ====  ===========  =================================================================
LiH         3     (3, 3, 5)    (3+1)3 + (3+1)3 + (3+1)5 + (5+1)1 = 12 + 12 + 20 + 6 = 50
H2O         3     (4, 6, 5)    (3+1)4 + (4+1)6 + (6+1)5 + (5+1)1 = 16 + 30 + 35 + 6 = 87
H3O+        6     (8, 4, 7)    (6+1)8 + (8+1)4 + (4+1)7 + (7+1)1 = 56 + 36 + 35 + 8 = 135
==========  ====  ===========  =================================================================

(LiH: the map r -> (pi r, arcsin r, arccos r) gives d = 3 features from one bond; H2O: 2 bonds + 1 angle,
arcsin map; H3O+: 3 bonds + 2 angles + 1 dihedral, arcsin map.) The config may instead give the hidden widths
directly; the model records widths, skip and count in its artifact.

Initialisation is seeded and independent of torch's global RNG: Glorot-uniform weights, zero biases, drawn
layer by layer from ``torch.Generator().manual_seed(seed)``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..features import EnergyScaler, Featurizer
from .base import FeatureForceField, register_model


# smooth activations: name -> (function, derivative written in terms of the pre-activation z)
def _tanh_d(z: torch.Tensor) -> torch.Tensor:
    t = torch.tanh(z)
    return 1.0 - t * t


def _sigmoid_d(z: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(z)
    return s * (1.0 - s)


def _silu_d(z: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(z)
    return s * (1.0 + z * (1.0 - s))


ACTIVATIONS = {
    "tanh": (torch.tanh, _tanh_d),
    "sigmoid": (torch.sigmoid, _sigmoid_d),
    "softplus": (torch.nn.functional.softplus, torch.sigmoid),
    "silu": (torch.nn.functional.silu, _silu_d),
}


def mlp_parameter_count(n_inputs: int, hidden: Sequence[int], *, skip: bool = False) -> int:
    """Trainable parameters of an MLP ``n_inputs -> hidden... -> 1`` (+ ``n_inputs`` with the linear skip)."""
    widths = [int(n_inputs), *[int(h) for h in hidden], 1]
    return sum((a + 1) * b for a, b in zip(widths[:-1], widths[1:])) + (int(n_inputs) if skip else 0)


@dataclass(frozen=True)
class Architecture:
    """Hidden widths and whether the linear input->output skip term is used."""

    hidden: tuple[int, ...]
    skip: bool = False

    def n_parameters(self, n_inputs: int) -> int:
        return mlp_parameter_count(n_inputs, self.hidden, skip=self.skip)


def architecture_for_parameters(
    n_features: int,
    target: int,
    *,
    n_hidden_layers: int = 3,
    min_width: int = 2,
    max_width: int = 64,
) -> Architecture:
    """An MLP architecture with exactly ``target`` trainable parameters (rule in the module docstring)."""
    if n_features < 1:
        raise ValueError(f"n_features must be >= 1, got {n_features}")
    if n_hidden_layers < 1 or not 1 <= min_width <= max_width:
        raise ValueError("need n_hidden_layers >= 1 and 1 <= min_width <= max_width")
    for skip in (False, True):
        best: tuple | None = None
        for hs in _exact_widths(n_features, target - (n_features if skip else 0), n_hidden_layers, min_width, max_width):
            key = (max(hs) - min(hs), -hs[0], tuple(-h for h in hs))
            if best is None or key < best[0]:
                best = (key, hs)
        if best is not None:
            return Architecture(hidden=tuple(int(h) for h in best[1]), skip=skip)
    raise ValueError(
        f"no MLP with {n_hidden_layers} hidden layers of widths {min_width}..{max_width} (with or without a linear "
        f"skip) on {n_features} features has exactly {target} trainable parameters; give the hidden widths explicitly "
        f"or change n_hidden_layers"
    )


def _exact_widths(n_inputs: int, count: int, n_layers: int, lo: int, hi: int) -> Iterator[tuple[int, ...]]:
    """Every ``(h_1 .. h_L)`` in ``[lo, hi]^L`` with ``mlp_parameter_count(n_inputs, h) == count``.

    The last width enters the count linearly, ``P = P(d; h_1..h_{L-1} -> h_L) = rest + (h_{L-1} + 2) h_L + 1`` with
    ``rest`` the weights and biases up to layer ``L - 1``, so it is solved for instead of searched: ``(hi - lo + 1)^(L-1)``
    candidates instead of ``(hi - lo + 1)^L`` (4 thousand instead of 250 thousand for the default three layers).
    """
    for head in itertools.product(range(lo, hi + 1), repeat=n_layers - 1):
        widths = (int(n_inputs), *head)
        rest = sum((a + 1) * b for a, b in zip(widths[:-1], widths[1:]))
        last, remainder = divmod(count - rest - 1, widths[-1] + 2)
        if remainder == 0 and lo <= last <= hi:
            yield (*head, last)


class MLP(torch.nn.Module):
    """``x [..., d] -> y [...]``: dense layers with a smooth activation, linear output, optional linear skip.

    :meth:`value_and_input_grad` returns ``dy/dx`` by an explicit backward sweep written in tensor ops, so
    it is differentiable w.r.t. the weights without double autograd.
    """

    def __init__(self, n_inputs: int, hidden: Sequence[int], *, activation: str = "tanh", skip: bool = False,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation: unknown {activation!r} (use one of {sorted(ACTIVATIONS)}; forces need a smooth one)")
        hidden = [int(h) for h in hidden]
        if n_inputs < 1 or any(h < 1 for h in hidden):
            raise ValueError(f"MLP widths must be positive, got inputs={n_inputs}, hidden={hidden}")
        self.n_inputs = int(n_inputs)
        self.hidden = tuple(hidden)
        self.activation = activation
        self.skip = bool(skip)
        widths = [self.n_inputs, *hidden, 1]
        self.layers = torch.nn.ModuleList(
            torch.nn.Linear(a, b, dtype=torch.float64) for a, b in zip(widths[:-1], widths[1:])
        )
        self.skip_weight = torch.nn.Parameter(torch.zeros(self.n_inputs, dtype=torch.float64)) if self.skip else None
        self.reset_parameters(generator if generator is not None else torch.Generator().manual_seed(0))

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator) -> None:
        for lin in self.layers:
            fan_out, fan_in = lin.weight.shape
            bound = (6.0 / (fan_in + fan_out)) ** 0.5
            lin.weight.copy_((torch.rand(lin.weight.shape, generator=generator, dtype=torch.float64) * 2 - 1) * bound)
            lin.bias.zero_()
        if self.skip_weight is not None:
            self.skip_weight.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act, _ = ACTIVATIONS[self.activation]
        h = x
        for lin in self.layers[:-1]:
            h = act(lin(h))
        y = self.layers[-1](h).squeeze(-1)
        if self.skip_weight is not None:
            y = y + x @ self.skip_weight
        return y

    def value_and_input_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """y [...] and dy/dx [..., d], both differentiable w.r.t. the weights."""
        act, dact = ACTIVATIONS[self.activation]
        h, derivs = x, []
        for lin in self.layers[:-1]:
            z = lin(h)
            derivs.append(dact(z))
            h = act(z)
        out = self.layers[-1]
        y = out(h).squeeze(-1)
        delta = out.weight[0]  # dy/dh_L, broadcast over the batch
        for lin, d in zip(reversed(self.layers[:-1]), reversed(derivs)):
            delta = (delta * d) @ lin.weight
        if self.skip_weight is not None:
            y = y + x @ self.skip_weight
            delta = delta + self.skip_weight
        return y, delta.expand(x.shape)  # (a purely linear net's gradient is one row; give it the batch shape)


@register_model
class NNForceField(FeatureForceField):
    """Feature model with an :class:`MLP` regressor (kind ``"nn"``); the QNN's classical counterpart."""

    kind = "nn"

    @classmethod
    def from_settings(cls, settings: Any, *, seed: int, featurizer: Featurizer, energy_scaler: EnergyScaler,
                      train_positions: np.ndarray) -> NNForceField:
        """A fresh NN of :class:`qnnff.settings.NNSettings` ``settings``."""
        return cls(featurizer=featurizer, energy_scaler=energy_scaler, hidden=settings.hidden,
                   target_parameters=settings.target_parameters, activation=settings.activation, seed=seed)

    def __init__(
        self,
        *,
        featurizer: Featurizer,
        energy_scaler: EnergyScaler,
        hidden: Sequence[int] | None = None,
        target_parameters: int | None = None,
        skip: bool = False,
        activation: str = "tanh",
        seed: int = 0,
    ) -> None:
        if not featurizer.symbols:
            raise ValueError("nn model: the featurizer has no chemical symbols; build it with symbols=[...] of the system")
        super().__init__(featurizer=featurizer, energy_scaler=energy_scaler)
        d = featurizer.n_features
        if hidden is None and target_parameters is None:
            raise ValueError("nn model: give `hidden` (widths), `target_parameters` (exact count), or both (checked)")
        if hidden is None:
            arch = architecture_for_parameters(d, int(target_parameters))
        else:
            arch = Architecture(hidden=tuple(int(h) for h in hidden), skip=bool(skip))
            if target_parameters is not None and arch.n_parameters(d) != int(target_parameters):
                raise ValueError(
                    f"nn model: hidden={list(arch.hidden)} (skip={arch.skip}) on {d} features has "
                    f"{arch.n_parameters(d)} trainable parameters, not the requested {target_parameters}"
                )
        self.seed = int(seed)
        self.regressor = MLP(d, arch.hidden, activation=activation, skip=arch.skip,
                             generator=torch.Generator().manual_seed(self.seed))
        if self.n_parameters() != arch.n_parameters(d):  # the formula and the module must agree
            raise AssertionError(f"nn model: built {self.n_parameters()} parameters, formula says {arch.n_parameters(d)}")

    @property
    def architecture(self) -> Architecture:
        return Architecture(hidden=self.regressor.hidden, skip=self.regressor.skip)

    def regressor_value_and_input_grad(self, x: torch.Tensor, *, create_graph: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        if create_graph:
            return self.regressor.value_and_input_grad(x)
        with torch.no_grad():
            return self.regressor.value_and_input_grad(x)

    # ---- persistence
    def to_artifact(self) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, bytes]]:
        arrays = {f"regressor.{k}": v.detach().cpu().numpy() for k, v in self.regressor.state_dict().items()}
        meta = {
            "featurizer": self.featurizer.to_dict(),
            "hidden": list(self.regressor.hidden),
            "skip": self.regressor.skip,
            "activation": self.regressor.activation,
            "seed": self.seed,
            "n_parameters": self.n_parameters(),
        }
        return arrays, meta, {}

    @classmethod
    def from_artifact(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any], blobs: dict[str, bytes]) -> NNForceField:
        model = cls(
            featurizer=Featurizer.from_dict(meta["featurizer"]),
            energy_scaler=EnergyScaler.from_dict(meta["energy_scaler"]),
            hidden=meta["hidden"],
            skip=meta["skip"],
            activation=meta["activation"],
            seed=meta["seed"],
        )
        state = {k[len("regressor."):]: torch.as_tensor(v, dtype=torch.float64) for k, v in arrays.items() if k.startswith("regressor.")}
        model.regressor.load_state_dict(state, strict=True)
        if model.n_parameters() != meta["n_parameters"]:
            raise ValueError(f"nn artifact: rebuilt {model.n_parameters()} parameters, artifact says {meta['n_parameters']}")
        return model

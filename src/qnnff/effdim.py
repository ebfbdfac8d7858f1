"""Normalised effective dimension (Abbas et al., "The power of quantum neural networks", Nat. Comput. Sci. 1, 403 (2021)).

Definition (and conventions, which follow ``qiskit_machine_learning.neural_networks.EffectiveDimension`` exactly)
------------------------------------------------------------------------------------------------------------------
A model with a scalar output ``y(x; theta)`` in [-1, 1] and ``P`` trainable parameters is read as a two-outcome
classifier with probabilities ``p = ((1 + y) / 2, (1 - y) / 2)`` (qiskit-ML's treatment of a one-observable
``EstimatorQNN``; its gradients are ``(g / 2, -g / 2)`` with ``g = dy/dtheta``). For one input ``x`` and one parameter
draw ``theta`` the Fisher information is

    F(x, theta) = sum_k [p_k > 0] grad(p_k) grad(p_k)^T / p_k                         (P x P)

with the ``p_k`` clipped at 0 and outcomes with ``p_k = 0`` dropped (qiskit-ML masks them); for ``|y| < 1`` this is
``g g^T / (1 - y^2)``. Then, with ``S`` parameter draws and ``N`` inputs:

* ``F_s = mean_x F(x, theta_s)`` (empirical Fisher of draw ``s``);
* ``F_hat_s = P F_s / tr(mean_s F_s)``: normalised so that the *average* trace is ``P``;
* ``kappa = gamma n / (2 pi log n)`` and

      d_n = 2 log( mean_s sqrt(det(I + kappa F_hat_s)) ) / log(kappa),

  evaluated stably as ``2 (logsumexp_s(0.5 logdet_s) - log S) / log(kappa)``.

We return ``d_n`` and ``d_n / P``. qiskit-ML has no ``gamma`` (it is 1 there). ``kappa`` must exceed 1 (``n >= 19`` for
``gamma = 1``), otherwise ``log(kappa) <= 0`` and the ratio is meaningless; such ``n`` are rejected.

Note: ``d_n / P`` is *not* bounded by 1 and ``d_n`` is *not* monotone in ``n`` in general (qiskit-ML gives the same
numbers). Per draw, an eigenvalue ``lambda`` of ``F_hat`` contributes ``log(1 + kappa lambda) / log(kappa)``, which tends
to 1 as ``kappa`` grows, from above if ``lambda > 1`` (falling) and from below if ``lambda < 1`` (rising). The
normalisation makes the eigenvalues average 1, so at small ``kappa`` (``n`` below a few hundred) the large ones dominate:
``d_n / P`` can exceed 1 and fall with ``n`` (e.g. ``F_hat = I`` gives ``log(1 + kappa) / log(kappa) > 1``); at large
``n`` the many small eigenvalues of a typical model switch on and ``d_n`` rises. We do not clip.

Implementation
--------------
``F_s = A_s^T A_s`` with ``A_s[x] = sqrt(w(y) / N) g(x)`` (``w(y) = sum_k [p_k > 0] / (4 p_k)``), so the nonzero
eigenvalues of ``F_s`` are those of the ``N x N`` Gram matrix ``A_s A_s^T`` when ``N < P`` (e.g. the BPNN's ~2000
parameters on 100 inputs): no ``S x P x P`` array is ever formed, and every ``n`` reuses the same eigenvalues,
``logdet(I + kappa F_hat_s) = sum_i log1p(kappa lambda_i)``. Per-sample gradients ``dy(x)/dtheta`` come from
``torch.func.jacrev`` (vectorised over the ``N`` outputs); for functions ``torch.func`` cannot transform (e.g. a
``torch.autograd.Function`` without ``setup_context``, such as an adjoint simulator or a wrapper around qiskit-ML)
``jacobian="auto"`` falls back to ``"loop"``, one forward and one backward pass per input. A model may instead hand
over ``y`` and ``dy/dtheta`` itself (``jacobian_fn``; see ``value_and_parameter_jacobian`` below).

Parameter draws
---------------
:func:`sample_uniform_box` draws ``theta`` uniformly in a box (``[-pi, pi]^P`` by default: the natural range of QNN
rotation angles); :func:`sample_around` draws uniformly in ``theta_0 +- half_width`` (around trained weights).
qiskit-ML, when given an integer, draws weights from U(0, 1) and inputs from N(0, 1); here the caller always passes
explicit samples, so the choice is visible in the caller's config.

Models
------
:func:`module_function` turns a :class:`~qnnff.models.base.ForceField` into ``model_fn(x, theta)`` by swapping
``theta`` (a flat vector of the trainable parameters, in ``named_parameters`` order) into the module with
``torch.func.functional_call``:

* a :class:`~qnnff.models.base.FeatureForceField` (QNN, NN): ``x`` are the features, ``y`` the regressor output,
  i.e. the scaled energy;
* any other ``ForceField`` (BPNN): ``x`` are flattened positions ``[N, 3 n_atoms]`` (Angstrom) and ``y`` is
  ``scaled_energy``; position-only work (descriptors) does not depend on ``theta`` and is not differentiated.

The scaled energy is only *trained* to lie in [-1, 1] (the :class:`~qnnff.features.EnergyScaler` maps the training
energies onto [-1, 1]); under random parameter draws a classical network's output is unbounded. ``output_map``:

* ``"identity"``: ``y`` as is (QNN: ``y = <O>`` is in [-1, 1] by construction);
* ``"tanh"``: ``y -> tanh(y)``, smooth, monotone, keeps every sample's gradient (outputs near 0 barely change);
* ``"clamp"``: ``y -> clamp(y, -1, 1)``; samples outside [-1, 1] then have zero gradient and drop out;
* ``"auto"`` (default): ``"identity"`` for a quantum model kind (:data:`qnnff.kinds.KINDS`: the QNN), ``"tanh"`` otherwise.

Fast path: if the regressor (feature models) or the ForceField (others) has a method
``value_and_parameter_jacobian(x [B, d], theta [P]) -> (y [B], dy/dtheta [B, P])``, with ``theta`` the trainable
parameters flattened in ``named_parameters()`` order, :func:`model_effective_dimension` uses it instead of torch
differentiation (the output map is applied by the chain rule).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from .kinds import KINDS

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
OutputMap = Literal["auto", "identity", "tanh", "clamp"]

__all__ = [
    "EffDimResult",
    "ModuleFunction",
    "effective_dimension",
    "fisher_eigenvalues",
    "kappa",
    "model_effective_dimension",
    "module_function",
    "sample_around",
    "sample_uniform_box",
]


@dataclass(frozen=True)
class EffDimResult:
    """Effective dimension for each dataset size ``n`` (1-D arrays aligned with ``n``).

    ``fisher_trace``: trace of the mean (un-normalised) Fisher matrix; ``fisher_eigenvalues``: eigenvalues of the
    normalised ``F_hat_s``, ``[S, min(N, P)]`` (the remaining ``P - N`` eigenvalues are 0 when ``N < P``).
    """

    n: np.ndarray
    d_n: np.ndarray
    d_n_over_d: np.ndarray
    n_params: int
    gamma: float = 1.0
    fisher_trace: float = float("nan")
    jacobian_method: str = ""
    fisher_eigenvalues: np.ndarray | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        """JSON-friendly summary (without the eigenvalue array)."""
        return {
            "n": [int(v) for v in self.n],
            "d_n": [float(v) for v in self.d_n],
            "d_n_over_d": [float(v) for v in self.d_n_over_d],
            "n_params": int(self.n_params),
            "gamma": float(self.gamma),
            "fisher_trace": float(self.fisher_trace),
            "jacobian_method": self.jacobian_method,
        }


def kappa(n: int | np.ndarray, gamma: float = 1.0) -> np.ndarray:
    """``gamma n / (2 pi log n)``."""
    n = np.asarray(n, dtype=float)
    return gamma * n / (2.0 * math.pi * np.log(n))


def _as_f64(t: torch.Tensor | np.ndarray, name: str, ndim: int) -> torch.Tensor:
    out = torch.as_tensor(t, dtype=torch.float64)
    if out.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D array, got shape {tuple(out.shape)}")
    if not torch.isfinite(out).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return out


JacobianFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
JacobianMethod = Literal["auto", "jacrev", "loop"]


def _jacobian_jacrev(model_fn: ModelFn, x: torch.Tensor, theta: torch.Tensor, chunk_size: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    def f(th: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = model_fn(x, th)
        return y, y

    jac, y = torch.func.jacrev(f, has_aux=True, chunk_size=chunk_size)(theta)
    return y.detach(), jac.detach()


def _jacobian_loop(model_fn: ModelFn, x: torch.Tensor, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward and one backward pass per input (O(N); works for any autograd-differentiable model_fn)."""
    th = theta.detach().clone().requires_grad_(True)
    ys, rows = [], []
    with torch.enable_grad():
        for i in range(x.shape[0]):
            y = model_fn(x[i : i + 1], th).reshape(-1)
            if y.shape != (1,):
                raise ValueError(f"model_fn must map x [B, d] to y [B]; got {tuple(y.shape)} for B = 1")
            (g,) = torch.autograd.grad(y[0], th, allow_unused=True)
            ys.append(y.detach()[0])
            rows.append(torch.zeros_like(th) if g is None else g)
    return torch.stack(ys), torch.stack(rows)


def _is_functorch_incompatibility(exc: Exception) -> bool:
    msg = str(exc)
    return any(k in msg for k in ("functorch", "setup_context", "vmap", "Batching rule", "torch.func"))


def fisher_eigenvalues(
    *,
    model_fn: ModelFn | None = None,
    jacobian_fn: JacobianFn | None = None,
    theta_samples: torch.Tensor | np.ndarray,
    x_samples: torch.Tensor | np.ndarray,
    jacobian: JacobianMethod = "auto",
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, float, str]:
    """Eigenvalues of the normalised Fisher matrices ``[S, min(N, P)]``, the normalising trace, and the Jacobian
    method used (``"jacobian_fn"``, ``"jacrev"`` or ``"loop"``)."""
    if (model_fn is None) == (jacobian_fn is None):
        raise ValueError("give exactly one of model_fn (differentiated with torch) and jacobian_fn (returns y and dy/dtheta)")
    if jacobian not in ("auto", "jacrev", "loop"):
        raise ValueError(f"jacobian must be 'auto', 'jacrev' or 'loop', got {jacobian!r}")
    theta_samples = _as_f64(theta_samples, "theta_samples", 2)
    x_samples = _as_f64(x_samples, "x_samples", 2)
    S, P = theta_samples.shape
    N = x_samples.shape[0]
    if S < 1 or N < 1 or P < 1:
        raise ValueError(f"need at least one parameter draw, one input and one parameter (got S={S}, N={N}, P={P})")
    method = "jacobian_fn" if jacobian_fn is not None else jacobian
    eig = torch.empty(S, min(N, P), dtype=torch.float64)
    trace_sum = 0.0
    for s in range(S):
        th = theta_samples[s]
        if method == "jacobian_fn":
            y, g = jacobian_fn(x_samples, th)
            y, g = torch.as_tensor(y, dtype=torch.float64).detach(), torch.as_tensor(g, dtype=torch.float64).detach()
        elif method == "loop":
            y, g = _jacobian_loop(model_fn, x_samples, th)
        else:
            try:
                y, g = _jacobian_jacrev(model_fn, x_samples, th, chunk_size)
                method = "jacrev"
            except RuntimeError as exc:
                # e.g. a torch.autograd.Function without functorch support: fall back to one pass per input
                if method != "auto" or not _is_functorch_incompatibility(exc):
                    raise
                method = "loop"
                y, g = _jacobian_loop(model_fn, x_samples, th)
        if y.shape != (N,) or g.shape != (N, P):
            raise ValueError(f"model_fn must map x [N={N}, d] and theta [P={P}] to y [N]; got y {tuple(y.shape)}, dy/dtheta {tuple(g.shape)}")
        if not (torch.isfinite(y).all() and torch.isfinite(g).all()):
            raise FloatingPointError(f"model output or gradient is not finite at parameter draw {s}")
        # qiskit-ML: p = ((1+y)/2, (1-y)/2) clipped at 0, outcomes with p = 0 masked; grad p_k = +-g/2
        p = torch.stack([(1.0 + y) / 2.0, (1.0 - y) / 2.0], dim=-1).clamp_min(0.0)
        w = torch.where(p > 0, 0.25 / torch.where(p > 0, p, torch.ones_like(p)), torch.zeros_like(p)).sum(-1)  # [N]
        a = g * torch.sqrt(w / N).unsqueeze(-1)  # F_s = a^T a
        trace_sum += float((a * a).sum())
        gram = a @ a.T if N < P else a.T @ a
        eig[s] = torch.linalg.eigvalsh(gram).clamp_min(0.0)
    trace = trace_sum / S
    if not trace > 0:
        raise ValueError("the Fisher information is zero for every parameter draw and input (the output does not depend on theta)")
    return eig * (P / trace), trace, method


def effective_dimension(
    *,
    model_fn: ModelFn | None = None,
    theta_samples: torch.Tensor | np.ndarray,
    x_samples: torch.Tensor | np.ndarray,
    n: int | Sequence[int],
    gamma: float = 1.0,
    jacobian: JacobianMethod = "auto",
    chunk_size: int | None = None,
    jacobian_fn: JacobianFn | None = None,
) -> EffDimResult:
    """Normalised effective dimension of ``y = model_fn(x [B, d], theta [P]) -> [B]`` (see the module docstring).

    ``model_fn`` must be differentiable w.r.t. ``theta`` with torch autograd. ``jacobian``: ``"jacrev"``
    (``torch.func.jacrev``, vectorised over the inputs; needs a ``torch.func``-transformable function), ``"loop"`` (one
    forward and backward pass per input: any autograd function, slower), or ``"auto"`` (``jacrev``, falling back to
    ``loop`` when torch.func cannot transform the function, e.g. a ``torch.autograd.Function`` without
    ``setup_context``). ``chunk_size`` bounds the memory of ``jacrev``. Instead of ``model_fn`` a model may supply
    ``jacobian_fn(x, theta) -> (y [N], dy/dtheta [N, P])`` directly (e.g. from an adjoint simulator).
    """
    ns = np.atleast_1d(np.asarray(n))
    if ns.ndim != 1 or ns.size == 0 or not np.issubdtype(ns.dtype, np.integer):
        raise ValueError(f"n must be an int or a non-empty sequence of ints, got {n!r}")
    if not gamma > 0:
        raise ValueError(f"gamma must be positive, got {gamma}")
    if np.any(ns < 2):
        raise ValueError(f"dataset sizes must be >= 2, got {ns.tolist()}")
    k = kappa(ns, gamma)
    if np.any(k <= 1.0):
        raise ValueError(f"kappa = gamma n / (2 pi log n) must exceed 1 for d_n to be defined; n={ns[k <= 1].tolist()} (gamma={gamma}) is too small")
    eig, trace, method = fisher_eigenvalues(model_fn=model_fn, jacobian_fn=jacobian_fn, theta_samples=theta_samples, x_samples=x_samples,
                                            jacobian=jacobian, chunk_size=chunk_size)
    S, P = torch.as_tensor(theta_samples).shape
    kt = torch.as_tensor(k, dtype=torch.float64)
    half_logdet = 0.5 * torch.log1p(kt[:, None, None] * eig[None]).sum(-1)  # [len(n), S]
    d_n = 2.0 * (torch.logsumexp(half_logdet, dim=-1) - math.log(S)) / torch.log(kt)
    d_n = d_n.numpy()
    return EffDimResult(n=ns.astype(int), d_n=d_n, d_n_over_d=d_n / P, n_params=int(P), gamma=float(gamma),
                        fisher_trace=float(trace), jacobian_method=method, fisher_eigenvalues=eig.numpy())


# ---------------------------------------------------------------------------------------------------------------------
# parameter draws


def sample_uniform_box(*, n_samples: int, n_params: int, rng: np.random.Generator, low: float = -math.pi, high: float = math.pi) -> torch.Tensor:
    """``[n_samples, n_params]`` draws, uniform in ``[low, high]^P`` (default ``[-pi, pi]``: QNN rotation angles)."""
    if not high > low:
        raise ValueError(f"need high > low, got [{low}, {high}]")
    return torch.as_tensor(rng.uniform(low, high, size=(int(n_samples), int(n_params))), dtype=torch.float64)


def sample_around(*, n_samples: int, center: torch.Tensor | np.ndarray, half_width: float, rng: np.random.Generator) -> torch.Tensor:
    """``[n_samples, P]`` draws, uniform in ``center +- half_width`` (e.g. around trained weights)."""
    c = np.asarray(torch.as_tensor(center, dtype=torch.float64).detach().numpy(), dtype=float).reshape(-1)
    if not half_width >= 0:
        raise ValueError(f"half_width must be >= 0, got {half_width}")
    return torch.as_tensor(c + rng.uniform(-half_width, half_width, size=(int(n_samples), c.size)), dtype=torch.float64)


# ---------------------------------------------------------------------------------------------------------------------
# ForceField -> model_fn


_MAPS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "identity": lambda y: y,
    "tanh": torch.tanh,
    "clamp": lambda y: torch.clamp(y, -1.0, 1.0),
}
# derivative of each map, as a function of the *unmapped* y (clamp: 1 inside [-1, 1], 0 outside, as torch's clamp)
_MAP_DERIVS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "identity": lambda y: torch.ones_like(y),
    "tanh": lambda y: 1.0 - torch.tanh(y) ** 2,
    "clamp": lambda y: ((y >= -1.0) & (y <= 1.0)).to(y.dtype),
}

#: optional fast path: a regressor (or non-feature ForceField) may define
#: ``value_and_parameter_jacobian(x [B, d], theta [P]) -> (y [B], dy/dtheta [B, P])`` with ``theta`` its trainable
#: parameters flattened in ``named_parameters()`` order (e.g. a QNN simulator's adjoint gradients); it is then used
#: instead of differentiating ``model_fn`` with torch.
JACOBIAN_HOOK = "value_and_parameter_jacobian"


class _ScaledEnergy(torch.nn.Module):
    """Wraps a non-feature ForceField so that ``forward(flat positions)`` is its scaled energy."""

    def __init__(self, ff: torch.nn.Module, n_atoms: int) -> None:
        super().__init__()
        self.ff = ff
        self.n_atoms = n_atoms

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ff.scaled_energy(x.reshape(x.shape[0], self.n_atoms, 3))


@dataclass
class ModuleFunction:
    """``model_fn(x, theta)`` for a ForceField, the current parameters ``theta0`` and how to build ``x``.

    ``jacobian_fn`` is set when the model provides the ``value_and_parameter_jacobian`` hook (output map applied).
    """

    model_fn: ModelFn
    theta0: torch.Tensor
    names: list[str]
    input_kind: Literal["features", "positions"]
    output_map: str
    _inputs: Callable[[torch.Tensor], torch.Tensor] = field(repr=False)
    jacobian_fn: JacobianFn | None = field(default=None, repr=False)

    @property
    def n_params(self) -> int:
        return int(self.theta0.numel())

    def inputs(self, positions: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Positions ``[N, n_atoms, 3]`` (Angstrom) -> the model inputs ``x [N, d]``."""
        pos = torch.as_tensor(positions, dtype=torch.float64)
        if pos.ndim != 3 or pos.shape[-1] != 3:
            raise ValueError(f"positions must have shape [N, n_atoms, 3], got {tuple(pos.shape)}")
        with torch.no_grad():
            return self._inputs(pos)


def module_function(model: torch.nn.Module, *, output_map: OutputMap = "auto") -> ModuleFunction:
    """A ``model_fn(x, theta)`` for a :class:`~qnnff.models.base.ForceField` (see the module docstring)."""
    from .models.base import FeatureForceField

    if output_map == "auto":
        kind = KINDS.get(getattr(model, "kind", ""))
        output_map = "identity" if kind is not None and kind.quantum else "tanh"
    if output_map not in _MAPS:
        raise ValueError(f"output_map must be one of {['auto', *_MAPS]}, got {output_map!r}")
    squash, dsquash = _MAPS[output_map], _MAP_DERIVS[output_map]

    if isinstance(model, FeatureForceField):
        module: torch.nn.Module = model.regressor
        hook_owner: Any = model.regressor
        input_kind = "features"
        inputs = model.featurizer
    else:
        module = _ScaledEnergy(model, len(model.symbols))
        hook_owner = model
        input_kind = "positions"
        inputs = lambda pos: pos.reshape(pos.shape[0], -1)  # noqa: E731

    named = [(k, p) for k, p in module.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("the model has no trainable parameters")
    names = [k for k, _ in named]
    shapes = [p.shape for _, p in named]
    sizes = [p.numel() for _, p in named]
    theta0 = torch.cat([p.detach().reshape(-1).to(torch.float64) for _, p in named])

    def model_fn(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        parts = torch.split(theta, sizes)
        params = {k: t.reshape(s) for k, t, s in zip(names, parts, shapes)}  # buffers/frozen parameters: the module's own
        return squash(torch.func.functional_call(module, params, (x,)))

    jacobian_fn = None
    hook = getattr(hook_owner, JACOBIAN_HOOK, None)
    if callable(hook):
        def jacobian_fn(x: torch.Tensor, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            with torch.no_grad():
                y, jac = hook(x, theta)
            return squash(y), dsquash(y).unsqueeze(-1) * jac

    return ModuleFunction(model_fn=model_fn, theta0=theta0, names=names, input_kind=input_kind, output_map=output_map, _inputs=inputs,
                          jacobian_fn=jacobian_fn)


def model_effective_dimension(
    *,
    model: torch.nn.Module,
    positions: torch.Tensor | np.ndarray,
    theta_samples: torch.Tensor | np.ndarray,
    n: int | Sequence[int],
    gamma: float = 1.0,
    output_map: OutputMap = "auto",
    jacobian: JacobianMethod | Literal["hook"] = "auto",
    chunk_size: int | None = None,
) -> EffDimResult:
    """Effective dimension of a ForceField over input geometries ``positions [N, n_atoms, 3]`` (Angstrom).

    ``jacobian="auto"`` uses the model's ``value_and_parameter_jacobian`` hook when it has one, otherwise torch
    (``jacrev``, falling back to ``loop``); ``"hook"`` requires the hook; ``"jacrev"``/``"loop"`` force torch.
    """
    mf = module_function(model, output_map=output_map)
    theta_samples = torch.as_tensor(theta_samples, dtype=torch.float64)
    if theta_samples.ndim != 2 or theta_samples.shape[1] != mf.n_params:
        raise ValueError(f"theta_samples must have shape [S, {mf.n_params}] (the model's trainable parameters), got {tuple(theta_samples.shape)}")
    x = mf.inputs(positions)
    if jacobian == "hook" and mf.jacobian_fn is None:
        raise ValueError(f"jacobian='hook': the model has no {JACOBIAN_HOOK}(x, theta) method")
    if jacobian in ("hook", "auto") and mf.jacobian_fn is not None:
        return effective_dimension(jacobian_fn=mf.jacobian_fn, theta_samples=theta_samples, x_samples=x, n=n, gamma=gamma)
    return effective_dimension(model_fn=mf.model_fn, theta_samples=theta_samples, x_samples=x, n=n, gamma=gamma,
                               jacobian="auto" if jacobian == "hook" else jacobian, chunk_size=chunk_size)

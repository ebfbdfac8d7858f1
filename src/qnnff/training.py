"""Generic trainer for every :class:`~qnnff.models.base.ForceField` (QNN, NN, BPNN) on energies and forces.

Loss (the paper's), on the scaled targets of a :class:`~qnnff.models.base.TrainingBatch` (``y = (E - center)/scale``,
``f = F/scale``)::

    L = (1/N) sum_n (y_n - y_ref_n)^2  +  chi / (3 N_atoms) * (1/N) sum_{n,i,k} (f_nik - f_ref_nik)^2

i.e. ``mean((y - y_ref)^2) + chi * mean over all force components of (f - f_ref)^2``. With ``chi = 0`` the forces
are not computed at all (the energy path is cheaper); the learning curve's force term is then 0.

Optimisers
----------
* ``"adam"`` (the update of :class:`torch.optim.Adam`, see :class:`Adam`; learning rate ``lr``, or decaying
  geometrically to ``lr_final`` at the last step, ``iterations`` steps), full batch by default or minibatches of
  ``batch_size`` frames drawn without replacement at every step from ``numpy.random.default_rng(seed)``.
* ``"lbfgs"`` (:class:`torch.optim.LBFGS`, full batch, strong-Wolfe line search, step length 1): ``iterations`` = the
  budget of loss evaluations (line-search evaluations included; the run stops at the first step boundary at or past
  it, so at most one line search over), ``history_size`` curvature pairs, and torch's stopping tolerances
  ``tolerance_grad`` (max |gradient|) and ``tolerance_change`` (loss or step change). Every evaluation is a row of the
  learning curve. It runs as outer steps of :data:`LBFGS_STEP_ITERATIONS` L-BFGS iterations (one ``.step()`` call
  each); the optimiser's whole state (history, direction, step) is kept across steps, and checkpoints fall between
  them. It stops early when torch's tolerances say it has converged (the ``message`` says so).
* ``"adam+lbfgs"``: ``iterations`` Adam steps (``lr``, ``lr_final`` as for Adam, full batch), then L-BFGS from where
  Adam ended with a budget of ``lbfgs_evaluations`` loss evaluations; the learning curve numbers the Adam steps
  1..iterations and the L-BFGS evaluations after them. Adam moves the weights out of the flat start (L-BFGS from a
  random QNN start settles higher), L-BFGS then converges far further than Adam's first-order steps do.
* ``"cobyla"`` (:func:`scipy.optimize.minimize`, method COBYLA, gradient-free) on the flattened trainable parameters,
  ``iterations`` = the budget of loss evaluations (``maxiter``), initial trust radius ``rhobeg``. Every evaluation is a
  row of the learning curve; the model ends with the best parameters evaluated. COBYLA needs at least
  ``n_parameters + 2`` evaluations (its first simplex), so a smaller budget is an error.

Reproducibility: ``seed`` seeds torch (``torch.manual_seed``) and the numpy Generator of the minibatches; the model's
own initialisation is seeded by the model. The same seed and settings give bitwise the same weights (single-threaded
torch, as the pipeline runs it).

Checkpoints and resuming
------------------------
With ``checkpoint_path``, a checkpoint is written atomically (:func:`qnnff.io.atomic_path`) every ``checkpoint_every``
iterations. If a checkpoint exists when :func:`train` starts, and its fingerprint matches this run's, training resumes
from it. The fingerprint (:func:`fingerprint`) holds

* the model hash: a sha256 of the model as it would be saved *before* training (architecture, featurizer range,
  energy scaler and the initial weights), so a changed circuit (e.g. ``entanglement``, same parameter count) or
  initialisation (``init.feature_map_weights``, the seed) is a different model;
* the data hash (positions, scaled energies and forces of the training batch) and the feature hash (its features and
  their Jacobians: a changed ``features.margin`` changes them);
* every training setting, ``iterations`` included (and the optimiser's own: lr, lr_final, chi, seed, batch size,
  rhobeg, tol, the L-BFGS settings);
* the hashes the caller passes as ``provenance`` (the pipeline: its job's ``model_hash``, which covers the
  (kind, protocol)'s configuration).

Resuming then works as follows:

* Adam: parameters, optimiser state, iteration, numpy and torch RNG states and the history are restored, so a killed
  and resumed run ends with bitwise the same weights as an uninterrupted one;
* L-BFGS: parameters, the optimiser's state and the history are restored at the boundary of an outer step, so a run
  killed anywhere (also between two line searches) resumes from its last checkpoint and ends with bitwise the same
  weights as an uninterrupted one (the loss is deterministic: full batch, no random numbers);
* COBYLA: the optimiser's internal state (simplex, trust radius) cannot be saved through scipy, so the run *restarts*
  COBYLA from the best parameters of the checkpoint with the remaining evaluation budget (and ``rhobeg``); the result
  is valid but not identical to an uninterrupted run. If fewer than ``n_parameters + 2`` evaluations are left
  (COBYLA's first simplex), it runs those ``n_parameters + 2`` anyway (the run ends slightly over budget, and says so):
  a resumed training never ships with fewer evaluations than configured. :class:`TrainingResult` records
  ``iterations_done`` and ``iterations_configured`` (COBYLA may also stop earlier on its own when its trust region
  shrinks below ``tol``; the ``message`` says so).

A checkpoint with another fingerprint is ignored, with a warning that names what differs (e.g. ``checkpoint ... ignored
(written under other settings): model hash differs (architecture or init changed), iterations 3000 -> 1000``), and
overwritten by the new run's first checkpoint. The caller writes the final model only after
:func:`train` returns, so a killed training never leaves a model file that looks complete.

Learning curve and log
----------------------
One row per iteration: ``iteration, loss, energy_loss, force_loss, elapsed_s`` (+ ``val_loss, val_energy_loss,
val_force_loss`` every ``val_every`` iterations when a ``val_batch`` is given). ``curve_path`` is rewritten atomically
every ``curve_every`` iterations and at the end. Progress lines (iteration, losses, elapsed and estimated remaining
time) go to ``log`` (a callable such as ``logger.info``, or a :class:`logging.Logger`) every ``log_every`` iterations.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .integrity import arrays_digest, load_npz
from .io import _json_default, atomic_path, write_text_atomic
from .models.base import FeatureForceField, ForceField, TrainingBatch

OPTIMIZERS = ("adam", "lbfgs", "adam+lbfgs", "cobyla")
LBFGS_STEP_ITERATIONS = 10  # L-BFGS iterations per outer step (one .step() call); checkpoints fall between outer steps
LBFGS_STEP_EVALUATIONS = 25  # at most this many loss evaluations per outer step (torch's max_eval)
CHECKPOINT_VERSION = 2  # 2: the fingerprint holds the model, data and feature hashes and every setting (issue 26.1)
_log = logging.getLogger("qnnff")


@dataclass
class TrainingResult:
    """Outcome of :func:`train`: loss of the final parameters on the full training batch, iterations done
    (Adam steps / COBYLA evaluations, including those before a resume), wall time of this call and of the whole
    training, and the per-iteration history (the learning curve)."""

    final_loss: float
    final_energy_loss: float
    final_force_loss: float
    iterations: int
    wall_time: float
    total_time: float
    history: list[dict[str, float]] = field(repr=False)
    resumed_from: int | None = None
    optimizer: str = ""
    message: str = ""
    iterations_configured: int = 0

    @property
    def iterations_done(self) -> int:
        return self.iterations


def load_batch(npz_path: str | Path, *, with_features: bool = True) -> TrainingBatch:
    """A :class:`~qnnff.models.base.TrainingBatch` from a features npz (verified: frame count and sha256)."""
    f = load_npz(npz_path)  # verified: frame count and sha256
    t = lambda k: torch.as_tensor(f[k], dtype=torch.float64)  # noqa: E731
    return TrainingBatch(positions=t("positions"), y=t("y"), f=t("f"),
                         x=t("x") if with_features else None, jac=t("jac") if with_features else None)


# ---------------------------------------------------------------------------------------------------------------
# loss
# ---------------------------------------------------------------------------------------------------------------
def _scaled_energy_only(model: ForceField, batch: TrainingBatch) -> torch.Tensor:
    if isinstance(model, FeatureForceField) and batch.x is not None:
        return model.regressor(batch.x)
    return model.scaled_energy_and_forces(batch, create_graph=True)[0]


def loss_terms(model: ForceField, batch: TrainingBatch, *, chi: float, create_graph: bool = True
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(total, energy part, force part) of the paper's loss on scaled targets (see the module docstring).

    With ``create_graph`` the total is differentiable w.r.t. the trainable parameters (forces included: mixed second
    derivatives); otherwise it is evaluated without a graph (COBYLA, validation).
    """
    if chi < 0:
        raise ValueError(f"chi must be >= 0, got {chi}")
    with torch.set_grad_enabled(create_graph):
        if chi == 0:
            y = _scaled_energy_only(model, batch)
            f_part = torch.zeros((), dtype=y.dtype)
        else:
            y, f = model.scaled_energy_and_forces(batch, create_graph=create_graph)
            f_part = chi * torch.mean((f - batch.f) ** 2)
        e_part = torch.mean((y - batch.y) ** 2)
        total = e_part + f_part
    if not create_graph:
        total, e_part, f_part = total.detach(), e_part.detach(), f_part.detach()
    return total, e_part, f_part


# ---------------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------------
def _logger(log: Callable[[str], Any] | logging.Logger | None) -> Callable[[str], Any]:
    if log is None:
        return _log.info
    if isinstance(log, logging.Logger):
        return log.info
    if not callable(log):
        raise TypeError(f"log must be a callable or a logging.Logger, got {type(log).__name__}")
    return log


def _warner(log: Callable[[str], Any] | logging.Logger | None) -> Callable[[str], Any]:
    """Where warnings go: a Logger's (or qnnff's) ``warning``, else the ``log`` callable with a ``warning:`` prefix."""
    if log is None:
        return _log.warning
    if isinstance(log, logging.Logger):
        return log.warning
    say = _logger(log)
    return lambda s: say(f"warning: {s}")


def _trainable(model: ForceField) -> list[torch.nn.Parameter]:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"{model.kind} model has no trainable parameters")
    return params


def _curve_columns(history: list[dict[str, float]]) -> list[str]:
    cols = ["iteration", "loss", "energy_loss", "force_loss", "elapsed_s"]
    if any("val_loss" in r for r in history):
        cols += ["val_loss", "val_energy_loss", "val_force_loss"]
    return cols


def write_curve(path: str | Path, history: list[dict[str, float]]) -> None:
    """Write the learning curve CSV atomically (one row per iteration; empty cells where no validation ran)."""
    cols = _curve_columns(history)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in history:
        w.writerow(["" if r.get(c) is None else (int(r[c]) if c == "iteration" else repr(float(r[c]))) for c in cols])
    write_text_atomic(path, buf.getvalue())


def model_hash(model: ForceField) -> str:
    """sha256 of ``model`` as its artifact would hold it now: kind, species, energy scaler, architecture (the
    artifact's metadata: circuit, featurizer range, layers, ...) and the weights. Taken before training, it names the
    initial model: a changed architecture or initialisation changes it."""
    arrays, meta, _ = model.to_artifact()  # (the blobs, e.g. the QPY circuit, carry random parameter ids: not hashed)
    head = {"kind": model.kind, "symbols": model.symbols, "energy_scaler": model.energy_scaler.to_dict(), "meta": meta}
    text = json.dumps(head, sort_keys=True, default=_json_default)
    return hashlib.sha256(f"{text}|{arrays_digest(arrays)}".encode()).hexdigest()


def batch_hashes(batch: TrainingBatch) -> dict[str, str | None]:
    """sha256 of a training batch's data (positions, scaled energies and forces) and of its features (features and
    their Jacobians; None without them)."""
    arr = lambda t: t.detach().cpu().numpy()  # noqa: E731
    data = arrays_digest({"positions": arr(batch.positions), "y": arr(batch.y), "f": arr(batch.f)})
    feats = None if batch.x is None else arrays_digest({"x": arr(batch.x), "jac": arr(batch.jac) if batch.jac is not None else np.zeros(0)})
    return {"data_hash": data, "feature_hash": feats}


def fingerprint(model: ForceField, batch: TrainingBatch, provenance: Mapping[str, Any] | None = None,
                **settings: Any) -> dict[str, Any]:
    """What a checkpoint must match to be resumed (see the module docstring): call it before training (the model hash
    is that of the initial model)."""
    return {"version": CHECKPOINT_VERSION, "kind": model.kind, "n_trainable": int(sum(p.numel() for p in _trainable(model))),
            "n_frames": len(batch), "model_hash": model_hash(model), **batch_hashes(batch),
            **{f"provenance.{k}": v for k, v in sorted((provenance or {}).items())}, **settings}


_WHAT_DIFFERS = {"model_hash": "model hash differs (architecture or init changed)",
                 "data_hash": "data hash differs (training positions, energies or forces changed)",
                 "feature_hash": "feature hash differs (features recomputed, e.g. features.margin changed)"}


def fingerprint_differences(old: Any, new: dict[str, Any]) -> list[str]:
    """What differs between a checkpoint's fingerprint ``old`` and this run's ``new``, one phrase each
    (``model hash differs (...)``, ``iterations 3000 -> 1000``); empty if they match."""
    if not isinstance(old, dict):
        return ["the checkpoint has no fingerprint"]
    if old.get("version") != new.get("version"):
        return [f"checkpoint format {old.get('version')} -> {new.get('version')} (written by another qnnff version)"]
    show = lambda d, k: repr(d[k]) if isinstance(d.get(k), str) else (str(d[k]) if k in d else "unset")  # noqa: E731
    out = []
    for k in [*new, *(k for k in old if k not in new)]:
        if old.get(k, KeyError) != new.get(k, KeyError):
            if k in _WHAT_DIFFERS:
                out.append(_WHAT_DIFFERS[k])
            elif k.startswith("provenance."):
                out.append(f"provenance hash {k[len('provenance.'):]} differs (the configuration it was built from changed)")
            else:
                out.append(f"{k} {show(old, k)} -> {show(new, k)}")
    return out


def _save_checkpoint(path: str | Path, obj: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _load_checkpoint(path: str | Path | None, fingerprint: dict[str, Any], warn: Callable[[str], Any]) -> dict[str, Any] | None:
    """The checkpoint at ``path`` if its fingerprint is ``fingerprint``; None (with a warning through ``warn`` naming
    what differs) otherwise."""
    if path is None or not Path(path).is_file():
        return None
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)  # never unpickle code from a planted file
    except Exception as exc:  # noqa: BLE001 - a damaged checkpoint must not stop a fresh start
        warn(f"checkpoint {path} is unreadable ({exc}); starting from scratch")
        return None
    old = ck.get("fingerprint") if isinstance(ck, dict) else None
    if old != fingerprint:
        differs = fingerprint_differences(old, fingerprint) or ["its fingerprint differs"]
        warn(f"checkpoint {path} ignored (written under other settings): {', '.join(differs)}; starting from scratch")
        return None
    return ck


def eta_text(first: tuple[int, float] | None, it: int, elapsed: float, total: int) -> str:
    """Remaining time from the rate *after* the first iteration of this run (which carries the warm-up: circuit
    compilation, first autograd graph), so the first estimate is not inflated; none before a second iteration."""
    if first is None or it <= first[0]:
        return "time left estimated after the next iterations"
    rate = (elapsed - first[1]) / (it - first[0])
    return f"~{rate * max(total - it, 0):.0f} s left"


def _fmt(rec: dict[str, float]) -> str:
    s = f"loss {rec['loss']:.4e} (E {rec['energy_loss']:.3e}, F {rec['force_loss']:.3e})"
    if rec.get("val_loss") is not None:
        s += f"  val {rec['val_loss']:.4e}"
    return s


# ---------------------------------------------------------------------------------------------------------------
# the trainer
# ---------------------------------------------------------------------------------------------------------------
def train(
    model: ForceField,
    train_batch: TrainingBatch,
    *,
    optimizer: str,
    iterations: int,
    lr: float = 0.01,
    lr_final: float | None = None,
    chi: float,
    seed: int,
    batch_size: int | None = None,
    rhobeg: float = 0.5,
    tol: float = 1e-8,
    history_size: int = 50,
    tolerance_grad: float = 1e-10,
    tolerance_change: float = 1e-14,
    lbfgs_evaluations: int | None = None,
    checkpoint_path: str | Path | None = None,
    checkpoint_every: int = 100,
    log: Callable[[str], Any] | logging.Logger | None = None,
    log_every: int | None = None,
    curve_path: str | Path | None = None,
    curve_every: int | None = None,
    val_batch: TrainingBatch | None = None,
    val_every: int | None = None,
    callback: Callable[[int, dict[str, float]], Any] | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> TrainingResult:
    """Train ``model`` in place on ``train_batch`` (see the module docstring); returns a :class:`TrainingResult`.

    ``callback(iteration, record)`` runs after every iteration (an exception raised there aborts the training as a
    kill would, leaving the last checkpoint behind). ``provenance``: hashes of what the caller built the model and the
    batch from (the pipeline passes its job's ``model_hash``); a checkpoint written under other hashes is not resumed.
    Warnings (an ignored checkpoint) go to ``log``'s ``warning`` for a :class:`logging.Logger`, else to ``log`` with a
    ``warning:`` prefix.
    """
    optimizer = str(optimizer).lower()
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    if int(iterations) < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    if chi < 0 or not math.isfinite(chi):
        raise ValueError(f"chi must be a finite number >= 0, got {chi}")
    if checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
    if len(train_batch) < 1:
        raise ValueError("empty training batch")
    iterations = int(iterations)
    adam_steps = iterations
    if optimizer == "adam+lbfgs":
        if lbfgs_evaluations is None or int(lbfgs_evaluations) < 1:
            raise ValueError(f"adam+lbfgs needs lbfgs_evaluations >= 1 (the L-BFGS budget after the Adam steps), got {lbfgs_evaluations}")
        iterations = adam_steps + int(lbfgs_evaluations)  # the whole run: Adam steps, then L-BFGS evaluations
    elif lbfgs_evaluations is not None:
        raise ValueError(f"lbfgs_evaluations is for optimizer adam+lbfgs, not {optimizer!r}")
    say = _logger(log)
    log_every = int(log_every or max(1, iterations // 20))
    curve_every = int(curve_every or max(50, log_every))
    val_every = int(val_every or log_every)
    full = batch_size is None or int(batch_size) >= len(train_batch)
    settings: dict[str, Any] = {}
    if optimizer in ("adam", "adam+lbfgs"):
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if lr_final is not None and not 0 < lr_final <= lr:
            raise ValueError(f"lr_final must lie in (0, lr = {lr}], got {lr_final}")
        settings = {"optimizer": "adam", "lr": float(lr), "chi": float(chi), "seed": int(seed), "batch_size": None if full else int(batch_size)}
        if lr_final is not None:
            settings["lr_final"] = float(lr_final)
    if optimizer in ("lbfgs", "adam+lbfgs"):
        if int(history_size) < 1:
            raise ValueError(f"history_size must be >= 1, got {history_size}")
        if not (tolerance_grad >= 0 and tolerance_change >= 0):
            raise ValueError(f"tolerance_grad and tolerance_change must be >= 0, got {tolerance_grad}, {tolerance_change}")
        if not full:
            raise ValueError(f"{optimizer} is a full-batch optimiser: batch_size must be absent")
        settings = {**settings, "optimizer": optimizer, "chi": float(chi), "seed": int(seed), "history_size": int(history_size),
                    "tolerance_grad": float(tolerance_grad), "tolerance_change": float(tolerance_change),
                    "step_iterations": LBFGS_STEP_ITERATIONS, "step_evaluations": LBFGS_STEP_EVALUATIONS}
        if optimizer == "adam+lbfgs":
            settings["adam_steps"] = adam_steps
    if optimizer == "cobyla":
        if not rhobeg > 0:
            raise ValueError(f"rhobeg must be > 0, got {rhobeg}")
        n_vars = sum(p.numel() for p in model.parameters() if p.requires_grad)
        if iterations < n_vars + 2:
            raise ValueError(f"cobyla needs at least n_parameters + 2 = {n_vars + 2} evaluations (iterations), got {iterations}")
        settings = {"optimizer": "cobyla", "chi": float(chi), "seed": int(seed), "rhobeg": float(rhobeg), "tol": float(tol)}
    settings["iterations"] = iterations  # the whole budget: a checkpoint of a longer (or shorter) run is not resumed
    fp = fingerprint(model, train_batch, provenance, **settings)
    torch.manual_seed(int(seed))
    rng = np.random.default_rng(int(seed))
    params = _trainable(model)
    ck = _load_checkpoint(checkpoint_path, fp, _warner(log))
    t_start = time.perf_counter()
    ctx = _Run(model=model, batch=train_batch, chi=float(chi), say=say, iterations=iterations, log_every=log_every,
               curve_path=curve_path, curve_every=curve_every, val_batch=val_batch, val_every=val_every, callback=callback,
               checkpoint_path=checkpoint_path, checkpoint_every=int(checkpoint_every), fingerprint=fp, t_start=t_start)
    if ck is not None:
        ctx.history = list(ck["history"])
        ctx.elapsed0 = float(ck["elapsed"])
        ctx.resumed_from = int(ck["iteration"])
        say(f"resuming {model.kind} training ({optimizer}) from checkpoint {checkpoint_path} at iteration {ctx.resumed_from}")
    say(f"training {model.kind}: {sum(p.numel() for p in params)} trainable parameters, {optimizer}, {iterations} iterations, "
        f"chi={chi:g}, {len(train_batch)} frames" + ("" if full else f", minibatch {batch_size}"))
    lbfgs_kw = dict(history_size=int(history_size), tolerance_grad=float(tolerance_grad), tolerance_change=float(tolerance_change))
    if optimizer == "adam":
        message = _train_adam(ctx, params, rng, lr=float(lr), lr_final=None if lr_final is None else float(lr_final),
                              batch_size=None if full else int(batch_size), ck=ck)
    elif optimizer == "lbfgs":
        message = _train_lbfgs(ctx, params, **lbfgs_kw, ck=ck)
    elif optimizer == "adam+lbfgs":
        in_lbfgs = ck is not None and ck.get("phase") == "lbfgs"  # a checkpoint of the L-BFGS phase: Adam is done
        if not in_lbfgs:
            _train_adam(ctx, params, rng, lr=float(lr), lr_final=None if lr_final is None else float(lr_final), batch_size=None,
                        ck=ck, steps=adam_steps)
            say(f"Adam done after {adam_steps} steps; L-BFGS for {iterations - adam_steps} loss evaluations")
        message = _train_lbfgs(ctx, params, **lbfgs_kw, ck=ck if in_lbfgs else None, start=adam_steps)
    else:
        message = _train_cobyla(ctx, params, rhobeg=float(rhobeg), tol=float(tol), ck=ck)
    final, fe, ff = loss_terms(model, train_batch, chi=float(chi), create_graph=False)
    if curve_path is not None:
        write_curve(curve_path, ctx.history)
    wall = time.perf_counter() - t_start
    done = int(ctx.history[-1]["iteration"]) if ctx.history else 0
    say(f"done: {done} iterations, final loss {float(final):.4e} (E {float(fe):.3e}, F {float(ff):.3e}), "
        f"{wall:.1f} s ({ctx.elapsed0 + wall:.1f} s in total){'; ' + message if message else ''}")
    return TrainingResult(final_loss=float(final), final_energy_loss=float(fe), final_force_loss=float(ff), iterations=done,
                          wall_time=wall, total_time=ctx.elapsed0 + wall, history=ctx.history, resumed_from=ctx.resumed_from,
                          optimizer=optimizer, message=message, iterations_configured=iterations)


@dataclass
class _Run:
    """Book-keeping shared by the optimiser loops: history, logging, curve, validation, checkpoints."""

    model: ForceField
    batch: TrainingBatch
    chi: float
    say: Callable[[str], Any]
    iterations: int
    log_every: int
    curve_path: str | Path | None
    curve_every: int
    val_batch: TrainingBatch | None
    val_every: int
    callback: Callable[[int, dict[str, float]], Any] | None
    checkpoint_path: str | Path | None
    checkpoint_every: int
    fingerprint: dict[str, Any]
    t_start: float
    history: list[dict[str, float]] = field(default_factory=list)
    elapsed0: float = 0.0
    resumed_from: int | None = None
    first: tuple[int, float] | None = None  # (iteration, elapsed) of this call's first iteration: the ETA's origin

    def elapsed(self) -> float:
        return self.elapsed0 + time.perf_counter() - self.t_start

    def record(self, it: int, total: torch.Tensor, e: torch.Tensor, f: torch.Tensor) -> dict[str, float]:
        rec: dict[str, float] = {"iteration": it, "loss": float(total), "energy_loss": float(e), "force_loss": float(f),
                                 "elapsed_s": round(self.elapsed(), 4)}
        if self.val_batch is not None and (it % self.val_every == 0 or it == self.iterations):
            vt, ve, vf = loss_terms(self.model, self.val_batch, chi=self.chi, create_graph=False)
            rec.update(val_loss=float(vt), val_energy_loss=float(ve), val_force_loss=float(vf))
        self.history.append(rec)
        el = self.elapsed()
        if self.first is None:
            self.first = (it, el)
        if it % self.log_every == 0 or it == self.iterations or it == 1:
            self.say(f"iter {it}/{self.iterations}  {_fmt(rec)}  {el:.1f} s elapsed, {eta_text(self.first, it, el, self.iterations)}")
        if self.curve_path is not None and it % self.curve_every == 0:
            write_curve(self.curve_path, self.history)
        return rec

    def after(self, it: int, rec: dict[str, float], state: Callable[[], dict[str, Any]]) -> None:
        if it % self.checkpoint_every == 0 and it < self.iterations:
            self.checkpoint(it, state)
        if self.callback is not None:
            self.callback(it, rec)

    def checkpoint(self, it: int, state: Callable[[], dict[str, Any]]) -> None:
        if self.checkpoint_path is not None:
            _save_checkpoint(self.checkpoint_path, {"fingerprint": self.fingerprint, "iteration": it, "history": self.history,
                                                    "elapsed": self.elapsed(), **state()})


def adam_learning_rate(it: int, iterations: int, lr: float, lr_final: float | None) -> float:
    """Learning rate of Adam step ``it`` (1-based): constant ``lr``, or decaying geometrically from ``lr`` (step 1) to
    ``lr_final`` (the last step). A function of the step alone, so a resumed run follows the same schedule."""
    if lr_final is None or iterations < 2:
        return lr
    return lr * (lr_final / lr) ** ((it - 1) / (iterations - 1))


class Adam:
    """:class:`torch.optim.Adam` with its defaults (betas 0.9, 0.999; eps 1e-8; no weight decay), stepped through
    torch's functional API :func:`torch.optim.adam.adam`, the function ``torch.optim.Adam.step`` itself calls.

    Same update and same ``state_dict`` layout as ``torch.optim.Adam``: the weights are bitwise those of the class
    (``tests/test_training.py``), and a checkpoint written by either loads into the other. Why not the class: building
    a ``torch.optim.Optimizer`` imports ``torch._dynamo`` (0.9 s of a 3-4 s training job), which the functional API
    does not need. ``lr`` is read from ``param_groups[0]["lr"]`` at each step, as with the class.
    """

    def __init__(self, params: list[torch.nn.Parameter], *, lr: float) -> None:
        from torch.optim.adam import adam

        self._adam = adam
        self.params = list(params)
        self.param_groups = [{"lr": float(lr), "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0,
                              "amsgrad": False, "maximize": False, "foreach": None, "capturable": False,
                              "differentiable": False, "fused": None, "decoupled_weight_decay": False,
                              "params": list(range(len(self.params)))}]
        self.state: dict[int, dict[str, torch.Tensor]] = {}

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        g = self.param_groups[0]
        idx = [i for i, p in enumerate(self.params) if p.grad is not None]  # as the class: no gradient, no update
        for i in idx:
            if i not in self.state:
                p = self.params[i]
                self.state[i] = {"step": torch.tensor(0.0, dtype=torch.float64 if torch.get_default_dtype() == torch.float64
                                                      else torch.float32),
                                 "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                                 "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}
        st = [self.state[i] for i in idx]
        self._adam([self.params[i] for i in idx], [self.params[i].grad for i in idx], [s["exp_avg"] for s in st],
                   [s["exp_avg_sq"] for s in st], [], [s["step"] for s in st], foreach=g["foreach"],
                   capturable=False, differentiable=False, fused=g["fused"],
                   has_complex=any(torch.is_complex(self.params[i]) for i in idx), decoupled_weight_decay=False,
                   amsgrad=False, beta1=g["betas"][0], beta2=g["betas"][1], lr=g["lr"], weight_decay=g["weight_decay"],
                   eps=g["eps"], maximize=False)

    def state_dict(self) -> dict[str, Any]:
        return {"state": {i: {k: v.clone() for k, v in s.items()} for i, s in self.state.items()},
                "param_groups": [dict(g, params=list(g["params"])) for g in self.param_groups]}

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        groups = sd["param_groups"]
        if len(groups) != 1 or len(groups[0]["params"]) != len(self.params):
            raise ValueError(f"optimizer state has {[len(g['params']) for g in groups]} parameters per group, "
                             f"this Adam has one group of {len(self.params)}")
        for k in ("betas", "eps", "weight_decay", "amsgrad", "maximize"):
            if k in groups[0] and groups[0][k] != self.param_groups[0][k]:
                raise ValueError(f"optimizer state has {k}={groups[0][k]!r}, this Adam has {self.param_groups[0][k]!r}")
        order = {pid: j for j, pid in enumerate(groups[0]["params"])}
        self.param_groups[0]["lr"] = groups[0]["lr"]
        self.state = {}
        for pid, s in sd["state"].items():
            p = self.params[order[pid]]
            self.state[order[pid]] = {k: (v.clone() if k == "step" else v.to(dtype=p.dtype, device=p.device).clone())
                                      for k, v in s.items()}


def _train_adam(ctx: _Run, params: list[torch.nn.Parameter], rng: np.random.Generator, *, lr: float, lr_final: float | None,
                batch_size: int | None, ck: dict[str, Any] | None, steps: int | None = None) -> str:
    """``steps`` Adam steps (default: the run's iterations; fewer when L-BFGS follows)."""
    model, batch = ctx.model, ctx.batch
    steps = ctx.iterations if steps is None else int(steps)
    opt = Adam(params, lr=lr)
    start = 0
    if ck is not None:
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        rng.bit_generator.state = ck["rng"]
        torch.set_rng_state(ck["torch_rng"])
        start = int(ck["iteration"])

    def state() -> dict[str, Any]:
        return {"model": model.state_dict(), "optimizer": opt.state_dict(), "rng": rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(), "phase": "adam"}

    n = len(batch)
    for it in range(start + 1, steps + 1):
        b = batch if batch_size is None else batch.subset(torch.as_tensor(np.sort(rng.choice(n, batch_size, replace=False))))
        for group in opt.param_groups:
            group["lr"] = adam_learning_rate(it, steps, lr, lr_final)
        opt.zero_grad()
        total, e, f = loss_terms(model, b, chi=ctx.chi, create_graph=True)
        if not torch.isfinite(total):
            raise FloatingPointError(f"training loss became {float(total)} at iteration {it}")
        total.backward()
        opt.step()
        rec = ctx.record(it, total.detach(), e.detach(), f.detach())
        ctx.after(it, rec, state)
    return ""


def _train_lbfgs(ctx: _Run, params: list[torch.nn.Parameter], *, history_size: int, tolerance_grad: float,
                 tolerance_change: float, ck: dict[str, Any] | None, start: int = 0) -> str:
    """L-BFGS until the run's iterations (loss evaluations, numbered from ``start``: the Adam steps before it)."""
    from .optim import LBFGS  # torch.optim.LBFGS without its import of torch._dynamo (2-2.5 s per job; qnnff.optim)

    model, batch = ctx.model, ctx.batch
    opt = LBFGS(params, lr=1.0, max_iter=LBFGS_STEP_ITERATIONS, max_eval=LBFGS_STEP_EVALUATIONS, tolerance_grad=tolerance_grad,
                tolerance_change=tolerance_change, history_size=history_size, line_search_fn="strong_wolfe")
    count = {"it": int(start)}
    if ck is not None:
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        count["it"] = int(ck["iteration"])

    def state() -> dict[str, Any]:
        return {"model": model.state_dict(), "optimizer": opt.state_dict(), "phase": "lbfgs"}

    def closure() -> torch.Tensor:
        opt.zero_grad()
        total, e, f = loss_terms(model, batch, chi=ctx.chi, create_graph=True)
        if not torch.isfinite(total):
            raise FloatingPointError(f"training loss became {float(total)} at evaluation {count['it'] + 1}")
        total.backward()
        count["it"] += 1
        rec = ctx.record(count["it"], total.detach(), e.detach(), f.detach())
        if ctx.callback is not None:
            ctx.callback(count["it"], rec)
        return total

    last_checkpoint = count["it"]
    while count["it"] < ctx.iterations:
        n_iter = opt.state[params[0]].get("n_iter", 0)
        first = count["it"]
        opt.step(closure)
        done = opt.state[params[0]].get("n_iter", 0) - n_iter
        # a step that ends before its iteration and evaluation limits was ended by torch's tolerances (gradient below
        # tolerance_grad, or loss or step change below tolerance_change): converged; another step would not move
        if done < LBFGS_STEP_ITERATIONS and count["it"] - first < LBFGS_STEP_EVALUATIONS:
            return (f"L-BFGS converged after {count['it'] - start} evaluations: torch's tolerances ended its last step after {done} "
                    f"iteration(s) (tolerance_grad {tolerance_grad:g}, tolerance_change {tolerance_change:g})")
        if count["it"] // ctx.checkpoint_every > last_checkpoint // ctx.checkpoint_every and count["it"] < ctx.iterations:
            ctx.checkpoint(count["it"], state)
            last_checkpoint = count["it"]
    return (f"L-BFGS: evaluation budget reached ({count['it'] - start} evaluations, {opt.state[params[0]]['n_iter']} iterations"
            + (f", after {start} Adam steps)" if start else ")"))


def _train_cobyla(ctx: _Run, params: list[torch.nn.Parameter], *, rhobeg: float, tol: float, ck: dict[str, Any] | None) -> str:
    from scipy.optimize import minimize

    model, batch = ctx.model, ctx.batch
    vec = torch.nn.utils.parameters_to_vector
    to_params = torch.nn.utils.vector_to_parameters
    done = 0
    if ck is not None:
        model.load_state_dict(ck["model"])
        done = int(ck["iteration"])
    best = {"loss": math.inf, "x": vec(params).detach().clone()}
    if ck is not None and ck.get("best_loss") is not None:
        best["loss"] = float(ck["best_loss"])
    count = {"it": done}

    def state() -> dict[str, Any]:
        with torch.no_grad():
            cur = vec(params).detach().clone()
            to_params(best["x"], params)
            sd = {k: v.clone() for k, v in model.state_dict().items()}
            to_params(cur, params)
        return {"model": sd, "best_loss": best["loss"]}

    def fun(xv: np.ndarray) -> float:
        with torch.no_grad():
            to_params(torch.as_tensor(xv, dtype=torch.float64), params)
        total, e, f = loss_terms(model, batch, chi=ctx.chi, create_graph=False)
        val = float(total)
        count["it"] += 1
        it = count["it"]
        if val < best["loss"] or not math.isfinite(best["loss"]):
            best["loss"], best["x"] = val, torch.as_tensor(xv, dtype=torch.float64).clone()
        rec = ctx.record(it, total, e, f)
        ctx.after(it, rec, state)
        return val if math.isfinite(val) else 1e300

    remaining = ctx.iterations - done
    message = ""
    n_vars = sum(p.numel() for p in params)
    note = ""
    if 0 < remaining < n_vars + 2:
        # never ship an under-trained model: COBYLA's restart needs its first simplex, so run that minimum
        note = (f"COBYLA restarted with {n_vars + 2} evaluations (its minimum, n_parameters + 2) although only {remaining} "
                f"of the {ctx.iterations} configured were left: the run ends with {done + n_vars + 2} evaluations; ")
        ctx.say(note.rstrip("; "))
        remaining = n_vars + 2
    if remaining > 0:
        if ck is not None:  # restart from the best parameters the checkpoint saw
            with torch.no_grad():
                to_params(best["x"], params)
        x0 = vec(params).detach().numpy().copy()
        res = minimize(fun, x0, method="COBYLA", options={"maxiter": int(remaining), "rhobeg": rhobeg, "tol": tol})
        message = f"{note}COBYLA: {res.message}"
    with torch.no_grad():
        to_params(best["x"], params)
    return message

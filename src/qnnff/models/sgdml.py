"""sGDML (model kind ``"sgdml"``): the classical state of the art on the same data (issue 27), from its authors' library.

Chmiela et al., Sci. Adv. 3, e1603015 (2017) (GDML) and Nat. Commun. 9, 3887 (2018) (sGDML). qnnff does not
reimplement the model: :meth:`SGDMLForceField.fit` hands the training set to ``sgdml.train.GDMLTrain`` and the
predictions come from ``sgdml.predict.GDMLPredict``; this module only does the bookkeeping around them.

Fit (:meth:`SGDMLForceField.fit`)
---------------------------------
* The training positions (Angstrom), energies (eV) and forces (eV/Angstrom) become an sGDML dataset dict in memory
  (``R``, ``E``, ``F``, ``z``, ``name``, ``theory``, ``r_unit='Ang'``, ``e_unit='eV'``, ``md5``), so the model's
  energies are in eV and its forces in eV/Angstrom.
* Symmetries: the library searches the permutations of like atoms on the training geometries (``use_sym=True``,
  its bipartite matching); the same permutations serve every fit below. Water: 2 (identity, H <-> H).
* Kernel width: every candidate of ``sigmas`` (integers, as the library takes them) is fitted on the training set
  minus a validation part (``validation_fraction`` of it, drawn with ``seed``: ``numpy.random.default_rng(seed)``)
  and scored on that part. The criterion is the validation **force RMSE** (the library's own ``sgdml select``
  criterion; a tie goes to the earlier candidate); the energy RMSE is recorded next to it. A choice at either end of
  the candidates is logged as a warning (the optimum may lie outside them).
* The model is then refitted on the whole training set with the chosen width: every training point is used (the
  library's ``create_task`` draws a stratified random subset unless asked for all points, which it returns in order,
  so nothing random is left), with the analytic solver (a Cholesky factorisation; an error if the machine's memory
  would make the library fall back to its iterative solver), energies from the integrated force field plus the
  library's least-squares integration constant (``use_E=True``; ``energy_constraints=True`` adds the energy labels to
  the kernel, ``use_E_cstr``).
* The chosen width, the validation errors of every candidate (meV and meV/Angstrom, and scaled: divided by the
  energy scaler's scale), the number of symmetries and the wall times are in
  :attr:`SGDMLForceField.fit_info` (and the artifact). The same inputs give bitwise the same model (the kernel is
  assembled and every prediction is summed in one process, ``max_processes=1``, in a fixed order).

Predictions
-----------
``energy`` / ``energy_and_forces`` (eV, eV/Angstrom, torch float64, no autograd graph: the forces are the library's
analytic gradient) behind the guards every kind has (:meth:`~qnnff.models.base.ForceField.check_domain`): NaN/inf
positions, atoms closer than 0.3 A, and geometries outside the featurizer's domain (a scaled internal coordinate beyond
+-1, the domain of the QNN and NN of the same system) raise :class:`~qnnff.errors.OutOfDomainError`; ``check=False``
skips them. :class:`~qnnff.calculators.ModelCalculator` evaluates it through ``energy_and_forces``.

Parameters and artifact
-----------------------
A kernel model has no trained weights in the network sense: :meth:`SGDMLForceField.n_parameters` counts its kernel
coefficients, n_train * 3 * n_atoms force coefficients (+ n_train energy coefficients with ``energy_constraints``)
+ 1 integration constant (:attr:`SGDMLForceField.parameter_label`). The artifact holds the model dict the library's
``train`` returns, its arrays in ``arrays.npz`` (``sgdml.<key>``) and its scalars and strings in ``meta.json``
(``sgdml_model``), no pickle; :meth:`SGDMLForceField.sgdml_model_dict` gives that dict back.

Console
-------
Importing ``sgdml`` makes every logger created afterwards in the process a coloured console logger
(``logging.setLoggerClass``); :func:`sgdml_library` imports it and restores the previous logger class, and sets the
library's loggers to WARNING: its progress messages are dropped (no progress bars are drawn: no callback is passed),
its warnings (e.g. "inconsistent energy labels", "flipped sign") propagate to the pipeline's log.
"""

from __future__ import annotations

import functools
import logging
import math
import multiprocessing
import time
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any, ClassVar

import numpy as np
import torch
from ase.data import atomic_numbers

from ..errors import domain_error_message
from ..features import EnergyScaler, Featurizer
from ..geometry import inverse_distances
from .base import ForceField, TrainingBatch, register_model

log = logging.getLogger("qnnff")

__all__ = ["DEFAULT_SIGMAS", "SELECTION_CRITERION", "SGDMLForceField", "sgdml_library"]

#: candidate kernel widths (the library's sigma, in its descriptor's units: inverse Angstrom distances)
DEFAULT_SIGMAS: tuple[int, ...] = (2, 5, 10, 20, 40, 80)
#: the kernel width is chosen on this (recorded in the model's fit_info)
SELECTION_CRITERION = "validation RMSE(F)"
#: the library's default regularisation (lambda, added to the kernel's diagonal)
DEFAULT_LAMBDA = 1e-10
SGDML_LOGGERS = ("sgdml", "sgdml.train", "sgdml.predict", "sgdml.solvers.analytic", "sgdml.solvers.iterative", "sgdml.torchtools")
_ARRAY_PREFIX = "sgdml."
_MEV = 1000.0

_trainer: Any = None  # the library allows one GDMLTrain per process ("reuse your first one"): created once, reused


def _quiet_library_loggers() -> None:
    for name in SGDML_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


@functools.cache
def sgdml_library() -> SimpleNamespace:
    """The ``sgdml`` modules this wrapper uses (imported on first use), with the process's logger class restored and
    the library's loggers at WARNING (see the module docstring)."""
    previous = logging.getLoggerClass()
    import sgdml
    from sgdml.predict import GDMLPredict
    from sgdml.solvers.analytic import Analytic
    from sgdml.train import GDMLTrain
    from sgdml.utils import io as sgdml_io

    colored = getattr(sgdml, "ColoredLogger", None)
    if colored is not None and logging.getLoggerClass() is colored:
        logging.setLoggerClass(previous if previous is not colored else logging.Logger)
    _quiet_library_loggers()
    return SimpleNamespace(version=sgdml.__version__, GDMLPredict=GDMLPredict, GDMLTrain=GDMLTrain, Analytic=Analytic,
                           io=sgdml_io)


def _library_trainer(max_processes: int) -> Any:
    global _trainer
    lib = sgdml_library()
    if _trainer is None:
        try:
            _trainer = lib.GDMLTrain(max_processes=max_processes)
        except Exception as exc:  # the library's own singleton check (a bare Exception)
            raise RuntimeError(f"sgdml: cannot create its trainer ({exc}); sgdml allows one GDMLTrain per process and "
                               f"something other than qnnff.models.sgdml created it") from exc
    _trainer._max_processes = min(int(max_processes), multiprocessing.cpu_count())  # what its constructor sets
    _quiet_library_loggers()
    return _trainer


def _check_sigmas(sigmas: Sequence[int]) -> list[int]:
    out = []
    for s in sigmas:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s <= 0:
            raise ValueError(f"sgdml: kernel widths (sigmas) must be positive integers, as sgdml takes them; got {s!r} in {list(sigmas)}")
        out.append(int(s))
    if not out:
        raise ValueError("sgdml: no candidate kernel width (sigmas is empty)")
    if len(set(out)) != len(out):
        raise ValueError(f"sgdml: repeated kernel width in sigmas {out}")
    return out


def _dataset(positions: np.ndarray, energies: np.ndarray, forces: np.ndarray, z: np.ndarray, name: str, theory: str) -> dict[str, Any]:
    """An sGDML dataset dict (its ``.npz`` layout, in memory): R [M, N, 3] Angstrom, E [M] eV, F [M, N, 3] eV/Angstrom."""
    lib = sgdml_library()
    ds = {"type": "d", "code_version": lib.version, "name": np.array(name), "theory": np.array(theory), "z": z,
          "R": np.ascontiguousarray(positions, dtype=np.float64), "E": np.ascontiguousarray(energies, dtype=np.float64),
          "F": np.ascontiguousarray(forces, dtype=np.float64), "r_unit": np.array("Ang"), "e_unit": np.array("eV")}
    ds["md5"] = lib.io.dataset_md5(ds)
    return ds


def _rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


def _predictor(model: dict[str, Any]) -> Any:
    """The library's predictor for ``model``, in this process only (no worker pool: a fixed summation order)."""
    lib = sgdml_library()
    return lib.GDMLPredict(model, max_processes=1, log_level=logging.WARNING)


class _Fitter:
    """One training set, its symmetries and the library's trainer: fits at a given kernel width."""

    def __init__(self, dataset: dict[str, Any], *, energy_constraints: bool, lam: float, max_processes: int) -> None:
        self.trainer = _library_trainer(max_processes)
        self.dataset = dataset
        self.energy_constraints = bool(energy_constraints)
        self.lam = float(lam)
        n, n_atoms = dataset["R"].shape[:2]
        lib = sgdml_library()
        need = lib.Analytic.est_memory_requirement(n, n_atoms)
        have = self.trainer._max_memory * 1024**3
        if need >= have:
            raise MemoryError(f"sgdml: the analytic solver for {n} training points of {n_atoms} atoms needs ~{need / 2**30:.1f} GB, "
                              f"more than the {self.trainer._max_memory} GB of this machine (sgdml would fall back to its "
                              f"iterative solver, which qnnff does not use): use fewer training points")
        # the symmetries, found once by the library on these training geometries (sig is a placeholder here)
        self.perms = self.task(dataset, 1, perms=None)["perms"]

    def task(self, dataset: dict[str, Any], sig: int, *, perms: np.ndarray | None) -> dict[str, Any]:
        n = len(dataset["E"])
        task = self.trainer.create_task(dataset, n, dataset, 0, sig, lam=self.lam, perms=perms, use_sym=True, use_E=True,
                                        use_E_cstr=self.energy_constraints, callback=None)
        if not np.array_equal(task["idxs_train"], np.arange(n)) or len(task["idxs_valid"]) != 0:
            raise RuntimeError(f"sgdml: create_task did not take every training point in order (got {len(task['idxs_train'])} of {n})")
        return task

    def fit(self, dataset: dict[str, Any], sig: int) -> dict[str, Any]:
        model = self.trainer.train(self.task(dataset, sig, perms=self.perms), callback=None)
        if model["solver_name"] != "analytic":
            raise RuntimeError(f"sgdml: the model was solved with {model['solver_name']!r}, not the analytic solver")
        return model


# ---- the model dict <-> arrays + JSON (no pickle)

def _encode(key: str, v: Any) -> Any:
    if isinstance(v, np.ndarray):
        if v.dtype.kind == "U" and v.ndim == 0:
            return {"str_array": str(v)}
        raise TypeError(f"sgdml model entry {key!r}: a {v.dtype} array of shape {v.shape} has no JSON form")
    if isinstance(v, bytes):
        return {"bytes": v.decode("ascii")}
    if isinstance(v, dict):
        return {"dict": {k: _encode(f"{key}.{k}", x) for k, x in v.items()}}
    if v is None or isinstance(v, (str, bool)):
        return v
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return f if math.isfinite(f) else {"float": repr(f)}
    raise TypeError(f"sgdml model entry {key!r}: cannot store a {type(v).__name__} in the artifact")


def _decode(v: Any) -> Any:
    if isinstance(v, dict):
        ((tag, x),) = v.items()
        if tag == "str_array":
            return np.array(x)
        if tag == "bytes":
            return x.encode("ascii")
        if tag == "dict":
            return {k: _decode(y) for k, y in x.items()}
        if tag == "float":
            return float(x)
        raise ValueError(f"sgdml artifact: unknown entry tag {tag!r}")
    return v


def _split_model(model: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    arrays, scalars = {}, {}
    for k, v in model.items():
        if isinstance(v, np.ndarray) and v.dtype.kind in "biuf":
            arrays[_ARRAY_PREFIX + k] = v
        else:
            scalars[k] = _encode(k, v)
    return arrays, scalars


@register_model
class SGDMLForceField(ForceField):
    """A fitted sGDML model (the library's model dict) with the featurizer's domain and the energy scaler's bookkeeping.

    Build one with :meth:`fit` (or :meth:`fit_from_settings`); load one with ``from_artifact`` /
    :func:`qnnff.models.factory.load_model`. Energies in eV, forces in eV/Angstrom, positions in Angstrom.
    """

    kind = "sgdml"
    #: what :meth:`n_parameters` counts, for tables
    parameter_label: ClassVar[str] = "kernel coefficients"
    #: a given training set and kernel width give one model: one run per system, no spread over seeds
    deterministic: ClassVar[bool] = True
    #: what :meth:`model_inputs` returns, for the information floor's table entry
    inputs_label: ClassVar[str] = "inverse interatomic distances"

    def __init__(self, *, sgdml_model: dict[str, Any], featurizer: Featurizer, energy_scaler: EnergyScaler,
                 fit_info: dict[str, Any] | None = None, seed: int = 0) -> None:
        symbols = list(featurizer.symbols)
        if not symbols:
            raise ValueError("sgdml model: the featurizer names no atoms (Featurizer(symbols=...) is empty)")
        super().__init__(symbols=symbols, energy_scaler=energy_scaler)
        model = dict(sgdml_model)
        for key in ("type", "z", "R_desc", "R_d_desc_alpha", "alphas_F", "perms", "tril_perms_lin", "sig", "c", "std"):
            if key not in model:
                raise ValueError(f"sgdml model: the library's model dict has no {key!r} entry")
        if str(model["type"]) != "m":
            raise ValueError(f"sgdml model: the dict is of sgdml type {model['type']!r}, not a model ('m')")
        z = [int(a) for a in np.asarray(model["z"])]
        want = [atomic_numbers[s] for s in symbols]
        if z != want:
            raise ValueError(f"sgdml model: its atomic numbers {z} are not the featurizer's atoms {symbols} ({want})")
        units = (str(model.get("r_unit", "")), str(model.get("e_unit", "")))
        if units != ("Ang", "eV"):
            raise ValueError(f"sgdml model: units (r_unit, e_unit) = {units}, qnnff needs ('Ang', 'eV')")
        if not bool(model.get("use_E", False)):
            raise ValueError("sgdml model: trained without energies (use_E=False); its energies would lack the integration constant")
        self.featurizer = featurizer
        self.sgdml_model = model
        self.fit_info = dict(fit_info or {})
        self.seed = int(seed)
        self._gdml: Any = None

    # ---- fitting
    @classmethod
    def fit(
        cls,
        *,
        positions: np.ndarray,
        energies: np.ndarray,
        forces: np.ndarray,
        symbols: Sequence[str],
        featurizer: Featurizer,
        energy_scaler: EnergyScaler,
        sigmas: Sequence[int] = DEFAULT_SIGMAS,
        validation_fraction: float = 0.2,
        seed: int = 0,
        energy_constraints: bool = False,
        lam: float = DEFAULT_LAMBDA,
        max_processes: int = 1,
        name: str | None = None,
        theory: str = "unknown",
    ) -> SGDMLForceField:
        """Fit an sGDML model on a training set, its kernel width chosen on a held-out part of it (module docstring).

        ``positions`` [M, N, 3] Angstrom, ``energies`` [M] eV, ``forces`` [M, N, 3] eV/Angstrom (a
        ``train.extxyz``'s ``REF_energy`` / ``REF_forces``), ``symbols`` the N chemical symbols (the featurizer's);
        ``sigmas`` the candidate kernel widths (positive integers), ``validation_fraction`` the share of the training
        set held out to choose among them (rounded to a whole number of points, at least one, and at least two points
        left to fit), ``seed`` the draw of that share. ``energy_constraints``: include the energy labels in the kernel
        (sgdml's ``use_E_cstr``). ``lam``: the kernel's regularisation. ``max_processes``: the library's worker
        processes for the kernel assembly (1: none; the library's pool keeps one process idle, so 2 is no faster than 1).
        ``name`` / ``theory`` label the sGDML dataset (default name: the symbols joined).
        """
        t_start = time.perf_counter()
        symbols = list(symbols)
        if list(featurizer.symbols) != symbols:
            raise ValueError(f"sgdml fit: symbols {symbols} are not the featurizer's {list(featurizer.symbols)}")
        unknown = [s for s in symbols if s not in atomic_numbers]
        if unknown:
            raise ValueError(f"sgdml fit: unknown chemical symbol(s) {unknown}")
        R = np.asarray(positions, dtype=np.float64)
        E = np.asarray(energies, dtype=np.float64)
        F = np.asarray(forces, dtype=np.float64)
        n_atoms = len(symbols)
        if R.ndim != 3 or R.shape[1:] != (n_atoms, 3):
            raise ValueError(f"sgdml fit: positions must have shape [M, {n_atoms}, 3] (Angstrom), got {R.shape}")
        M = R.shape[0]
        if E.shape != (M,):
            raise ValueError(f"sgdml fit: energies must have shape [{M}] (eV), one per geometry, got {E.shape}")
        if F.shape != R.shape:
            raise ValueError(f"sgdml fit: forces must have the positions' shape {R.shape} (eV/Angstrom), got {F.shape}")
        for what, a in (("positions", R), ("energies", E), ("forces", F)):
            if not np.isfinite(a).all():
                raise ValueError(f"sgdml fit: {what} contain NaN or infinite values (frame(s) "
                                 f"{sorted({int(i) for i in np.nonzero(~np.isfinite(a))[0]})[:10]})")
        cands = _check_sigmas(sigmas)
        if not 0.0 < float(validation_fraction) < 1.0:
            raise ValueError(f"sgdml fit: validation_fraction must lie in (0, 1), got {validation_fraction}")
        n_val = max(1, round(float(validation_fraction) * M))
        if M - n_val < 2:
            raise ValueError(f"sgdml fit: {M} training points leave {M - n_val} to fit after holding out {n_val} "
                             f"(validation_fraction {validation_fraction}); need at least 2")
        z = np.array([atomic_numbers[s] for s in symbols], dtype=np.int64)
        name = name if name is not None else "".join(symbols)

        order = np.random.default_rng(int(seed)).permutation(M)
        val_idx, fit_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
        full = _dataset(R, E, F, z, name, theory)
        fitter = _Fitter(full, energy_constraints=energy_constraints, lam=lam, max_processes=max_processes)
        sub = _dataset(R[fit_idx], E[fit_idx], F[fit_idx], z, name, theory)

        validation = []
        t_sel = time.perf_counter()
        for sig in cands:
            t0 = time.perf_counter()
            e_val, f_val = _predictor(fitter.fit(sub, sig)).predict(R[val_idx].reshape(n_val, -1))
            rmse_e, rmse_f = _rmse(e_val, E[val_idx]), _rmse(f_val.reshape(n_val, n_atoms, 3), F[val_idx])
            validation.append({
                "sigma": sig,
                "rmse_e_meV": _MEV * rmse_e,
                "rmse_f_meV_per_A": _MEV * rmse_f,
                "rmse_e_scaled": rmse_e / energy_scaler.scale,
                "rmse_f_scaled_per_A": rmse_f / energy_scaler.scale,
                "seconds": round(time.perf_counter() - t0, 3),
            })
        selection_seconds = time.perf_counter() - t_sel
        best = min(range(len(cands)), key=lambda i: validation[i]["rmse_f_meV_per_A"])  # first of equals: the earlier one
        sigma = cands[best]
        if len(cands) > 1 and sigma in (min(cands), max(cands)):
            log.warning("sgdml %s: the chosen kernel width sigma=%d is at the %s end of the candidates %s (validation "
                        "RMSE(F) %.3g meV/A); the optimum may lie beyond them", name, sigma,
                        "lower" if sigma == min(cands) else "upper", cands, validation[best]["rmse_f_meV_per_A"])

        t0 = time.perf_counter()
        model = fitter.fit(full, sigma)
        final_seconds = time.perf_counter() - t0
        fit_info = {
            "library": f"sgdml {sgdml_library().version}",
            "selection_criterion": SELECTION_CRITERION,
            "sigmas": cands,
            "sigma": sigma,
            "validation": validation,
            "validation_fraction": float(validation_fraction),
            "validation_seed": int(seed),
            "n_train": int(M),
            "n_fit_for_selection": int(len(fit_idx)),
            "n_validation": int(n_val),
            "n_symmetries": int(np.asarray(model["perms"]).shape[0]),
            "energy_constraints": bool(energy_constraints),
            "lam": float(lam),
            "solver": str(model["solver_name"]),
            "selection_seconds": round(selection_seconds, 3),
            "final_fit_seconds": round(final_seconds, 3),
            "fit_seconds": round(time.perf_counter() - t_start, 3),
        }
        return cls(sgdml_model=model, featurizer=featurizer, energy_scaler=energy_scaler, fit_info=fit_info, seed=seed)

    @classmethod
    def fit_from_settings(cls, settings: Any, *, seed: int, featurizer: Featurizer, energy_scaler: EnergyScaler,
                          positions: np.ndarray, energies: np.ndarray, forces: np.ndarray, max_processes: int = 1,
                          name: str | None = None, theory: str = "unknown") -> SGDMLForceField:
        """:meth:`fit` with the kernel settings of ``settings`` (attributes ``sigmas``, ``validation_fraction`` and,
        optional, ``energy_constraints`` and ``lam``); ``seed`` draws the validation split."""
        return cls.fit(positions=positions, energies=energies, forces=forces, symbols=featurizer.symbols, featurizer=featurizer,
                       energy_scaler=energy_scaler, sigmas=settings.sigmas, validation_fraction=settings.validation_fraction,
                       seed=seed, energy_constraints=bool(getattr(settings, "energy_constraints", False)),
                       lam=float(getattr(settings, "lam", DEFAULT_LAMBDA)), max_processes=max_processes, name=name, theory=theory)

    @classmethod
    def from_settings(cls, settings: Any, *, seed: int, featurizer: Featurizer, energy_scaler: EnergyScaler,
                      train_positions: np.ndarray) -> SGDMLForceField:
        """Not available: an sGDML model is fitted in closed form on energies and forces, which this constructor does not
        receive; it has no fresh, untrained state. Use :meth:`fit_from_settings` (or :meth:`fit`)."""
        raise NotImplementedError("sgdml: an sGDML model is fitted in closed form on the training energies and forces, not "
                                  "built fresh and trained by gradient steps: use SGDMLForceField.fit_from_settings(...)")

    # ---- what the model is
    @property
    def sigma(self) -> int:
        """The kernel width of the fitted model."""
        return int(self.sgdml_model["sig"])

    @property
    def n_symmetries(self) -> int:
        """The number of atom permutations the kernel is symmetrised over (1: only the identity)."""
        return int(np.asarray(self.sgdml_model["perms"]).shape[0])

    @property
    def n_train(self) -> int:
        return int(np.asarray(self.sgdml_model["R_desc"]).shape[1])

    def n_parameters(self) -> int:
        """Kernel coefficients: n_train * 3 * n_atoms force coefficients (+ n_train energy coefficients with
        ``energy_constraints``) + 1 integration constant."""
        n = int(np.asarray(self.sgdml_model["alphas_F"]).size) + 1
        if "alphas_E" in self.sgdml_model:
            n += int(np.asarray(self.sgdml_model["alphas_E"]).size)
        return n

    def sgdml_model_dict(self) -> dict[str, Any]:
        """The library's model dict (as ``GDMLTrain.train`` returned it; a shallow copy)."""
        return dict(self.sgdml_model)

    # ---- domain: the featurizer's (as for the QNN and NN of the same system)
    def out_of_domain(self, positions: torch.Tensor) -> torch.Tensor:
        """bool [B]: a scaled internal coordinate left [-1, 1] (the featurizer's training range with its margin)."""
        return self.featurizer.out_of_domain(torch.as_tensor(positions, dtype=torch.float64).detach())

    def domain_message(self, positions: torch.Tensor) -> str:
        feat = self.featurizer
        pos = torch.as_tensor(positions, dtype=torch.float64).detach()
        with torch.no_grad():
            q = feat.internal(pos)[0]
            s = feat.scale(q.unsqueeze(0))[0]
        return domain_error_message(self.kind, feat.coordinate_labels(), q.tolist(), s.tolist(), feat.lo.tolist(), feat.hi.tolist())

    def model_inputs(self, positions: torch.Tensor) -> torch.Tensor:
        """The library's descriptor [B, N(N-1)/2]: the inverse interatomic distances 1/|r_i - r_j| (1/Angstrom), pairs
        i > j in row order of the lower triangle; the kernel sees nothing else (it compares these vectors, permuted)."""
        return inverse_distances(positions)

    # ---- predictions
    def _library_predictor(self) -> Any:
        if self._gdml is None:
            self._gdml = _predictor(self.sgdml_model)
        return self._gdml

    def predict_numpy(self, positions: torch.Tensor | np.ndarray, *, check: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(energies [B] eV, forces [B, N, 3] eV/Angstrom) as numpy arrays, from ``GDMLPredict.predict``; ``check`` as
        for :meth:`energy`."""
        pos = self.check_domain(positions) if check else self.check_positions(positions)
        B, n = pos.shape[0], len(self.symbols)
        R = np.ascontiguousarray(pos.detach().numpy(), dtype=np.float64).reshape(B, 3 * n)
        if B == 0:
            return np.zeros(0), np.zeros((0, n, 3))
        e, f = self._library_predictor().predict(R)
        return np.asarray(e, dtype=np.float64), np.asarray(f, dtype=np.float64).reshape(B, n, 3)

    def energy(self, positions: torch.Tensor | np.ndarray, *, check: bool = True) -> torch.Tensor:
        """Energies [B] in eV (float64, no autograd graph). ``check=False`` skips :meth:`check_domain` (overlapping atoms,
        the domain); NaN/inf positions are a ValueError either way."""
        return torch.from_numpy(self.predict_numpy(positions, check=check)[0])

    def energy_and_forces(self, positions: torch.Tensor | np.ndarray, *, create_graph: bool = False,
                          check: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """(energies [B] eV, forces [B, N, 3] eV/Angstrom), float64; the forces are the library's analytic -dE/dR.
        ``check`` as for :meth:`energy`. ``create_graph=True`` is a ValueError: the predictions carry no torch graph."""
        if create_graph:
            raise ValueError("sgdml: predictions come from the sgdml library in numpy; there is no torch graph to create "
                             "(create_graph=True): an sGDML model is not trained by gradient steps")
        e, f = self.predict_numpy(positions, check=check)
        return torch.from_numpy(e), torch.from_numpy(f)

    def scaled_energy(self, positions: torch.Tensor) -> torch.Tensor:
        """y = (E - center) / scale [B] (the energy scaler's units; no torch graph)."""
        e = self.predict_numpy(positions, check=False)[0]
        return torch.from_numpy((e - self.energy_scaler.center) / self.energy_scaler.scale)

    def scaled_energy_and_forces(self, batch: TrainingBatch, *, create_graph: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Scaled (y [B], f [B, N, 3]) = ((E - center) / scale, F / scale) of ``batch.positions``, for evaluation on the
        scaled targets; ``batch.x`` / ``batch.jac`` are ignored. No torch graph, whatever ``create_graph`` says (there is
        nothing to differentiate with respect to: the model has no torch parameters)."""
        e, f = self.predict_numpy(batch.positions, check=False)
        sc = self.energy_scaler
        return torch.from_numpy((e - sc.center) / sc.scale), torch.from_numpy(f / sc.scale)

    # ---- persistence
    def to_artifact(self) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, bytes]]:
        arrays, scalars = _split_model(self.sgdml_model)
        meta = {"featurizer": self.featurizer.to_dict(), "sgdml_model": scalars, "sgdml_arrays": sorted(arrays),
                "fit": self.fit_info, "seed": self.seed, "n_parameters": self.n_parameters(),
                "parameter_label": self.parameter_label, "sigma": self.sigma, "n_symmetries": self.n_symmetries,
                "units": {"positions": "Angstrom", "energy": "eV", "forces": "eV/Angstrom"}}
        return arrays, meta, {}

    @classmethod
    def from_artifact(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any], blobs: dict[str, bytes]) -> SGDMLForceField:
        listed = sorted(meta.get("sgdml_arrays", []))
        found = sorted(k for k in arrays if k.startswith(_ARRAY_PREFIX))
        if listed != found:
            raise ValueError(f"sgdml artifact: arrays {found} are not the ones its meta lists {listed}")
        model = {k[len(_ARRAY_PREFIX):]: np.asarray(v) for k, v in arrays.items() if k.startswith(_ARRAY_PREFIX)}
        model.update({k: _decode(v) for k, v in meta["sgdml_model"].items()})
        featurizer = Featurizer.from_dict(meta["featurizer"])
        if list(meta.get("symbols", featurizer.symbols)) != list(featurizer.symbols):
            raise ValueError(f"sgdml artifact: symbols {meta.get('symbols')} are not its featurizer's {featurizer.symbols}")
        ff = cls(sgdml_model=model, featurizer=featurizer, energy_scaler=EnergyScaler.from_dict(meta["energy_scaler"]),
                 fit_info=meta.get("fit", {}), seed=int(meta.get("seed", 0)))
        if ff.n_parameters() != meta["n_parameters"]:
            raise ValueError(f"sgdml artifact: rebuilt {ff.n_parameters()} kernel coefficients, artifact says {meta['n_parameters']}")
        return ff

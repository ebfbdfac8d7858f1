"""The paper's figures, in one consistent matplotlib style; every figure is written as PNG and PDF."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .io import atomic_path
from .kinds import KINDS

# the reference and the registered model kinds (qnnff.kinds)
COLORS = {"dft": "black", **{k.name: k.color for k in KINDS.values()}}
LABELS = {"dft": "DFT", **{k.name: k.short_label for k in KINDS.values()}}
MARKERS = {k.name: k.marker for k in KINDS.values()}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({
        "figure.dpi": 120, "savefig.dpi": 200, "font.size": 10, "axes.grid": True, "grid.alpha": 0.3,
        "axes.spines.top": False, "axes.spines.right": False, "legend.frameon": False, "svg.hashsalt": "qnnff",
        "pdf.compression": 6,
    })
    return plt


def save(fig, png: str | Path, pdf: str | Path | None = None) -> None:
    """Write the figure atomically; PDFs carry no creation date so reruns give identical files."""
    with atomic_path(png) as tmp:
        fig.savefig(tmp, bbox_inches="tight", metadata={"Software": None})
    if pdf is not None:
        with atomic_path(pdf) as tmp:
            fig.savefig(tmp, bbox_inches="tight", metadata={"CreationDate": None, "ModDate": None, "Producer": None, "Creator": None})
    _plt().close(fig)


def curve_1d(x: np.ndarray, curves: Mapping[str, tuple[np.ndarray, np.ndarray]], ref_x: np.ndarray, ref_e: np.ndarray,
             ref_f: np.ndarray, *, xlabel: str, title: str, png: str, pdf: str, test_x=None, test_e=None, test_f=None,
             ref_label: str = "DFT (train)", force_label: str = "force along the bond (eV/Å)",
             bands: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] | None = None) -> None:
    """Energy and force along one coordinate: models as lines (the median seed), the spread over seeds as a band
    (``bands``: kind -> (E min, E max, F min, F max)), DFT points as markers (train: filled, test: open)."""
    plt = _plt()
    fig, (ax_e, ax_f) = plt.subplots(1, 2, figsize=(9, 3.6))
    for kind, (e, f) in curves.items():
        ax_e.plot(x, e, color=COLORS.get(kind), label=LABELS.get(kind, kind))
        ax_f.plot(x, f, color=COLORS.get(kind), label=LABELS.get(kind, kind))
        if bands and kind in bands:
            lo_e, hi_e, lo_f, hi_f = bands[kind]
            ax_e.fill_between(x, lo_e, hi_e, color=COLORS.get(kind), alpha=0.2, lw=0)
            ax_f.fill_between(x, lo_f, hi_f, color=COLORS.get(kind), alpha=0.2, lw=0)
    ax_e.plot(ref_x, ref_e, "o", ms=3, color="black", label=ref_label)
    ax_f.plot(ref_x, ref_f, "o", ms=3, color="black", label=ref_label)
    if test_x is not None:
        ax_e.plot(test_x, test_e, "o", ms=4, mfc="none", color="black", label="DFT (test)")
        ax_f.plot(test_x, test_f, "o", ms=4, mfc="none", color="black", label="DFT (test)")
    ax_e.set(xlabel=xlabel, ylabel="energy (eV)", title=f"{title}: energy")
    ax_f.set(xlabel=xlabel, ylabel=force_label, title=f"{title}: force")
    ax_e.legend()
    fig.tight_layout()
    save(fig, png, pdf)


def parity(data: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]], *, title: str, png: str, pdf: str) -> None:
    """Parity plots: kind -> (E_ref, E_pred, F_ref, F_pred) in eV, eV/Å (energies relative to the DFT minimum)."""
    plt = _plt()
    fig, (ax_e, ax_f) = plt.subplots(1, 2, figsize=(9, 4))
    e0 = min(float(np.min(v[0])) for v in data.values())
    for kind, (er, ep, fr, fp) in data.items():
        ax_e.plot(er - e0, ep - e0, MARKERS.get(kind, "o"), ms=3, alpha=0.7, color=COLORS.get(kind), label=LABELS.get(kind, kind))
        ax_f.plot(np.ravel(fr), np.ravel(fp), MARKERS.get(kind, "o"), ms=2, alpha=0.5, color=COLORS.get(kind), label=LABELS.get(kind, kind))
    for ax in (ax_e, ax_f):
        lo, hi = ax.get_xlim()
        ax.plot([lo, hi], [lo, hi], "--", color="grey", lw=0.8)
        ax.set_aspect("equal", adjustable="datalim")
    ax_e.set(xlabel="DFT energy - min (eV)", ylabel="model energy - min (eV)", title=f"{title}: energy (test set)")
    ax_f.set(xlabel="DFT force component (eV/Å)", ylabel="model force component (eV/Å)", title=f"{title}: forces (test set)")
    ax_e.legend()
    fig.tight_layout()
    save(fig, png, pdf)


def learning_curves(curves: Mapping[str, Mapping[str, tuple[np.ndarray, ...]]], *, png: str, pdf: str) -> None:
    """system -> kind -> (iteration, loss of the median seed[, min over seeds, max over seeds])."""
    plt = _plt()
    n = len(curves)
    fig, axes = plt.subplots(1, n, figsize=(4 * n, 3.4), squeeze=False)
    for ax, (system, per_kind) in zip(axes[0], curves.items()):
        for kind, (it, loss, *band) in per_kind.items():
            ax.semilogy(it, loss, color=COLORS.get(kind), label=LABELS.get(kind, kind))
            if band:
                ax.fill_between(it, band[0], band[1], color=COLORS.get(kind), alpha=0.2, lw=0)
        ax.set(xlabel="iteration (Adam step / L-BFGS or COBYLA evaluation)", ylabel="training loss (scaled units)", title=system)
        ax.legend()
    fig.tight_layout()
    save(fig, png, pdf)


def effdim_bars(values: Mapping[str, Mapping[str, tuple[float, float]]], *, png: str, pdf: str) -> None:
    """system -> kind -> (d_n/d mean, sd over Monte-Carlo draws)."""
    plt = _plt()
    systems = list(values)
    kinds = [k for k in KINDS if any(k in v for v in values.values())]
    w = 0.8 / max(len(kinds), 1)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for j, k in enumerate(kinds):
        xs = [i + (j - (len(kinds) - 1) / 2) * w for i, s in enumerate(systems) if k in values[s]]
        ys = [values[s][k][0] for s in systems if k in values[s]]
        err = [values[s][k][1] for s in systems if k in values[s]]
        ax.bar(xs, ys, width=w, yerr=err, capsize=3, color=COLORS.get(k), label=LABELS.get(k, k))
    ax.set_xticks(range(len(systems)), systems)
    ax.set(ylabel="normalised effective dimension $d_n/d$", title="Effective dimension at n = training-set size")
    ax.set_ylim(bottom=0)
    ax.legend()
    fig.tight_layout()
    save(fig, png, pdf)


def effdim_vs_n(curves: Mapping[str, Mapping[str, tuple[Sequence[int], Sequence[float], Sequence[float]]]], *, png: str, pdf: str) -> None:
    """system -> kind -> (n, d_n/d mean, sd over Monte-Carlo draws)."""
    plt = _plt()
    n = len(curves)
    fig, axes = plt.subplots(1, n, figsize=(4 * n, 3.4), squeeze=False)
    for ax, (system, per_kind) in zip(axes[0], curves.items()):
        for kind, (ns, d, sd) in per_kind.items():
            ax.errorbar(ns, d, yerr=sd, fmt="-o", ms=3, capsize=2, color=COLORS.get(kind), label=LABELS.get(kind, kind))
        ax.set_xscale("log")
        ax.set(xlabel="number of data points n", ylabel="$d_n/d$", title=system)
        ax.set_ylim(bottom=0)
        ax.legend()
    fig.tight_layout()
    save(fig, png, pdf)


def md_distance(traces: Mapping[str, tuple[np.ndarray, np.ndarray]], *, title: str, png: str, pdf: str) -> None:
    """kind -> (time in fs, distance in Å)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.4))
    # other runs (e.g. shot-noise MD), dotted, in colours no registered kind uses
    extra = iter([c for c in ("#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f") if c not in COLORS.values()])
    for kind, (t, r) in traces.items():
        known = kind in COLORS
        ax.plot(t, r, color=COLORS[kind] if known else next(extra, None), lw=1.2 if kind == "dft" else 1.0,
                ls="-" if kind == "dft" else ("--" if known else ":"), label=LABELS.get(kind, kind))
    ax.set(xlabel="time (fs)", ylabel="interatomic distance (Å)", title=title)
    ax.legend()
    fig.tight_layout()
    save(fig, png, pdf)

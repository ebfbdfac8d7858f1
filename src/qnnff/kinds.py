"""The model kinds: the one place a kind is registered (config/README.md, "Adding a model kind").

A :class:`ModelKind` names everything the pipeline needs to know about a kind, without importing it:

* ``name``: its block under ``systems.{system}.models`` (and the schema's ``$defs`` entry of the same name), the
  ``kind`` of its artifacts and the ``{kind}`` of its result paths;
* ``settings``: its settings class in :mod:`qnnff.settings` (the architecture parsed from that block), which
  :func:`qnnff.settings.model_settings_of` returns;
* ``model_class`` in ``module``: its :class:`~qnnff.models.base.ForceField` subclass, whose ``from_settings`` builds a
  fresh model and whose ``from_artifact`` loads a saved one (:func:`qnnff.models.factory.build_model_from`,
  :func:`qnnff.models.factory.load_model`);
* what tables and figures say of it (``label``, ``short_label``, ``color``, ``marker``) and what applies to it
  (``feature_model``: it sees the featurizer's features, whose information floor is its inputs'; ``quantum``: a
  circuit, evaluated on qiskit-aer with shots, noise and hardware);
* ``closed_form``: fitted in closed form on the training energies and forces (``model_class.fit_from_settings``), not
  trained by gradient steps: no optimiser protocols (its one protocol is :data:`CLOSED_FORM_PROTOCOL`), and, being
  deterministic for given data and settings, one seed (n = 1 in the tables);
* ``effdim``: the normalised effective dimension applies (a parametric model; a kernel model's table cell says why not,
  ``effdim_note``); ``parameter_label``: what its parameter count counts;
* ``paper``: the kind is in the paper's tables (QNN, NN, and n2p2 as the BPNN), so the default target ``all`` builds
  it; a kind beyond the paper (sGDML, the symmetry-invariant QNN ``eqnn``) is built by the target ``extended`` only,
  whose tables and figures are under ``results/extended/`` (README "Targets").

This module imports nothing from qnnff, so every layer can iterate over :data:`KINDS` (in this order: tables, figures
and the workflow's targets follow it).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CLOSED_FORM_PROTOCOL", "KINDS", "ModelKind", "kind_names", "model_kind"]

CLOSED_FORM_PROTOCOL = "best"  # the one protocol of a closed-form kind: it is what the scorecard holds to its targets


@dataclass(frozen=True)
class ModelKind:
    name: str
    label: str
    short_label: str
    settings: str
    module: str
    model_class: str
    feature_model: bool
    quantum: bool
    color: str
    marker: str
    closed_form: bool = False
    effdim: bool = True
    effdim_note: str = ""
    parameter_label: str = "parameters"
    paper: bool = True


KINDS: dict[str, ModelKind] = {k.name: k for k in (
    ModelKind(name="qnn", label="QNN", short_label="QNN", settings="QNNSettings", module="qnnff.models.qnn",
              model_class="QNNForceField", feature_model=True, quantum=True, color="#1f77b4", marker="o"),
    ModelKind(name="nn", label="NN", short_label="NN", settings="NNSettings", module="qnnff.models.nn",
              model_class="NNForceField", feature_model=True, quantum=False, color="#d62728", marker="s"),
    ModelKind(name="bpnn", label="BPNN (n2p2-style)", short_label="BPNN", settings="BPNNSettings", module="qnnff.models.bpnn",
              model_class="BPNNForceField", feature_model=False, quantum=False, color="#2ca02c", marker="^"),
    ModelKind(name="sgdml", label="sGDML", short_label="sGDML", settings="SGDMLSettings", module="qnnff.models.sgdml",
              model_class="SGDMLForceField", feature_model=False, quantum=False, color="#9467bd", marker="D",
              closed_form=True, effdim=False, effdim_note="n/a: kernel model", parameter_label="kernel coefficients",
              paper=False),
    ModelKind(name="eqnn", label="EQNN (symmetry-invariant QNN)", short_label="EQNN", settings="EQNNSettings",
              module="qnnff.models.eqnn", model_class="EQNNForceField", feature_model=False, quantum=True, color="#ff7f0e",
              marker="P", paper=False),
)}


def kind_names() -> tuple[str, ...]:
    """The registered kinds, in table order."""
    return tuple(KINDS)


def model_kind(name: str) -> ModelKind:
    """The registered kind ``name``; an unknown name is a ValueError that lists the known ones."""
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"unknown model kind {name!r} (known: {', '.join(KINDS)})") from None

"""Force-field models sharing one interface (:class:`qnnff.models.base.ForceField`).

The names below are loaded on first use (PEP 562): from :mod:`qnnff.models.base`, and ``load_model`` from
:mod:`qnnff.models.factory`. Importing a torch-free submodule such as :mod:`qnnff.models.artifact` (which the
workflow's start-up check of model files uses every time Snakemake parses the rules) then does not import torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ForceField", "FeatureForceField", "TrainingBatch", "load_model", "register_model"]


def __getattr__(name: str) -> Any:
    if name == "load_model":
        from .factory import load_model

        return load_model
    if name in __all__:
        from . import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Force-field models sharing one interface (:class:`qnnff.models.base.ForceField`)."""

from .base import FeatureForceField, ForceField, TrainingBatch, load_model, register_model

__all__ = ["ForceField", "FeatureForceField", "TrainingBatch", "load_model", "register_model"]

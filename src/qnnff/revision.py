"""A process-wide count of structural changes to the torch modules that cached evaluators copy numbers from.

:class:`~qnnff.qnn.frozen.FrozenQNN` (the QNN's numpy path for molecular dynamics) copies a model's weights, readout,
featurizer bounds and circuit when it is built, and must notice when the model changes afterwards, before every
force call. Two kinds of change are possible:

* values changed in place (an optimiser step, ``load_state_dict``): the evaluator compares the bytes of the tensors
  it holds views of;
* a parameter, buffer or submodule replaced by another object (``model.regressor.weights = Parameter(...)``,
  ``register_buffer``, ``add_module``): every such assignment on a :class:`Revisioned` module bumps :func:`current`,
  so the evaluator only looks the objects up again (about 5 us of ``torch.nn.Module.__getattr__`` per force call
  otherwise, 7% of an LiH MD step) when the count has moved since it last did.
"""

from __future__ import annotations

from typing import Any

_count = 0


def current() -> int:
    """The number of structural changes to :class:`Revisioned` modules in this process so far."""
    return _count


def bump() -> None:
    global _count
    _count += 1


class Revisioned:
    """Mixin for ``torch.nn.Module`` subclasses (put it first among the bases): attribute assignment and the
    ``register_*`` / ``add_module`` methods bump :func:`current` after doing what the module does."""

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        bump()

    def __delattr__(self, name: str) -> None:
        super().__delattr__(name)
        bump()

    def register_parameter(self, name: str, param: Any) -> None:
        super().register_parameter(name, param)
        bump()

    def register_buffer(self, name: str, tensor: Any, persistent: bool = True) -> None:
        super().register_buffer(name, tensor, persistent)
        bump()

    def add_module(self, name: str, module: Any) -> None:
        super().add_module(name, module)
        bump()

    def register_module(self, name: str, module: Any) -> None:
        super().register_module(name, module)
        bump()

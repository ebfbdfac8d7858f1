"""torch's L-BFGS without the 2-2.5 s import of ``torch._dynamo`` that its :class:`torch.optim.Optimizer` base pays.

``Optimizer.add_param_group``, ``zero_grad``, ``state_dict`` and ``load_state_dict`` are wrapped by
``torch._disable_dynamo`` (``torch/_compile.py``), which, on a wrapped method's first call, imports ``torch._dynamo``
to build a "do not compile this" wrapper and caches it on the method as ``__dynamo_disable``. That import costs
2-2.5 s on this machine (``python -X importtime``), more than half of a training job's start-up; qnnff never runs
``torch.compile``, so the wrapper has nothing to do. :func:`LBFGS` caches the method itself there first: the call goes
straight to it, with the same arguments and results. With another torch whose wrapper does not read that attribute,
nothing changes but the import time (``tests/test_optim.py`` checks both that the import is skipped on the pinned torch
and that the steps are bitwise those of a process that imported ``torch._dynamo``).
"""

from __future__ import annotations

from typing import Any

_WRAPPED = ("add_param_group", "zero_grad", "state_dict", "load_state_dict")


def skip_dynamo_import() -> None:
    """Make :class:`torch.optim.Optimizer`'s dynamo-disabled methods call themselves directly (see the module
    docstring). Idempotent; a method that torch does not wrap is left alone."""
    from torch.optim import Optimizer

    for name in _WRAPPED:
        method = getattr(Optimizer, name, None)
        inner = getattr(method, "__wrapped__", None)
        if inner is not None and getattr(inner, "__dynamo_disable", None) is None:
            setattr(inner, "__dynamo_disable", inner)


def LBFGS(params: Any, **kwargs: Any):  # noqa: N802 (it builds a torch.optim.LBFGS)
    """:class:`torch.optim.LBFGS` (same arguments), built after :func:`skip_dynamo_import`."""
    from torch.optim import LBFGS as TorchLBFGS

    skip_dynamo_import()
    return TorchLBFGS(params, **kwargs)

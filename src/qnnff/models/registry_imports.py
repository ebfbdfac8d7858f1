"""Importing this module registers every model kind with :func:`qnnff.models.base.load_model`."""

import importlib

for _mod in ("qnnff.models.qnn", "qnnff.models.nn", "qnnff.models.bpnn"):
    try:
        importlib.import_module(_mod)
    except ModuleNotFoundError as exc:  # a model module not written yet
        if exc.name != _mod:
            raise

"""Small I/O helpers: atomic writes so that a killed job never leaves a file that looks complete."""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds.

    The temporary name keeps the final extension (``suffix``) so that writers which dispatch on it
    (ASE, numpy, matplotlib) still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix if suffix is None else suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~current_umask())  # mkstemp creates 0600: honour the umask like open() would
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def current_umask() -> int:
    """The process umask (read by setting and restoring it; there is no read-only call)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: str | os.PathLike, obj: Any, *, strict: bool = False) -> None:
    """``obj`` as indented JSON, atomically. ``strict``: standard JSON, every non-finite number (NaN, +-infinity) written
    as ``null`` (:func:`finite_or_null`), never the ``NaN`` / ``Infinity`` literals strict parsers reject."""
    if strict:
        text = json.dumps(finite_or_null(obj), indent=2, sort_keys=True, default=_json_default, allow_nan=False)
    else:
        text = json.dumps(obj, indent=2, sort_keys=True, default=_json_default)
    write_text_atomic(path, text + "\n")


def finite_or_null(obj: Any) -> Any:
    """``obj`` with every non-finite float (Python or numpy, in dicts, lists, tuples and arrays) replaced by None."""
    import numpy as np

    if isinstance(obj, dict):
        return {k: finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_null(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return finite_or_null(obj.tolist())
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")

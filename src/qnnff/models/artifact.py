"""Model artifact: one zip file holding ``meta.json`` (config, scalers, provenance), ``arrays.npz``
(weights) and optional binary blobs (e.g. ``circuit.qpy``). Written atomically."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..io import _json_default, atomic_path

FORMAT_VERSION = 1


def save_artifact(path: str | Path, *, arrays: dict[str, np.ndarray], meta: dict[str, Any], blobs: dict[str, bytes]) -> None:
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    meta = {"format_version": FORMAT_VERSION, **meta}
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("meta.json", json.dumps(meta, indent=2, sort_keys=True, default=_json_default))
            zf.writestr("arrays.npz", buf.getvalue())
            for name, data in blobs.items():
                zf.writestr(f"blobs/{name}", data)


def load_artifact(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, bytes]]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model artifact {path} does not exist")
    try:
        with zipfile.ZipFile(path) as zf:
            meta = json.loads(zf.read("meta.json"))
            with np.load(io.BytesIO(zf.read("arrays.npz"))) as npz:
                arrays = {k: npz[k] for k in npz.files}
            blobs = {n[len("blobs/"):]: zf.read(n) for n in zf.namelist() if n.startswith("blobs/")}
    except (zipfile.BadZipFile, KeyError) as exc:
        raise ValueError(f"{path} is not a qnnff model artifact: {exc}") from exc
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: artifact format {meta.get('format_version')} is not supported (expected {FORMAT_VERSION})")
    return arrays, meta, blobs

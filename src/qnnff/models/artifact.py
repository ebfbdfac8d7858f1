"""Model artifact: one zip file holding ``meta.json`` (config, scalers, provenance), ``arrays.npz``
(weights) and optional binary blobs (e.g. ``circuit.qpy``). Written atomically."""

from __future__ import annotations

import io
import json
import os
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ..integrity import IntegrityError, fail, legacy, rebuild_hint, sha256_bytes
from ..io import _json_default, atomic_path

FORMAT_VERSION = 1


def save_artifact(path: str | Path, *, arrays: dict[str, np.ndarray], meta: dict[str, Any], blobs: dict[str, bytes]) -> None:
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    data = buf.getvalue()
    # integrity record: what load_artifact checks (on top of the zip's own CRCs)
    members = {"arrays.npz": data, **{f"blobs/{n}": b for n, b in blobs.items()}}
    integrity = {name: {"bytes": len(b), "sha256": sha256_bytes(b)} for name, b in members.items()}
    meta = {"format_version": FORMAT_VERSION, **meta, "integrity": integrity}
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("meta.json", json.dumps(meta, indent=2, sort_keys=True, default=_json_default))
            for name, b in members.items():
                zf.writestr(name, b)


def load_artifact(path: str | Path, *, warn_legacy: bool = True) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, bytes]]:
    """Arrays, meta and blobs of a model artifact, verified against the integrity record its writer stored (sizes and
    sha256 of every member); a damaged file raises :class:`~qnnff.integrity.IntegrityError` with the rebuild command."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model artifact {path} does not exist")
    try:
        with zipfile.ZipFile(path) as zf:
            meta = json.loads(zf.read("meta.json"))
            members = {n: zf.read(n) for n in zf.namelist() if n != "meta.json"}
    except (zipfile.BadZipFile, KeyError, EOFError, OSError, ValueError, zlib.error) as exc:
        raise IntegrityError(f"{path} is not a readable qnnff model artifact ({type(exc).__name__}: {exc}); "
                             f"{rebuild_hint(path)}") from exc
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: artifact format {meta.get('format_version')} is not supported (expected {FORMAT_VERSION})")
    record = meta.get("integrity")
    if record is None:
        legacy(path, warn_legacy)
        record = {}
    elif sorted(record) != sorted(members):
        raise fail(path, "members", sorted(record), sorted(members))
    for name, rec in record.items():
        found = {"bytes": len(members[name]), "sha256": sha256_bytes(members[name])}
        if found != rec:
            raise fail(path, f"member {name}", rec, found)
    with np.load(io.BytesIO(members["arrays.npz"])) as npz:
        arrays = {k: npz[k] for k in npz.files}
    blobs = {n[len("blobs/"):]: b for n, b in members.items() if n.startswith("blobs/")}
    return arrays, meta, blobs


def damaged_models(root: str | os.PathLike = ".") -> list[str]:
    """Problems of every existing ``results/**/model.zip`` under ``root`` (one line each, with the rebuild command).

    Run at workflow start-up (``workflow/rules/common.smk``): a damaged model stops the run *before* any job starts,
    so Snakemake never fails the MD/effective-dimension jobs that read it -- which would delete their valid outputs.
    """
    problems = []
    for p in sorted(Path(root).glob("results/**/model.zip")):
        try:
            load_artifact(p, warn_legacy=False)  # (an unverifiable older artifact is warned about where it is read)
        except (IntegrityError, ValueError) as exc:
            problems.append(str(exc))
    return problems

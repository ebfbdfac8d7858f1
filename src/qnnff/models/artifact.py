"""Model artifact: one zip file holding ``meta.json`` (config, scalers, provenance), ``arrays.npz`` (weights), optional
binary blobs (e.g. ``blobs/circuit.qpy``) and ``integrity.json``, the integrity record: the size and sha256 of every
other member, ``meta.json`` included. Written atomically.

:func:`load_artifact` verifies every member against the record; an edited member (say the energy centre in
``meta.json``), an extra or a missing member, or a missing record is an :class:`~qnnff.integrity.IntegrityError`
naming the file and the member. A model you trust (you edited it on purpose, or it was written by a qnnff older than
the record, whose record lived in ``meta.json`` and did not cover it) is re-stamped with::

    python -m qnnff.models.artifact restamp PATH [PATH ...]

which rewrites the record from the members as they are (and prints what changed since the old one).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ..integrity import IntegrityError, fail, rebuild_hint, sha256_bytes
from ..io import _json_default, atomic_path

FORMAT_VERSION = 1
RECORD = "integrity.json"  # the integrity record: {"version": RECORD_VERSION, "members": {name: {"bytes", "sha256"}}}
RECORD_VERSION = 1
RESTAMP = "python -m qnnff.models.artifact restamp"


def _record(members: dict[str, bytes]) -> bytes:
    rec = {"version": RECORD_VERSION,
           "members": {name: {"bytes": len(b), "sha256": sha256_bytes(b)} for name, b in sorted(members.items())}}
    return json.dumps(rec, indent=2, sort_keys=True).encode()


def _write_zip(path: str | Path, members: dict[str, bytes]) -> None:
    """``members`` and their integrity record, atomically (a temporary file renamed over ``path``)."""
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name, b in members.items():
                zf.writestr(name, b)
            zf.writestr(RECORD, _record(members))


def save_artifact(path: str | Path, *, arrays: dict[str, np.ndarray], meta: dict[str, Any], blobs: dict[str, bytes]) -> None:
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    meta = {"format_version": FORMAT_VERSION, **{k: v for k, v in meta.items() if k != "integrity"}}
    members = {"meta.json": json.dumps(meta, indent=2, sort_keys=True, default=_json_default).encode(),
               "arrays.npz": buf.getvalue(), **{f"blobs/{n}": b for n, b in blobs.items()}}
    _write_zip(path, members)


def _read_members(path: Path) -> dict[str, bytes]:
    try:
        with zipfile.ZipFile(path) as zf:
            return {n: zf.read(n) for n in zf.namelist()}
    except (zipfile.BadZipFile, KeyError, EOFError, OSError, ValueError, zlib.error) as exc:
        raise IntegrityError(f"{path} is not a readable qnnff model artifact ({type(exc).__name__}: {exc}); "
                             f"{rebuild_hint(path)}") from exc


def _restamp_hint(path: str | Path) -> str:
    return f"if you trust this model as it is (e.g. you edited it on purpose), re-stamp it with: {RESTAMP} '{path}'"


def _check_record(path: Path, members: dict[str, bytes]) -> None:
    """Every member against the record (an IntegrityError naming the file and the member otherwise)."""
    if RECORD not in members:
        meta = _meta_or_none(members)
        old = ("its record (in meta.json, written by a qnnff before issue 26.7) does not cover meta.json"
               if isinstance(meta, dict) and "integrity" in meta else "it has no integrity record")
        raise IntegrityError(f"{path}: no integrity record ({RECORD}) covering every member: {old}, so an edit of any "
                             f"member would go unnoticed; {_restamp_hint(path)}; else {rebuild_hint(path)}")
    try:
        record = json.loads(members[RECORD])["members"]
        if not isinstance(record, dict):
            raise TypeError(f"members is a {type(record).__name__}")
    except (ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(f"{path}: member {RECORD} is not an integrity record ({type(exc).__name__}: {exc}); "
                             f"{_restamp_hint(path)}; else {rebuild_hint(path)}") from exc
    found_names = sorted(n for n in members if n != RECORD)
    if sorted(record) != found_names:
        err = fail(path, "members", sorted(record), found_names)
        raise IntegrityError(f"{err}; {_restamp_hint(path)}")
    for name in found_names:
        found = {"bytes": len(members[name]), "sha256": sha256_bytes(members[name])}
        if found != record[name]:
            raise IntegrityError(f"{fail(path, f'member {name}', record[name], found)}; {_restamp_hint(path)}")


def _meta_or_none(members: dict[str, bytes]) -> Any:
    try:
        return json.loads(members["meta.json"])
    except (KeyError, ValueError):
        return None


def load_artifact(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, bytes]]:
    """Arrays, meta and blobs of a model artifact, verified against its integrity record (size and sha256 of every
    member, meta.json included); a damaged or edited file, or one without a record, raises
    :class:`~qnnff.integrity.IntegrityError` naming the member, with the rebuild and re-stamp commands."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model artifact {path} does not exist")
    members = _read_members(path)
    if "meta.json" not in members or "arrays.npz" not in members:
        missing = [n for n in ("meta.json", "arrays.npz") if n not in members]
        raise IntegrityError(f"{path} is not a qnnff model artifact: no member {', '.join(missing)}; {rebuild_hint(path)}")
    _check_record(path, members)
    try:
        meta = json.loads(members["meta.json"])
    except ValueError as exc:
        raise IntegrityError(f"{path}: member meta.json is not JSON ({exc}); {rebuild_hint(path)}") from exc
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: artifact format {meta.get('format_version')} is not supported (expected {FORMAT_VERSION})")
    with np.load(io.BytesIO(members["arrays.npz"])) as npz:
        arrays = {k: npz[k] for k in npz.files}
    blobs = {n[len("blobs/"):]: b for n, b in members.items() if n.startswith("blobs/")}
    return arrays, meta, blobs


def restamp(path: str | Path) -> list[str]:
    """Rewrite the integrity record of the model artifact at ``path`` from its members as they are (for a model you
    trust); returns the members whose bytes differ from the old record (all of them, or the ones it did not cover, for
    an old record). The members must be readable: meta.json JSON of this format, arrays.npz an npz."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model artifact {path} does not exist")
    members = _read_members(path)
    old = members.pop(RECORD, None)
    meta = _meta_or_none(members)
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION or "arrays.npz" not in members:
        raise IntegrityError(f"{path} is not a qnnff model artifact of format {FORMAT_VERSION} (meta.json unreadable, "
                             f"of another format, or arrays.npz missing): not re-stamped; {rebuild_hint(path)}")
    try:
        with np.load(io.BytesIO(members["arrays.npz"])) as npz:
            _ = {k: npz[k] for k in npz.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, zlib.error) as exc:
        raise IntegrityError(f"{path}: member arrays.npz is unreadable ({exc}): not re-stamped; {rebuild_hint(path)}") from exc
    try:
        previous = json.loads(old)["members"] if old is not None else meta.get("integrity") or {}
    except (ValueError, KeyError, TypeError):
        previous = {}
    changed = [n for n, b in members.items() if previous.get(n) != {"bytes": len(b), "sha256": sha256_bytes(b)}]
    stat = path.stat()
    _write_zip(path, members)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # the same model: Snakemake must not see a new file
    return changed


def main(argv: list[str] | None = None) -> int:
    """``python -m qnnff.models.artifact restamp PATH [PATH ...]``."""
    ap = argparse.ArgumentParser(prog="python -m qnnff.models.artifact",
                                 description="Re-stamp the integrity record of model artifacts you trust.")
    sub = ap.add_subparsers(dest="command", required=True)
    rs = sub.add_parser("restamp", help="rewrite the integrity record of each model.zip from its members as they are")
    rs.add_argument("paths", nargs="+", metavar="PATH")
    args = ap.parse_args(argv)
    status = 0
    for p in args.paths:
        try:
            changed = restamp(p)
        except (OSError, IntegrityError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = 1
            continue
        print(f"restamped {p}" + (f" (not covered by its old record, or changed: {', '.join(changed)})" if changed else ""))
    return status


def damaged_models(root: str | os.PathLike = ".") -> list[str]:
    """Problems of every existing ``results/**/model.zip`` under ``root`` (one line each, with the rebuild command).

    Run at workflow start-up (``workflow/rules/common.smk``): a damaged model stops the run *before* any job starts,
    so Snakemake never fails the MD/effective-dimension jobs that read it -- which would delete their valid outputs.
    """
    problems = []
    for p in sorted(Path(root).glob("results/**/model.zip")):
        try:
            load_artifact(p)
        except (IntegrityError, ValueError) as exc:
            problems.append(str(exc))
    return problems


if __name__ == "__main__":
    sys.exit(main())

"""Integrity records: every writer of a dataset, feature file or model artifact records what it wrote, and every
reader checks it, so that a truncated or edited file is an error naming the file, what was expected and what was
found -- never fewer frames, a mangled number or a misleading message further down the pipeline.

Where the record lives (inside the file itself, so it travels with the file through copies, commits and clones and
needs no extra Snakemake outputs):

* extended XYZ (datasets, chunks, predictions, trajectories, slices): the first frame's comment line ends with
  ``qnnff_integrity=<frames>:<sha256>``, where the sha256 is that of the whole file *without* this token (the file
  exactly as ASE wrote it). :func:`qnnff.dataset.read_frames` recomputes both. A cut at a frame boundary changes the
  frame count and the hash; a cut inside a number changes the hash.
* npz feature files: an array ``__integrity__`` = ``[frames, sha256 of the other arrays' bytes]`` (see
  :func:`arrays_digest`); :func:`load_npz` checks it (and the zip CRCs numpy checks while reading).
* model artifacts (zip): the member ``integrity.json`` records the sha256 and size of every other member
  (``meta.json``, ``arrays.npz``, every blob); :func:`qnnff.models.artifact.load_artifact` checks them (and the zip
  CRCs). A model without that record is an error (a model you trust is re-stamped with
  ``python -m qnnff.models.artifact restamp PATH``).

Every :class:`IntegrityError` ends with the command that rebuilds the file (:func:`rebuild_hint`). A dataset or feature
file without a record (written by an older qnnff, e.g. committed results, covered by results/MANIFEST.sha256) is read
with a warning naming it (:func:`legacy`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("qnnff")

TOKEN = "qnnff_integrity"
_TOKEN_RE = re.compile(r" " + TOKEN + r"=(\d+):([0-9a-f]{64})$")


class IntegrityError(ValueError):
    """A file does not match what its writer recorded (truncated, edited or not written by qnnff)."""


INVOCATION_ENV = "QNNFF_INVOCATION"  # the run's directory, Snakefile and config files (set_invocation), for the hints


def set_invocation(*, workdir: str | os.PathLike, repo: str | os.PathLike, configfiles: list[str] | tuple[str, ...] = ()) -> None:
    """Record the Snakemake invocation (its working directory, the repository of its Snakefile and its
    ``--configfile`` files, absolute) in the environment, which the run's jobs inherit, so that every
    :func:`rebuild_hint` repeats it (issue 26.9: a hint without ``--directory`` / ``--configfile``, followed from the
    repository root, deleted a committed model and replanned the paper run)."""
    import json

    os.environ[INVOCATION_ENV] = json.dumps({"workdir": os.path.abspath(workdir), "repo": os.path.abspath(repo),
                                             "configfiles": [os.path.abspath(f) for f in configfiles]})


def rebuild_hint(path: str | os.PathLike) -> str:
    """How to rebuild the file ``path``: remove it and ask Snakemake for it, with the run's own directory, Snakefile and
    config files (:func:`set_invocation`); without a recorded invocation, relative to the current directory."""
    import json
    import shlex

    inv = json.loads(os.environ.get(INVOCATION_ENV) or "null")
    tail = "(Snakemake then reruns the job that writes it, and everything that depends on it)"
    if not inv:
        p = Path(path)
        try:
            p = p.resolve().relative_to(Path.cwd().resolve())
        except ValueError:
            pass
        return f"rebuild it from the run's directory with: rm '{p}' && snakemake --cores 2 '{p}' {tail}"
    workdir, repo = Path(inv["workdir"]), Path(inv["repo"])
    p = Path(path) if Path(path).is_absolute() else workdir / path
    try:
        rel = p.resolve().relative_to(workdir.resolve())
    except ValueError:
        rel = p
    args = ["snakemake", "--cores", "2"]
    if workdir.resolve() != repo.resolve():
        args += ["-s", str(repo / "Snakefile"), "--directory", str(workdir)]
    for f in inv.get("configfiles") or []:
        args += ["--configfile", f]
    cmd = " ".join(shlex.quote(a) for a in [*args, str(rel)])
    return f"rebuild it with: rm {shlex.quote(str(workdir / rel))} && {cmd} {tail}"


def fail(path: str | os.PathLike, what: str, expected: Any, found: Any) -> IntegrityError:
    return IntegrityError(f"{path}: {what}: expected {expected}, found {found}. The file is truncated, damaged or was "
                          f"edited after qnnff wrote it; {rebuild_hint(path)}")


def legacy(path: str | os.PathLike, warn: bool = True) -> None:
    """A file without an integrity record (written before qnnff recorded them, e.g. results committed earlier, whose
    checksums are in results/MANIFEST.sha256): read, with a warning naming it -- never silently."""
    if warn:
        log.warning("%s has no qnnff integrity record (written by an older qnnff): it is read unverified; check it against "
                    "results/MANIFEST.sha256 or %s", path, rebuild_hint(path))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------------- extxyz
def stamp_extxyz(text: str, n_frames: int) -> str:
    """``text`` (extxyz as ASE wrote it) with the integrity token appended to the first frame's comment line."""
    if n_frames == 0:
        return text
    digest = sha256_bytes(text.encode())
    first, sep, rest = text.partition("\n")
    comment, sep2, rest2 = rest.partition("\n")
    return f"{first}{sep}{comment} {TOKEN}={n_frames}:{digest}{sep2}{rest2}"


def verify_extxyz(path: str | os.PathLike, text: str) -> tuple[int | None, str]:
    """Check the token against ``text``; returns (recorded frames, text without the token); raises IntegrityError.
    A file without a token (older qnnff) is returned as is, with a warning (:func:`legacy`)."""
    first, sep, rest = text.partition("\n")
    comment, sep2, rest2 = rest.partition("\n")
    m = _TOKEN_RE.search(comment)
    if m is None:
        legacy(path)
        return None, text
    n, digest = int(m.group(1)), m.group(2)
    original = f"{first}{sep}{comment[:m.start()]}{sep2}{rest2}"
    found = sha256_bytes(original.encode())
    if found != digest:
        raise fail(path, f"sha256 of the {n} frames its writer recorded", digest, f"{found} ({len(original.encode())} bytes)")
    return n, original


# ---------------------------------------------------------------------------------------------------- npz
def arrays_digest(arrays: Mapping[str, np.ndarray]) -> str:
    """sha256 over the names, dtypes, shapes and bytes of ``arrays`` (sorted by name, ``__integrity__`` excluded)."""
    h = hashlib.sha256()
    for k in sorted(arrays):
        if k == "__integrity__":
            continue
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes() if a.dtype != object else repr(a.tolist()).encode())
    return h.hexdigest()


def stamp_arrays(arrays: Mapping[str, np.ndarray], n_frames: int) -> dict[str, np.ndarray]:
    return {**arrays, "__integrity__": np.array([str(int(n_frames)), arrays_digest(arrays)])}


def load_npz(path: str | os.PathLike, *, frames_key: str = "positions") -> dict[str, np.ndarray]:
    """All arrays of an npz written with :func:`stamp_arrays`, verified (frame count and sha256)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"feature file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (zipfile.BadZipFile, EOFError, ValueError, OSError) as exc:
        raise IntegrityError(f"{path}: not a readable npz file ({type(exc).__name__}: {exc}); {rebuild_hint(path)}") from exc
    if "__integrity__" not in arrays:
        legacy(path)
        return arrays
    n_rec, digest = (str(v) for v in arrays.pop("__integrity__"))
    n_found = len(arrays[frames_key]) if frames_key in arrays else None
    if n_found != int(n_rec):
        raise fail(path, "number of frames", n_rec, n_found)
    found = arrays_digest(arrays)
    if found != digest:
        raise fail(path, "sha256 of the arrays", digest, found)
    return arrays


def damaged_data_files(root: str | os.PathLike = ".") -> list[str]:
    """Problems of every existing dataset, prediction and trajectory (``results/**/*.extxyz``) and feature file
    (``results/**/*.npz``) under ``root``: a 0-byte file, a record that does not match, an unreadable npz (one line
    each, with the rebuild command). Run at workflow start-up with :func:`qnnff.models.artifact.damaged_models`
    (issue 26.10): a damaged input would otherwise make Snakemake rerun, and first delete, the valid outputs of every
    job that reads it, and then fail. A file without a record (older qnnff) is not judged here; its readers warn."""
    problems = []
    results = Path(root) / "results"
    for p in sorted(results.glob("**/*.extxyz")):
        if p.name.startswith("."):
            continue  # a writer's temporary file
        try:
            data = p.read_bytes()
            if not data:
                problems.append(f"{p}: the file is empty (0 bytes); {rebuild_hint(p)}")
                continue
            m = _TOKEN_RE.search(data.split(b"\n", 2)[1].decode(errors="replace")) if data.count(b"\n") >= 1 else None
            if m is not None:
                verify_extxyz(p, data.decode(errors="replace"))
        except (IntegrityError, OSError) as exc:
            problems.append(str(exc))
    for p in sorted(results.glob("**/*.npz")):
        if p.name.startswith("."):
            continue
        try:
            load_npz(p)
        except (IntegrityError, OSError) as exc:
            problems.append(str(exc))
    return problems


def held_locks(workdir: str | os.PathLike = ".") -> list[str]:
    """Snakemake lock files of ``workdir`` (``.snakemake/locks/*.lock``): present while another run executes jobs
    there, or left behind by a run that was killed (kill -9, power loss)."""
    d = Path(workdir) / ".snakemake" / "locks"
    return sorted(str(p) for p in d.glob("*.lock")) if d.is_dir() else []


def lock_message(locks: list[str]) -> str:
    return ("another Snakemake run holds this directory (lock files: " + ", ".join(locks) + "). If that run is still "
            "busy, wait for it to finish (two runs must not write the same results). If it was killed (kill -9, a lost "
            "node, a power loss), its locks stayed behind: remove them with `snakemake --unlock`, then resume with "
            "`snakemake --cores 2 --rerun-incomplete`.")


_NO_EXEC = ("dryrun", "unlock", "nolock", "report", "touch", "lint", "generate_unit_tests", "containerize", "export_cwl",
            "list_rules", "list_target_rules", "dag", "rulegraph", "filegraph", "d3dag", "summary", "detailed_summary",
            "archive", "cleanup_metadata", "cleanup_shadow", "list_changes", "list_untracked", "delete_all_output",
            "delete_temp_output", "debug_dag", "print_compilation", "list_conda_envs", "conda_cleanup_envs",
            "conda_create_envs_only")


def command_mode(argv: list[str]) -> str:
    """What a Snakemake command line ``argv`` does: ``"exec"`` (executes jobs, takes the directory's lock), ``"dryrun"``
    (``-n``, without ``--nolock``), ``"unlock"``, or ``"other"`` (``--nolock``, ``--report``, a listing, ...; also
    not a Snakemake command line, or an unparseable one). Snakemake exposes none of this while it reads the Snakefile;
    building its argument parser costs seconds, so call this only when something is wrong (locks, damaged files)."""
    exe = Path(argv[0]) if argv else Path()
    if not (exe.name == "snakemake" or exe.parent.name == "snakemake"):  # `snakemake ...` or `python -m snakemake ...`
        return "other"
    try:
        from snakemake.cli import get_argument_parser

        args, _ = get_argument_parser().parse_known_args(argv[1:])
    except (Exception, SystemExit):  # noqa: BLE001 - an unparseable command line: let Snakemake judge it
        return "other"
    if getattr(args, "unlock", None):
        return "unlock"
    if getattr(args, "dryrun", None) and not getattr(args, "nolock", None):
        return "dryrun"
    return "other" if any(getattr(args, k, None) for k in _NO_EXEC) else "exec"


REGENERATED = ("results/figures/", "results/tables/", "results/metrics.json", "results/MANIFEST.sha256", "results/extended/")


def fresh_clone_regeneration(argv: list[str], workdir: str | os.PathLike, repo: str | os.PathLike) -> str | None:
    """Issue 26.11: in a clone that has never run Snakemake (no ``.snakemake/metadata``), holding the committed
    results (``results/MANIFEST.sha256``), the file times are git's, so a bare ``snakemake --cores 2 <figure or
    table>`` would plan DFT and trainings upstream of it and rewrite committed results. For such a command (it executes
    jobs, every target is a figure, table, metrics.json or the manifest, no ``--allowed-rules`` and not the
    ``regenerate`` profile), the message that refuses it with the command that regenerates from the committed inputs;
    None for every other command or directory. Parses ``argv`` only when the directory is such a clone."""
    wd = Path(workdir)
    if os.path.realpath(wd) != os.path.realpath(repo) or not (wd / "results" / "MANIFEST.sha256").exists():
        return None
    meta = wd / ".snakemake" / "metadata"
    if meta.is_dir() and any(meta.iterdir()):
        return None  # Snakemake has run here: its own records decide what is out of date
    if command_mode(argv) != "exec":
        return None
    from snakemake.cli import get_argument_parser

    args, _ = get_argument_parser().parse_known_args(argv[1:])
    targets = [str(t) for t in (args.targets or [])]
    profile = Path(str(args.workflow_profile)).name if getattr(args, "workflow_profile", None) else ""
    if not targets or getattr(args, "allowed_rules", None) or profile == "regenerate":
        return None
    if not all(t.startswith(REGENERATED) for t in targets):
        return None
    quoted = " ".join(f"'{t}'" for t in targets)
    return ("this clone has never run Snakemake, so its file times are git's: a bare target would plan DFT and "
            f"trainings upstream of {quoted} and rewrite committed results. Regenerate from the committed inputs with: "
            f"snakemake --workflow-profile profiles/regenerate -f {quoted} (README \"What one run produces\"); to "
            "recompute everything, run the paper in its own directory: snakemake --cores 2 --directory runs/paper")


def run_executes_jobs(argv: list[str]) -> bool:
    """True if ``argv`` is a Snakemake command line that executes jobs (:func:`command_mode` ``"exec"``)."""
    return command_mode(argv) == "exec"

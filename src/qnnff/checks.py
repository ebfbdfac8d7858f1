"""The top of the configuration layer: :func:`check_config`, every check of a whole config, in one place.

The layers below it point one way (``tests/test_import_layers.py`` fails on any import cycle): :mod:`qnnff.config`
(the schema, YAML loading, the parsed :class:`~qnnff.config.SystemSpec`, hashes) imports nothing above it;
:mod:`qnnff.protocols` (models and training protocols) and :mod:`qnnff.studies` (study grids) check their own blocks;
:mod:`qnnff.qnn.runtime` checks the hardware block. This module calls them all and is what the Snakefile
(``workflow/rules/common.smk``), :func:`load_config` and ``python -m qnnff.checks FILE...`` use.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from .config import ConfigError, _validate_schema, check_basis, check_downstream, check_finite, load_yaml, system_spec
from .protocols import check_figure_protocol, check_models, model_kinds, protocols
from .studies import check_studies

__all__ = ["check_config", "check_reproduction", "load_config", "main"]


def check_config(cfg: Any, *, source: str = "config", basis_sets: bool = True) -> None:
    """Schema + semantic validation. Raises :class:`~qnnff.config.ConfigError` naming the key. ``basis_sets``: also
    look up every element's basis set in PySCF (:func:`qnnff.config.check_basis`; the workflow's spawned jobs, which
    re-read a config their run has checked, skip it)."""
    check_finite(cfg, source)  # first: NaN passes the schema's bounds (nan > 0 and nan < 1 are both false)
    _validate_schema(cfg, source)
    for name in cfg["systems"]:
        try:
            spec = system_spec(cfg, name)
            check_downstream(cfg, name, spec)
            if basis_sets:
                check_basis(cfg, name, spec)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
        check_models(cfg, name)
    check_figure_protocol(cfg)
    check_reproduction(cfg)
    if cfg.get("studies"):
        check_studies(cfg)
    if any((sc.get("models", {}).get("qnn") or {}).get("hardware") for sc in cfg["systems"].values()):
        # qiskit-ibm-runtime is loaded only for a config that names hardware (it costs seconds at every start-up)
        from .qnn.runtime import check_hardware_config

        try:  # hardware backend names and credentials (no network): a real backend without an account fails here
            check_hardware_config(cfg)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None


def check_reproduction(cfg: dict) -> None:
    """The scorecard block must refer to configured systems, models and protocols."""
    rep = cfg.get("reproduction")
    if not rep:
        return
    for block in ("paper", "targets"):
        for system, per_kind in rep.get(block, {}).items():
            if system not in cfg["systems"]:
                raise ConfigError(f"reproduction.{block}.{system}: no such system (systems: {sorted(cfg['systems'])})")
            for kind in per_kind:
                if kind not in model_kinds(cfg, system):
                    raise ConfigError(f"reproduction.{block}.{system}.{kind}: systems.{system}.models has no {kind!r}")
                if block == "targets" and kind not in rep["paper"].get(system, {}):
                    raise ConfigError(f"reproduction.targets.{system}.{kind}: no paper value to hold it to (reproduction.paper)")
    want = rep.get("protocol", "best")
    for system, per_kind in rep.get("targets", {}).items():
        for kind in per_kind:
            if want not in protocols(cfg, system, kind):
                raise ConfigError(f"reproduction.protocol: {want!r} is not a protocol of systems.{system}.models.{kind}")
    md = rep.get("md_period")
    if md:
        s = md["system"]
        if s not in cfg["systems"]:
            raise ConfigError(f"reproduction.md_period.system: no such system {s!r}")
        sc = cfg["systems"][s]
        if len(sc["zmatrix"]) != 2 or not sc.get("md", {}).get("dft", False):
            raise ConfigError(f"reproduction.md_period.system: {s!r} must be a diatomic with md.dft: true")
        if md.get("kind", "qnn") not in model_kinds(cfg, s):
            raise ConfigError(f"reproduction.md_period.kind: systems.{s}.models has no {md.get('kind', 'qnn')!r}")


def check_run_directory(config: dict, *, workdir: str | Path, repo: str | Path, paper_config: str | Path,
                        user_files: list[str] | tuple[str, ...] = ()) -> None:
    """A run whose config is not the committed paper config must not write into the repository's committed
    ``results/`` (issue 26.8: a user config from the repository root rewrote ``metrics.json``, the manifest, the MD
    table and summary figures). From the repository root (``workdir`` is ``repo``) holding results (its
    ``results/MANIFEST.sha256``: the committed ones), the config (``studies`` aside: they write their own directories)
    must equal ``paper_config``; otherwise a ConfigError names the differing keys and the ``--directory`` to run in.
    Elsewhere, or in a copy of the code without results (the SLURM proof's), anything goes."""
    import os

    if os.path.realpath(workdir) != os.path.realpath(repo) or not (Path(workdir) / "results" / "MANIFEST.sha256").exists():
        return
    paper = load_yaml(paper_config)
    mine = {k: v for k, v in config.items() if k != "studies"}
    paper = {k: v for k, v in paper.items() if k != "studies"}
    if mine == paper:
        return
    keys = sorted(k for k in set(mine) | set(paper) if mine.get(k) != paper.get(k))
    systems = sorted(s for s in set(mine.get("systems") or {}) | set(paper.get("systems") or {})
                     if (mine.get("systems") or {}).get(s) != (paper.get("systems") or {}).get(s))
    what = ", ".join(f"systems.{s}" if k == "systems" else k for k in keys for s in (systems if k == "systems" else [k]))
    name = Path(user_files[0]).stem if user_files else "mine"
    raise ConfigError(
        f"{' + '.join(user_files) or '--config'}: this config differs from the committed paper config ({what}), and the run "
        f"would write into the repository's committed results/ (metrics.json, MANIFEST.sha256, tables, figures). Run it in "
        f"its own directory: snakemake --cores 2 {' '.join('--configfile ' + f for f in user_files)} --directory runs/{name} "
        f"(README \"Stages and recipes\")")


def load_config(path: str | Path) -> dict:
    """A config file, read (:func:`qnnff.config.load_yaml`) and checked (:func:`check_config`)."""
    cfg = load_yaml(path)
    check_config(cfg, source=str(path))
    return cfg


def main(argv: list[str] | None = None) -> int:
    """``python -m qnnff.checks FILE...``: check config files (YAML syntax with line and column, schema, semantics)."""
    files = sys.argv[1:] if argv is None else argv
    if not files:
        print("usage: python -m qnnff.checks CONFIG.yaml [...]", file=sys.stderr)
        return 2
    status = 0
    for f in files:
        try:
            load_config(f)
            print(f"{f}: ok")
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    raise SystemExit(main())

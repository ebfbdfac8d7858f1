"""The pipeline's stages: one module per rule file of ``workflow/rules/``, one public function per rule, named after it.

=========================  ===========================  =====================================================
module                     rule file                    rule -> function
=========================  ===========================  =====================================================
:mod:`.data`               ``data.smk``                 sample_points, dft_chunk, assemble_dataset
:mod:`.features`           ``features.smk``             featurize
:mod:`.train`              ``train.smk``                train_qnn / train_nn / train_bpnn -> ``train``;
                                                        select_seeds
:mod:`.evaluate`           ``evaluate.smk``             effective_dimension, aer_evaluation, errors_table,
                                                        reproduction_table
:mod:`.md`                 ``md.smk``                   run_md, run_md_dft, md_table, run_md_shots
:mod:`.figures`            ``figures.smk``              dft_slice, figures_system, figure_md, figures_summary,
                                                        metrics
:mod:`.studies`            ``studies.smk``              study_point, study_table (grids parsed by :mod:`qnnff.studies`)
=========================  ===========================  =====================================================

Every stage function takes its job's spec, plain paths and the remaining wildcard values as arguments, and reads no
config dict. The spec (the ``job`` argument: a frozen dataclass of :mod:`qnnff.jobs`, e.g. :class:`~qnnff.jobs.TrainJob`)
holds the job's typed settings, its seeds and its provenance hashes; the job's script builds it from the slice of the
configuration the rule receives as ``params.settings`` (:func:`qnnff.settings.rule_settings`: a dict of the config's
shape with only the keys the rule reads) and the wildcard values, with its ``of`` classmethod
(``train(TrainJob.of(snakemake.params.settings, system=..., kind=..., protocol=..., seed_index=...), ...)``), and
passes the rest of ``snakemake.*`` on. Each stage module re-exports the specs of its rules, so a script imports from
its one stage module. No script reads ``snakemake.config``. A job imports this package (for
:func:`setup_logging`) and the one stage module of its rule: this package imports the standard library only, and a
stage module imports at its top what all rules of its rule file need. torch and the models, PySCF, Qiskit and
matplotlib are imported inside the functions of the rules that use them, because every job is a fresh process and
``import torch`` alone costs about 3 s: a job that selects seeds or writes a table starts in about 1 s.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def setup_logging(logfile: str | Path | None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if logfile:
        Path(logfile).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(logfile, mode="w"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", handlers=handlers, force=True)
    logging.getLogger("qiskit").setLevel(logging.WARNING)  # not one INFO line per transpiler pass and circuit


@dataclass(frozen=True)
class SeedSet:
    """The trained seeds of one (kind, protocol): its selection file and per-seed models, predictions or curves."""

    kind: str
    protocol: str
    selection: str
    files: tuple[str, ...]

    @classmethod
    def of(cls, value: SeedSet | Mapping[str, Any]) -> SeedSet:
        """``value`` itself, or the seed set a rule passes as params (``seed_set`` in ``workflow/rules/common.smk``)."""
        if isinstance(value, SeedSet):
            return value
        return cls(value["kind"], value["protocol"], value["selection"], tuple(value["files"]))

    def median(self) -> tuple[int, str]:
        """(median seed index, its file)."""
        sel = json.loads(Path(self.selection).read_text())
        want = f"seed{sel['median_seed']}"
        hits = [f for f in self.files if Path(f).parent.name == want]
        if len(hits) != 1:
            raise FileNotFoundError(f"{self.selection}: median seed {sel['median_seed']} has no single file among {list(self.files)}")
        return int(sel["median_seed"]), hits[0]

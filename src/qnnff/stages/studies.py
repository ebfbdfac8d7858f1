"""Studies (``workflow/rules/studies.smk``): rules ``study_point`` and ``study_table``, thin wrappers of
:mod:`qnnff.studies`.

:func:`study_point` trains (or reuses the pipeline's model of) one seed of one grid point of a study and writes its
metrics; it works in the directory of its metrics file (model, learning curve, checkpoint). :func:`study_table` writes
the study's table and figure. The training and feature code a point needs (:mod:`qnnff.stages.train`,
:mod:`qnnff.stages.features`) is loaded by :func:`qnnff.studies.run_point` itself, so a ``study_table`` job runs
without it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from .. import studies
from ..jobs import StudyJob, StudyPointJob


def study_point(job: StudyPointJob, *, train_xyz: str, test_xyz: str, out_json: str, pipeline_model: str | None = None,
                pipeline_predictions: str | None = None, pipeline_summary: str | None = None) -> dict:
    """Rule ``study_point``: seed ``job.seed_index`` of grid point ``job.point`` of study ``job.study``
    (:func:`qnnff.studies.run_point`); ``pipeline_*``: the pipeline's model of the same seed, when the point reuses it."""
    return studies.run_point(job, train_xyz=train_xyz, test_xyz=test_xyz, out_json=out_json, workdir=os.path.dirname(out_json),
                             pipeline_model=pipeline_model, pipeline_predictions=pipeline_predictions,
                             pipeline_summary=pipeline_summary)


def study_table(job: StudyJob, metrics_jsons: Sequence[str], out_csv: str, out_md: str, out_png: str, out_pdf: str) -> None:
    """Rule ``study_table``: the study's table (CSV, Markdown) and figure (PNG, PDF) (:func:`qnnff.studies.study_table`)."""
    studies.study_table(job, list(metrics_jsons), out_csv, out_md, out_png, out_pdf)

"""Stage 2, features (``workflow/rules/features.smk``): rule ``featurize``.

Internal coordinates -> [-1, 1] -> the configured feature map, with Jacobians; the featurizer's ranges and the energy
scaler are fitted on the training set only and reused for test points, models and MD (``scalers.json``). The helpers
:func:`build_featurizer` and :func:`feature_arrays` also serve the studies (:func:`qnnff.stages.studies.run_point`), which
rebuild features in the job; :func:`qnnff.features.load_scalers` reads ``scalers.json`` back.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from .. import dataset as ds
from ..features import EnergyScaler, Featurizer, extend_to_symmetric_point, internal_coordinates
from ..integrity import stamp_arrays
from ..io import atomic_path, write_json_atomic
from ..jobs import DataJob

log = logging.getLogger("qnnff")


def build_featurizer(job: DataJob, train_frames) -> tuple[Featurizer, EnergyScaler]:
    """The featurizer (its ranges from ``train_frames``, widened to the symmetric point) and the energy scaler fitted
    on ``train_frames``."""
    spec = job.spec
    arr = ds.to_arrays(train_frames)
    pos = torch.as_tensor(arr["positions"], dtype=torch.float64)
    q = internal_coordinates(spec.families, pos)
    lo, hi = extend_to_symmetric_point(spec.families, q.min(0).values.numpy(), q.max(0).values.numpy())
    feat = Featurizer(families=spec.families, feature_map=spec.feature_map, lo=lo, hi=hi,
                      margin=job.feature_margin, symbols=list(spec.symbols))
    return feat, EnergyScaler.fit(arr["energy"])


def feature_arrays(feat: Featurizer, scaler: EnergyScaler, frames) -> dict[str, np.ndarray]:
    arr = ds.to_arrays(frames)
    pos = torch.as_tensor(arr["positions"], dtype=torch.float64)
    bad = feat.out_of_domain(pos)
    if bad.any():
        ids = [frames[i].info.get("point", i) for i in torch.nonzero(bad).flatten().tolist()]
        raise ValueError(f"{len(ids)} frame(s) lie outside the featurizer's domain (scaled coordinate beyond +-1): {ids[:10]}")
    x, jac = feat.features_and_jacobian(pos)
    return {
        "positions": arr["positions"],
        "energy": arr["energy"],
        "forces": arr["forces"],
        "x": x.numpy(),
        "jac": jac.numpy(),
        "y": (arr["energy"] - scaler.center) / scaler.scale,
        "f": arr["forces"] / scaler.scale,
        "point": np.array([a.info.get("point", "") for a in frames]),
    }


def featurize(job: DataJob, train_xyz: str, test_xyz: str, out_scalers: str, out_train: str, out_test: str) -> None:
    """Rule ``featurize``: the scalers file (featurizer, energy scaler, excluded test points) and the train/test npz
    (positions, energies, forces, features, Jacobians, scaled targets; with an integrity record)."""
    system = job.system
    train = ds.read_frames(train_xyz)
    test = ds.read_frames(test_xyz)
    feat, scaler = build_featurizer(job, train)
    write_json_atomic(out_scalers, {"featurizer": feat.to_dict(), "energy_scaler": scaler.to_dict(),
                                    "config_hash": job.data_hash,
                                    "units": {"energy": "eV", "forces": "eV/Angstrom", "positions": "Angstrom",
                                              "coordinates": "Angstrom (bonds), degrees (angles, dihedrals)"}})
    # test points whose derived coordinates leave the training range by more than the margin cannot be
    # featurised (arcsin is undefined beyond +-1): they are listed in the scalers file and the log, never hidden
    pos = torch.as_tensor(ds.to_arrays(test)["positions"], dtype=torch.float64)
    outside = feat.out_of_domain(pos).tolist()
    excluded = [a.info.get("point", str(i)) for i, (a, o) in enumerate(zip(test, outside)) if o]
    if excluded:
        log.warning("%s: %d of %d test points lie outside the training range (+margin) and are excluded from "
                    "evaluation: %s", system, len(excluded), len(test), ", ".join(excluded))
    test = [a for a, o in zip(test, outside) if not o]
    if not test:
        raise RuntimeError(f"{system}: every test point lies outside the training range; widen the training sampling")
    meta = json.loads(Path(out_scalers).read_text())
    meta["excluded_test_points"] = excluded
    write_json_atomic(out_scalers, meta)
    for frames, out in ((train, out_train), (test, out_test)):
        arrays = feature_arrays(feat, scaler, frames)
        with atomic_path(out) as tmp:
            np.savez(tmp, **stamp_arrays(arrays, len(frames)))  # frame count + sha256, checked by integrity.load_npz
    log.info("%s: %d features from %d coordinates; energy scaler center %.6f eV, scale %.6f eV",
             system, feat.n_features, feat.n_coordinates, scaler.center, scaler.scale)

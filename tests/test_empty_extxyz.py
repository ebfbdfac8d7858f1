"""Issue 26.12: an empty (0-byte) extxyz is an error naming the file, not "empty dataset", "need at least one array to
stack" or "zero-size array" further down."""

import numpy as np
import pytest
import yaml

from qnnff import dataset as ds
from qnnff.integrity import IntegrityError
from qnnff.jobs import DataJob
from qnnff.settings import rule_settings


def lih_frames(n=4):
    return [ds.make_frame(["Li", "H"], [[0, 0, 0], [0, 0, 1.4 + 0.1 * k]], -218.0 + 0.01 * k, np.zeros((2, 3)),
                          {"point": f"train-{k:05d}", "split": "train"}) for k in range(n)]


def test_a_zero_byte_extxyz_is_an_error_naming_the_file(tmp_path):
    p = tmp_path / "train.extxyz"
    p.write_bytes(b"")
    for kw in ({}, {"allow_empty": True}):  # even where an empty frame list is fine, a 0-byte file is not one
        with pytest.raises(IntegrityError, match=r"train\.extxyz.*empty \(0 bytes\)") as err:
            ds.read_frames(p, **kw)
        assert str(p) in str(err.value) and "snakemake" in str(err.value)


def test_an_empty_frame_list_is_written_with_its_record_and_read_only_where_allowed(tmp_path):
    p = tmp_path / "chunk0007.extxyz"
    ds.write_frames(p, [])
    assert p.stat().st_size > 0
    assert ds.read_frames(p, allow_empty=True) == []
    with pytest.raises(ValueError, match=r"chunk0007\.extxyz.*no frames"):
        ds.read_frames(p)


@pytest.mark.parametrize("empty", ["train", "test"])
def test_featurize_names_the_empty_dataset(tmp_path, repo, empty):
    from qnnff.stages.features import featurize

    cfg = yaml.safe_load((repo / "config" / "test.yaml").read_text())
    job = DataJob.of(rule_settings(cfg, "featurize", system="LiH"), system="LiH")
    files = {s: tmp_path / f"{s}.extxyz" for s in ("train", "test")}
    ds.write_frames(files["train"], lih_frames())
    ds.write_frames(files["test"], lih_frames(2))
    files[empty].write_bytes(b"")
    with pytest.raises(ValueError, match=rf"{empty}\.extxyz.*empty") as err:
        featurize(job, str(files["train"]), str(files["test"]), str(tmp_path / "scalers.json"), str(tmp_path / "train.npz"),
                  str(tmp_path / "test.npz"))
    assert str(files[empty]) in str(err.value)

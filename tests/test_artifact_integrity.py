"""Issue 26.7: the integrity record of a model.zip covers every member (meta.json too), a missing record is an error,
and ``python -m qnnff.models.artifact restamp PATH`` re-stamps a model you trust."""

import json
import subprocess
import sys
import zipfile

import pytest
import torch

from qnnff.features import CoordinateFamily, EnergyScaler, Featurizer
from qnnff.integrity import IntegrityError
from qnnff.models.artifact import RECORD, damaged_models, restamp
from qnnff.models.factory import load_model
from qnnff.models.nn import NNForceField

POS = torch.tensor([[[0.0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]]], dtype=torch.float64)


@pytest.fixture()
def saved(tmp_path):
    fams = [CoordinateFamily("r_OH", "bond", ((0, 1), (0, 2))), CoordinateFamily("a_HOH", "angle", ((1, 0, 2),))]
    feat = Featurizer(families=fams, feature_map="arcsin", lo=[0.9, 0.0, 100.0], hi=[1.1, 0.02, 110.0], margin=0.05,
                      symbols=["O", "H", "H"])
    model = NNForceField(featurizer=feat, energy_scaler=EnergyScaler(center=-2079.6, scale=0.35), hidden=[4], seed=0)
    path = tmp_path / "results" / "H2O" / "models" / "nn" / "model.zip"
    path.parent.mkdir(parents=True)
    model.save(path)
    return path


def rewrite(path, edit):
    """Rewrite the zip at ``path`` with ``edit(members)`` applied to its {name: bytes} (a well-formed zip, valid CRCs)."""
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    edit(members)
    with zipfile.ZipFile(path, "w") as zf:
        for n, b in members.items():
            zf.writestr(n, b)


def shift_centre(members):
    meta = json.loads(members["meta.json"])
    meta["energy_scaler"]["center"] += 1.0  # every energy moves by +1 eV
    members["meta.json"] = json.dumps(meta, indent=2, sort_keys=True).encode()


def energy(path):
    return float(load_model(path).energy(POS)[0].detach())


def test_the_record_covers_every_member(saved):
    with zipfile.ZipFile(saved) as zf:
        names = set(zf.namelist())
        record = json.loads(zf.read(RECORD))
    assert set(record["members"]) == names - {RECORD} and "meta.json" in record["members"]


def test_an_edited_meta_json_is_an_error_naming_file_and_member(saved):
    before = energy(saved)
    rewrite(saved, shift_centre)
    with pytest.raises(IntegrityError, match=r"model\.zip: member meta\.json: expected") as err:
        load_model(saved)
    assert str(saved) in str(err.value) and "restamp" in str(err.value)
    assert damaged_models(saved.parents[4]) and "meta.json" in damaged_models(saved.parents[4])[0]
    # re-stamped (the user trusts the edit): it loads, and the edit is what it says
    restamp(saved)
    assert energy(saved) == pytest.approx(before + 1.0)


def test_a_missing_record_is_an_error_and_restamp_fixes_it(saved):
    before = energy(saved)
    rewrite(saved, lambda m: m.pop(RECORD))
    with pytest.raises(IntegrityError, match=r"model\.zip.*no integrity record.*restamp") as err:
        load_model(saved)
    assert str(saved) in str(err.value)
    out = subprocess.run([sys.executable, "-m", "qnnff.models.artifact", "restamp", str(saved)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "restamped" in out.stdout and str(saved) in out.stdout
    assert energy(saved) == before


def test_an_old_record_inside_meta_json_is_an_error_until_restamped(saved):
    """The record of qnnff before issue 26.7 lived in meta.json and did not cover it: such a model must be re-stamped."""

    def old_layout(members):
        record = json.loads(members.pop(RECORD))["members"]
        meta = json.loads(members["meta.json"])
        meta["integrity"] = {n: r for n, r in record.items() if n != "meta.json"}
        members["meta.json"] = json.dumps(meta, indent=2, sort_keys=True).encode()

    rewrite(saved, old_layout)
    with pytest.raises(IntegrityError, match="does not cover meta.json"):
        load_model(saved)
    restamp(saved)
    load_model(saved)


def test_restamp_refuses_what_is_not_a_model(tmp_path):
    bad = tmp_path / "model.zip"
    bad.write_bytes(b"not a zip")
    out = subprocess.run([sys.executable, "-m", "qnnff.models.artifact", "restamp", str(bad)], capture_output=True, text=True)
    assert out.returncode != 0 and str(bad) in out.stderr and "Traceback" not in out.stderr


def test_the_committed_models_load(repo):
    """Every committed model.zip carries a record that covers all its members."""
    files = subprocess.run(["git", "ls-files", "results"], cwd=repo, capture_output=True, text=True).stdout.split()
    models = [repo / f for f in files if f.endswith("model.zip")]
    if not models:
        pytest.skip("no committed models (not a git work tree)")
    from qnnff.models.artifact import load_artifact

    for p in models[:: max(1, len(models) // 40)]:  # a spread of them: all kinds, systems and studies
        arrays, meta, _ = load_artifact(p)
        assert arrays and "kind" in meta
    unstamped = []
    for p in models:
        with zipfile.ZipFile(p) as zf:
            if RECORD not in zf.namelist():
                unstamped.append(str(p))
    assert not unstamped, f"{len(unstamped)} committed models without a record covering every member: {unstamped[:3]}"

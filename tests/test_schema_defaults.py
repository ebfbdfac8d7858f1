"""The schema is the only home of default values (issue 12): code merges ``schema_defaults(block)`` under the user's
keys and never spells a default itself."""

import ast
from pathlib import Path

import pytest

from qnnff import checks as qchecks
from qnnff import config as qconfig
from qnnff.protocols import qnn_init, training_settings
from qnnff.settings import EffdimSettings, MDSettings

SRC = Path(qconfig.__file__).resolve().parent


@pytest.fixture
def paper_cfg():
    return qchecks.load_config(Path(__file__).resolve().parents[1] / "config/config.yaml")


def test_blocks_resolve_to_the_schema_defaults():
    assert qconfig.schema_defaults("#dft")["xc"] == "b3lyp"
    assert qconfig.schema_defaults("#system.md")["temperature_K"] == 300.0
    assert qconfig.schema_defaults("#system.slice") == {"n": 25}
    assert qconfig.schema_defaults("studies.*.evaluate")["noise"] == ["none"]
    assert qconfig.schema_defaults("features") == {"margin": 0.05}
    d = qconfig.schema_defaults("#qnn.aer")
    d["shots"] = -1  # a copy: the caller may change it
    assert qconfig.schema_defaults("#qnn.aer")["shots"] == 4096


def test_no_module_spells_a_defaults_table():
    """No ``*_DEFAULTS`` table in the package: such a table is a second home of the schema's defaults."""
    found = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
            found += [f"{path.relative_to(SRC)}:{t.id}" for t in targets if isinstance(t, ast.Name) and t.id.endswith("_DEFAULTS")]
    assert not found, found


def test_a_changed_schema_default_reaches_the_settings(monkeypatch, paper_cfg):
    """Edit the schema's defaults (in memory) and the merged settings follow: nothing else holds the values."""
    text = qconfig._schema_text()
    edits = {"timestep_fs: {type: number, exclusiveMinimum: 0, default: 0.5": "timestep_fs: {type: number, exclusiveMinimum: 0, default: 0.25",
             "maximum: 9\n        default: 2\n      conv_tol:": "maximum: 9\n        default: 3\n      conv_tol:"}
    for old in edits:
        assert old in text, f"the schema line changed; update this test: {old}"
    for old, new in edits.items():
        text = text.replace(old, new)
    del paper_cfg["systems"]["LiH"]["md"]["timestep_fs"], paper_cfg["dft"]["grid_level"]  # the paper config sets both
    monkeypatch.setattr(qconfig, "_schema_text", lambda: text)
    qconfig._schema_defaults.cache_clear()
    try:
        assert MDSettings.of(paper_cfg, "LiH").timestep_fs == 0.25
        assert qconfig.dft_settings(paper_cfg, "LiH")["grid_level"] == 3
    finally:
        monkeypatch.undo()
        qconfig._schema_defaults.cache_clear()
    assert MDSettings.of(paper_cfg, "LiH").timestep_fs == 0.5


def test_user_keys_win_over_the_defaults(paper_cfg):
    paper_cfg["systems"]["LiH"].setdefault("md", {})["timestep_fs"] = 0.1
    assert MDSettings.of(paper_cfg, "LiH").timestep_fs == 0.1
    ts = training_settings(paper_cfg, "H2O", "qnn", "best")
    assert ts["lr"] == paper_cfg["systems"]["H2O"]["models"]["qnn"]["protocols"]["best"].get("lr", 0.01)
    assert qnn_init(paper_cfg, "H2O", "best")["rotations"] == pytest.approx(3.141592653589793)


def test_effective_dimension_keys_are_settings(paper_cfg):
    """``n_grid`` and ``theta_range`` are config keys (config/README.md): their defaults come from the schema, a user's
    value wins, and a ``theta_range`` that names one kind keeps the others' defaults."""
    ec = EffdimSettings.of({})
    assert ec.n_grid[-1] == 100000 and ec.theta_range["qnn"] == pytest.approx((-3.141592653589793, 3.141592653589793))
    ec = EffdimSettings.of({"effective_dimension": {"n_grid": [30, 40], "theta_range": {"nn": [-2.0, 2.0]}}})
    assert ec.n_grid == (30, 40)
    assert ec.theta_range["nn"] == (-2.0, 2.0) and ec.theta_range["bpnn"] == (-1.0, 1.0)


def test_every_schema_key_of_a_typed_block_has_its_field():
    """The typed settings (qnnff.settings) carry every key their schema block declares: a key added to the schema
    cannot be silently ignored by the stages that read the block."""
    import dataclasses

    from qnnff.settings import AerSettings, SliceSettings, TrainingSettings

    s = qconfig.schema()
    defs, system = s["$defs"], s["$defs"]["system"]["properties"]
    blocks = {
        MDSettings: system["md"]["properties"],
        SliceSettings: system["slice"]["properties"],
        EffdimSettings: s["properties"]["effective_dimension"]["properties"],
        AerSettings: {**defs["qnn"]["properties"]["aer"]["properties"], "hardware": None},
        TrainingSettings: {k: v for k, v in defs["training"]["properties"].items() if k != "init"},  # init: qnn_init
    }
    for cls, props in blocks.items():
        assert {f.name for f in dataclasses.fields(cls)} == set(props), cls.__name__

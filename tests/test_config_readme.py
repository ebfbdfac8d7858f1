"""config/README.md cannot drift from config/schema.yaml (issue 12): every key its tables document exists in the
schema where its section says, every key of the schema's main blocks is documented, and every default stated in a
table's `default` column equals the schema's `default`."""

import math
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((REPO / "config/schema.yaml").read_text())
README = (REPO / "config/README.md").read_text()

# section heading (start) -> the schema blocks its tables document (dotted paths below the root; "#name" = $defs/name)
SECTIONS = {
    "## Top level": [""],
    "## `dft`": ["#dft"],
    "## A system\n": ["#system"],
    "## `effective_dimension`": ["effective_dimension"],
    "## A system's `models`": ["#training"],
    "### `qnn`": ["#qnn_init", "#qnn.hardware", "#qnn.aer", "#qnn"],  # in this order: `rotations` is an init key
    "### `sgdml`": ["#sgdml"],
    "### `eqnn`": ["#eqnn_init", "#eqnn"],
    "## A system's `md` and `slice`": ["#system"],
    "## `reproduction`": ["reproduction"],
}
# blocks whose every key must appear in some table of its section (the studies grid keys are checked by test_studies)
COMPLETE = {"#dft", "#training", "#qnn_init", "#qnn.hardware", "#sgdml", "#eqnn", "#eqnn_init", "effective_dimension",
            "reproduction"}


def deref(node):
    while isinstance(node, dict) and "$ref" in node:
        node = SCHEMA["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def resolve(node, dotted):
    for part in [p for p in dotted.split(".") if p]:
        node = deref(node)
        props = node.get("properties", {}) if isinstance(node, dict) else {}
        if part not in props:
            return None
        node = props[part]
    return deref(node)


def block(path):
    if path.startswith("#"):
        name, _, rest = path[1:].partition(".")
        return resolve(SCHEMA["$defs"][name], rest)
    return resolve(SCHEMA, path)


def tables():
    """(section heading, keys, default cell or None) for every documented key row."""
    parts = re.split(r"^(#{2,3} .*\n)", README, flags=re.M)
    rows = []
    for head, body in zip(parts[1::2], parts[2::2]):
        section = next((s for s in SECTIONS if head.startswith(s)), None)
        has_default = False
        for line in body.splitlines():
            if line.startswith("| key |"):
                has_default = line.split("|")[2].strip() == "default"
            elif line.startswith("| `") and section:
                cells = [c.strip() for c in line.strip().strip("|").split("|")]
                rows.append((section, re.findall(r"`([^`]+)`", cells[0]), cells[1] if has_default else None))
    return rows


def literal(cell):
    """A README default cell as a value, or None when it is prose ("centre of the range")."""
    cell = cell.strip().strip("`")
    if cell in ("null", "false", "true", "[]"):
        return {"null": None, "false": False, "true": True, "[]": []}[cell]
    if cell == "pi":
        return math.pi
    try:
        return float(cell)
    except ValueError:
        return cell if re.fullmatch(r"[a-z][a-z0-9_-]*", cell) else ...


def test_the_parser_sees_the_tables():
    sections = {s for s, _, _ in tables()}
    assert sections == set(SECTIONS), set(SECTIONS) - sections


def test_every_documented_key_is_in_the_schema():
    missing = [f"{section.strip()}: {key}" for section, keys, _ in tables() for key in keys
               if not any(resolve(block(b), key) is not None for b in SECTIONS[section])]
    assert not missing, f"config/README.md documents keys the schema does not have: {missing}"


def test_every_schema_key_is_documented():
    documented = {}
    for section, keys, _ in tables():
        for b in SECTIONS[section]:
            documented.setdefault(b, set()).update(k.split(".")[0] for k in keys)
    undocumented = [f"{b}.{k}" for b in sorted(COMPLETE) for k in block(b).get("properties", {})
                    if k not in documented.get(b, set())]
    assert not undocumented, f"schema keys without a row in config/README.md: {undocumented}"


def test_documented_defaults_equal_the_schema_defaults():
    wrong, checked = [], 0
    for section, keys, cell in tables():
        if cell is None or len(keys) != 1:
            continue
        value = literal(cell)
        if value is ...:
            continue
        for b in SECTIONS[section]:
            node = resolve(block(b), keys[0])
            if node is not None and "default" in node:
                checked += 1
                d = node["default"]
                same = (math.isclose(float(d), value) if isinstance(value, float) and isinstance(d, (int, float))
                        and not isinstance(d, bool) else d == value)
                if not same:
                    wrong.append(f"{keys[0]}: README {cell!r}, schema {d!r}")
                break
    assert checked >= 15, checked  # the comparison really ran
    assert not wrong, f"config/README.md defaults differ from config/schema.yaml: {wrong}"


@pytest.mark.parametrize("cell,value", [("`auto`", "auto"), ("0.02", 0.02), ("null", None), ("centre", "centre"),
                                        ("centre of each range", ...)])
def test_literal(cell, value):
    assert literal(cell) == value

"""The rule files read as text: which rules exist and which script each runs (shared by the workflow-layout tests)."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def rule_scripts() -> dict[str, tuple[str, str]]:
    """rule -> (rule file stem, script stem), `use rule A as B` inheriting A's script."""
    out: dict[str, tuple[str, str]] = {}
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        rule = None
        for line in smk.read_text().splitlines():
            if m := re.match(r"rule (\w+):", line):
                rule = m.group(1)
            elif m := re.match(r"use rule (\w+) as (\w+) with:", line):
                out[m.group(2)] = (smk.stem, out[m.group(1)][1])
                rule = None
            elif rule and (m := re.search(r'"\.\./scripts/(\w+)\.py"', line)):
                out[rule] = (smk.stem, m.group(1))
    return out

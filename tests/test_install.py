"""Reproducible installs (issue 29): ``constraints.txt`` pins every direct dependency of ``pyproject.toml`` (the core
list and every extra) to one exact version inside the range that ``pyproject.toml`` allows, and the README's commands
install with it. CI (`.ci/run`) installs exactly that way into a new virtual environment, so the versions it tests are
the versions a new user gets."""

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]


def pins(text: str) -> dict[str, Version]:
    """``{canonical name: version}`` of a constraints file's ``name==version`` lines."""
    out: dict[str, Version] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        assert m, f"constraints.txt line {n}: {line!r} is not an exact pin name==version"
        name = canonicalize_name(m[1])
        assert name not in out, f"constraints.txt pins {m[1]} twice"
        out[name] = Version(m[2])
    return out


def direct_requirements() -> dict[str, list[Requirement]]:
    """Every requirement of pyproject.toml, by where it is listed (``dependencies`` or the extra's name)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    groups = {"dependencies": project["dependencies"], **project.get("optional-dependencies", {})}
    return {g: [Requirement(r) for r in reqs] for g, reqs in groups.items()}


def uncovered(constraints: dict[str, Version], groups: dict[str, list[Requirement]]) -> list[str]:
    problems = []
    for group, reqs in groups.items():
        for req in reqs:
            v = constraints.get(canonicalize_name(req.name))
            if v is None:
                problems.append(f"{req.name} ({group}) has no pin")
            elif not req.specifier.contains(v, prereleases=True):
                problems.append(f"{req.name}=={v} lies outside {req.specifier} ({group})")
    return problems


def test_constraints_pin_every_direct_dependency_inside_its_range():
    problems = uncovered(pins((REPO / "constraints.txt").read_text()), direct_requirements())
    assert not problems, "constraints.txt does not match pyproject.toml (README: refreshing the constraints):\n" + "\n".join(problems)


def test_the_check_fails_on_a_missing_pin_and_on_a_pin_outside_the_range():
    groups = {"dependencies": [Requirement("numpy>=2.0,<3"), Requirement("torch==2.13.0")]}
    assert uncovered({"numpy": Version("2.4.6"), "torch": Version("2.13.0")}, groups) == []
    numpy_range = groups["dependencies"][0].specifier  # printed in packaging's own order
    assert uncovered({"numpy": Version("1.26.4"), "torch": Version("2.13.0")}, groups) == [f"numpy==1.26.4 lies outside {numpy_range} (dependencies)"]
    assert uncovered({"numpy": Version("2.4.6")}, groups) == ["torch (dependencies) has no pin"]


def test_the_project_itself_is_not_pinned():
    assert "qnnff" not in pins((REPO / "constraints.txt").read_text())


def test_readme_and_ci_install_with_the_constraints():
    readme = (REPO / "README.md").read_text()
    assert 'pip install -e ".[test]" -c constraints.txt && python -m pytest' in readme
    assert "pip install -e . -c constraints.txt && snakemake" in readme
    ci = (REPO / ".ci/run").read_text()
    assert "-c constraints.txt" in ci and "-m venv" in ci

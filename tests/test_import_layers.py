"""The package's import graph has no cycle, and the configuration layer points one way (issue 25).

The graph is read statically from the source: every ``import`` and ``from ... import`` anywhere in a module, at module
level, inside functions and under ``if TYPE_CHECKING:``, so that a lazy import cannot hide a cycle.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def module_names(src: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of ``package`` under ``src`` (a package is its __init__)."""
    out = {}
    for f in sorted((src / package).rglob("*.py")):
        parts = list(f.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def import_graph(src: Path, package: str) -> dict[str, set[str]]:
    """Module -> the modules of ``package`` it imports (anywhere in its source). ``from a import b`` is an edge to
    ``a.b`` when that is a module, else to ``a``; an import of a package's own ``__init__`` by its submodules (which
    Python runs first anyway) is not an edge."""
    modules = module_names(src, package)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        is_pkg = path.name == "__init__.py"
        base = name.split(".") if is_pkg else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    anchor = base[: len(base) - (node.level - 1)]
                    mod = ".".join(anchor + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in modules else mod for a in node.names]
            for t in targets:
                while t and t not in modules:  # `import qnnff.models.qnn.x` -> the deepest known module
                    t = t.rpartition(".")[0]
                if t and t != name and not name.startswith(t + "."):
                    graph[name].add(t)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted; sorted."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def test_qnnff_has_no_import_cycle():
    found = cycles(import_graph(SRC, "qnnff"))
    assert not found, "import cycles in src/qnnff:\n" + "\n".join(
        f"  {' <-> '.join(c)}" for c in found)


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = tmp_path / "pkg" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
    return tmp_path


@pytest.mark.parametrize("b_source", [
    "from ..a import f\n",                                  # at module level
    "def g():\n    from ..a import f\n    return f\n",      # hidden in a function
    "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import f\n",  # under TYPE_CHECKING, absolute
    "def g():\n    from .. import a\n    return a\n",       # `from .. import module`
    "import pkg.a\n",                                        # a plain import
])
def test_a_planted_cycle_is_found_however_it_is_imported(tmp_path, b_source):
    src = _package(tmp_path, {"__init__.py": "", "a.py": "from .sub.b import g\ndef f():\n    pass\n",
                              "sub/__init__.py": "", "sub/b.py": b_source})
    assert cycles(import_graph(src, "pkg")) == [["pkg.a", "pkg.sub.b"]]


def test_no_cycle_is_reported_for_a_one_way_package(tmp_path):
    src = _package(tmp_path, {"__init__.py": "from .a import f\n", "a.py": "from .b import g\ndef f():\n    from .b import g\n",
                              "b.py": "import os\nimport pkg\ndef g():\n    pass\n"})
    assert import_graph(src, "pkg")["pkg.a"] == {"pkg.b"}
    assert cycles(import_graph(src, "pkg")) == []


# the configuration layer, bottom to top (issue 25): a module imports none listed after it
CONFIG_LAYERS = ["qnnff.config", "qnnff.protocols", "qnnff.studies", "qnnff.settings", "qnnff.jobs", "qnnff.checks"]
LEAVES = ["qnnff.errors", "qnnff.units", "qnnff.io", "qnnff.integrity", "qnnff.seeding"]


def test_the_configuration_layer_points_one_way_and_the_leaves_import_no_layer():
    graph = import_graph(SRC, "qnnff")
    for i, mod in enumerate(CONFIG_LAYERS):
        above = set(CONFIG_LAYERS[i + 1:]) | {m for m in graph if m.startswith(("qnnff.stages", "qnnff.models"))}
        assert not graph[mod] & above, f"{mod} imports a module above it: {sorted(graph[mod] & above)}"
    for leaf in LEAVES:
        assert graph[leaf] <= set(LEAVES), f"{leaf} should be a leaf, imports {sorted(graph[leaf] - set(LEAVES))}"

"""The package's shape holds: every import of `iu_core` flows one way through the layers, no two
modules import each other (directly or round a longer loop), and the guarded-migration framework
names nothing of IU Core (docs/architecture.md).

Read from the source with `ast`, every import counts: at the top, inside a function, under
`if TYPE_CHECKING`. An import hidden in a function is still a dependency, and a cycle hidden
that way is still a cycle.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import iu_core

SRC = Path(iu_core.__file__).resolve().parent

# Bottom to top: a module may import its own layer and the layers below it, never one above.
LAYERS = ("base", "pg", "framework", "domain", "release", "commands", "cli")
# Top-level modules and their layer: the one exception tree and the settings everyone reads,
# the stable path revision files import (the framework's), and the command line.
TOP_LEVEL = {"iu_core": "base", "iu_core.errors": "base", "iu_core.config": "base",
             "iu_core.revision": "framework", "iu_core.cli": "cli"}
# What the generic framework (and what it stands on) must not name: IU Core's objects, schemas,
# gate keys. Where it needs a project's facts it reads them from the project.
IU_CORE_NAMES = re.compile(
    r"\b(fn_iu_\w*|fn_dot_\w*|dot_iu\w*|dot_config|cutter_governance|iu_gate\w*|iu_outbound\w*"
    r"|event_type_registry|iu_core\.[a-z_]+_enabled|iu_enact\.\w+)")
GENERIC = ("base", "pg", "framework")


def _name(path: Path) -> str:
    parts = ["iu_core", *path.relative_to(SRC).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(p): p for p in sorted(SRC.rglob("*.py"))}


def layer(module: str) -> str:
    if module in TOP_LEVEL:
        return TOP_LEVEL[module]
    sub = module.split(".")[1]
    assert sub in LAYERS, f"{module}: not in a layer; put it in one of {LAYERS} (or TOP_LEVEL, saying why)"
    return sub


def imports(module: str, source: str) -> set[str]:
    """Every iu_core module `module` imports, wherever the import statement is."""
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                origin = ".".join([*base, node.module] if node.module else base)
            else:
                origin = node.module or ""
            # `from pkg import mod` imports the module pkg.mod; `from mod import name` imports mod
            names = [f"{origin}.{a.name}" if f"{origin}.{a.name}" in MODULES else origin for a in node.names]
        else:
            continue
        found |= {n for n in names if n in MODULES and n != module}
    return found


def graph(sources: dict[str, str]) -> dict[str, set[str]]:
    return {m: imports(m, text) for m, text in sources.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(g.get(v, ())):
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

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def upward(g: dict[str, set[str]]) -> list[str]:
    return sorted(f"{m} ({layer(m)}) imports {t} ({layer(t)})" for m, targets in g.items() for t in targets
                  if LAYERS.index(layer(t)) > LAYERS.index(layer(m)))


def iu_core_names(sources: dict[str, str]) -> list[str]:
    return sorted(f"{m}:{n}: {hit.group(0)}" for m, text in sources.items() if layer(m) in GENERIC
                  for n, line in enumerate(text.splitlines(), 1) for hit in [IU_CORE_NAMES.search(line)] if hit)


@pytest.fixture(scope="module")
def sources() -> dict[str, str]:
    return {m: p.read_text(encoding="utf-8") for m, p in MODULES.items()}


def test_every_module_is_in_a_layer(sources: dict[str, str]) -> None:
    assert {m: layer(m) for m in sources}  # layer() names the module that is not


def test_no_import_cycle(sources: dict[str, str]) -> None:
    assert cycles(graph(sources)) == []


def test_imports_flow_down_the_layers(sources: dict[str, str]) -> None:
    assert upward(graph(sources)) == []


def test_the_framework_names_nothing_of_iu_core(sources: dict[str, str]) -> None:
    assert iu_core_names(sources) == []


# The checks themselves, on a made-up package: each fails for what its name says.

def _fake(**modules: str) -> dict[str, str]:
    for m in modules:
        MODULES.setdefault(m, SRC / "__fake__.py")
    return modules


def test_the_checks_see_a_cycle_hidden_in_a_function() -> None:
    src = _fake(**{"iu_core.framework.fake_a": "from . import fake_b\n",
                   "iu_core.framework.fake_b": "def f():\n    from .fake_a import x\n"})
    try:
        assert cycles(graph(src)) == [["iu_core.framework.fake_a", "iu_core.framework.fake_b"]]
    finally:
        for m in src:
            MODULES.pop(m)


def test_the_checks_see_an_upward_import_under_type_checking() -> None:
    src = _fake(**{"iu_core.pg.fake": "if TYPE_CHECKING:\n    from ..framework.session import MigrationSession\n"})
    try:
        assert upward(graph(src)) == ["iu_core.pg.fake (pg) imports iu_core.framework.session (framework)"]
    finally:
        MODULES.pop("iu_core.pg.fake")


def test_the_checks_see_an_iu_core_name_in_the_framework() -> None:
    src = _fake(**{"iu_core.framework.fake": 'GATE = "iu_core.composer_enabled"\n',
                   "iu_core.domain.fake": 'GATE = "iu_core.composer_enabled"\n'})
    try:
        assert iu_core_names(src) == ["iu_core.framework.fake:1: iu_core.composer_enabled"]
    finally:
        for m in src:
            MODULES.pop(m)

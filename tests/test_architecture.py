"""The package's shape: imports flow one way (no cycle, function-level imports included), every module has
one job and stays small, only the CLI's rendering module prints, and the library never needs test-only
packages (scikit-learn) to import."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "magcache_cli"


def _modules() -> dict[str, Path]:
    mods = {}
    for path in PKG.rglob("*.py"):
        parts = path.relative_to(PKG.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = path
    return mods


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports (every `import`/`from` anywhere in the file, also inside
    functions). `from a import b` counts as importing `a.b` when that is a module, else `a`; relative imports
    are resolved."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        is_pkg = path.name == "__init__.py"
        here = mod.split(".") if is_pkg else mod.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = here[: len(here) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                for a in node.names:
                    full = f"{base}.{a.name}"
                    targets.append(full if full in mods else base)
            for t in targets:
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t and t != mod:
                    graph[mod].add(t)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), plus self-loops."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
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

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


# Layers, highest first: a module may import its own layer's modules and lower layers only.
LAYERS = [
    ("magcache_cli.cli", "magcache_cli.__main__"),
    ("magcache_cli.api", "magcache_cli"),  # the public API (the package root re-exports it lazily)
    ("magcache_cli.quality",),
    ("magcache_cli.runner",),
    ("magcache_cli.profile",),
    ("magcache_cli.core",),
    ("magcache_cli.types", "magcache_cli.errors", "magcache_cli.log", "magcache_cli.version"),
]


def _layer(mod: str) -> int | None:
    for i, prefixes in enumerate(LAYERS):
        if any(mod == p or mod.startswith(p + ".") for p in prefixes if p != "magcache_cli") or mod in prefixes:
            return i
    return None


def test_imports_flow_downwards():
    bad = []
    for mod, deps in import_graph().items():
        if mod.startswith("magcache_cli.testing"):
            continue
        for dep in deps:
            if dep.startswith("magcache_cli.testing"):
                bad.append(f"{mod} imports test-only {dep}")
            lm, ld = _layer(mod), _layer(dep)
            if lm is not None and ld is not None and ld < lm:
                bad.append(f"{mod} (layer {lm}) imports {dep} (layer {ld})")
    assert not bad, "\n".join(sorted(bad))


def test_modules_stay_small_and_only_the_renderer_prints():
    big, prints = [], []
    for mod, path in _modules().items():
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > 450:
            big.append(f"{mod}: {len(text.splitlines())} lines")
        if not mod.startswith("magcache_cli.cli.render"):
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
                    prints.append(f"{mod}:{node.lineno}")
    assert not big, big
    assert not prints, prints


def test_library_imports_without_test_only_packages():
    code = ("import sys; sys.modules['sklearn'] = None; import magcache_cli, magcache_cli.api, "
            "magcache_cli.cli.app, magcache_cli.quality.tune; print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       cwd=PKG.parent)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr

"""The library's import graph, read from the source (nothing is imported): layers and cycles.

    python tools/import_graph.py            # the layers of the library in this checkout
    python tools/import_graph.py --root DIR # of another checkout (e.g. an older commit's worktree)

A module's layer is the length of its longest chain of imports down to a module that imports
nothing of the library. Imports inside functions (lazy imports) count for cycles but not for
layers, and a package counts as the modules it names (``from . import env`` is ``env``).
``tests/test_structure.py`` checks the direction of the imports and that there is no cycle.
"""
from __future__ import annotations

import argparse
import ast
from pathlib import Path

PACKAGE_NAME = "mobileblocks_edu"


def module_name(path: Path, root: Path) -> str:
    return ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")


def is_module(dotted: str, root: Path) -> bool:
    path = root.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports(path: Path, root: Path) -> list[tuple[str, list[str], bool]]:
    """``(module, names, lazy)`` for every import of the file, relative imports made absolute;
    ``lazy`` when the import is not at the module's top level (inside a function or a branch)."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    top = {id(n) for n in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((module, [a.name for a in node.names], id(node) not in top))
        elif isinstance(node, ast.Import):
            found.extend((a.name, [], id(node) not in top) for a in node.names)
    return found


def library_imports(path: Path, root: Path, lazy: bool = True) -> set[str]:
    """The library modules a file imports (``from .blocks.irb import X`` is ``mobileblocks_edu.blocks.irb``,
    ``from . import env`` is ``mobileblocks_edu.env``)."""
    out = set()
    for module, names, is_lazy in imports(path, root):
        if (is_lazy and not lazy) or not (module == PACKAGE_NAME or module.startswith(PACKAGE_NAME + ".")):
            continue
        submodules = {f"{module}.{n}" for n in names if is_module(f"{module}.{n}", root)}
        out |= submodules or {module}
        if len(submodules) < len(names) and module != PACKAGE_NAME:
            out.add(module)
    return out


def graph(root: Path, lazy: bool = True) -> dict[str, set[str]]:
    """Every library module and the library modules it imports."""
    files = sorted((root / PACKAGE_NAME).rglob("*.py"))
    return {module_name(p, root): {m for m in library_imports(p, root, lazy) if m != module_name(p, root)}
            for p in files}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in g:
        if v not in index:
            visit(v)
    return found


def layers(g: dict[str, set[str]]) -> dict[str, int]:
    """Each module's layer: 0 for one that imports nothing of the library, else 1 + the highest
    layer among its imports (the graph must have no cycle)."""
    depth: dict[str, int] = {}

    def layer(v, seen=()):
        if v not in depth:
            below = [layer(w, seen + (v,)) for w in g.get(v, ()) if w in g and w not in seen]
            depth[v] = 1 + max(below) if below else 0
        return depth[v]

    for v in g:
        layer(v)
    return depth


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent,
                        help="the checkout (the folder that holds mobileblocks_edu/)")
    args = parser.parse_args(argv)
    g = graph(args.root, lazy=False)
    depth = layers(g)
    short = lambda m: m.removeprefix(PACKAGE_NAME + ".")  # noqa: E731
    for level in range(max(depth.values()) + 1):
        print(f"layer {level}:")
        for m in sorted(m for m, d in depth.items() if d == level):
            print(f"  {short(m)} <- {', '.join(sorted(short(i) for i in g[m] if i in g))}")
    found = cycles(graph(args.root, lazy=True))
    print("cycles (lazy imports included):", "; ".join(" <-> ".join(map(short, c)) for c in found) or "none")
    edges = sum(len([i for i in v if i in g]) for v in g.values())
    print(f"{len(g)} modules, {edges} import edges at the top level, {max(depth.values()) + 1} layers")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The library's shape: short functions, short modules, layers that import downhill, public names.

These are the limits the code is kept to so that a reader can enter any file: a function fits on
a screen (80 lines), a module is read in one sitting (550 lines), the core (`env`) depends on
nothing, the notebook helpers (`lab`) are never a dependency of the library, and no module or
lesson reaches into another module's private names.
"""
import ast
import json
import re
from pathlib import Path

import pytest

import mobileblocks_edu

PACKAGE = Path(mobileblocks_edu.__file__).parent
ROOT = PACKAGE.parent
MODULES = sorted(PACKAGE.rglob("*.py"))
MAX_FUNCTION_LINES, MAX_MODULE_LINES = 80, 550


def _name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """``(module, names)`` for every import of the file, relative imports made absolute."""
    package = _name(path) if path.name == "__init__.py" else _name(path).rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found.extend((a.name, []) for a in node.names)
    return found


def _library_imports(path: Path) -> set[str]:
    """The library modules a file imports (``from . import lab`` counts as ``mobileblocks_edu.lab``)."""
    out = set()
    for module, names in _imports(path):
        if module == "mobileblocks_edu":
            out.update(f"{module}.{n}" for n in names if (PACKAGE / f"{n}.py").exists() or (PACKAGE / n).is_dir())
        elif module.startswith("mobileblocks_edu."):
            out.add(module)
    return out


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_functions_fit_on_a_screen(path):
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines, line {node.lineno})"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"{_name(path)}: functions over {MAX_FUNCTION_LINES} lines: {long}"


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_modules_are_read_in_one_sitting(path):
    n = len(path.read_text().splitlines())
    assert n <= MAX_MODULE_LINES, f"{_name(path)} has {n} lines (at most {MAX_MODULE_LINES})"


def test_env_is_the_bottom_layer():
    assert _library_imports(PACKAGE / "env.py") == set()


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_the_library_never_imports_the_notebook_helpers(path):
    if path.name == "lab.py":
        pytest.skip("lab is the notebook helpers")
    assert "mobileblocks_edu.lab" not in _library_imports(path)


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_no_module_imports_a_private_name_of_another(path):
    private = [
        f"{module}.{name}"
        for module, names in _imports(path)
        if module.startswith("mobileblocks_edu")
        for name in names
        if name.startswith("_") and not name.startswith("__")
    ]
    # attribute access of another module's private name, e.g. ``complexity._counter``
    modules = {p.stem for p in MODULES}
    private += [m.group(0) for m in re.finditer(r"\b([a-z_]+)\._[a-z]\w*", path.read_text())
                if m.group(1) in modules and m.group(1) != path.stem]
    assert not private, f"{_name(path)} uses private names of other modules: {private}"


LESSONS = sorted((ROOT / "lessons").glob("*.ipynb"))


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_lessons_use_only_public_names(path):
    code = "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
    code = "\n".join(line for line in code.splitlines() if not line.lstrip().startswith(("!", "%")))
    private = []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mobileblocks_edu"):
            private += [f"{node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
            private += [node.module] if any(part.startswith("_") for part in node.module.split(".")) else []
    modules = {p.stem for p in MODULES} | {"mbe", "mobileblocks_edu"}
    private += [m.group(0) for m in re.finditer(r"\b([a-z_]+)\._[a-z]\w*", code) if m.group(1) in modules]
    assert not private, f"{path.name} uses private names of the library: {private}"

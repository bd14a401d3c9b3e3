"""The library's shape: short functions, short modules, layers that import downhill, public names.

These are the limits the code is kept to so that a reader can enter any file: a function fits on
a screen (80 lines), a module is read in one sitting (550 lines), the core (`env`) depends on
nothing, the notebook helpers (`lab`) are never a dependency of the library, and no module or
lesson reaches into another module's private names.
"""
import ast
import importlib
import json
import re
import sys
from pathlib import Path

import pytest

import mobileblocks_edu

PACKAGE = Path(mobileblocks_edu.__file__).parent
ROOT = PACKAGE.parent
sys.path.insert(0, str(ROOT / "tools"))
import import_graph  # noqa: E402

MODULES = sorted(PACKAGE.rglob("*.py"))
MAX_FUNCTION_LINES, MAX_MODULE_LINES = 80, 550


def _name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """``(module, names)`` for every import of the file, relative imports made absolute."""
    return [(module, names) for module, names, _ in import_graph.imports(path, ROOT)]


def _is_module(dotted: str) -> bool:
    return import_graph.is_module(dotted, ROOT)


def _library_imports(path: Path) -> set[str]:
    """The library modules a file imports, lazy imports included (``from . import lab`` counts as
    ``mobileblocks_edu.lab``, ``from .blocks.irb import X`` as ``mobileblocks_edu.blocks.irb``)."""
    return import_graph.library_imports(path, ROOT)


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


# -- the layout: the book's architecture in the folder names ---------------------------------------

PACKAGES = ("blocks", "models", "analysis", "data", "train", "deploy", "dense")
TOP = {"__init__", "version", "env", "checkpoint", "lab", "viz",
       "bench", "experiments"}  # the last two: only the commands python -m mobileblocks_edu.bench|experiments


def test_the_top_level_holds_the_api_the_bottom_layer_and_the_packages():
    files = {p.stem for p in PACKAGE.glob("*.py")}
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert files == TOP and folders == set(PACKAGES)


@pytest.mark.parametrize("package", PACKAGES)
def test_no_package_is_over_eight_modules(package):
    modules = [p.stem for p in (PACKAGE / package).glob("*.py") if p.stem not in ("__init__", "__main__")]
    assert len(modules) <= 8, f"{package}/ holds {len(modules)} modules: {sorted(modules)}"


# Which packages each layer may import (besides itself and the top-level env/checkpoint/version):
# the parts and blocks nothing above them, the models only blocks (and the data's constants and the
# published weights that create_model(pretrained=True) fetches), the analysis never the trainer or
# the deployment, the data nothing of the models.
ALLOWED = {
    "blocks": set(),
    "models": {"blocks", "data.constants", "data.weights"},
    "data": set(),
    "analysis": {"blocks", "models", "data"},
    "train": {"blocks", "models", "data", "analysis"},
    "deploy": {"blocks", "models", "data", "analysis", "train"},
    "dense": {"blocks", "models", "data", "analysis", "deploy"},  # the detectors and segmenters on the models
}
BASE = {"mobileblocks_edu.env", "mobileblocks_edu.checkpoint", "mobileblocks_edu.version"}


@pytest.mark.parametrize("path", [m for m in MODULES if m.parent != PACKAGE], ids=_name)
def test_imports_go_down_the_layers(path):
    package = path.relative_to(PACKAGE).parts[0]
    allowed = {f"mobileblocks_edu.{p}" for p in ALLOWED[package] | {package}}
    bad = sorted(m for m in _library_imports(path) - BASE
                 if not any(m == a or m.startswith(a + ".") for a in allowed))
    assert not bad, f"{_name(path)} ({package}/) imports {bad}; it may import {sorted(ALLOWED[package])}"


def test_no_module_imports_the_package_root():
    """``from mobileblocks_edu import X`` (or ``from .. import X``) inside the library names only
    modules; nothing reaches for a name that the package's ``__init__`` defines (``__version__``
    lives in ``version``)."""
    bad = []
    for path in MODULES:
        for module, names in _imports(path):
            if module == "mobileblocks_edu" and path != PACKAGE / "__init__.py":
                bad += [f"{_name(path)}: {n}" for n in names if not _is_module(f"mobileblocks_edu.{n}")]
    assert not bad


def test_no_import_cycle():
    """Strongly connected components of the import graph, lazy imports included (a package's
    ``__init__`` re-exporting its own modules is not a cycle: the modules never import it)."""
    assert not import_graph.cycles(import_graph.graph(ROOT)), "import cycles"


def test_the_cycle_check_finds_a_cycle():
    assert import_graph.cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("old", ["irb", "attention", "complexity", "registry", "loop", "latency", "images"])
def test_the_old_flat_paths_are_gone(old):
    with pytest.raises(ImportError):
        importlib.import_module(f"mobileblocks_edu.{old}")


@pytest.mark.parametrize("command", ["bench", "experiments"])
def test_the_command_names_are_only_commands(command):
    with pytest.raises(ImportError, match="only a command"):
        importlib.import_module(f"mobileblocks_edu.{command}")


def test_nothing_names_the_flat_layout():
    """No import, docstring, lesson or page names a module at its old flat path
    (``tools/relayout.py --check``; the same tool rewrites such code)."""
    import relayout

    assert relayout.main(["--check"]) == 0

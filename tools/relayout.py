"""Move the library's flat modules into the packages that show its architecture, and rewrite
every import and dotted reference to them: library, tests, lessons, book pages and README.

    python tools/relayout.py            # move and rewrite (a second run changes nothing)
    python tools/relayout.py --check    # exit 1 if anything still names an old module path

The layout (parts -> blocks -> models, then counting, data, training and deployment)::

    mobileblocks_edu/
      __init__  version  env  checkpoint  lab  viz       the top: the API, the bottom layer, notebook helpers
      blocks/    layers attention dyrelu irb mmb irmb ghost mtb
      models/    registry + one module per family (unchanged)
      analysis/  complexity calculator receptive erf cam bench timing
      data/      datasets images download constants
      train/     recipes loop evaluate runinfo distributed experiments (+ __main__: the command)
      deploy/    fold export latency quantize (+ __main__: the latency|quantize command)

Branches that still use the old paths (a lesson written before the move) can run it again on their
own files: it rewrites `from mobileblocks_edu.irb import ...`, `from mobileblocks_edu import
complexity as cx`, relative imports inside the package and dotted names in prose. The commands
`python -m mobileblocks_edu.{train,experiments,bench,deploy}` keep their names and are never rewritten.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = "mobileblocks_edu"

# old module (relative to the package) -> new module
MOVES = {
    **{m: f"blocks.{m}" for m in ("layers", "attention", "dyrelu", "irb", "mmb", "irmb", "ghost", "mtb")},
    "registry": "models.registry",
    **{m: f"analysis.{m}" for m in ("complexity", "calculator", "receptive", "erf", "cam", "bench")},
    "data": "data",  # a package now: data/__init__ re-exports data/datasets
    "images": "data.images",
    "download": "data.download",
    "train": "train",  # a package now: train/__init__ is the trainer's facade
    **{m: f"train.{m}" for m in ("recipes", "loop", "evaluate", "runinfo", "distributed", "experiments")},
    "deploy": "deploy",  # a package now
    "latency": "deploy.latency",
}
# files whose module becomes a package: where the code goes
FILE_MOVES = {"data": "data/datasets", "deploy": "deploy/export", "train": "train/__init__"}
# (old module, name) -> the module that holds the name now, where a name left its module
NAME_MOVES = {
    ("", "__version__"): "version",
    **{("registry", n): "data.constants" for n in ("CIFAR_MEAN", "CIFAR_STD", "IMAGENET_MEAN", "IMAGENET_STD")},
    **{("data", n): "data.constants" for n in ("CIFAR_MEAN", "CIFAR_STD", "IMAGENET_MEAN", "IMAGENET_STD")},
    **{("bench", n): "analysis.timing" for n in ("time_interleaved",)},
    **{("latency", n): "analysis.timing" for n in ("time_rounds", "summarize_ms")},
}
TEXT_SUFFIXES = {".py", ".md", ".ipynb", ".yml", ".toml", ".cfg", ".txt"}
SKIP = ("lessons/results/", "lessons/checkpoints/", "tools/relayout.py",
        "mobileblocks_edu/bench.py", "mobileblocks_edu/experiments.py")  # the commands that keep their names


def new_module(old: str) -> str:
    return MOVES.get(old, old)


# -- file moves -----------------------------------------------------------------------------------


def move_files() -> dict[Path, str]:
    """Move what is still at its old place; {new path: the package its relative imports were written for}."""
    moved = {}
    pkg = ROOT / PKG
    for old, new in MOVES.items():
        src = pkg / f"{old}.py"
        if not src.exists():
            continue
        dest = pkg / f"{FILE_MOVES.get(old, new.replace('.', '/'))}.py"
        dest.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "mv", str(src), str(dest)], cwd=ROOT, check=True)
        moved[dest] = PKG
        print(f"moved {old}.py -> {dest.relative_to(pkg)}")
    return moved


# -- import rewriting ------------------------------------------------------------------------------

FROM_IMPORT = re.compile(
    r"^(?P<indent>[ \t]*)from[ \t]+(?P<dots>\.*)(?P<module>[\w.]*)[ \t]+import[ \t]+"
    r"(?P<names>\([^)]*\)|[^\n#]*?)(?P<tail>[ \t]*(?:#[^\n]*)?)$",
    re.M,
)


def _split_names(names: str) -> list[str]:
    names = names.strip().removeprefix("(").removesuffix(")")
    names = re.sub(r"#[^\n]*", "", names)
    return [n.strip() for n in names.replace("\n", " ").split(",") if n.strip()]


def _relative(target: str, package: str) -> str:
    """`target` (a dotted name inside the library) as a relative import from `package`."""
    t, p = target.split("."), package.split(".")
    common = 0
    while common < min(len(t), len(p)) and t[common] == p[common]:
        common += 1
    return "." * (len(p) - common + 1) + ".".join(t[common:])


def _format(indent: str, module: str, names: list[str], tail: str, width: int = 110) -> str:
    line = f"{indent}from {module} import {', '.join(names)}"
    if len(line) <= width:
        return line + tail
    body = "".join(f"{indent}    {n},\n" for n in names)
    return f"{indent}from {module} import ({tail}\n{body}{indent})"


def rewrite_imports(text: str, package: str | None, new_package: str | None = None) -> str:
    """Rewrite `from X import ...` statements. `package` is the package the file's relative imports
    were written for (None outside the library), `new_package` the one it sits in now, if it moved."""

    def resolve(dots: str, module: str) -> str | None:
        """The old module, relative to the library root, or None when outside the library."""
        if dots:
            if package is None:
                return None
            base = package.split(".")[: len(package.split(".")) - len(dots) + 1]
            full = ".".join(base + ([module] if module else []))
        else:
            full = module
        if full != PKG and not full.startswith(PKG + "."):
            return None
        return full[len(PKG) + 1:]

    def spell(target: str, dots: str) -> str:
        full = f"{PKG}.{target}" if target else PKG
        return _relative(full, new_package or package) if dots else full

    def replace(m: re.Match) -> str:
        old = resolve(m["dots"], m["module"])
        if old is None:
            return m.group(0)
        names = _split_names(m["names"])
        groups: dict[str, list[str]] = {}
        for spec in names:
            name = spec.split(" as ")[0].strip()
            if (old, name) in NAME_MOVES:
                target = NAME_MOVES[(old, name)]
                groups.setdefault(target, []).append(spec)
            elif old == "" and name in MOVES and MOVES[name] != name:  # from mobileblocks_edu import irb
                parent, _, leaf = MOVES[name].rpartition(".")
                groups.setdefault(parent, []).append(spec if leaf == name else f"{leaf} as {name}")
            elif package is not None and old in FILE_MOVES:  # inside the library: the module, not the package
                groups.setdefault(FILE_MOVES[old].removesuffix("/__init__").replace("/", "."), []).append(spec)
            else:
                groups.setdefault(new_module(old) if old else "", []).append(spec)
        if list(groups) == [old] and spell(old, m["dots"]) == m["dots"] + m["module"]:
            return m.group(0)  # the same module, spelled the same way
        lines = [_format(m["indent"], spell(target, m["dots"]), specs, m["tail"]) for target, specs in groups.items()]
        return "\n".join(lines)

    return FROM_IMPORT.sub(replace, text)


# -- dotted names in code and prose ----------------------------------------------------------------

_OLD = "|".join(sorted((re.escape(o) for o, n in MOVES.items() if o != n), key=len, reverse=True))
DOTTED = re.compile(rf"(?<![\w.])(?P<root>{PKG}|mbe)\.(?P<old>{_OLD})\b(?![\w/])")
COMMAND = re.compile(r"(-m[ \t]+|\"-m\",[ \t]*\")$")


def rewrite_dotted(text: str) -> str:
    def replace(m: re.Match) -> str:
        if COMMAND.search(text[max(0, m.start() - 12): m.start()]):
            return m.group(0)  # python -m mobileblocks_edu.bench: the commands keep their names
        return f"{m['root']}.{new_module(m['old'])}"

    return DOTTED.sub(replace, text)


def rewrite(text: str, package: str | None, new_package: str | None = None) -> str:
    return rewrite_dotted(rewrite_imports(text, package, new_package))


# -- files -----------------------------------------------------------------------------------------


def package_of(path: Path) -> str | None:
    rel = path.relative_to(ROOT)
    if rel.parts[0] != PKG or path.suffix != ".py":
        return None
    parts = list(rel.with_suffix("").parts)
    return ".".join(parts if path.name == "__init__.py" else parts[:-1]).removesuffix(".__init__")


def rewrite_notebook(text: str) -> str:
    nb = json.loads(text)
    for cell in nb["cells"]:
        src = "".join(cell["source"])
        new = rewrite(src, None) if cell["cell_type"] == "code" else rewrite_dotted(src)
        if new != src:
            cell["source"] = new.splitlines(keepends=True)
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split("\n")
    return [ROOT / f for f in listed if f and Path(f).suffix in TEXT_SUFFIXES and not f.startswith(SKIP)
            and (ROOT / f).exists()]


def rewritten(path: Path, moved: dict[Path, str] | None = None) -> str | None:
    """The file's new text, or None when it needs no change."""
    text = path.read_text()
    if path.suffix == ".ipynb":
        new = rewrite_notebook(text)
        return None if json.loads(new) == json.loads(text) else new
    if moved and path in moved:
        new = rewrite(text, moved[path], package_of(path))
    elif path.suffix == ".py":
        new = rewrite(text, package_of(path))
    else:
        new = rewrite_dotted(text)
    return None if new == text else new


def rewrite_all(moved: dict[Path, str]) -> list[str]:
    changed = []
    for path in files():
        new = rewritten(path, moved)
        if new is not None:
            path.write_text(new)
            changed.append(str(path.relative_to(ROOT)))
    return changed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file needs rewriting")
    args = parser.parse_args(argv)
    if args.check:
        stale = [str(p.relative_to(ROOT)) for p in files() if rewritten(p) is not None]
        print("\n".join(stale) or "every file uses the new layout")
        return 1 if stale else 0
    for name in rewrite_all(move_files()):
        print("rewrote", name)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Write the student version of the lessons: the notebooks without their solutions and with the
bodies of their self-checks replaced by a stub that the student fills.

    python tools/student.py                  # every lesson of _toc.yml into _build/student/
    python tools/student.py --out DIR [NAMES]  # some lessons (file names or stems) into DIR

In a lesson, a solution is a folded ``<details><summary>Solution</summary> ... </details>`` block of
a Markdown cell (``Solutions`` too), and a self-check is a code cell tagged ``self-check`` (it starts
with ``# Self-check``). The student version drops the solution blocks (a cell left empty goes),
keeps each self-check's ``# Self-check ...`` comment lines above a stub, shows those cells (no
``hide-input``), and clears every output. Nothing else changes, so the notebooks run as before.
Only the standard library is needed.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOLUTION = re.compile(r"\n*<details><summary>Solutions?</summary>.*?</details>[ \t]*\n?", re.S)
NOTE = ("> **Student version:** the solutions and the bodies of the self-checks are left out. "
        "Write your own check under each `# Self-check` comment.")
STUB = "...  # your check here: compute your answer and assert it\n"


def _source(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def toc_lessons(root: Path = ROOT) -> list[Path]:
    """The numbered lessons of ``_toc.yml`` in book order (not the reference pages)."""
    entries = re.findall(r"^\s*- file:\s*(lessons/\d\S*)", (root / "_toc.yml").read_text(), re.M)
    return [root / f"{e}.ipynb" for e in entries]


def strip_solutions(text: str) -> str:
    """A Markdown cell's text without its folded solution blocks."""
    return SOLUTION.sub("\n", text).strip("\n")


def stub_self_check(text: str) -> str:
    """A self-check cell's comment lines (``# Self-check ...``), each followed by a stub."""
    heads = [line for line in text.splitlines() if line.lstrip().startswith("# Self-check")]
    if not heads:
        raise ValueError(f"a self-check cell must start with '# Self-check': {text[:60]!r}")
    return "\n".join(f"{head.strip()}\n{STUB}" for head in heads).rstrip("\n")


def student_notebook(nb: dict) -> dict:
    """The student version of one lesson notebook (a new dict; ``nb`` is left alone)."""
    nb = json.loads(json.dumps(nb))
    cells = []
    for cell in nb["cells"]:
        tags = cell.get("metadata", {}).get("tags", [])
        if cell["cell_type"] == "markdown":
            text = _source(cell)
            stripped = strip_solutions(text)
            if stripped != text.strip("\n"):
                if not stripped.strip():
                    continue
                cell["source"] = stripped.splitlines(keepends=True)
        elif cell["cell_type"] == "code":
            if "self-check" in tags:
                cell["source"] = stub_self_check(_source(cell)).splitlines(keepends=True)
                cell["metadata"]["tags"] = [t for t in tags if t != "hide-input"]
            cell["outputs"], cell["execution_count"] = [], None
        cells.append(cell)
    if cells and cells[0]["cell_type"] == "markdown":
        title, _, rest = _source(cells[0]).partition("\n")
        cells[0]["source"] = f"{title}\n\n{NOTE}\n{rest}".splitlines(keepends=True)
    nb["cells"] = cells
    return nb


def write_student(lessons: list[Path], out: Path) -> list[Path]:
    """Write the student version of each lesson into ``out``; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in lessons:
        if not path.is_file():
            raise FileNotFoundError(f"no lesson {path}")
        nb = student_notebook(json.loads(path.read_text(encoding="utf-8")))
        dest = out / path.name
        dest.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(dest)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("lessons", nargs="*", help="lesson files or stems (default: every lesson of _toc.yml)")
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "student", help="output folder")
    args = parser.parse_args(argv)
    lessons = toc_lessons()
    if args.lessons:
        by_name = {p.stem: p for p in lessons} | {p.name: p for p in lessons}
        unknown = [name for name in args.lessons if Path(name).name not in by_name]
        if unknown:
            parser.error(f"not a lesson of _toc.yml: {', '.join(unknown)}")
        lessons = [by_name[Path(name).name] for name in args.lessons]
    written = write_student(lessons, args.out)
    print(f"{len(written)} student notebooks in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

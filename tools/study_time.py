"""How long each lesson takes to study: reading, running on a CPU, retraining, on a GPU.

The instructors' page (``book/instructors.md``) computes its study-time table with these functions:

* **reading** from the words of a lesson's Markdown cells at :data:`WORDS_PER_MINUTE`;
* **running** (top to bottom, committed results loaded) from ``lessons/results/lesson_times.json``,
  which this command writes, with the command and the machine, from either source:

      python tools/study_time.py collect [--doctrees _build/.doctrees]   # after `make book`: its execution table
      python tools/study_time.py measure [LESSONS]                       # execute the lessons here (nbclient)

  ``MBE_FAST=1`` during ``measure`` records fast-mode times, which the file says;
* **retraining** from the committed training results (``lessons/results/*.json``: each records its
  wall time and device), grouped by the lesson that reads them (:data:`RESULTS_OF`).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import pickle
import re
import sys
import time
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "lessons" / "results"
TIMES = RESULTS / "lesson_times.json"
# A deliberate, stated assumption: technical prose with equations and code is read slowly.
WORDS_PER_MINUTE = 120
# Which committed training results each lesson reads (file-name prefixes in lessons/results).
RESULTS_OF = {
    "10b_mocovit_d": ("cifar10_mocovit_d_",),
    "11_train_cifar10": ("cifar10_", "lr_sweep_"),  # MoCoViT-D's runs too: lesson 11 compares them
    "12_train_imagenette": ("imagenette_",),
    "13_ablations": ("ablation_",),
}


def toc_parts(root: Path = ROOT) -> list[tuple[str, list[str]]]:
    """The numbered parts of ``_toc.yml``: ``[(caption, [lesson stems]), ...]`` in book order, sections
    included (lesson 10b)."""
    parts, caption = [], None
    for line in (root / "_toc.yml").read_text().splitlines():
        m = re.match(r"\s*- caption:\s*(.+)$", line)
        if m:
            caption = m.group(1).strip().strip('"')
            parts.append((caption, []))
        m = re.match(r"\s*- file:\s*lessons/(\S+)$", line)
        if m and caption is not None and re.match(r"\d", m.group(1)):
            parts[-1][1].append(m.group(1))
    return [(c, stems) for c, stems in parts if stems]


def _source(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def markdown_words(path: Path) -> int:
    """Words of a notebook's Markdown cells (maths and link targets count as they are written)."""
    cells = json.loads(Path(path).read_text(encoding="utf-8"))["cells"]
    text = "\n".join(_source(c) for c in cells if c["cell_type"] == "markdown")
    text = re.sub(r"\]\([^)]*\)", "]", text)  # a link's target is not read
    return len(re.findall(r"[^\s#*|>-]\S*", text))


def reading_minutes(path: Path, wpm: int = WORDS_PER_MINUTE) -> float:
    if wpm <= 0:
        raise ValueError(f"words per minute must be positive, got {wpm}")
    return markdown_words(path) / wpm


def training_runs(stem: str, results: Path = RESULTS) -> list[dict]:
    """The committed training results a lesson reads: ``[{"name", "wall_time_s", "device"}, ...]``."""
    runs = []
    for prefix in RESULTS_OF.get(stem, ()):
        for path in sorted(results.glob(f"{prefix}*.json")):
            rec = json.loads(path.read_text())
            if not isinstance(rec, dict) or "wall_time_s" not in rec:
                raise ValueError(f"{path.name}: no wall_time_s; rewrite it with its command ({rec.get('command')})")
            runs.append({"name": path.stem, "wall_time_s": float(rec["wall_time_s"]),
                         "device": str(rec.get("device", "cpu"))})
    return runs


def lesson_title(path: Path) -> str:
    """A lesson's title: the first line of its first cell, without the ``#``."""
    cells = json.loads(Path(path).read_text(encoding="utf-8"))["cells"]
    return _source(cells[0]).splitlines()[0].lstrip("# ").strip()


def _seconds_on(runs: list[dict], kind: str) -> float:
    return sum(r["wall_time_s"] for r in runs if r["device"].startswith(kind))


def study_rows(times: Optional[dict] = None, wpm: int = WORDS_PER_MINUTE, root: Path = ROOT) -> list[dict]:
    """One row per lesson of ``_toc.yml``, in book order: its part, title, words, reading minutes,
    run seconds (``None``: not in the times file), and the committed training runs it reads (their
    count and seconds in all, per device kind)."""
    if times is None:
        times = read_times(root / "lessons" / "results" / "lesson_times.json")
    runs_s = (times or {}).get("lessons", {})
    rows = []
    for part, stems in toc_parts(root):
        for stem in stems:
            path = root / "lessons" / f"{stem}.ipynb"
            runs = training_runs(stem, root / "lessons" / "results")
            rows.append({"part": part, "stem": stem, "title": lesson_title(path), "words": markdown_words(path),
                         "reading_min": reading_minutes(path, wpm), "run_s": runs_s.get(stem),
                         "train_runs": len(runs), "train_cpu_s": _seconds_on(runs, "cpu"),
                         "train_gpu_s": _seconds_on(runs, "cuda"),
                         "train_gpu_runs": sum(r["device"].startswith("cuda") for r in runs)})
    return rows


def read_times(path: Path = TIMES) -> Optional[dict]:
    """The committed run times (``None`` when no file has been written yet)."""
    if not Path(path).is_file():
        return None
    rec = json.loads(Path(path).read_text())
    if not isinstance(rec, dict) or not isinstance(rec.get("lessons"), dict) or "command" not in rec:
        raise ValueError(f"{path}: not a lesson-times file; rewrite it with `python tools/study_time.py collect`")
    return rec


def _machine() -> str:
    try:
        from mobileblocks_edu.env import machine
        return machine()
    except ImportError:
        import platform
        return f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical cores"


def _write(lessons: dict, source: str, command: str, fast: bool, path: Path = TIMES) -> Path:
    old = read_times(path) if path.is_file() else None
    merged = dict(old["lessons"]) if old and old.get("fast") == fast else {}
    merged.update(lessons)
    rec = {"command": command, "source": source, "fast": fast, "machine": _machine(),
           "date": datetime.date.today().isoformat(), "lessons": dict(sorted(merged.items()))}
    path.write_text(json.dumps(rec, indent=1) + "\n")
    return path


def collect(doctrees: Path) -> dict:
    """Run times of the lessons from a Jupyter Book build (its ``environment.pickle``): what the
    build's execution table shows, ``{stem: seconds}`` for the lessons that ran and succeeded."""
    env_file = Path(doctrees) / "environment.pickle"
    if not env_file.is_file():
        raise FileNotFoundError(f"no {env_file}: build the book first (`make book`)")
    with open(env_file, "rb") as f:
        env = pickle.load(f)  # the build's own file
    times = {}
    for docname, meta in getattr(env, "nb_metadata", {}).items():
        data = meta.get("exec_data") or {}
        if docname.startswith("lessons/") and data.get("succeeded") and data.get("runtime") is not None:
            times[docname.split("/", 1)[1]] = round(float(data["runtime"]), 1)
    return times


def measure(paths: list[Path], timeout: int = 1800) -> dict:
    """Execute each lesson top to bottom in its folder (nbclient) and time it: ``{stem: seconds}``."""
    import nbformat
    from nbclient import NotebookClient

    times = {}
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        start = time.perf_counter()
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
        times[path.stem] = round(time.perf_counter() - start, 1)
        print(f"{path.stem}: {times[path.stem]:.0f} s", flush=True)
    return times


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Record how long each lesson takes to run, into "
                                     "lessons/results/lesson_times.json")
    sub = parser.add_subparsers(dest="how", required=True)
    c = sub.add_parser("collect", help="from a book build's execution data")
    c.add_argument("--doctrees", type=Path, default=ROOT / "_build" / ".doctrees")
    c.add_argument("--fast", action="store_true", help="the build ran in fast mode (make book-fast)")
    m = sub.add_parser("measure", help="execute the lessons here (MBE_FAST=1: fast mode)")
    m.add_argument("lessons", nargs="*", help="lesson stems (default: every lesson of _toc.yml)")
    args = parser.parse_args(argv)
    stems = [s for _, part in toc_parts() for s in part]
    if args.how == "collect":
        times, fast = collect(args.doctrees), args.fast
        times = {k: v for k, v in times.items() if k in stems}
        command = "python tools/study_time.py collect" + (" --fast" if fast else "")
    else:
        unknown = [s for s in args.lessons if s not in stems]
        if unknown:
            parser.error(f"not a lesson of _toc.yml: {', '.join(unknown)}")
        chosen = args.lessons or stems
        fast = os.environ.get("MBE_FAST", "").strip().lower() in {"1", "true", "yes", "on"}
        times = measure([ROOT / "lessons" / f"{s}.ipynb" for s in chosen])
        command = ("MBE_FAST=1 " if fast else "") + "python tools/study_time.py measure " + " ".join(args.lessons)
    path = _write(times, args.how, command.strip(), fast)
    print(f"{len(times)} lesson times in {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Checks of the lessons' executed outputs, run on the notebooks nbmake has just executed (no second run).

``make test`` executes every lesson with nbmake in fast mode. This plugin wraps nbmake's run and
reads each executed notebook's outputs: a printed percentage that no share can be (above 100 %,
see ``lab.impossible_percentages``) fails the lesson, with the cell and the text.
"""
from __future__ import annotations

import re

from mobileblocks_edu.lab import impossible_percentages

_TAGS = re.compile(r"<(script|style)\b.*?</\1>|<[^>]+>", re.S | re.I)


def output_texts(cell) -> list[str]:
    """The texts a code cell shows: its streams, and the plain, Markdown and HTML (tags removed) outputs."""
    texts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            texts.append("".join(out.get("text", "")))
        for mime in ("text/markdown", "text/plain", "text/html"):
            data = out.get("data", {}).get(mime)
            if data is not None:
                text = "".join(data) if isinstance(data, list) else data
                texts.append(_TAGS.sub(" ", text) if mime == "text/html" else text)
    return texts


def percentage_problems(nb) -> list[tuple[int, str]]:
    """(cell index, the impossible percentages and their line) for every code cell output of ``nb``."""
    problems = []
    for i, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        for text in output_texts(cell):
            for line in text.splitlines():
                bad = impossible_percentages(line)
                if bad:
                    problems.append((i, f"{', '.join(bad)} in: {line.strip()[:200]}"))
    return problems


def _install() -> None:
    try:
        from nbmake import nb_run
        from nbmake.nb_result import NotebookError
    except ImportError:  # nbmake absent: nothing executes notebooks, nothing to check
        return
    if getattr(nb_run.NotebookRun.execute, "_checks_outputs", False):
        return
    execute = nb_run.NotebookRun.execute

    def execute_and_check(self):
        result = execute(self)
        if result.error is None:
            problems = percentage_problems(result.nb)
            if problems:
                text = "\n".join(f"cell {i}: {p}" for i, p in problems)
                result.error = NotebookError(summary=f"impossible percentage in the output: {problems[0][1]}",
                                             trace=f"{self.filename}: impossible percentages printed\n{text}",
                                             failing_cell_index=problems[0][0])
        return result

    execute_and_check._checks_outputs = True
    nb_run.NotebookRun.execute = execute_and_check


_install()

"""The claims ledger (``book/claims.md``, ``tools/claims_ledger.py``): every row's check runs and gives the
verdict recorded for it, a changed count changes the verdict, every table of the papers that a lesson quotes
is in the ledger, and the page is in the table of contents and runs."""
import dataclasses
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import claims_ledger as cl  # noqa: E402

PAGE = ROOT / "book" / "claims.md"


def _id(c: cl.Claim) -> str:
    return f"{c.paper}|{c.table}|{c.row}|{c.quantity}"


def test_claims_are_unique_and_well_formed():
    ids = [_id(c) for c in cl.CLAIMS]
    assert len(ids) == len(set(ids)), [i for i in ids if ids.count(i) > 1]
    lessons = {p.stem for p in (ROOT / "lessons").glob("*.ipynb")}
    for c in cl.CLAIMS:
        assert c.paper in cl.PAPERS and c.verdict in cl.VERDICTS, c
        assert c.lesson in lessons, f"{_id(c)}: no lesson {c.lesson}"
        if c.verdict in (cl.DIFFERENT, cl.CONTRADICTED, cl.UNTESTABLE):
            assert c.how, f"{_id(c)}: a row that is {c.verdict!r} says how or why"
        if c.check[0] == "ablation":
            assert c.small_scale in ("holds", "reversed", "within noise"), c


@pytest.mark.parametrize("claim", [c for c in cl.CLAIMS if c.check[0] != "dense"], ids=_id)
def test_every_row_gives_its_recorded_verdict(claim):
    r = cl.row(claim)
    assert r["verdict"] == claim.verdict, f"{_id(claim)}: the book's {r['shown']} is now {r['verdict']!r}"
    if claim.check[0] == "ablation":
        assert r["small_scale"] == claim.small_scale, f"{_id(claim)}: lesson 13's runs now say {r['small_scale']!r}"
    if claim.verdict in (cl.EXACT, cl.WITHIN):
        assert r["reached"] is not None and (claim.verdict == cl.EXACT or r["reached"] > 0)


@pytest.mark.parametrize("name", sorted({c.check[1][0] for c in cl.CLAIMS if c.check[0] == "dense"}))
def test_every_dense_row_gives_its_recorded_verdict(name):
    """The detectors and segmenters, counted at their papers' input sizes (seconds each; RetinaNet's the most)."""
    for claim in (c for c in cl.CLAIMS if c.check[0] == "dense" and c.check[1][0] == name):
        r = cl.row(claim)
        assert r["verdict"] == claim.verdict, f"{_id(claim)}: the book's {r['shown']} is now {r['verdict']!r}"


def test_a_changed_count_changes_the_verdict(monkeypatch):
    emo = next(c for c in cl.CLAIMS if c.table == "Table 7" and c.row == "EMO-5M" and c.quantity == "parameters")
    assert cl.row(emo)["verdict"] == cl.EXACT
    assert cl.judge(emo, cl.measure(emo) * 1.02) == cl.DIFFERENT  # a count off by 2 % no longer rounds
    tolerant = dataclasses.replace(emo, tolerance=0.05)
    assert cl.judge(tolerant, cl.measure(emo) * 1.02) == cl.WITHIN
    assert cl.judge(dataclasses.replace(emo, quoted="5.0M"), cl.measure(emo)) == cl.DIFFERENT
    speed = next(c for c in cl.CLAIMS if c.verdict == cl.CONTRADICTED)
    assert cl.judge(speed, float(speed.quoted.rstrip("x"))) == cl.EXACT  # a ratio that agreed would not stay flagged
    truncating = next(c for c in cl.CLAIMS if c.truncated and cl.row(c)["digits"] == "truncates")
    assert cl.judge(dataclasses.replace(truncating, truncated=False), cl.measure(truncating)) == cl.DIFFERENT
    monkeypatch.setattr(cl, "_ablations", lambda: {k: {**v, "ours": -v["ours"], "verdict": "holds"}
                                                   for k, v in cl.experiments.ablation_claims().items()})
    abl = next(c for c in cl.CLAIMS if c.check[0] == "ablation" and c.small_scale != "holds")
    assert cl.row(abl)["small_scale"] == "holds"  # other runs: the test of this row would fail


def _lesson_text(path: Path) -> str:
    return "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"])


QUOTED = re.compile(r"\b(EMO|MoCoViT)(?:'s|’s)?,? (Table|Fig\.) ?(\d+)")
# Tables a lesson names that hold no quantitative claim of the papers: EMO's Table 1 (criteria marks), Table 4 and
# MoCoViT's Table 2 (architectures, read off the models in lessons 6 and 10), Table 6 (training recipes).
NOT_CLAIMS = {("EMO", "Table 1"), ("EMO", "Table 4"), ("EMO", "Table 6"), ("MoCoViT", "Table 2")}


def test_every_table_the_lessons_quote_is_in_the_ledger():
    in_ledger = {(c.paper, c.table.split(" (")[0]) for c in cl.CLAIMS}
    quoted = set()
    for path in sorted((ROOT / "lessons").glob("[0-9]*.ipynb")) + [ROOT / "lessons" / "which_block.ipynb"]:
        quoted |= {(paper, f"Table {n}") for paper, kind, n in QUOTED.findall(_lesson_text(path)) if kind == "Table"}
    missing = sorted(quoted - in_ledger - NOT_CLAIMS)
    assert not missing, f"tables the lessons quote that the ledger lacks: {missing}"
    for table in ("Table 2", "Table 3", "Table 5", "Table 7", "Table 8", "Table 9", "Table 10", "Table 11", "Table 12"):
        assert ("EMO", table) in in_ledger
    for table in ("Table 1", "Table 3", "Table 4", "Table 6", "Table 7", "Table 8"):
        assert ("MoCoViT", table) in in_ledger


def test_the_page_is_in_the_toc_and_runs(monkeypatch):
    pytest.importorskip("IPython")
    assert "book/claims" in re.findall(r"^\s*- file:\s*(\S+)", (ROOT / "_toc.yml").read_text(), re.M)
    text = PAGE.read_text()
    assert text.startswith("---\nfile_format: mystnb\n")
    monkeypatch.chdir(PAGE.parent)
    monkeypatch.setenv("MBE_FAST", "1")
    namespace: dict = {}
    for code in re.findall(r"^```\{code-cell\} ipython3\n(?::tags:[^\n]*\n)?(.*?)^```$", text, re.M | re.S):
        exec(compile(code, str(PAGE), "exec"), namespace)
    rows = namespace["ROWS"]
    assert len(rows) == sum(c.check[0] != "dense" for c in cl.CLAIMS)
    assert {r["verdict"] for r in rows} == set(cl.VERDICTS)


def test_the_page_types_no_numbers_of_its_own():
    """Outside the code cells the page names tables, figures, sections and lessons, and no other number."""
    prose = re.sub(r"```.*?```", "", PAGE.read_text(), flags=re.S)
    prose = re.sub(r"^---\n.*?\n---\n", "", prose, flags=re.S)
    prose = re.sub(r"\b(?:Table|Fig\.|Sec\.|lesson|lessons|Part)\s+\d+", "", prose)
    prose = re.sub(r"\b[A-Za-z]+\d\w*", "", prose)  # names such as ADE20K
    assert not re.findall(r"\d", prose), re.findall(r".{0,30}\d.{0,30}", prose)


def test_every_checked_row_names_its_library_call():
    for c in cl.CLAIMS:
        text = cl.call(c)
        assert (text == "–") == (c.check[0] == "none"), (_id(c), text)


def test_emo_table3_has_both_networks():
    """EMO's Table 3 counts DeiT-Tiny and PVT-Tiny and their iRMB variants: PVT-Tiny's counts reproduce the paper's
    digits, the iRMB variant's parameters are within tolerance and its FLOPs counted differently (lesson 4)."""
    t3 = {(c.row, c.quantity.split(" (")[0]): c for c in cl.CLAIMS if c.paper == "EMO" and c.table == "Table 3"}
    for row in ("DeiT-Tiny", "DeiT-Tiny w/ iRMB", "PVT-Tiny", "PVT-Tiny w/ iRMB"):
        assert (row, "parameters") in t3 and (row, "FLOPs") in t3, row
    assert t3["PVT-Tiny", "parameters"].verdict == t3["PVT-Tiny", "FLOPs"].verdict == cl.EXACT
    assert t3["PVT-Tiny w/ iRMB", "parameters"].verdict == cl.WITHIN
    assert t3["PVT-Tiny w/ iRMB", "FLOPs"].verdict == cl.DIFFERENT
    assert t3["PVT-Tiny w/ iRMB", "top-1 gain"].verdict == cl.UNTESTABLE

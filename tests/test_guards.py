"""Guards against statements the book once printed wrongly: an impossible percentage, an atlas formula that
contradicts the count beside it, two pages judging one claim with two computations."""
import ast
import importlib.util
import json
import math
import statistics
from pathlib import Path

import pytest

from mobileblocks_edu import lab
from mobileblocks_edu.analysis import complexity as cx
from mobileblocks_edu.train import experiments

ROOT = Path(__file__).resolve().parent.parent
LESSONS = ROOT / "lessons"


def _code(name: str) -> str:
    nb = json.loads((LESSONS / name).read_text())
    return "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")


def _output_checks():
    spec = importlib.util.spec_from_file_location("lesson_output_checks", LESSONS / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("text, bad", [
    ("queries whose strongest key is themselves: 8163% (1 in 49 would be chance)", ["8163%"]),
    ("1,234 % of the work", ["1,234 %"]), ("100.5 %", ["100.5 %"]), ("150 per cent", ["150 per cent"]),
    ("a change of \u2212140 %", ["\u2212140 %"]), ("+250 %", ["+250 %"]),
    ("12 % and 100.0 %", []), ("-14 % against the paper", []), ("+3.4%", []), ("top-1 (%)", []),
    ("4.6 %/4.1 % and 13.8 %/14.6 %", []), ("0.5x", []),
])
def test_impossible_percentages(text, bad):
    assert lab.impossible_percentages(text) == bad


def test_say_refuses_an_impossible_percentage():
    with pytest.raises(ValueError, match="impossible percentage"):
        lab.say("In this random block 8163 % of the queries attend most to themselves.")


def test_executed_outputs_are_scanned():
    """The plugin in lessons/conftest.py reads every kind of output nbmake keeps; the old lesson 9 cell's output
    (the share multiplied by 100 twice) fails, the fixed one passes."""
    checks = _output_checks()
    old = f"queries whose strongest key is themselves: {100 * (100 * 4 / 49):.0f}% (1 in 49 would be chance)\n"
    new = f"queries whose strongest key is themselves: {100 * 4 / 49:.0f} % (1 in 49 would be chance)\n"
    nb = {"cells": [{"cell_type": "markdown", "source": "200 % in Markdown is not an output"},
                    {"cell_type": "code", "outputs": [{"output_type": "stream", "name": "stdout", "text": new}]}]}
    assert checks.percentage_problems(nb) == []
    nb["cells"][1]["outputs"][0]["text"] = old
    assert [i for i, _ in checks.percentage_problems(nb)] == [1]
    html = {"output_type": "display_data", "data": {"text/html": "<table><td style='width:100%'>117.0 %</td></table>"}}
    md = {"output_type": "execute_result", "data": {"text/markdown": ["the MLPs hold 250 % of"]}}
    nb["cells"][1]["outputs"] = [html, md]
    assert [p.split(" in:")[0] for _, p in checks.percentage_problems(nb)] == ["117.0 %", "250 %"]


def test_output_check_wraps_nbmake():
    pytest.importorskip("nbmake")
    from nbmake import nb_run

    _output_checks()
    assert getattr(nb_run.NotebookRun.execute, "_checks_outputs", False)


def _atlas_leading() -> dict:
    tree = ast.parse(_code("block_atlas.ipynb"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "LEADING" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("block_atlas defines no LEADING table of leading terms")


ATLAS_COST = {  # name in the atlas: the library's formula (params, macs) at C, lambda, W, w, k
    "IRB": lambda C, lam, W, w, k: cx.irb_cost(C, lam, W, k),
    "MHSA (global)": lambda C, lam, W, w, k: cx.mhsa_cost(C, W),
    "W-MHSA": lambda C, lam, W, w, k: cx.wmhsa_cost(C, W, w),
    "FFN": lambda C, lam, W, w, k: cx.mlp_cost(C, int(C * lam), W),
    "iRMB": lambda C, lam, W, w, k: cx.irmb_cost(C, lam, W, k, w),
    "Ghost bottleneck": lambda C, lam, W, w, k: cx.ghost_module_cost(C, int(C * lam), W)
    + cx.ghost_module_cost(int(C * lam), C, W),
    "MoSA": lambda C, lam, W, w, k: cx.mosa_cost(C, W),
    "MoFFN": lambda C, lam, W, w, k: cx.moffn_cost(C, int(C * lam), W),
}


@pytest.mark.parametrize("C, W", [(64, 14), (128, 28)])
def test_atlas_leading_terms_match_complexity(C, W):
    """The atlas prints its formula column from LEADING; each multiply-add expression equals the library's
    formula (which the page asserts equal to the measured module) and the parameter one differs only by
    biases and norms, at two sizes. The old iRMB entry, (C + C_h)Ll for the attention products, fails."""
    lam, w, k = 4.0, 7, 3
    leading = _atlas_leading()
    assert set(ATLAS_COST) <= set(leading)
    sizes = dict(C=C, Ch=int(C * lam), L=W * W, l=w * w, k=k, P_F=0, M_F=0)
    for name, cost in ATLAS_COST.items():
        params, macs = (eval(e, {}, sizes) for e in leading[name])
        exact = cost(C, lam, W, w, k)
        assert macs == exact.macs, (name, macs, exact.macs)
        assert 0 <= exact.params - params <= 24 * C, (name, params, exact.params)
    old_irmb = "(2*C**2 + 2*C*Ch + k**2*Ch)*L + (C + Ch)*L*l"
    assert eval(old_irmb, {}, sizes) != cx.irmb_cost(C, lam, W, k, w).macs
    assert "def lead(" in _code("block_atlas.ipynb") and "$(2C^2" not in _code("block_atlas.ipynb")


def test_ablation_claims_one_computation():
    """Lesson 13 and the "which block" page read the same computation, and the full iRMB is the main EMO-1M
    run, not the operator-order control (which the page once read as EMO-1M: -5.3 instead of -4.1 points)."""
    for page in ("13_ablations.ipynb", "which_block.ipynb"):
        code = _code(page)
        assert "experiments.ablation_claims(" in code, page
        assert "def verdict(" not in code and "statistics.variance" not in code, page
    assert '"EMO-1M": "cifar10_emo_1m"' in _code("which_block.ipynb")
    assert "(EMO)\": \"ablation_emo_1m_attn_dw\"" not in _code("which_block.ipynb")
    claims = experiments.ablation_claims()
    c = claims["emo_both_vs_dw"]
    assert (c["better"], c["worse"]) == ("cifar10_emo_1m", "ablation_emo_1m_dw_only")
    mean = {n: statistics.fmean(r["final"]["top1"] for r in experiments.load_results(n))
            for n in (c["better"], c["worse"])}
    assert math.isclose(c["ours"], mean[c["better"]] - mean[c["worse"]])
    order = claims["emo_order"]
    assert "cifar10_emo_1m" not in (order["better"], order["worse"])
    assert all(k in claims for k in experiments.ABLATION_CLAIMS)

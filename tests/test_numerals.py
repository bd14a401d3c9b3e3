"""A lint of the lessons' Markdown for numbers typed by hand.

The book's rule: every number it states is computed by code that runs in the build or read from a committed
result file, and the papers' numbers are quoted as theirs. Prose that carries a computed number is written by
``lab.say``; Markdown cells hold no measured or derived number. This lint reads every Markdown cell of every
notebook in ``lessons/`` and flags a numeral outside these places, where a typed number is a reference, a
setting or a quotation rather than a result:

* headings, code (inline and fenced), link targets and URLs, HTML tags; LaTeX math, except a decimal in it;
* folded solutions (``<details>``), each backed by its lesson's self-check asserts, and exercise statements
  (under an "Exercises" heading): their numbers are the exercise's inputs;
* a sentence that cites a table, figure or section of a paper (``Table 5``, ``Fig. 6B``, ``Sec. 4.2``; not the
  book's own ``Table R.1`` or ``Figure 8.2``) or a reference (``[Author et al., 2023]``): the paper's numbers;
  and the list that a paragraph citing a paper introduces (the paragraph ends with a colon);
* numbers of lessons, parts, sections, tables, figures, equations, steps, stages, seeds, cells; years; version
  numbers; names with digits (``EMO-1M``, ``CIFAR-10``, ``1.0x``, ``MobileNetV2``); single digits;
* input resolutions (``224x224``, ``128 px``), channel chains (``24 → 144 → 24``), ``10 classes``; an
  architecture's definition: ``960 channels``, ``strides 16 and 32``, ``dilation rates 12, 24, 36``, ``8-bit``;
* the header lines that say what a lesson downloads (file sizes the library records for its downloads) and
  which lessons it needs;
* a sentence holding one of the narrow phrases of ``ALLOWED`` below, each with its reason.
"""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LESSONS = sorted((ROOT / "lessons").glob("*.ipynb"))

DETAILS = re.compile(r"<details>.*?</details>", re.S | re.I)
CODE = re.compile(r"```.*?```|`[^`\n]*`", re.S)
LINK_TARGET = re.compile(r"\]\([^)]*\)")
URL = re.compile(r"https?://\S+")
HTML = re.compile(r"<[^>]+>")
MATH = re.compile(r"\$\$.*?\$\$|\$[^$\n]*\$", re.S)
DECIMAL = re.compile(r"(?<![\w.])\d+\.\d+(?![\w.])")
NUM = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*(?![\w])")
_N = r"(?:[A-Z]\.)?\d+(?:\.\d+)?[A-Za-z]?"
REF = re.compile(r"(?:lessons?|parts?|sec(?:tions?)?\.?|tables?|figs?\.?|figures?|eqs?\.?|equations?|appendix|steps?"
                 r"|exercises?|cells?|chapters?|items?|rows?|columns?|stages?|seeds?|questions?|blocks?|§)\s+"
                 rf"{_N}(?:\s*(?:,|-|–|and|or|to|&)\s*{_N})*", re.I)
YEAR = re.compile(r"\b(?:19|20)\d\d\b")
VERSION = re.compile(r"\b(?:Python|torch|PyTorch|torchvision|Colab|version|Jupyter Book|ONNX|opset|CUDA|iOS|v)"
                     r"\s?\d+(?:\.\d+)*", re.I)
NAMES = re.compile(r"\b[A-Za-z]+[-_]?\d+(?:\.\d+)?[A-Za-z]*\b|\b\d+(?:\.\d+)?x\b(?!\s?\d)|\b\d+(?:\.\d+)?[KMG]\b")
INPUT = r"(?:32|64|96|112|128|160|192|224|256|288|320|384|448|512|640|800|1024|1280|1333|1344)"
SIZES = re.compile(rf"\b{INPUT}\s?[x×]\s?{INPUT}\b|\b{INPUT}(?:\s?px\b|\s?-?pixels?\b|²)|(?<=at ){INPUT}\b"
                   rf"|side (?:up to )?{INPUT}\b")
CHAIN = re.compile(r"\d+(?:\s*→\s*\d+)+")
CLASSES = re.compile(r"\b\d+[- ]class(?:es)?\b")
ARCH = re.compile(r"\b\d+(?:,\d{3})*(?:\s*(?:,|and)\s*\d+(?:,\d{3})*)*(?:[- ]channels?\b|-wide\b|-bit\b)"
                  r"|\b(?:strides?|stride-|dilation rates?)\s*\d+(?:\s*(?:,|and|to)\s*\d+)*", re.I)
PAIR = re.compile(r"(\d)\s?[x×]\s?(?=\d)")
PAPER = re.compile(r"\b(?:Tables?|Figs?\.|Figures?|Sec\.|Sections?|Eq\.)\s*\d", re.I)
BOOKREF = re.compile(r"\b(?:Tables?|Figures?|Figs?\.)\s*(?:\d+|[A-Z])\.\d+")
CITATION = re.compile(r"\[[^\]]*(?:et al\.|[A-Z][a-z]+),\s*(?:19|20)\d\d[a-z]?\]")
SENTENCE = re.compile(r"(?<=[.!?;])\s+(?=[A-Z*(\[])|\n\s*\n|\n(?=\s*(?:[*-]|\d+\.) )")
EXERCISES = re.compile(r"^#+\s.*exercise", re.I)

# (lesson, phrase): why a sentence containing the phrase may hold typed numbers
ALLOWED = {
    ("02_inverted_residual", "256 → 64 → 64 → 256"): "ResNet's bottleneck widths, quoted from He et al. (2016)",
    ("06_emo", "of the input's side, stage 4 at 1/32"): "EMO's strides: the architecture's definition",
    ("06_emo", "competes with 48 padded keys"): "a 7x7 window has 49 positions: the definition of the window",
    ("06_emo", "The authors report"): "quoted from the authors' README, which the sentence cites",
    ("06_emo", "1,000 ImageNet classes"): "the size of ImageNet's label set",
    ("08_ghost", "except the 1280"): "GhostNet's head width, the architecture's definition",
    ("10b_mocovit_d", "The dynamic ReLU paper uses"): "quoted from the dynamic ReLU paper, which the sentence names",
    ("10b_mocovit_d", "1280"): "the head width of MoCoViT's architecture, its definition",
    ("10b_mocovit_d", "49 multiply-adds"): "a 7x7 map has 49 positions: the definition of the map",
    ("11_train_cifar10", "Training Recipes Matters"): "quoted from EMO's supplementary paragraph of that name",
    ("11_train_cifar10", "32 pixels"): "CIFAR-10's image size, the dataset's definition",
    ("14_complexity_calculator", "the assert checks more than 90 %"): "the threshold written in the assert above",
    ("15_receptive_fields", "90 %"): "the ERF's area is defined at 90 % of the gradient (analysis.erf's default)",
    ("15_receptive_fields", "factor of 10"): "a logarithmic colour scale's step, a definition",
    ("appendix_under_the_hood", "49 pixels"): "a 7x7 window has 49 pixels: the definition of the window",
    ("appendix_under_the_hood", "160 separate"): "the width of the block the appendix builds (its code cell)",
}


def _strip(md: str) -> str:
    md = DETAILS.sub(" ", md)
    md = CODE.sub(" ", md)
    md = LINK_TARGET.sub("]", md)
    md = URL.sub(" ", md)
    md = HTML.sub(" ", md)
    return MATH.sub(lambda m: " ".join(DECIMAL.findall(m.group(0))) or " ", md)


def typed_numbers(lesson: str, cells: list) -> list[tuple[int, str, str]]:
    """(cell index, number, sentence) for every numeral typed in the Markdown cells, outside the allowed places."""
    found, in_exercises = [], False
    for i, cell in enumerate(cells):
        if cell["cell_type"] != "markdown":
            continue
        text = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        lines = []
        for line in text.splitlines():
            if line.lstrip().startswith("#"):
                in_exercises = bool(EXERCISES.match(line.lstrip()))
                continue
            if not in_exercises and not re.match(r"\*\*(?:Downloads when online|You need|What you need)", line):
                lines.append(line)
        quoted = False  # a list that a paragraph citing a paper introduces (ending in ":") quotes that paper
        for block in re.split(r"\n\s*\n", _strip("\n".join(lines))):
            cites = bool(PAPER.search(BOOKREF.sub(" ", block)) or CITATION.search(block))
            is_list = bool(re.match(r"\s*(?:[*-]|\d+\.)\s", block))
            quoted = quoted and is_list
            if not quoted:
                found += _block_numbers(lesson, i, block)
            quoted = quoted or (cites and block.rstrip().endswith(":"))
    return found


def _block_numbers(lesson: str, i: int, block: str) -> list[tuple[int, str, str]]:
    found = []
    for sentence in SENTENCE.split(block):
        if PAPER.search(BOOKREF.sub(" ", sentence)) or CITATION.search(sentence):
            continue
        rest = " ".join(sentence.split())
        if any(name == lesson and phrase in rest for name, phrase in ALLOWED):
            continue
        for pattern in (REF, YEAR, VERSION, SIZES, CHAIN, CLASSES, ARCH, NAMES):
            rest = pattern.sub(" ", rest)
        rest = PAIR.sub(r"\1 × ", rest)
        found += [(i, m.group(0), " ".join(sentence.split())[:200]) for m in NUM.finditer(rest)
                  if not re.fullmatch(r"\d", m.group(0))]
    return found


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_no_numbers_typed_in_lesson_markdown(path):
    cells = json.loads(path.read_text())["cells"]
    found = typed_numbers(path.stem, cells)
    assert not found, (f"{path.name}: numbers typed in Markdown (compute them with lab.say, cite the paper's "
                       "table, or add a narrow reason to ALLOWED):\n"
                       + "\n".join(f"  cell {i}: {n!r} in: {s}" for i, n, s in found))


@pytest.mark.parametrize("text, flagged", [
    ("On the iPhone, EMO-5M costs about 1.5 times EMO-1M for 3.5 times the FLOPs.", ["1.5", "3.5"]),
    ("stage 1 works at 1/4 of the input's side, stage 4 at 1/32", ["32"]),
    ("EMO's Table 5 reports 78.4 % for the full operator.", []),
    ("At 224x224 the map of stage 3 is 14x14.", ["14", "14"]),
    ("<details><summary>Solution</summary>\n\nabout 6.8, N ≈ 89\n\n</details>", []),
    ("the value is $\\approx 13.9$ here, for $k = 3$ and $C_h = 4C$", ["13.9"]),
    ("Lessons 11-18 and Figure 8.2 use EMO-1M and CIFAR-10 (lesson 5).", []),
    ("**Figure 8.2.** The saving is 2.5 in the plot.", ["2.5"]),
    ("EMO reports two variants (Sec. 2.3):\n\n* a 5.3M model reaches 77.5\n* in parallel, 78.1\n\nWe get 76.2.",
     ["76.2"]),
])
def test_lint_flags_typed_results_and_allows_references(text, flagged):
    cells = [{"cell_type": "markdown", "source": text}]
    assert [n for _, n, _ in typed_numbers("x", cells)] == flagged

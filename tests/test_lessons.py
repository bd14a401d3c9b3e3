"""Every lesson follows the same skeleton, and the table of contents and the files agree."""
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LESSONS = sorted((ROOT / "lessons").glob("*.ipynb"))
sys.path.insert(0, str(ROOT / "tools"))
import sync_lessons  # noqa: E402


def _config_value(key: str) -> str:
    text = (ROOT / "_config.yml").read_text()
    section = re.search(r"^repository:\n((?:[ \t]+.*\n)+)", text, re.M).group(1)
    return re.search(rf"^\s+{key}:\s*(\S+)", section, re.M).group(1)


REPO_URL = _config_value("url")
BRANCH = _config_value("branch")


def _toc_files() -> list[str]:
    return re.findall(r"^\s*- file:\s*(\S+)", (ROOT / "_toc.yml").read_text(), re.M)


def _source(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def test_toc_and_files_agree():
    toc = _toc_files()
    for entry in toc:
        assert any((ROOT / f"{entry}{ext}").is_file() for ext in (".md", ".ipynb")), \
            f"{entry} is in _toc.yml but missing"
    listed = {f"lessons/{p.stem}" for p in LESSONS}
    assert listed <= set(toc), f"lessons missing from _toc.yml: {sorted(listed - set(toc))}"


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_lesson_skeleton(path):
    nb = json.loads(path.read_text())
    cells = nb["cells"]
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    for i, cell in enumerate(cells):  # committed without outputs
        if cell["cell_type"] == "code":
            assert not cell.get("outputs") and cell.get("execution_count") is None, f"cell {i} has outputs"
    title = _source(cells[0])
    assert cells[0]["cell_type"] == "markdown" and title.startswith("# ")
    badge = f"https://colab.research.google.com/github/{REPO_URL.split('github.com/')[1]}/blob/{BRANCH}/lessons/{path.name}"
    assert badge in title, f"Colab badge must point to {badge}"
    assert "**Run time:**" in title
    setup = _source(cells[1])
    assert cells[1]["cell_type"] == "code"
    assert setup.startswith(sync_lessons.install_block()), "install block out of step: run `make sync-lessons`"
    assert f'"{REPO_URL}"' in setup, "the setup cell clones the repository named in _config.yml"
    assert "lab.setup(" in setup


def test_one_release_everywhere():
    """pyproject's version, the library's __version__, the tag the book's Colab buttons open
    (_config.yml's branch) and the tag every lesson installs are one release."""
    import mobileblocks_edu

    version = re.search(r'^version\s*=\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    assert mobileblocks_edu.__version__ == version
    assert BRANCH == f"v{version}" == sync_lessons.config()[1]
    assert sync_lessons.main(["--check"]) == 0


def test_repository_url_is_the_same_everywhere():
    """The repository URL is configured once (_config.yml); every other mention must agree."""
    pattern = re.compile(r"https://github\.com/[\w.-]+/[\w.-]+")
    for path in [*LESSONS, ROOT / "README.md", ROOT / "pyproject.toml", *sorted((ROOT / "book").glob("*.md"))]:
        for url in pattern.findall(path.read_text()):
            if "mobileblocks" in url:
                assert url.rstrip(".") == REPO_URL, f"{path.name}: {url} != {REPO_URL}"


# A lesson is read in Jupyter and on Colab as well as in the book, so its Markdown cells use only
# what all three render: no MyST roles ({glue:text}`x`, {cite}`x`, {doc}`x`) and no directives
# (```{note}, :::{note}).
MYST_ROLE = re.compile(r"\{[\w:.+-]+\}`")
MYST_DIRECTIVE = re.compile(r"^\s*(?:`{3,}|~{3,}|:{3,})\s*\{[\w:.+-]+\}", re.M)


def _lesson_params():
    return [pytest.param(p, id=p.stem) for p in LESSONS]


def _myst_in(text: str) -> list[str]:
    return [m.group(0) for m in (*MYST_ROLE.finditer(text), *MYST_DIRECTIVE.finditer(text))]


def test_myst_detector_finds_roles_and_directives():
    assert _myst_in("by {glue:text}`x:.2f` points") == ["{glue:text}`"]
    assert _myst_in("see {cite}`zhang2023emo`") == ["{cite}`"]
    assert len(_myst_in("```{admonition} Note\nx\n```")) == 1
    assert len(_myst_in(":::{note}\nx\n:::")) == 1
    assert _myst_in("$\\mathbb{R}^{C}$, `code`, ```python\nx = {}\n```") == []


@pytest.mark.parametrize("path", _lesson_params())
def test_lesson_markdown_has_no_myst(path):
    cells = json.loads(path.read_text())["cells"]
    found = [(i, hit) for i, cell in enumerate(cells) if cell["cell_type"] == "markdown"
             for hit in _myst_in(_source(cell))]
    assert not found, f"MyST syntax in Markdown cells (cell index, match): {found}"


@pytest.mark.parametrize("path", _lesson_params())
def test_lesson_has_no_empty_or_dangling_cells(path):
    cells = json.loads(path.read_text())["cells"]
    empty = [i for i, cell in enumerate(cells) if cell["cell_type"] == "code" and not _source(cell).strip()]
    assert not empty, f"empty code cells at {empty}"
    for i, cell in enumerate(cells[:-1]):  # "small functions for this page" must be followed by them
        if cell["cell_type"] == "markdown" and re.search(r"small functions? for this page", _source(cell)):
            assert "def " in _source(cells[i + 1]), f"cell {i} announces functions that cell {i + 1} lacks"


# Readable before it runs: the notebooks are committed without outputs, so each one says where to
# read it with its outputs, what it downloads, and cites what works outside the book.
def _book_url() -> str:
    section = re.search(r"^html:\n((?:[ \t]+.*\n)+)", (ROOT / "_config.yml").read_text(), re.M).group(1)
    return re.search(r"^\s+baseurl:\s*(\S+)", section, re.M).group(1).rstrip("/") + "/"


@pytest.mark.parametrize("path", _lesson_params())
def test_lesson_links_to_its_page_and_says_what_it_downloads(path):
    title = _source(json.loads(path.read_text())["cells"][0])
    page = f"{_book_url()}lessons/{path.stem}.html"
    assert f"Read this lesson with its outputs: [{page}]({page})" in title, "run `make sync-lessons`"
    assert "**Downloads when online:**" in title and " MB" in title or "**Downloads when online:** nothing" in title


@pytest.mark.parametrize("path", _lesson_params())
def test_lesson_citations_work_outside_the_book(path):
    cells = json.loads(path.read_text())["cells"]
    dead = [i for i, cell in enumerate(cells)
            if cell["cell_type"] == "markdown" and "../book/references.md" in _source(cell)]
    assert not dead, f"cells {dead} link to ../book/references.md (dead on GitHub and Colab): run `make sync-lessons`"


# What a lesson's code downloads when online, found in its source; each must be declared in the
# notebook's metadata (mbe.downloads), from which its header line is written.
_DOWNLOADS = [
    (re.compile(r'load_dataset\(\s*"(cifar10|imagenette)"((?:[^()]|\([^()]*\))*)\)'), 1),
    (re.compile(r'imagenet_weights\(\s*"(\w+)"'), 1),
    (re.compile(r'create_model\(\s*"(\w+)"[^)]*pretrained=True'), 1),
]


def _downloads_in(code: str) -> set[str]:
    found = {m.group(1) for rx, _ in _DOWNLOADS for m in rx.finditer(code)
             if "download=False" not in (m.group(2) if m.re.groups > 1 else "")}
    if re.search(r"download_pennfudan|PennFudan\(", code):
        found.add("pennfudan")
    return found


def test_download_finder():
    assert _downloads_in('try_load_dataset("cifar10", "test", transform=f(x))') == {"cifar10"}
    assert _downloads_in('load_dataset("imagenette", "val", download=False)') == set()
    assert _downloads_in('lab.imagenet_weights("emo_1m", "x")\ncreate_model("ghostnet_100", pretrained=True)') \
        == {"emo_1m", "ghostnet_100"}


@pytest.mark.parametrize("path", _lesson_params())
def test_lesson_declares_what_it_downloads(path):
    nb = json.loads(path.read_text())
    code = "\n".join(_source(c) for c in nb["cells"] if c["cell_type"] == "code")
    declared = set(nb["metadata"].get("mbe", {}).get("downloads", []))
    missing = sorted(_downloads_in(code) - declared)
    assert not missing, f"add {missing} to the notebook metadata's mbe.downloads, then run `make sync-lessons`"


def test_download_sizes_come_from_the_library():
    from mobileblocks_edu import lab
    from mobileblocks_edu.data import DATASETS

    line = lab.download_sizes(["cifar10", "emo_1m"])
    assert DATASETS["cifar10"].download_size in line and "emo_1m (5.5 MB)" in line  # its float32 state dict
    assert lab.download_sizes([]).startswith("nothing")
    with pytest.raises(ValueError, match="unknown download"):
        lab.download_sizes(["mocovit_100"])
    with pytest.raises(TypeError):
        lab.download_sizes("cifar10")

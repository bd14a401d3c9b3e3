"""Keep every lesson's Colab badge, book link, downloads line, citations and install block in step.

The repository URL comes from ``_config.yml`` (``repository.url``), the release from
``pyproject.toml`` (tag ``v<version>``, which ``repository.branch`` names too): the Colab badge
opens the lesson at that tag, and the setup cell installs the library of that tag. Beside the badge,
a link to the lesson's page in the published book (``html.baseurl``), where it can be read with its
outputs before it runs; under it, what the lesson downloads when online and how large it is (the
notebook's metadata ``mbe.downloads`` names the downloads, :func:`mobileblocks_edu.lab.download_sizes`
says how large they are). Citations to ``../book/references.md``, dead outside the book, become
arXiv/DOI/project links (:data:`CITATION_URLS`). Run it after changing any of these::

    python tools/sync_lessons.py          # rewrite the lessons
    python tools/sync_lessons.py --check  # exit 1 if a lesson is out of step
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LESSONS = ROOT / "lessons"
BEGIN = "# Setup. Where the library is missing (Colab), install it at the release this lesson belongs to:"
END = "    sys.path.insert(0, src)\n"

INSTALL = '''\
# Setup. Where the library is missing (Colab), install it at the release this lesson belongs to:
# a clone of the book's repository at that tag, installed in place. Running the cell again is
# harmless. MBE_REPO_URL and MBE_REPO_REF choose another source (a fork, a local clone, a branch).
import importlib.util, os, shutil, subprocess, sys
if importlib.util.find_spec("mobileblocks_edu") is None:
    url = os.environ.get("MBE_REPO_URL", "{url}")
    ref = os.environ.get("MBE_REPO_REF", "{ref}")
    src = os.path.abspath("mobileblocks-edu")

    def rev(name):  # the commit `name` points to in the clone, "" when there is none
        if not os.path.isdir(os.path.join(src, ".git")):
            return ""
        git = subprocess.run(["git", "-C", src, "rev-parse", "-q", "--verify", name + "^{{commit}}"],
                             capture_output=True, text=True)
        return git.stdout.strip()

    def run(*cmd):  # git or pip; when it fails, the last lines of what it said, then the error
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(*(proc.stdout + proc.stderr).splitlines()[-25:], sep="\\n")
            proc.check_returncode()

    if not rev("HEAD") or rev("HEAD") != rev(ref):  # nothing there, a failed clone, another release
        shutil.rmtree(src, ignore_errors=True)
        run("git", "clone", "-q", "--depth", "1", "--branch", ref, url, src)
    run(sys.executable, "-m", "pip", "install", "-q", "-e", src + "[lessons]")
    sys.path.insert(0, src)
'''
BADGE = re.compile(r"\[!\[Open In Colab\]\([^)]*\)\]\([^)]*\)[^\n]*(?:\n\n\*\*Downloads when online:\*\*[^\n]*)*")
READ = "Read this lesson with its outputs:"
DOWNLOADS = "**Downloads when online:**"
CITATION = re.compile(r"\[([^\]]+)\]\(\.\./book/references\.md(?:#[^)]*)?\)")
# Where each work of book/references.bib is read outside the book (arXiv, DOI or the project's page).
CITATION_URLS = {
    "zhang2023emo": "https://arxiv.org/abs/2301.01146",
    "ma2022mocovit": "https://arxiv.org/abs/2205.12635",
    "sandler2018mobilenetv2": "https://arxiv.org/abs/1801.04381",
    "vaswani2017attention": "https://arxiv.org/abs/1706.03762",
    "dosovitskiy2021vit": "https://arxiv.org/abs/2010.11929",
    "liu2021swin": "https://arxiv.org/abs/2103.14030",
    "han2020ghostnet": "https://arxiv.org/abs/1911.11907",
    "hu2018senet": "https://arxiv.org/abs/1709.01507",
    "yu2022metaformer": "https://arxiv.org/abs/2111.11418",
    "selvaraju2017gradcam": "https://arxiv.org/abs/1610.02391",
    "luo2016erf": "https://arxiv.org/abs/1701.04128",
    "huang2016stochasticdepth": "https://arxiv.org/abs/1603.09382",
    "loshchilov2019adamw": "https://arxiv.org/abs/1711.05101",
    "cubuk2020randaugment": "https://arxiv.org/abs/1909.13719",
    "krizhevsky2009cifar": "https://www.cs.toronto.edu/~kriz/learning-features-2009-TR.pdf",
    "deng2009imagenet": "https://doi.org/10.1109/CVPR.2009.5206848",
    "howard2019imagenette": "https://github.com/fastai/imagenette",
    "wightman2019timm": "https://github.com/huggingface/pytorch-image-models",
    "fvcore": "https://github.com/facebookresearch/fvcore",
    "jacobgil2021gradcam": "https://github.com/jacobgil/pytorch-grad-cam",
    "howard2017mobilenets": "https://arxiv.org/abs/1704.04861",
    "he2016resnet": "https://arxiv.org/abs/1512.03385",
    "torchinfo": "https://github.com/TylerYep/torchinfo",
    "tu2022maxvit": "https://arxiv.org/abs/2204.01697",
    "dao2022flashattention": "https://arxiv.org/abs/2205.14135",
    "hendrycks2016gelu": "https://arxiv.org/abs/1606.08415",
    "ba2016layernorm": "https://arxiv.org/abs/1607.06450",
    "howard2019mobilenetv3": "https://arxiv.org/abs/1905.02244",
    "qin2024mobilenetv4": "https://arxiv.org/abs/2404.10518",
    "touvron2021deit": "https://arxiv.org/abs/2012.12877",
    "wang2021pvt": "https://arxiv.org/abs/2102.12122",
}
CITATION_NAMES = {"EMO": "zhang2023emo", "MoCoViT": "ma2022mocovit", "torchinfo": "torchinfo", "fvcore": "fvcore",
                  "Howard, 2019": "howard2019imagenette", "Howard et al., 2019": "howard2019mobilenetv3"}


def config() -> tuple[str, str]:
    """(repository URL, release tag) from _config.yml and pyproject.toml."""
    cfg = (ROOT / "_config.yml").read_text()
    section = re.search(r"^repository:\n((?:[ \t]+.*\n)+)", cfg, re.M).group(1)
    url = re.search(r"^\s+url:\s*(\S+)", section, re.M).group(1)
    version = re.search(r'^version\s*=\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    return url, f"v{version}"


def book_url() -> str:
    """The published book's address, ``html.baseurl`` of _config.yml, ending in a slash."""
    cfg = (ROOT / "_config.yml").read_text()
    section = re.search(r"^html:\n((?:[ \t]+.*\n)+)", cfg, re.M).group(1)
    return re.search(r"^\s+baseurl:\s*(\S+)", section, re.M).group(1).rstrip("/") + "/"


def _bib() -> dict[str, tuple[str, str]]:
    """key -> (first author's surname, year) of every entry of book/references.bib."""
    entries = {}
    for m in re.finditer(r"@\w+\{([^,]+),(.*?)\n\}", (ROOT / "book" / "references.bib").read_text(), re.S):
        author = re.search(r"author\s*=\s*\{+([^,}]+)", m.group(2))
        year = re.search(r"year\s*=\s*\{?(\d{4})", m.group(2))
        entries[m.group(1).strip()] = (author.group(1).strip() if author else "", year.group(1) if year else "")
    return entries


def citation_url(text: str) -> str:
    """Where the citation ``[text](../book/references.md)`` should point: the work's arXiv, DOI or
    project page when the text names one entry of the bibliography, else the book's references page."""
    key = CITATION_NAMES.get(text.strip())
    if key is None:
        dated = re.search(r"\d{4}", text)
        hits = [k for k, (surname, year) in _bib().items()
                if surname and re.search(rf"\b{re.escape(surname)}\b", text) and (year in text or not dated)]
        key = hits[0] if len(hits) == 1 else None
    return CITATION_URLS.get(key, book_url() + "book/references.html")


def header(notebook: str, downloads: list[str]) -> str:
    """The badge, the link to the lesson's page in the book, and what the lesson downloads."""
    from mobileblocks_edu.lab import download_sizes

    page = book_url() + "lessons/" + Path(notebook).stem + ".html"
    return f"{badge(notebook)} {READ} [{page}]({page})\n\n{DOWNLOADS} {download_sizes(downloads)}"


def install_block() -> str:
    url, ref = config()
    return INSTALL.format(url=url, ref=ref)


def badge(notebook: str) -> str:
    url, ref = config()
    path = url.split("github.com/")[1]
    return (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"(https://colab.research.google.com/github/{path}/blob/{ref}/lessons/{notebook})")


def _text(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def synced(path: Path) -> dict:
    """The notebook at ``path`` with its badge and install block brought up to date."""
    nb = json.loads(path.read_text())
    title, setup = nb["cells"][0], nb["cells"][1]
    downloads = nb["metadata"].get("mbe", {}).get("downloads", [])
    title["source"] = _lines(BADGE.sub(lambda m: header(path.name, downloads), _text(title), count=1))
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown" and "../book/references.md" in _text(cell):
            cell["source"] = _lines(CITATION.sub(lambda m: f"[{m.group(1)}]({citation_url(m.group(1))})", _text(cell)))
    text = _text(setup)
    if text.startswith(BEGIN) and END in text:
        rest = text.split(END, 1)[1]
    else:  # an older install block: everything up to its first blank line
        rest = text.split("\n\n", 1)[1] if "\n\n" in text else ""
        rest = "\n" + rest
    rest = re.sub(r"^import os\n", "", rest, flags=re.M)  # the install block imports it already
    others = rest.replace("from pathlib import Path\n", "") + "".join(_text(c) for c in nb["cells"][2:])
    if not re.search(r"\bPath\b", others):  # imported only where the lesson uses it
        rest = rest.replace("from pathlib import Path\n", "")
    rest = "\n" + re.sub(r"\n{3,}", "\n\n", rest).lstrip("\n")
    setup["source"] = _lines(install_block() + rest)
    tags = setup.setdefault("metadata", {}).setdefault("tags", [])
    if "hide-input" not in tags:  # the book folds the install block away (a click shows it); Jupyter shows it
        tags.append("hide-input")
    return nb


def dump(nb: dict) -> str:
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    stale = []
    for path in sorted(LESSONS.glob("[!_]*.ipynb")):  # not scratch copies (names starting with "_")
        new = dump(synced(path))
        if new != path.read_text():
            stale.append(path.name)
            if "--check" not in argv:
                path.write_text(new)
    if stale:
        print(("out of step: " if "--check" in argv else "updated: ") + ", ".join(stale))
    return 1 if stale and "--check" in argv else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

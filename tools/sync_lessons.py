"""Keep every lesson's Colab badge and install block in step with the release.

The repository URL comes from ``_config.yml`` (``repository.url``), the release from
``pyproject.toml`` (tag ``v<version>``, which ``repository.branch`` names too): the Colab badge
opens the lesson at that tag, and the setup cell installs the library of that tag. Run it after
changing either::

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

    if not rev("HEAD") or rev("HEAD") != rev(ref):  # nothing there, a failed clone, another release
        shutil.rmtree(src, ignore_errors=True)
        subprocess.run(["git", "clone", "-q", "--depth", "1", "--branch", ref, url, src], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", src + "[lessons]"], check=True)
    sys.path.insert(0, src)
'''
BADGE = re.compile(r"\[!\[Open In Colab\]\([^)]*\)\]\([^)]*\)")


def config() -> tuple[str, str]:
    """(repository URL, release tag) from _config.yml and pyproject.toml."""
    cfg = (ROOT / "_config.yml").read_text()
    section = re.search(r"^repository:\n((?:[ \t]+.*\n)+)", cfg, re.M).group(1)
    url = re.search(r"^\s+url:\s*(\S+)", section, re.M).group(1)
    version = re.search(r'^version\s*=\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    return url, f"v{version}"


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
    title["source"] = _lines(BADGE.sub(lambda m: badge(path.name), _text(title), count=1))
    text = _text(setup)
    if text.startswith(BEGIN) and END in text:
        rest = text.split(END, 1)[1]
    else:  # an older install block: everything up to its first blank line
        rest = text.split("\n\n", 1)[1] if "\n\n" in text else ""
        rest = "\n" + rest
    setup["source"] = _lines(install_block() + rest)
    tags = setup.setdefault("metadata", {}).setdefault("tags", [])
    if "hide-input" not in tags:  # the book folds the install block away (a click shows it); Jupyter shows it
        tags.append("hide-input")
    return nb


def dump(nb: dict) -> str:
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    stale = []
    for path in sorted(LESSONS.glob("*.ipynb")):
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

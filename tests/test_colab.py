"""Lessons 01 and 04 run the Colab way: on Colab's preinstalled versions, from an empty folder
outside the repository, with no data folder; the setup cell installs the library from a clone of
the repository and changes none of what Colab preinstalls.

`make test-colab` builds that environment (Python 3.13, torch 2.11, IPython 7.34.0, ipywidgets
7.7.1, ipykernel 6.17.1) and points ``MBE_COLAB_PYTHON`` at it; without it this test is skipped.
The repository is served from a local bare clone of this checkout's HEAD through ``MBE_REPO_URL``,
tagged with the release the lessons install.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import sync_lessons  # noqa: E402

# absolute (the notebooks run in another folder), not resolved (a venv's python is a link)
COLAB_PYTHON = os.path.abspath(os.environ["MBE_COLAB_PYTHON"]) if os.environ.get("MBE_COLAB_PYTHON") else None
pytestmark = pytest.mark.skipif(not COLAB_PYTHON, reason="needs Colab's stack: run `make test-colab`")
KEPT = ("ipython", "ipywidgets", "ipykernel", "torch", "torchvision", "numpy", "matplotlib", "traitlets")

RUN = """
import sys, nbformat
from nbclient import NotebookClient
path, cwd = sys.argv[1], sys.argv[2]
nb = nbformat.read(path, as_version=4)
NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": cwd}}).execute()
nbformat.write(nb, path)
"""


def _freeze(python: str) -> dict[str, str]:
    out = subprocess.run([python, "-m", "pip", "list", "--format=json"], capture_output=True, text=True, check=True)
    return {p["name"].lower(): p["version"] for p in json.loads(out.stdout)}


def _git(*args, cwd=None):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def colab(tmp_path):
    """An empty 'content' folder, a bare clone serving the release tag, and Colab's environment
    variables; afterwards the packages the lessons installed are removed again."""
    url, ref = sync_lessons.config()
    bare = tmp_path / "mobileblocks-edu.git"
    _git("clone", "-q", "--bare", str(ROOT), str(bare))
    tags = subprocess.run(["git", "tag", "-l", ref], cwd=bare, capture_output=True, text=True).stdout.split()
    if ref not in tags:  # a release candidate: tag HEAD as the release it will be
        _git("tag", ref, "HEAD", cwd=bare)
    content = tmp_path / "content"
    content.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MBE_", "PYTHON", "VIRTUAL_ENV", "JUPYTER"))}
    venv_bin = str(Path(COLAB_PYTHON).parent)
    env.update(MBE_REPO_URL=bare.as_uri(), MBE_FAST="1", PATH=venv_bin + os.pathsep + env.get("PATH", ""))
    before = _freeze(COLAB_PYTHON)
    yield content, env, before
    added = sorted(set(_freeze(COLAB_PYTHON)) - set(before))
    if added:
        subprocess.run([COLAB_PYTHON, "-m", "pip", "uninstall", "-q", "-y", *added], check=False)


def _execute(lesson: str, content: Path, env: dict, setup_twice: bool = False) -> dict:
    nb = json.loads((ROOT / "lessons" / lesson).read_text())
    if setup_twice:  # a reader who runs the setup cell again
        nb["cells"].insert(2, json.loads(json.dumps(nb["cells"][1])))
    path = content / lesson
    path.write_text(json.dumps(nb))
    proc = subprocess.run([COLAB_PYTHON, "-c", RUN, str(path), str(content)], env=env, cwd=content,
                          capture_output=True, text=True)
    assert proc.returncode == 0, f"{lesson} failed the Colab way:\n{proc.stderr[-4000:]}"
    return json.loads(path.read_text())


def test_lessons_run_the_colab_way(colab):
    content, env, before = colab
    # a folder left by an interrupted first try: the setup cell must clone afresh, not fail
    (content / "mobileblocks-edu").mkdir()
    (content / "mobileblocks-edu" / "README.md").write_text("half a clone\n")

    _execute("01_how_to_use.ipynb", content, env, setup_twice=True)
    clone = content / "mobileblocks-edu"
    assert (clone / ".git").is_dir() and (clone / "lessons" / "results").is_dir()
    after_01 = _freeze(COLAB_PYTHON)
    assert "mobileblocks-edu" in after_01
    for name in KEPT:  # Colab's preinstalled stack is left as it was
        assert after_01.get(name) == before.get(name), \
            f"installing the lessons changed {name}: {before.get(name)} -> {after_01.get(name)}"

    # a second lesson in a fresh kernel finds the installed library and installs nothing more
    _execute("04_meta_mobile_block.ipynb", content, env)
    assert _freeze(COLAB_PYTHON) == after_01

    # the library found the clone's committed results and checkpoints, with no data folder
    check = ("from mobileblocks_edu import lab; from mobileblocks_edu.train import experiments; r = lab.repo_root(); "
             "assert r is not None and lab.results_dir().is_dir() and lab.checkpoints_dir().is_dir(), r; "
             "assert not lab.data_dir().exists(), lab.data_dir(); "
             "experiments.load_trained('cifar10_emo_1m'); print(r)")
    proc = subprocess.run([COLAB_PYTHON, "-c", check], env=env, cwd=content, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert Path(proc.stdout.strip()) == clone

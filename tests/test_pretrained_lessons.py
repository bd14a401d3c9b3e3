"""The lessons' ImageNet branch: the lessons that use the published weights run in fast mode with
``create_model(name, pretrained=True)`` served by a loopback mirror of test files (random numbers
in the published layouts), so that the branch a reader with network sees runs in CI too. (The
offline branch is what ``make test`` runs: nbmake, no network.)"""
from pathlib import Path

import pytest
from weights_mirror import serve, write_mirror

ROOT = Path(__file__).resolve().parent.parent
LESSONS = ["06_emo", "12_train_imagenette", "15_receptive_fields", "16_gradcam", "18_latency"]

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    root = tmp_path_factory.mktemp("mirror")
    write_mirror(root)
    with serve(root) as url:
        yield url, tmp_path_factory.mktemp("torch")


def _text(nb) -> str:
    out = []
    for c in nb.cells:
        for o in c.get("outputs", []):
            out.append(o.get("text", "") if "text" in o else "".join(o.get("data", {}).get("text/plain", "")))
            out.append("".join(o.get("data", {}).get("text/markdown", "")))
    return "\n".join(out)


@pytest.mark.parametrize("lesson", LESSONS)
def test_the_imagenet_branch_runs_and_says_test_weights(lesson, mirror, monkeypatch):
    url, torch_home = mirror
    path = ROOT / "lessons" / f"{lesson}.ipynb"
    if "imagenet_weights(" not in path.read_text():
        pytest.skip(f"{lesson} has no ImageNet cells yet")
    monkeypatch.setenv("MBE_WEIGHTS_URL", url)
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    monkeypatch.setenv("MBE_FAST", "1")
    monkeypatch.delenv("MBE_OFFLINE", raising=False)
    nb = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}}).execute()
    text = _text(nb)
    assert "no ImageNet weights here" not in text, "a lesson fell back although the mirror serves the files"
    assert "test weights" in text.lower()

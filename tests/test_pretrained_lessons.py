"""The lessons' ImageNet branch: the lessons that use the published weights run in fast mode with
``create_model(name, pretrained=True)`` served by a loopback mirror of test files (random numbers
in the published layouts), so that the branch a reader with network sees runs in CI too. (The
offline branch is what ``make test`` runs: nbmake, no network.)"""
import json
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


@pytest.fixture(scope="module")
def imagenette(tmp_path_factory):
    """A data directory with an Imagenette layout of random pictures (3 training and 2 validation
    images per class), so that the lessons' cells that read Imagenette images run too."""
    import numpy as np
    from PIL import Image

    from mobileblocks_edu.data import IMAGENETTE_CLASSES

    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for split, n in (("train", 3), ("val", 2)):
        for wnid in IMAGENETTE_CLASSES:
            folder = root / "imagenet_subset" / split / wnid
            folder.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (96, 112, 3), dtype=np.uint8)).save(folder / f"{wnid}_{i}.JPEG")
    (root / "imagenet_subset" / "classes.json").write_text(json.dumps(IMAGENETTE_CLASSES))
    return root


def _text(nb) -> str:
    out = []
    for c in nb.cells:
        for o in c.get("outputs", []):
            out.append(o.get("text", "") if "text" in o else "".join(o.get("data", {}).get("text/plain", "")))
            out.append("".join(o.get("data", {}).get("text/markdown", "")))
    return "\n".join(out)


# with Imagenette images, and without (lessons 6 and 18 then use the shipped photos)
CASES = [(lesson, True) for lesson in LESSONS] + [("06_emo", False), ("18_latency", False)]


@pytest.mark.parametrize("lesson,with_data", CASES, ids=[f"{n}-{'data' if d else 'photos'}" for n, d in CASES])
def test_the_imagenet_branch_runs_and_says_test_weights(lesson, with_data, mirror, imagenette, tmp_path,
                                                        monkeypatch):
    url, torch_home = mirror
    monkeypatch.setenv("MBE_DATA", str(imagenette if with_data else tmp_path / "no-data"))
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

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def one_thread():
    """Small tensors: one thread avoids oversubscribing a small shared CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    """A CIFAR-10 layout of random images: 10 classes of 2 training and 1 test 32x32 PNGs."""
    from PIL import Image

    from mobileblocks_edu import data

    root = tmp_path_factory.mktemp("cifar")
    rng = np.random.default_rng(0)
    for split, n in (("train", 2), ("test", 1)):
        for name in data.CIFAR10_CLASSES:
            d = root / "cifar10" / split / name
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(d / f"{i:05d}.png")
    return root


def zoo(names):
    """The models a zoo-wide test runs on: every one of ``names``, or with ``MBE_TEST_ZOO=families``
    (``make test-oldest``: the same tests on the oldest versions, where export is several times
    slower) the first model of each family (EMO, GhostNet, MobileNetV2, MoCoViT, MoCoViT-D)."""
    import os

    if os.environ.get("MBE_TEST_ZOO", "all") != "families":
        return list(names)
    first = {}
    for name in names:
        first.setdefault(name.split("_")[0] + ("_d" if "_d_" in name else ""), name)
    return list(first.values())

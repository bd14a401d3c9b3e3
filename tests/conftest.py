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


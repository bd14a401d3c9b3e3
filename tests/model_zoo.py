"""Which registered models a zoo-wide test runs on (imported by the test modules: ``from model_zoo import zoo``)."""
import os


def zoo(names):
    """The models a zoo-wide test runs on: every one of ``names``, or with ``MBE_TEST_ZOO=families``
    (``make test-oldest``: the same tests on the oldest versions, where export is several times
    slower) the first model of each family (EMO, GhostNet, MobileNetV2, MoCoViT, MoCoViT-D)."""
    if os.environ.get("MBE_TEST_ZOO", "all") != "families":
        return list(names)
    first = {}
    for name in names:
        first.setdefault(name.split("_")[0] + ("_d" if "_d_" in name else ""), name)
    return list(first.values())

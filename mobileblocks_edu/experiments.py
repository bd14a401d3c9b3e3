"""``python -m mobileblocks_edu.experiments``: the lab's named runs (:mod:`mobileblocks_edu.train.experiments`).

Only the command lives at this name, the one the README and the committed results record; the
code is imported from :mod:`mobileblocks_edu.train.experiments`.
"""
import sys

if __name__ != "__main__":
    raise ImportError("mobileblocks_edu.experiments is only a command; import mobileblocks_edu.train.experiments")

from mobileblocks_edu.train.experiments import main  # noqa: E402

sys.exit(main())

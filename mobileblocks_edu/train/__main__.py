"""``python -m mobileblocks_edu.train``: the training command (:mod:`mobileblocks_edu.train.cli`)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())

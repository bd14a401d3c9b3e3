"""``python -m mobileblocks_edu.deploy latency|quantize`` (:mod:`mobileblocks_edu.deploy.cli`)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())

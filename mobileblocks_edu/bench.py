"""``python -m mobileblocks_edu.bench``: CPU throughput and memory (:mod:`mobileblocks_edu.analysis.bench`).

Only the command lives at this name, the one the README and the committed results record; the
code is imported from :mod:`mobileblocks_edu.analysis.bench`.
"""
import sys

if __name__ != "__main__":
    raise ImportError("mobileblocks_edu.bench is only a command; import mobileblocks_edu.analysis.bench")

from mobileblocks_edu.analysis.bench import main  # noqa: E402

sys.exit(main())

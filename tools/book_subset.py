"""Write ``mobileblocks_edu/data/book_subset.json.gz``: which images the book's committed runs used.

The book trains on an offline copy of part of CIFAR-10 and of Imagenette (the data directory's
``cifar10/`` and ``imagenet_subset/`` folders). Their ``index.csv`` files list every image; this
script reduces them to what names the same images in torchvision's downloads:

* CIFAR-10: the original indices of each split (``torchvision.datasets.CIFAR10``'s order), as
  inclusive ranges ``[first, last]``;
* Imagenette: the file names of each split, per class folder (wnid), as in Imagenette v2's archive.

``load_dataset(..., subset="book")`` (``--subset book`` on the command line) reads that file.
Run it again only if the offline copy changes::

    python tools/book_subset.py /path/to/datasets          # the folder holding cifar10/ and imagenet_subset/
    python tools/book_subset.py /path/to/datasets --check  # exit 1 if the committed file differs
"""
from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "mobileblocks_edu" / "data" / "book_subset.json.gz"


def _ranges(indices: list[int]) -> list[list[int]]:
    """Sorted distinct integers as inclusive ``[first, last]`` runs."""
    out: list[list[int]] = []
    for i in sorted(set(indices)):
        if out and i == out[-1][1] + 1:
            out[-1][1] = i
        else:
            out.append([i, i])
    return out


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def describe(datasets: Path) -> dict:
    """The description, from ``datasets/cifar10/index.csv`` and ``datasets/imagenet_subset/index.csv``."""
    cifar = _rows(datasets / "cifar10" / "index.csv")
    inette = _rows(datasets / "imagenet_subset" / "index.csv")
    out: dict = {
        "about": "The images of the book's committed runs, written by tools/book_subset.py from the offline "
                 "copy's index.csv files. cifar10: original CIFAR-10 indices per split, inclusive ranges. "
                 "imagenette: Imagenette v2 file names per split and class folder (wnid).",
        "cifar10": {},
        "imagenette": {},
    }
    for split in ("train", "test"):
        rows = [r for r in cifar if r["split"] == split]
        for r in rows:  # the file name is the original index
            if int(Path(r["path"]).stem) != int(r["cifar10_index"]):
                raise ValueError(f"cifar10/index.csv: {r['path']} does not hold image {r['cifar10_index']}")
        out["cifar10"][split] = _ranges([int(r["cifar10_index"]) for r in rows])
    for split in ("train", "val"):
        per_class: dict[str, list[str]] = {}
        for r in inette:
            if r["split"] == split:
                per_class.setdefault(r["wnid"], []).append(Path(r["path"]).name)
        out["imagenette"][split] = {w: sorted(names) for w, names in sorted(per_class.items())}
    return out


def encode(description: dict) -> bytes:
    """Gzipped JSON, the same bytes for the same description (no time stamp, no file name)."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as f:
        f.write((json.dumps(description, indent=0, sort_keys=False) + "\n").encode("utf-8"))
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("datasets", nargs="?", default=os.environ.get("MBE_DATA"),
                   help="the folder holding cifar10/ and imagenet_subset/ (default: $MBE_DATA)")
    p.add_argument("--check", action="store_true", help="only check that the committed file is up to date")
    args = p.parse_args(argv)
    if not args.datasets:
        p.error("pass the folder holding cifar10/index.csv and imagenet_subset/index.csv (or set MBE_DATA)")
    data = encode(describe(Path(args.datasets)))
    if args.check:
        if not OUT.is_file() or OUT.read_bytes() != data:
            print(f"{OUT.relative_to(ROOT)} is out of date: run python tools/book_subset.py {args.datasets}")
            return 1
        return 0
    OUT.write_bytes(data)
    print(f"wrote {OUT.relative_to(ROOT)} ({len(data):,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

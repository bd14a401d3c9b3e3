"""The library's version (the release tag is ``v`` + this; ``pyproject.toml`` holds the same)."""
__version__ = "0.3.0"

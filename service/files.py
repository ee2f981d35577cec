"""Small file helpers shared by the index format and the model converter."""

from __future__ import annotations

import hashlib
import os


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 hex digest of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_problem(path: str | os.PathLike, size: int, digest: str, made: str = "exported") -> str | None:
    """What is wrong with a file that must have ``size`` bytes and SHA-256 ``digest`` (``"is missing"``, ``"is N
    bytes, not the M exported"``, ``"is not the file exported (SHA-256 differs)"``), or None when it is that file."""
    if not os.path.isfile(path):
        return "is missing"
    if os.path.getsize(path) != size:
        return f"is {os.path.getsize(path)} bytes, not the {size} {made}"
    if sha256_file(path) != digest:
        return f"is not the file {made} (SHA-256 differs)"
    return None

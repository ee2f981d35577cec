"""Small file helpers shared by the index format, the model converter and the writers of the corpus files."""

from __future__ import annotations

import contextlib
import fcntl
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


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike):
    """Hold an exclusive ``flock`` on the file ``path`` (created if missing) until the block ends: one holder at a
    time across threads and processes (each call opens its own file description)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)

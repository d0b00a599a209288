"""Files that are either wholly there or not at all: written beside the final name,
flushed, renamed over it, and the rename itself flushed (the directory entry)."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_directory(path: Path) -> None:
    """A rename is durable only once its directory is flushed too."""
    directory = os.open(path, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def temporary_beside(path: Path) -> Path:
    """Where to write before renaming over `path`: same directory, so the rename is atomic."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def replace_durably(temporary: Path, path: Path) -> None:
    """Flush `temporary`, rename it over `path`, flush the directory."""
    with open(temporary, "rb+") as written:
        os.fsync(written.fileno())
    os.replace(temporary, path)
    fsync_directory(path.parent)

"""Transparent gzip/bzip2 input, recognised by magic bytes rather than trusted suffixes."""

from __future__ import annotations

import bz2
import gzip
from pathlib import Path
from typing import BinaryIO

_GZIP_MAGIC = b"\x1f\x8b"
_BZIP2_MAGIC = b"BZh"


def compression_of(path: Path) -> str | None:
    """``"gzip"``, ``"bzip2"`` or ``None`` for a plain file."""
    with open(path, "rb") as handle:
        magic = handle.read(3)
    if magic.startswith(_GZIP_MAGIC):
        return "gzip"
    if magic.startswith(_BZIP2_MAGIC):
        return "bzip2"
    return None


def open_binary(path: Path) -> BinaryIO:
    """Open ``path`` for reading bytes, decompressing on the fly when needed."""
    kind = compression_of(path)
    if kind == "gzip":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    if kind == "bzip2":
        return bz2.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")

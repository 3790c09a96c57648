"""Atomic output: write to temporary files beside the targets, then rename them all.

A failed or interrupted write leaves nothing behind, and an existing file is never clobbered
unless the caller passed ``force``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from embsurgeon.errors import OutputError


def check_writable(paths: Sequence[Path], *, force: bool) -> None:
    """Refuse existing outputs (unless ``force``) and missing parent directories, up front."""
    for path in paths:
        if path.exists() and not force:
            raise OutputError(f"{path} already exists; pass --force to overwrite it")
        if path.is_dir():
            raise OutputError(f"{path} is a directory; give a file name")
        parent = path.parent if str(path.parent) else Path(".")
        if not parent.is_dir():
            raise OutputError(f"{path}: directory {parent} does not exist; create it first")


@contextlib.contextmanager
def atomic_paths(*paths: str | Path, force: bool = False) -> Iterator[list[Path]]:
    """Yield temporary paths; on success rename each onto its target, on failure remove them.

    >>> with atomic_paths("out.safetensors", "out.vocab.txt") as (tmp_st, tmp_vocab):
    ...     ...  # write both; either both appear or neither does   # doctest: +SKIP
    """
    targets = [Path(p) for p in paths]
    check_writable(targets, force=force)
    temps: list[Path] = []
    try:
        for target in targets:
            fd, name = tempfile.mkstemp(
                prefix=f".{target.name}.", suffix=".tmp", dir=target.parent or "."
            )
            os.close(fd)
            temps.append(Path(name))
        yield temps
        for temp, target in zip(temps, targets, strict=True):
            # Re-check: another process may have created the file while we were writing.
            if target.exists() and not force:
                raise OutputError(f"{target} appeared while writing; pass --force to overwrite")
            os.replace(temp, target)
    except OSError as exc:  # permission denied, disk full, read-only file system...
        where = exc.filename or targets[0]
        raise OutputError(f"cannot write {where}: {exc.strerror or exc}") from exc
    finally:
        for temp in temps:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()

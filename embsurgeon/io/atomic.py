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


def default_mode(directory: bool = False) -> int:
    """The mode ``open``/``mkdir`` would give a new file (directory): 0o666 (0o777) & ~umask.

    ``mkstemp`` and ``mkdtemp`` create 0o600/0o700 for privacy while writing; outputs must not
    keep that, or a shared model directory becomes unreadable to everyone else.
    """
    umask = os.umask(0)
    os.umask(umask)  # reading the umask means setting it; put it straight back
    return (0o777 if directory else 0o666) & ~umask


@contextlib.contextmanager
def atomic_paths(*paths: str | Path, force: bool = False) -> Iterator[list[Path]]:
    """Yield temporary paths; on success rename each onto its target, on failure remove them.

    The files appear with the usual permissions (0o666 & ~umask), as ``open`` would make them.

    >>> with atomic_paths("out.safetensors", "out.vocab.txt") as (tmp_st, tmp_vocab):
    ...     ...  # write both; either both appear or neither does   # doctest: +SKIP
    """
    targets = [Path(p) for p in paths]
    check_writable(targets, force=force)
    temps: list[Path] = []
    mode = default_mode()
    try:
        for target in targets:
            try:
                fd, name = tempfile.mkstemp(
                    prefix=f".{target.name}.", suffix=".tmp", dir=target.parent or "."
                )
            except OSError as exc:
                raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from exc
            try:
                os.fchmod(fd, mode)
            finally:
                os.close(fd)
            temps.append(Path(name))
        yield temps
        # Re-check every target before renaming any: another process may have created one
        # while we were writing, and a half-renamed group is what this module prevents.
        for target in targets:
            if target.exists() and not force:
                raise OutputError(f"{target} appeared while writing; pass --force to overwrite")
        for temp, target in zip(temps, targets, strict=True):
            os.replace(temp, target)
    except OSError as exc:  # permission denied, disk full, read-only file system...
        raise OutputError(f"cannot write {_target_of(exc, temps, targets)}: "
                          f"{exc.strerror or exc}") from exc
    finally:
        for temp in temps:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()


def _target_of(exc: OSError, temps: Sequence[Path], targets: Sequence[Path]) -> Path:
    """The output the user named, not the hidden temporary file that failed."""
    for name in (exc.filename, exc.filename2):
        if name is None:
            continue
        for temp, target in zip(temps, targets, strict=False):
            if Path(name) in (temp, target):
                return target
    return Path(exc.filename) if exc.filename is not None else targets[0]

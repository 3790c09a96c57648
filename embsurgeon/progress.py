"""Progress bars on stderr for long reads and writes; silent unless asked for."""

from __future__ import annotations

import sys
from typing import Any


class _Silent:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> _Silent:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def progress_bar(enabled: bool, *, total: int | None, desc: str, unit: str = "B") -> Any:
    """A tqdm bar on stderr when ``enabled`` and stderr is a terminal, else a no-op object.

    >>> with progress_bar(False, total=10, desc="reading") as bar:
    ...     bar.update(10)
    """
    if not enabled or not sys.stderr.isatty():
        return _Silent()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, file=sys.stderr,
                leave=False, dynamic_ncols=True)

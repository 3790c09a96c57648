"""The exception tree.

Every error a user can cause is an ``EmbsurgeonError``. The CLI prints its message on one line
and exits 1; ``--debug`` shows the traceback. Messages name the file, line, token or tensor and
say what to do next.
"""

from __future__ import annotations

from typing import Any


class EmbsurgeonError(Exception):
    """Root of every error embsurgeon raises on purpose."""


class FormatError(EmbsurgeonError):
    """A file is not in the format it claims, is damaged, or no format fits it."""


class VocabularyError(EmbsurgeonError):
    """Tokens and rows disagree, a token repeats, or a vocabulary file is unusable."""


class TensorNotFoundError(EmbsurgeonError):
    """A checkpoint holds no embedding tensor we can identify (or more than one)."""


class DtypeError(EmbsurgeonError):
    """A dtype is unsupported, or values cannot be represented in it."""


class MissingDependencyError(EmbsurgeonError):
    """An optional package is needed; the message names the extra to install."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the '{package}' package: pip install 'embsurgeon[{extra}]'"
        )
        self.package = package
        self.extra = extra


class OutputError(EmbsurgeonError):
    """An output path exists (and --force was not given) or cannot be written."""


class SimilarityError(EmbsurgeonError):
    """A search cannot run as asked (no CUDA device, dimensions differ, k out of range...)."""


class AlignmentError(EmbsurgeonError):
    """A target vocabulary cannot be aligned (no overlap, bad method, dimension mismatch)."""


def require(module: str, *, extra: str, purpose: str) -> Any:
    """Import an optional dependency or raise ``MissingDependencyError`` naming the extra.

    >>> np = require("numpy", extra="core", purpose="this example")
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(module.split(".")[0], extra, purpose) from exc

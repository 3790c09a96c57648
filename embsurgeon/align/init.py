"""Initialization of target rows that have no source row (OOV initialization).

Each method takes the target tokens still unfilled, their decoded :class:`Surface` forms and an
:class:`InitContext`, and returns an :class:`InitResult`: a vector per target plus whether the
method could build it and from which tokens with which weights. Methods chain: the orchestrator
hands the rows one method left unfilled to the next, so a method that cannot build a row says so
(``filled=False``) instead of guessing.

>>> import numpy as np
>>> from embsurgeon.table import EmbeddingTable
>>> from embsurgeon.align.forms import Surface
>>> src = EmbeddingTable(["a", "b"], np.array([[1.0, 0.0], [3.0, 2.0]], dtype=np.float32))
>>> r = initialize(InitMethod.MEAN, ["c"], [Surface("c", True)], InitContext(src))
>>> r.vectors.tolist(), r.filled.tolist()
([[2.0, 1.0]], [True])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np

from embsurgeon.align.forms import Surface
from embsurgeon.errors import AlignmentError
from embsurgeon.table import EmbeddingTable
from embsurgeon.vocab import Vocabulary


class InitMethod(str, Enum):
    """How to build a target row the source lacks; values are the CLI spellings of ``--init``."""

    ZERO = "zero"
    MEAN = "mean"
    NORMAL = "normal"
    MVN = "mvn"
    SUBWORD = "subword"
    SUBWORD_WEIGHTED = "subword-weighted"  # pieces weighted by their surface length
    KNN = "knn"
    OMP = "omp"


class Weighting(str, Enum):
    """How ``knn`` turns neighbour similarities into weights."""

    SOFTMAX = "softmax"
    SPARSEMAX = "sparsemax"


#: Defaults shared by the library and the CLI.
DEFAULT_K = 10
DEFAULT_TEMPERATURE = 0.1
DEFAULT_WEIGHTING = Weighting.SOFTMAX


@dataclass(frozen=True)
class InitContext:
    """What the initialization methods may draw on.

    ``reference_rows`` are the source rows copied into the target (their moments drive ``mean``,
    ``normal`` and ``mvn``); ``aux`` is a table covering both vocabularies (``knn``, ``omp``),
    ``aux_to_source`` maps its tokens to source rows (None: an aux token names its source row).
    """

    source: EmbeddingTable
    reference_rows: np.ndarray | None = None  # (C,) source row ids
    source_vocab: Vocabulary | None = None  # None: a word-level source
    aux: EmbeddingTable | None = None
    aux_to_source: Mapping[str, int] | None = None
    seed: int = 0
    k: int = DEFAULT_K
    temperature: float = DEFAULT_TEMPERATURE
    weighting: Weighting = DEFAULT_WEIGHTING
    fasttext_path: str | None = None  # the source is a fastText .bin: compose from n-grams


@dataclass(frozen=True)
class InitResult:
    """Rows built by one method; rows it could not build are zero with ``filled`` False."""

    vectors: np.ndarray  # (M, D) float32
    filled: np.ndarray  # (M,) bool
    sources: tuple[tuple[str, ...], ...]  # per target: the source/aux tokens used
    weights: tuple[tuple[float, ...], ...]  # per target: their weights

    @property
    def n_filled(self) -> int:
        return int(self.filled.sum())


def initialize(method: InitMethod | str, tokens: Sequence[str], surfaces: Sequence[Surface],
               context: InitContext) -> InitResult:
    """Build rows for ``tokens`` (target tokens the source lacks) with ``method``.

    >>> import numpy as np
    >>> from embsurgeon.table import EmbeddingTable
    >>> from embsurgeon.align.forms import Surface
    >>> src = EmbeddingTable(["x", "y"], np.ones((2, 3), dtype=np.float32))
    >>> initialize("zero", ["z"], [Surface("z", True)], InitContext(src)).vectors.shape
    (1, 3)
    """
    method = _method(method)
    if len(tokens) != len(surfaces):
        raise AlignmentError(
            f"{len(tokens)} target tokens but {len(surfaces)} surfaces; pass one surface per token"
        )
    _check_context(context, method)
    if method is InitMethod.ZERO:
        return _blank(len(tokens), context.source.dim, filled=True)
    if method in (InitMethod.MEAN, InitMethod.NORMAL, InitMethod.MVN):
        return _from_moments(method, len(tokens), context)
    if method in (InitMethod.SUBWORD, InitMethod.SUBWORD_WEIGHTED):
        from embsurgeon.align.subword import subword_init

        return subword_init(tokens, surfaces, context,
                            length_weighted=method is InitMethod.SUBWORD_WEIGHTED)
    from embsurgeon.align.neighbours import knn_init, omp_init

    if method is InitMethod.KNN:
        return knn_init(tokens, surfaces, context)
    return omp_init(tokens, surfaces, context)


def _method(method: InitMethod | str) -> InitMethod:
    try:
        return InitMethod(method)
    except ValueError:
        choices = ", ".join(m.value for m in InitMethod)
        raise AlignmentError(f"unknown init method {method!r}; choose one of {choices}") from None


def _check_context(context: InitContext, method: InitMethod) -> None:
    source = context.source
    if len(source) == 0:
        raise AlignmentError(f"--init {method.value}: the source table has no rows")
    if context.reference_rows is not None:
        rows = np.asarray(context.reference_rows)
        if rows.ndim != 1 or rows.size == 0:
            raise AlignmentError(
                f"--init {method.value}: reference_rows must be a non-empty 1-D array of row ids"
            )
        if rows.min() < 0 or rows.max() >= len(source):
            raise AlignmentError(
                f"--init {method.value}: reference row {int(rows.max())} is out of range for a "
                f"source of {len(source)} rows"
            )
    if context.k < 1:
        raise AlignmentError(f"--init {method.value}: k must be at least 1, got {context.k}")
    if context.weighting not in tuple(Weighting):
        choices = ", ".join(w.value for w in Weighting)
        raise AlignmentError(
            f"--init {method.value}: unknown weighting {context.weighting!r}; choose one of "
            f"{choices}"
        )
    if not context.temperature > 0:
        raise AlignmentError(
            f"--init {method.value}: temperature must be positive, got {context.temperature}"
        )


def _blank(m: int, dim: int, *, filled: bool) -> InitResult:
    return InitResult(
        vectors=np.zeros((m, dim), dtype=np.float32),
        filled=np.full(m, filled, dtype=bool),
        sources=((),) * m,
        weights=((),) * m,
    )


def reference_matrix(context: InitContext) -> np.ndarray:
    """The rows whose moments new rows should follow (the copied rows, else all)."""
    vectors = context.source.vectors
    if context.reference_rows is None:
        return vectors
    return vectors[np.asarray(context.reference_rows, dtype=np.int64)]


def _from_moments(method: InitMethod, m: int, context: InitContext) -> InitResult:
    reference = reference_matrix(context)  # (C, D)
    dim = reference.shape[1]
    mean = _mean64(reference)  # (D,)
    rng = np.random.default_rng(context.seed)
    if method is InitMethod.MEAN:
        out = np.broadcast_to(mean, (m, dim))
    elif method is InitMethod.NORMAL:
        std = np.sqrt(_column_variance(reference, mean))  # (D,)
        out = mean + rng.standard_normal((m, dim)) * std
    else:
        out = sample_mvn(reference, m, rng, mean=mean)
    result = _blank(m, dim, filled=True)
    return InitResult(np.ascontiguousarray(out, dtype=np.float32), result.filled,
                      result.sources, result.weights)


_CHUNK = 65536  # rows per chunk: moments of a 250k x 4096 table need no float64 copy of it


def _mean64(x: np.ndarray) -> np.ndarray:
    total = np.zeros(x.shape[1], dtype=np.float64)
    for start in range(0, x.shape[0], _CHUNK):
        total += x[start:start + _CHUNK].sum(axis=0, dtype=np.float64)
    return total / x.shape[0]


def _column_variance(x: np.ndarray, mean: np.ndarray) -> np.ndarray:
    if x.shape[0] < 2:
        return np.zeros(x.shape[1], dtype=np.float64)
    total = np.zeros(x.shape[1], dtype=np.float64)
    for start in range(0, x.shape[0], _CHUNK):
        centred = x[start:start + _CHUNK].astype(np.float64) - mean
        total += np.einsum("ij,ij->j", centred, centred)
    return total / (x.shape[0] - 1)


def sample_mvn(reference: np.ndarray, m: int, rng: np.random.Generator, *,
               mean: np.ndarray | None = None, via: str = "auto") -> np.ndarray:
    """``m`` draws from N(mean, cov) of the rows of ``reference`` (float64).

    Two exact routes, ``via="auto"`` taking the cheaper (about M*C*D against C*D^2 + D^3
    multiply-adds: adding 2k tokens to a 128k x 4096 model is 20x cheaper by rows):

    - ``"rows"``: ``mean + z @ Xc / sqrt(C - 1)`` with z standard normal in C dimensions. It
      has exactly the sample covariance, never forms the D x D matrix, and is rank-safe
      (draws stay in the span of the rows, e.g. when C <= D).
    - ``"covariance"``: the covariance accumulated in float64 and factored with an
      eigen-decomposition whose eigenvalues below the input's precision (round-off, including
      small negatives) are set to zero, so a rank-deficient covariance works too.

    Both read the rows in chunks, so no float64 copy of a large table is made.

    >>> x = np.random.default_rng(0).standard_normal((500, 3))
    >>> sample_mvn(x, 4, np.random.default_rng(1)).shape
    (4, 3)
    """
    c, dim = reference.shape
    if mean is None:
        mean = _mean64(reference)
    if c < 2 or m == 0:
        return np.broadcast_to(mean, (m, dim)).copy()
    if via not in ("auto", "rows", "covariance"):
        raise AlignmentError(f"sample_mvn: via must be auto, rows or covariance, not {via!r}")
    if via == "rows" or (via == "auto" and m * c <= c * dim + dim * dim):
        out = np.zeros((m, dim), dtype=np.float64)
        step = max(1, _DRAW_ELEMENTS // m)  # (M, step) normals per chunk
        for start in range(0, c, step):
            centred = reference[start:start + step].astype(np.float64) - mean  # (S, D)
            out += rng.standard_normal((m, len(centred))) @ centred
        return mean + out / np.sqrt(c - 1)
    cov = np.zeros((dim, dim), dtype=np.float64)
    for start in range(0, c, _CHUNK):
        centred = reference[start:start + _CHUNK].astype(np.float64) - mean
        cov += centred.T @ centred
    cov /= c - 1
    eigval, eigvec = np.linalg.eigh(cov)  # ascending
    # Eigenvalues below what the input's precision can resolve (float32 rows: ~1e-7 relative)
    # are round-off, not variance; clipping them keeps draws inside the data's true span.
    eps = np.finfo(reference.dtype if reference.dtype.kind == "f" else np.float64).eps
    floor = max(float(eigval[-1]), 0.0) * dim * eps
    factor = eigvec * np.sqrt(np.where(eigval > floor, eigval, 0.0))  # (D, D): cov = F F^T
    z = rng.standard_normal((m, dim))  # (M, D)
    return mean + z @ factor.T


_DRAW_ELEMENTS = 1 << 22  # normals drawn per chunk on the "rows" route (32 MB)

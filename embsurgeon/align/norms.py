"""Norm matching: give initialized rows the norms that copied rows have.

Averages of several rows are shorter than the rows themselves (the more the pieces disagree,
the shorter), so subword/knn/omp rows would otherwise stand out as low-norm outliers. These
kernels rescale each row (its direction is kept) so the norms follow the reference rows.

>>> import numpy as np
>>> out = match_norms(np.array([[3.0, 4.0], [0.0, 0.0]]), np.array([10.0]), method="mean")
>>> out.tolist()
[[6.0, 8.0], [0.0, 0.0]]
"""

from __future__ import annotations

from enum import Enum

import numpy as np

from embsurgeon.errors import AlignmentError


class NormMatch(str, Enum):
    """How to rescale new rows; values are the CLI spellings."""

    NONE = "none"  # leave norms alone
    QUANTILE = "quantile"  # the r-th shortest new row gets the same quantile of reference norms
    MEAN = "mean"  # every new row gets the mean reference norm
    MEDIAN = "median"  # every new row gets the median reference norm


DEFAULT_NORM_MATCH = NormMatch.QUANTILE


_SMALLEST_NORM = float(np.sqrt(np.finfo(np.float64).tiny))


def match_norms(vectors: np.ndarray, reference_norms: np.ndarray, *,
                method: NormMatch | str = DEFAULT_NORM_MATCH) -> np.ndarray:
    """Rescale the rows of ``vectors`` onto the distribution of ``reference_norms``.

    Quantile mapping keeps the order of the new rows' norms (a confident average stays longer
    than a vague one) while taking the values from the reference. Zero rows stay zero (there is
    no direction to scale) and do not take a quantile. The result has the input's dtype.

    >>> import numpy as np
    >>> v = np.array([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]], dtype=np.float32)
    >>> match_norms(v, np.array([5.0, 7.0])).tolist()
    [[5.5, 0.0], [0.0, 6.5], [0.0, 0.0]]
    """
    try:
        method = NormMatch(method)
    except ValueError:
        choices = ", ".join(m.value for m in NormMatch)
        raise AlignmentError(f"unknown norm matching {method!r}; choose one of {choices}") from None
    if vectors.ndim != 2:
        raise AlignmentError(f"match_norms needs a 2-D matrix, got shape {vectors.shape}")
    if method is NormMatch.NONE or vectors.shape[0] == 0:
        return vectors.copy()
    ref = np.asarray(reference_norms, dtype=np.float64).ravel()  # (C,)
    if ref.size == 0:
        raise AlignmentError("match_norms: no reference norms (no rows were copied); "
                             "use --norm-match none")
    if not np.all(np.isfinite(ref)) or ref.min() < 0:
        raise AlignmentError("match_norms: reference norms must be finite and non-negative")
    work = vectors.astype(np.float64)  # (M, D)
    norms = np.linalg.norm(work, axis=1)  # (M,)
    # Below sqrt(tiny) the squared norm is subnormal and the norm inexact: such rows count as
    # zero (entries below ~1e-154), so every live row's direction is exact.
    live = norms >= _SMALLEST_NORM
    target = np.zeros_like(norms)
    if method is NormMatch.MEAN:
        target[live] = ref.mean()
    elif method is NormMatch.MEDIAN:
        target[live] = np.median(ref)
    else:
        n = int(live.sum())
        if n:
            order = np.argsort(norms[live], kind="stable")
            ranks = np.empty(n, dtype=np.float64)
            ranks[order] = np.arange(n)
            # Mid-point plotting positions: one new row maps to the median, never to the extremes.
            target[live] = np.quantile(ref, (ranks + 0.5) / n)
    unit = np.divide(work, norms[:, None], out=np.zeros_like(work), where=live[:, None])
    return (unit * target[:, None]).astype(vectors.dtype, copy=False)

"""Rank correlation in numpy, row by row: Spearman's rho is Pearson's r of average ranks (the
same definition as ``scipy.stats.spearmanr``, without needing scipy).

>>> round(spearman([1, 2, 3, 4], [10, 20, 40, 30]), 3)
0.8
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks (1-based) along the last axis, ties sharing their average rank.

    >>> average_ranks(np.array([[3.0, 1.0, 3.0]])).tolist()
    [[2.5, 1.0, 2.5]]
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[-1]
    order = np.argsort(x, axis=-1, kind="stable")
    ordered = np.take_along_axis(x, order, axis=-1)  # (..., n) ascending
    starts_group = np.ones(x.shape, dtype=bool)
    starts_group[..., 1:] = ordered[..., 1:] != ordered[..., :-1]
    ends_group = np.ones(x.shape, dtype=bool)
    ends_group[..., :-1] = starts_group[..., 1:]
    position = np.broadcast_to(np.arange(n), x.shape)
    first = np.maximum.accumulate(np.where(starts_group, position, 0), axis=-1)
    last = np.flip(np.minimum.accumulate(np.flip(np.where(ends_group, position, n - 1), -1),
                                         axis=-1), -1)
    ranks = np.empty(x.shape, dtype=np.float64)
    np.put_along_axis(ranks, order, (first + last) / 2 + 1, axis=-1)
    return ranks


def pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson's r of each row pair; NaN where a row is constant (r is undefined there)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    denom = np.sqrt((a * a).sum(axis=-1) * (b * b).sum(axis=-1))
    num = (a * b).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(denom > 0, num / np.where(denom > 0, denom, 1.0), np.nan)
    return np.clip(r, -1.0, 1.0)


def spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman's rho of each row of ``a`` with the same row of ``b`` (..., n) -> (...)."""
    return pearson_rows(average_ranks(a), average_ranks(b))


def spearman(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Spearman's rho of two equally long sequences; NaN when either is constant or short."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.size < 2:
        return float("nan")
    return float(spearman_rows(x[None], y[None])[0])


def pearson(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Pearson's r of two equally long sequences; NaN when either is constant or short."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.size < 2:
        return float("nan")
    return float(pearson_rows(x[None], y[None])[0])

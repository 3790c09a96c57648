"""The faiss backend: faiss-cpu's exact ``IndexFlatIP``, for comparison and for users who
already rely on faiss. Same contract as :func:`embsurgeon.similarity.knn.search`: exact
scores, zero rows score 0, ties ordered by ascending row id (which tied rows make the cut at
the k-th place is faiss's choice).
"""

from __future__ import annotations

import numpy as np

from embsurgeon.errors import DtypeError, require
from embsurgeon.linalg import unit_rows
from embsurgeon.similarity.knn import (
    DEFAULT_DEVICE,
    DEFAULT_K,
    DEFAULT_MEMORY_BUDGET,
    DEFAULT_METRIC,
    DEFAULT_PRECISION,
    Device,
    Hits,
    Metric,
    Precision,
    SimilarityError,
)

#: Query rows per faiss call; bounds our normalized copy of the queries (faiss tiles inside).
_MAX_QUERY_CHUNK = 65536


def _normalized(rows: np.ndarray, metric: Metric) -> np.ndarray:
    """A float32 C-order copy (faiss's layout; float32 halves the memory of float64) with
    non-finite rows set to zero, so they score 0 as in the torch backend; unit rows for
    cosine."""
    if metric is Metric.COSINE:
        # A NaN/Inf row comes out non-finite and is zeroed below; no warning for it.
        with np.errstate(invalid="ignore", over="ignore"):
            x = unit_rows(rows, dtype=np.float32)  # (B, D), a fresh copy
    else:
        x = np.array(rows, dtype=np.float32, copy=True)  # (B, D)
    x[~np.isfinite(x).all(axis=1)] = 0.0
    return np.ascontiguousarray(x)


def search(
    queries: np.ndarray,
    database: np.ndarray,
    k: int = DEFAULT_K,
    *,
    metric: Metric | str = DEFAULT_METRIC,
    exclude: np.ndarray | None = None,
    column_penalty: np.ndarray | None = None,
    device: Device | str = DEFAULT_DEVICE,
    precision: Precision | str = DEFAULT_PRECISION,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> Hits:
    """Exact top-``k`` with faiss; arguments as for the torch backend.

    >>> import numpy as np
    >>> db = np.array([[1, 0], [1, 1], [0, 1]], dtype=np.float32)
    >>> search(db[:1], db, k=2, metric="dot").ids.tolist()           # doctest: +SKIP
    [[0, 1]]
    """
    faiss = require("faiss", extra="faiss", purpose="the faiss backend (--backend faiss)")
    metric, precision = Metric(metric), Precision(precision)
    if Device(device) is Device.CUDA:
        raise SimilarityError("the faiss backend runs on the CPU; use --backend torch for CUDA")
    if precision is not Precision.FLOAT32:
        raise DtypeError(f"the faiss backend computes in float32, not {precision.value}")
    if column_penalty is not None:
        raise SimilarityError("the faiss backend cannot apply column penalties (CSLS); "
                              "use --backend torch")
    if queries.ndim != 2 or database.ndim != 2 or queries.shape[1] != database.shape[1]:
        raise SimilarityError(
            f"queries of shape {queries.shape} cannot be searched in a table of shape "
            f"{database.shape}; the dimensions must agree"
        )
    if k < 1:
        raise SimilarityError(f"k must be at least 1, got {k}")
    n_q, n_db = queries.shape[0], database.shape[0]
    n_excluded = 0 if exclude is None else exclude.shape[1]
    k = max(0, min(k, n_db - n_excluded))
    if n_q == 0 or k == 0:
        return Hits(np.zeros((n_q, k), np.int64), np.zeros((n_q, k), np.float32))

    index = faiss.IndexFlatIP(database.shape[1])
    index.add(_normalized(database, metric))
    ids_out = np.empty((n_q, k), np.int64)
    scores_out = np.empty((n_q, k), np.float32)
    chunk = max(1, min(_MAX_QUERY_CHUNK, memory_budget // (4 * (database.shape[1] + k + 8))))
    for q0 in range(0, n_q, chunk):
        q1 = min(q0 + chunk, n_q)
        scores, ids = index.search(_normalized(queries[q0:q1], metric), k + n_excluded)
        if exclude is not None:
            # Excluded rows sink to the end; n_excluded extra results keep k real ones.
            banned = (ids[:, :, None] == exclude[q0:q1, None, :]).any(axis=2)
            scores = np.where(banned, -np.inf, scores)
        order = np.lexsort((ids, -scores), axis=1)[:, :k]
        ids_out[q0:q1] = np.take_along_axis(ids, order, 1)
        scores_out[q0:q1] = np.take_along_axis(scores, order, 1)
    return Hits(ids_out, scores_out)

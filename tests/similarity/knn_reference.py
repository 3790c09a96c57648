"""Brute-force numpy oracle for exact top-k: float64 scores, ties by ascending row id."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    x = np.where(np.isfinite(x).all(axis=1, keepdims=True), x, 0.0)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


@dataclass
class Reference:
    ids: np.ndarray  # (Q, k)
    scores: np.ndarray  # (Q, k)
    full: np.ndarray  # (Q, N) every score


def brute_force(queries, database, k, *, metric="cosine", exclude=None, penalty=None):
    if metric == "cosine":
        q, d = unit(queries), unit(database)
    else:
        q = np.where(np.isfinite(queries).all(1, keepdims=True), queries, 0).astype(np.float64)
        d = np.where(np.isfinite(database).all(1, keepdims=True), database, 0).astype(np.float64)
    scores = q @ d.T  # (Q, N)
    if penalty is not None:
        scores = scores - penalty[None, :]
    if exclude is not None:
        for i, row in enumerate(exclude):
            for j in row:
                if j >= 0:
                    scores[i, j] = -np.inf
    columns = np.broadcast_to(np.arange(database.shape[0]), scores.shape)
    ids = np.lexsort((columns, -scores), axis=1)[:, :k]
    return Reference(ids, np.take_along_axis(scores, ids, 1), scores)


def assert_matches(hits, ref, *, atol=1e-5, exact_ids=False):
    """Scores equal the reference top-k and every returned id truly has its returned score.

    Float32 rounding may order near-ties either way (cosines of integer vectors, say), so ids
    are compared one to one only with ``exact_ids`` (data whose scores are exact in float32).
    """
    assert hits.ids.shape == ref.ids.shape
    np.testing.assert_allclose(hits.scores, ref.scores, atol=atol)
    if exact_ids:
        np.testing.assert_array_equal(hits.ids, ref.ids)
        return
    true = np.take_along_axis(ref.full, hits.ids, 1)
    np.testing.assert_allclose(true, hits.scores, atol=atol)
    for row in hits.ids:
        assert len(set(row.tolist())) == len(row)

"""Row-wise vector arithmetic shared by statistics, alignment and similarity.

Everything here is zero-safe: a zero row has norm 0, unit vector 0 and cosine 0 with anything,
never NaN. Norms and cosines are computed in float64 unless a caller asks for float32 to save
memory on large matrices.
"""

from __future__ import annotations

import numpy as np

# Rows per block: a float64 block of a 4096-wide matrix stays near 128 MiB, never a full copy.
_CHUNK_BYTES = 128 << 20


def row_norms(vectors: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """Euclidean norm of every row (or of ``vectors[rows]``), float64, a block at a time.

    Rows holding inf or NaN get an inf or NaN norm.

    >>> row_norms(np.array([[3.0, 4.0], [0.0, 0.0]])).tolist()
    [5.0, 0.0]
    """
    count = vectors.shape[0] if rows is None else len(rows)
    out = np.empty(count, dtype=np.float64)  # (R,)
    step = max(1, _CHUNK_BYTES // (8 * max(1, vectors.shape[1])))
    for start in range(0, count, step):
        picked = slice(start, start + step) if rows is None else rows[start:start + step]
        block = np.asarray(vectors[picked], dtype=np.float64)  # (B, D)
        out[start:start + len(block)] = np.sqrt(np.einsum("ij,ij->i", block, block))
    return out


def unit_rows(vectors: np.ndarray, dtype: type = np.float64) -> np.ndarray:
    """Rows scaled to unit length in ``dtype``; zero rows stay zero.

    >>> unit_rows(np.array([[3.0, 4.0], [0.0, 0.0]])).tolist()
    [[0.6, 0.8], [0.0, 0.0]]
    """
    out: np.ndarray = np.array(vectors, dtype=dtype, copy=True)  # (N, D)
    norms = np.linalg.norm(out, axis=1, keepdims=True)  # (N, 1)
    np.divide(out, norms, out=out, where=norms > 0)
    out[(norms == 0)[:, 0]] = 0.0
    return out


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine between corresponding rows of two (N, D) matrices; 0 where either row is zero.

    >>> row_cosines(np.array([[1.0, 0.0], [0.0, 0.0]]), np.array([[2.0, 0.0], [1.0, 1.0]]))
    array([1., 0.])
    """
    a64, b64 = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    dots = np.einsum("ij,ij->i", a64, b64)  # (N,)
    den = np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)  # (N,)
    return np.divide(dots, den, out=np.zeros_like(dots), where=den > 0)

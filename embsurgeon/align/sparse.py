"""Sparse weightings: sparsemax and orthogonal matching pursuit (OMP), batched.

>>> import numpy as np
>>> sparsemax(np.array([[2.0, 1.0, -3.0]])).tolist()
[[1.0, 0.0, 0.0]]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from embsurgeon.errors import AlignmentError


def sparsemax(z: np.ndarray) -> np.ndarray:
    """Row-wise sparsemax (Martins & Astudillo, 2016): the Euclidean projection onto the simplex.

    Like softmax it returns non-negative rows that sum to 1, but low scores get exactly zero,
    so a weighting over neighbours keeps only the ones that stand out. ``-inf`` entries (masked
    candidates) get zero. Computed in float64; the result has the input's float dtype.

    >>> import numpy as np
    >>> sparsemax(np.array([[1.0, 0.3, 0.1]])).round(4).tolist()
    [[0.85, 0.15, 0.0]]
    """
    z = np.asarray(z)
    if z.ndim not in (1, 2) or z.shape[-1] == 0:
        raise AlignmentError(f"sparsemax needs a non-empty vector or matrix, got shape {z.shape}")
    rows = np.atleast_2d(z).astype(np.float64)  # (B, K)
    if np.isnan(rows).any() or np.isposinf(rows).any():
        raise AlignmentError("sparsemax: scores must not be NaN or +inf")
    finite = np.isfinite(rows)
    if not finite.any(axis=1).all():
        raise AlignmentError("sparsemax: every row needs at least one finite score")
    # Shift by the row maximum (the projection is shift-invariant) so masked entries can sit at
    # a large negative value that can never enter the support.
    shifted = rows - np.max(np.where(finite, rows, -np.inf), axis=1, keepdims=True)
    shifted = np.where(finite, shifted, -1e300)
    ranked = -np.sort(-shifted, axis=1)  # (B, K) descending
    k = np.arange(1, rows.shape[1] + 1)
    cumulative = np.cumsum(ranked, axis=1)
    support = 1 + k * ranked > cumulative  # true for a prefix of the sorted scores
    size = support.sum(axis=1)  # (B,) at least 1: the maximum is always in the support
    tau = (np.take_along_axis(cumulative, size[:, None] - 1, axis=1) - 1) / size[:, None]
    out = np.maximum(shifted - tau, 0.0)
    dtype = z.dtype if z.dtype.kind == "f" else np.float64
    return out.reshape(z.shape).astype(dtype, copy=False)


def softmax(z: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``z / temperature`` in float64 (``-inf`` entries get zero).

    >>> softmax(np.array([[0.0, 0.0]])).tolist()
    [[0.5, 0.5]]
    """
    scaled = np.atleast_2d(np.asarray(z, dtype=np.float64)) / temperature
    scaled = scaled - scaled.max(axis=1, keepdims=True)
    e = np.exp(scaled)
    return (e / e.sum(axis=1, keepdims=True)).reshape(np.shape(z))


@dataclass(frozen=True)
class SparseCode:
    """Per target, the atoms OMP chose (in the order chosen) and their coefficients.

    Slots left unused because the residual vanished early hold index -1 and coefficient 0.
    """

    indices: np.ndarray  # (B, k) int64 atom ids, -1 = unused
    coefficients: np.ndarray  # (B, k) float64
    residual_norms: np.ndarray  # (B,) float64: |y - D^T c| at the end

    def dense(self, n_atoms: int) -> np.ndarray:
        """The codes as a dense (B, n_atoms) matrix."""
        out = np.zeros((self.indices.shape[0], n_atoms), dtype=np.float64)
        rows, slots = np.nonzero(self.indices >= 0)
        np.add.at(out, (rows, self.indices[rows, slots]), self.coefficients[rows, slots])
        return out


def omp(dictionary: np.ndarray, targets: np.ndarray, k: int, *, tol: float = 1e-7) -> SparseCode:
    """Orthogonal matching pursuit: each target as a combination of at most ``k`` atoms.

    ``dictionary`` holds the atoms as rows: ``(K, d)`` shared by all targets, or ``(B, K, d)``
    with a candidate set per target. Each step picks the atom most correlated (in absolute
    value, relative to its norm) with the residual and refits all chosen coefficients by least
    squares, for all targets at once. A target stops early once its residual is below ``tol``
    times its norm. The small least-squares solves run in float64.

    >>> import numpy as np
    >>> atoms = np.eye(4)
    >>> code = omp(atoms, np.array([[0.0, 2.0, 0.0, -1.0]]), k=2)
    >>> sorted(zip(code.indices[0].tolist(), code.coefficients[0].round(6).tolist()))
    [(1, 2.0), (3, -1.0)]
    """
    y = np.asarray(targets, dtype=np.float64)
    if y.ndim != 2:
        raise AlignmentError(f"omp: targets must be a (B, d) matrix, got shape {y.shape}")
    atoms = np.asarray(dictionary)
    shared = atoms.ndim == 2
    if atoms.ndim not in (2, 3) or atoms.shape[-1] != y.shape[1] or (
            not shared and atoms.shape[0] != y.shape[0]):
        raise AlignmentError(
            f"omp: dictionary of shape {atoms.shape} does not fit targets of shape {y.shape}; "
            "atoms must be rows of the same dimension as the targets"
        )
    n_atoms = atoms.shape[-2]
    if n_atoms == 0:
        raise AlignmentError("omp: the dictionary has no atoms")
    if k < 1:
        raise AlignmentError(f"omp: k must be at least 1, got {k}")
    k = min(k, n_atoms)
    # Blocks of targets keep the (block, K) correlation matrix near 128 MB however large K is.
    block = max(1, _BLOCK_ELEMENTS // n_atoms)
    parts = [_omp_block(atoms if shared else atoms[start:start + block],
                        y[start:start + block], k, tol)
             for start in range(0, y.shape[0], block)] or [_omp_block(atoms, y, k, tol)]
    return SparseCode(np.concatenate([p.indices for p in parts]),
                      np.concatenate([p.coefficients for p in parts]),
                      np.concatenate([p.residual_norms for p in parts]))


_BLOCK_ELEMENTS = 1 << 24


def _omp_block(atoms: np.ndarray, y: np.ndarray, k: int, tol: float) -> SparseCode:
    shared = atoms.ndim == 2
    n_atoms = atoms.shape[-2]
    b = y.shape[0]
    work = atoms.astype(np.float32, copy=False)  # correlations in float32: the big GEMMs
    # Norms only rank the atoms, so float32 products suffice (a float64 copy of a (B, P, d)
    # candidate stack cost more than the whole pursuit).
    atom_norms = np.sqrt(np.einsum("...d,...d->...", work, work).astype(np.float64))
    inv_norms = np.divide(1.0, atom_norms, out=np.zeros_like(atom_norms), where=atom_norms > 0)
    indices = np.full((b, k), -1, dtype=np.int64)
    coef = np.zeros((b, k), dtype=np.float64)
    residual = y.copy()  # (B, d)
    y_norms = np.linalg.norm(y, axis=1)
    active = y_norms > 0
    chosen_mask = np.zeros((b, n_atoms), dtype=bool)
    rows = np.arange(b)
    for step in range(k):
        if not active.any():
            break
        r32 = residual.astype(np.float32)
        if shared:
            corr = (r32 @ work.T).astype(np.float64) * inv_norms  # (B, K)
        else:
            corr = np.einsum("bd,bkd->bk", r32, work).astype(np.float64) * inv_norms
        score = np.abs(corr)
        score[chosen_mask] = -1.0
        pick = np.argmax(score, axis=1)  # (B,)
        # A target whose residual no longer correlates with any new atom is done.
        active &= score[rows, pick] > 0
        indices[active, step] = pick[active]
        chosen_mask[rows[active], pick[active]] = True
        selected = _gather(atoms, indices[:, : step + 1])  # (B, s, d) float64, zeros for -1
        coef[:, : step + 1] = _least_squares(selected, y)
        coef[:, : step + 1][indices[:, : step + 1] < 0] = 0.0
        residual = y - np.einsum("bs,bsd->bd", coef[:, : step + 1], selected)
        active &= np.linalg.norm(residual, axis=1) > tol * y_norms
    return SparseCode(indices, coef, np.linalg.norm(residual, axis=1))


def _gather(atoms: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Atoms at ``idx`` (B, s) as float64 (B, s, d); index -1 gives a zero atom."""
    safe = np.maximum(idx, 0)
    if atoms.ndim == 2:
        out = atoms[safe].astype(np.float64)
    else:
        out = np.take_along_axis(atoms, safe[:, :, None], axis=1).astype(np.float64)
    out[idx < 0] = 0.0
    return out


def _least_squares(selected: np.ndarray, y: np.ndarray) -> np.ndarray:
    """argmin_c |y - c @ A| per target, with A the selected atoms (B, s, d)."""
    gram = np.einsum("bsd,btd->bst", selected, selected)  # (B, s, s)
    rhs = np.einsum("bsd,bd->bs", selected, y)  # (B, s)
    s = gram.shape[1]
    # Unused slots have a zero row and column; a unit diagonal there keeps the system regular
    # and gives them a zero coefficient. A relative ridge guards nearly collinear atoms.
    diag = np.einsum("bss->bs", gram)
    empty = diag == 0
    scale = np.maximum(diag.max(axis=1, initial=0.0), 1e-300)[:, None]
    gram = gram + np.eye(s) * (empty + 1e-12 * scale)[:, :, None]
    return np.linalg.solve(gram, rhs[:, :, None])[:, :, 0]

"""``knn`` and ``omp`` initialization: borrow structure from an auxiliary space.

An auxiliary table covers both vocabularies (word vectors trained on target text, or a donor
model's embeddings). A target token found there is expressed through aux tokens that also have
a source row: as a similarity-weighted average of its nearest neighbours (``knn``), or as a
sparse least-squares combination (``omp``). The weights are then applied to the *source* rows.
All matrix work runs in blocks of targets, never a Python loop per token around BLAS.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from embsurgeon.align.forms import Surface
from embsurgeon.align.init import InitContext, InitResult, Weighting
from embsurgeon.align.sparse import omp, softmax, sparsemax
from embsurgeon.errors import AlignmentError
from embsurgeon.linalg import unit_rows
from embsurgeon.table import EmbeddingTable

_BLOCK_ELEMENTS = 1 << 24  # per block: (targets x candidates) similarities, ~64 MB in float32
#: OMP searches each target's most similar shared tokens, this many per atom asked for (at
#: least ``_MIN_POOL``), instead of all of them: exact OMP over 30k atoms for 30k targets costs
#: ~5 TFLOP, while the atoms OMP picks are, in practice, among the most similar anyway.
OMP_POOL_PER_ATOM = 8
_MIN_POOL = 64


@dataclass(frozen=True)
class _Shared:
    """Aux tokens that have a source row: the candidates every target is expressed through."""

    aux_rows: np.ndarray  # (K,) rows of the aux table
    source_rows: np.ndarray  # (K,) matching rows of the source table
    column_of_aux: np.ndarray  # (A,) aux row -> candidate column, -1 where not shared


@dataclass(frozen=True)
class _Queries:
    positions: np.ndarray  # (Q,) target positions found in aux
    aux_rows: np.ndarray  # (Q,) their aux rows


def knn_init(tokens: Sequence[str], surfaces: Sequence[Surface],
             context: InitContext) -> InitResult:
    """Weighted average of the source rows of each target's k nearest aux neighbours.

    Neighbours are by cosine among aux tokens with a source row (the target itself excluded);
    weights are ``softmax(sim / temperature)`` or ``sparsemax(sim / temperature)``.
    """
    aux, shared, queries = _prepare("knn", tokens, surfaces, context)
    k = min(context.k, len(shared.aux_rows))
    top, sims = _nearest(aux.vectors, shared, queries, k)  # (Q, k) columns, cosines
    valid = np.isfinite(sims)
    some = valid.any(axis=1)  # a target whose only shared aux token is itself has none
    scores = np.where(valid, sims.astype(np.float64) / context.temperature, -np.inf)[some]
    weights = np.zeros(sims.shape, dtype=np.float64)
    if scores.size:
        if Weighting(context.weighting) is Weighting.SPARSEMAX:
            weights[some] = sparsemax(scores)
        else:
            weights[some] = softmax(scores)
    return _combine(context.source, len(tokens), queries, shared.source_rows[np.maximum(top, 0)],
                    weights)


def omp_init(tokens: Sequence[str], surfaces: Sequence[Surface],
             context: InitContext) -> InitResult:
    """Sparse combination (at most k atoms) of shared aux rows, applied to their source rows.

    OMP runs on the raw aux vectors (their norms matter for the coefficients), over each
    target's ``max(64, 8k)`` most similar shared tokens.
    """
    aux, shared, queries = _prepare("omp", tokens, surfaces, context)
    vectors = aux.vectors
    n_shared = len(shared.aux_rows)
    pool = min(n_shared, max(_MIN_POOL, OMP_POOL_PER_ATOM * context.k))
    top, _ = _nearest(vectors, shared, queries, pool)  # (Q, P)
    coef = np.zeros((len(top), context.k), dtype=np.float64)
    chosen = np.full(coef.shape, -1, dtype=np.int64)
    block = max(1, _BLOCK_ELEMENTS // (pool * aux.dim))
    for start in range(0, len(top), block):
        cols = top[start:start + block]  # (B, P)
        safe = np.maximum(cols, 0)
        atoms = vectors[shared.aux_rows[safe]].astype(np.float32)  # (B, P, d)
        atoms[cols < 0] = 0.0  # fewer candidates than the pool (the target itself excluded)
        code = omp(atoms, vectors[queries.aux_rows[start:start + block]], context.k)
        used = code.indices >= 0
        width = code.indices.shape[1]
        chosen[start:start + block, :width] = np.where(
            used, np.take_along_axis(safe, np.maximum(code.indices, 0), axis=1), -1)
        coef[start:start + block, :width] = np.where(used, code.coefficients, 0.0)
    source_rows = np.where(chosen >= 0, shared.source_rows[np.maximum(chosen, 0)], -1)
    return _combine(context.source, len(tokens), queries, source_rows, coef)


# -- shared steps -----------------------------------------------------------------------------

def _prepare(name: str, tokens: Sequence[str], surfaces: Sequence[Surface],
             context: InitContext) -> tuple[EmbeddingTable, _Shared, _Queries]:
    aux = context.aux
    if aux is None:
        raise AlignmentError(
            f"--init {name} needs an auxiliary table (--aux) whose vocabulary covers both the "
            "source and the target tokens"
        )
    if len(aux) == 0 or aux.dim == 0:
        raise AlignmentError(f"--init {name}: the auxiliary table is empty ({aux!r})")
    shared = _shared(name, aux, context)
    queries = _find_queries(aux, tokens, surfaces)
    # A zero aux vector has no direction: every candidate would tie, so build nothing.
    live = np.abs(aux.vectors[queries.aux_rows]).max(axis=1, initial=0.0) > 0
    return aux, shared, _Queries(queries.positions[live], queries.aux_rows[live])


def _shared(name: str, aux: EmbeddingTable, context: InitContext) -> _Shared:
    source = context.source
    pairs: list[tuple[int, int]] = []
    if context.aux_to_source is None:
        source_index = source.index
        pairs = [(i, source_index[t]) for i, t in enumerate(aux.tokens) if t in source_index]
    else:
        aux_index = aux.index
        for token, row in context.aux_to_source.items():
            if not 0 <= row < len(source):
                raise AlignmentError(
                    f"--init {name}: aux token {token!r} maps to source row {row}, out of range "
                    f"for a source of {len(source)} rows"
                )
            if token in aux_index:
                pairs.append((aux_index[token], row))
    if not pairs:
        raise AlignmentError(
            f"--init {name}: no token of the auxiliary table ({len(aux)} tokens) has a source "
            "row; the aux vocabulary must overlap the source vocabulary"
        )
    pairs.sort()
    aux_rows = np.array([a for a, _ in pairs], dtype=np.int64)
    column = np.full(len(aux), -1, dtype=np.int64)
    column[aux_rows] = np.arange(len(aux_rows))
    return _Shared(aux_rows, np.array([s for _, s in pairs], dtype=np.int64), column)


def _find_queries(aux: EmbeddingTable, tokens: Sequence[str],
                  surfaces: Sequence[Surface]) -> _Queries:
    """Each target's aux row: the raw token, else its surface text, else case-folded."""
    index = aux.index
    folded: dict[str, int] | None = None
    positions: list[int] = []
    rows: list[int] = []
    for position, (token, surface) in enumerate(zip(tokens, surfaces, strict=True)):
        row = index.get(token)
        if row is None and surface.text:
            row = index.get(surface.text)
            if row is None:
                if folded is None:
                    folded = {}
                    for i, aux_token in enumerate(aux.tokens):
                        folded.setdefault(aux_token.casefold(), i)  # the first is most frequent
                row = folded.get(surface.text.casefold())
        if row is not None:
            positions.append(position)
            rows.append(row)
    return _Queries(np.array(positions, dtype=np.int64), np.array(rows, dtype=np.int64))


def _nearest(aux_vectors: np.ndarray, shared: _Shared, queries: _Queries,
             k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most cosine-similar candidate columns per query, best first.

    A query never gets itself (when its aux token is shared); if that leaves fewer than ``k``
    candidates, the last column is -1 with similarity -inf.
    """
    # Only the shared and the queried rows are normalized: a 2M-word aux table stays as is.
    candidates = unit_rows(aux_vectors[shared.aux_rows], np.float32)  # (K, d) float32
    n_queries, n_candidates = len(queries.aux_rows), len(candidates)
    top = np.empty((n_queries, k), dtype=np.int64)
    best = np.empty((n_queries, k), dtype=np.float32)
    block = max(1, _BLOCK_ELEMENTS // n_candidates)
    for start in range(0, n_queries, block):
        aux_rows = queries.aux_rows[start:start + block]
        sims = unit_rows(aux_vectors[aux_rows], np.float32) @ candidates.T  # (B, K)
        own = shared.column_of_aux[aux_rows]  # (B,)
        mine = np.nonzero(own >= 0)[0]
        sims[mine, own[mine]] = -np.inf
        if k < n_candidates:
            part = np.argpartition(-sims, k - 1, axis=1)[:, :k]  # (B, k) unordered
        else:
            part = np.broadcast_to(np.arange(n_candidates), (len(sims), n_candidates))
        vals = np.take_along_axis(sims, part, axis=1)
        order = np.argsort(-vals, axis=1, kind="stable")
        top[start:start + block] = np.take_along_axis(part, order, axis=1)
        best[start:start + block] = np.take_along_axis(vals, order, axis=1)
    top[~np.isfinite(best)] = -1
    return top, best


def _combine(source: EmbeddingTable, m: int, queries: _Queries, source_rows: np.ndarray,
             weights: np.ndarray) -> InitResult:
    """Rows ``sum_j weights[q, j] * source[source_rows[q, j]]`` for the found targets.

    ``source_rows`` is (Q, k) with -1 (or a zero weight) for unused slots. A target is filled
    when at least one weight is non-zero.
    """
    dim = source.dim
    vectors = np.zeros((m, dim), dtype=np.float32)
    filled = np.zeros(m, dtype=bool)
    used = (source_rows >= 0) & (weights != 0)
    w = np.where(used, weights, 0.0).astype(np.float32)  # (Q, k)
    rows = np.maximum(source_rows, 0)
    block = max(1, _BLOCK_ELEMENTS // max(1, rows.shape[1] * dim))
    for start in range(0, len(rows), block):
        gathered = source.vectors[rows[start:start + block]].astype(np.float32)  # (B, k, D)
        vectors[queries.positions[start:start + block]] = np.einsum(
            "bk,bkd->bd", w[start:start + block], gathered)
    filled[queries.positions] = used.any(axis=1)
    names: list[tuple[str, ...]] = [()] * m
    values: list[tuple[float, ...]] = [()] * m
    tokens = source.tokens
    for q, position in enumerate(queries.positions.tolist()):
        slots = np.nonzero(used[q])[0]
        names[position] = tuple(tokens[r] for r in source_rows[q, slots].tolist())
        values[position] = tuple(float(x) for x in weights[q, slots].tolist())
    return InitResult(vectors, filled, tuple(names), tuple(values))

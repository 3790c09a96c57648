"""Cross-space neighbours: rows of a target table nearest to queries from a source table of
the same dimension (say, source vectors mapped into the target space), by cosine or by CSLS.

CSLS (cross-domain similarity local scaling, Conneau et al. 2018, "Word translation without
parallel data") corrects hubness, where a few target rows are everybody's nearest neighbour:

    CSLS(x, y) = 2 cos(x, y) - r_T(x) - r_S(y)

with ``r_T(x)`` the mean cosine of ``x`` to its ``K`` nearest target rows and ``r_S(y)`` the
mean cosine of ``y`` to its ``K`` nearest source rows. Ranking needs only ``cos - r_S / 2``
per target column, which the tiled engine applies as a column penalty: no full matrix here
either.

>>> import numpy as np
>>> from embsurgeon.table import EmbeddingTable
>>> en = EmbeddingTable(["cat", "dog"], np.array([[1, 0], [0, 1]], dtype=np.float32))
>>> fr = EmbeddingTable(["chat", "chien"], np.array([[0.9, 0.1], [0.2, 1]], dtype=np.float32))
>>> cross_neighbors(en, fr, ["cat"], k=1, device="cpu").tokens
(('chat',),)
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import numpy as np

from embsurgeon.similarity.knn import (
    DEFAULT_DEVICE,
    DEFAULT_K,
    DEFAULT_MEMORY_BUDGET,
    DEFAULT_PRECISION,
    Device,
    Metric,
    Precision,
    SimilarityError,
    search,
)
from embsurgeon.similarity.neighbors import (
    Composer,
    Neighbors,
    Query,
    make_neighbors,
    resolve_queries,
)
from embsurgeon.table import EmbeddingTable

#: ``K`` of the CSLS neighbourhood means; 10 as in MUSE.
DEFAULT_CSLS_K = 10
#: Rank cross-space neighbours by CSLS unless asked for plain cosine (``--csls/--no-csls``):
#: across two spaces plain cosine lets a few hub rows answer most queries.
DEFAULT_CSLS = True


def csls_penalties(source: np.ndarray, target: np.ndarray, k: int = DEFAULT_CSLS_K, *,
                   device: Device | str = DEFAULT_DEVICE,
                   memory_budget: int = DEFAULT_MEMORY_BUDGET) -> np.ndarray:
    """``r_S(y)`` for every target row: mean cosine to its ``k`` nearest source rows (N_T,)."""
    hits = search(target, source, k, metric=Metric.COSINE, device=device,
                  memory_budget=memory_budget)
    return hits.scores.mean(axis=1)


def cross_neighbors(
    source: EmbeddingTable,
    target: EmbeddingTable,
    queries: Sequence[Query] | None = None,
    k: int = DEFAULT_K,
    *,
    csls: bool = DEFAULT_CSLS,
    csls_k: int = DEFAULT_CSLS_K,
    device: Device | str = DEFAULT_DEVICE,
    precision: Precision | str = DEFAULT_PRECISION,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    compose: Composer | None = None,
) -> Neighbors:
    """The ``k`` rows of ``target`` nearest to each query of ``source`` (CSLS or cosine).

    Scores are CSLS values (in [-4, 4]) when ``csls``, cosines otherwise. Queries are tokens,
    rows or raw vectors of ``source``, as for :func:`nearest_neighbors`.
    """
    if source.dim != target.dim:
        raise SimilarityError(
            f"cannot compare spaces of {source.dim} and {target.dim} dimensions across tables; "
            "map one into the other first, or compare neighbourhoods with 'embsurgeon check'"
        )
    resolved = resolve_queries(source, queries, compose)
    run = partial(search, device=device, precision=precision, memory_budget=memory_budget)
    if not csls:
        hits = run(resolved.vectors, target.vectors, k)
        return make_neighbors(resolved, target, hits.ids, hits.scores)
    # The neighbourhood means stay in float32 whatever the ranking precision.
    penalty = csls_penalties(source.vectors, target.vectors, csls_k, device=device,
                             memory_budget=memory_budget)  # (N_T,)
    r_query = search(resolved.vectors, target.vectors, csls_k, device=device,
                     memory_budget=memory_budget).scores.mean(axis=1)  # (Q,)
    hits = run(resolved.vectors, target.vectors, k, column_penalty=penalty / 2)
    scores = (2 * hits.scores - r_query[:, None]).astype(np.float32)  # (Q, k)
    return make_neighbors(resolved, target, hits.ids, scores)

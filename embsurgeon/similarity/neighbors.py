"""Nearest neighbours of tokens, rows or raw vectors in an :class:`EmbeddingTable`.

>>> import numpy as np
>>> from embsurgeon.table import EmbeddingTable
>>> table = EmbeddingTable(["king", "queen", "apple"],
...                        np.array([[1, 0.1], [1, 0.2], [0, 1]], dtype=np.float32))
>>> nearest_neighbors(table, ["king"], k=1, device="cpu").tokens
(('queen',),)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from embsurgeon.errors import VocabularyError
from embsurgeon.similarity.backends import DEFAULT_BACKEND, Backend, get_search
from embsurgeon.similarity.knn import (
    DEFAULT_DEVICE,
    DEFAULT_K,
    DEFAULT_MEMORY_BUDGET,
    DEFAULT_METRIC,
    DEFAULT_PRECISION,
    Device,
    Metric,
    Precision,
    SimilarityError,
)
from embsurgeon.similarity.spelling import close_spellings
from embsurgeon.table import EmbeddingTable

#: A query: a token, a row number, or a raw (D,) vector (e.g. composed from subwords).
Query = str | int | np.ndarray
#: Builds a vector for a token the table lacks (subword composition), or returns None.
Composer = Callable[[str], "np.ndarray | None"]
#: Seed of :func:`random_rows` (``neighbors --random N --seed``) unless one is given.
DEFAULT_SEED = 0


@dataclass(frozen=True)
class Neighbors:
    """The ``k`` nearest rows of each query, best first.

    ``query_ids`` is the query's own row (-1 for a raw or composed vector); ``ids``,
    ``tokens`` and ``scores`` are aligned: ``tokens[i][j]`` is row ``ids[i, j]``.
    """

    queries: tuple[str, ...]
    query_ids: np.ndarray  # (Q,) int64
    ids: np.ndarray  # (Q, k) int64
    tokens: tuple[tuple[str, ...], ...]
    scores: np.ndarray  # (Q, k) float32

    def __len__(self) -> int:
        return len(self.queries)

    def to_dict(self) -> list[dict[str, Any]]:
        """JSON-ready: one entry per query with its neighbours."""
        return [
            {"query": query, "row": int(self.query_ids[i]) if self.query_ids[i] >= 0 else None,
             "neighbors": [{"token": t, "row": int(r), "score": float(s)}
                           for t, r, s in zip(self.tokens[i], self.ids[i], self.scores[i],
                                              strict=True)]}
            for i, query in enumerate(self.queries)
        ]


@dataclass(frozen=True)
class ResolvedQueries:
    """Queries turned into vectors: ``labels[i]`` names row ``vectors[i]``."""

    labels: tuple[str, ...]
    rows: np.ndarray  # (Q,) int64, -1 where the vector is not a row of the table
    vectors: np.ndarray  # (Q, D)


def _describe(table: EmbeddingTable) -> str:
    source = table.metadata.get("source")
    return f"the vocabulary of {source}" if source else "the vocabulary"


def unknown_tokens_error(table: EmbeddingTable, missing: Sequence[str]) -> VocabularyError:
    """One line naming every missing token with the closest spellings the table has."""
    parts = []
    for token in missing:
        close = close_spellings(token, table.tokens)
        hint = ("close spellings: " + ", ".join(repr(c) for c in close) if close
                else "no close spellings")
        parts.append(f"{token!r} ({hint})")
    what = "token" if len(missing) == 1 else f"{len(missing)} tokens"
    return VocabularyError(f"{what} not in {_describe(table)}: {'; '.join(parts)}")


def resolve_queries(table: EmbeddingTable, queries: Sequence[Query] | None,
                    compose: Composer | None = None) -> ResolvedQueries:
    """Turn tokens, row numbers and raw vectors into one (Q, D) matrix.

    A token the table lacks is passed to ``compose`` (subword composition, when wired in);
    tokens left without a vector raise :class:`VocabularyError` naming close spellings.
    """
    if queries is None:
        return ResolvedQueries(tuple(table.tokens), np.arange(len(table), dtype=np.int64),
                               table.vectors)
    labels: list[str] = []
    rows: list[int] = []
    extra: dict[int, np.ndarray] = {}  # position -> raw vector
    missing: list[str] = []
    for position, query in enumerate(queries):
        if isinstance(query, np.ndarray):
            vector = np.asarray(query, dtype=np.float32)
            if vector.shape != (table.dim,):
                raise SimilarityError(
                    f"query vector {position} has shape {vector.shape}; the table has "
                    f"{table.dim} dimensions"
                )
            labels.append(f"<vector {position}>")
            rows.append(-1)
            extra[position] = vector
        elif isinstance(query, (int, np.integer)) and not isinstance(query, bool):
            if not 0 <= query < len(table):
                raise SimilarityError(f"row {query} is out of range (the table has "
                                      f"{len(table)} rows)")
            labels.append(table.tokens[query])
            rows.append(int(query))
        else:
            token = str(query)
            labels.append(token)
            row = table.index.get(token)
            if row is not None:
                rows.append(row)
                continue
            composed = compose(token) if compose is not None else None
            if composed is None:
                missing.append(token)
                rows.append(-1)
                continue
            rows.append(-1)
            extra[position] = np.asarray(composed, dtype=np.float32)
    if missing:
        raise unknown_tokens_error(table, missing)
    row_ids = np.asarray(rows, dtype=np.int64)
    vectors = np.empty((len(rows), table.dim), dtype=np.float32)  # (Q, D)
    present = np.flatnonzero(row_ids >= 0)
    vectors[present] = table.vectors[row_ids[present]]
    for position, vector in extra.items():
        vectors[position] = vector
    return ResolvedQueries(tuple(labels), row_ids, vectors)


class SubwordComposer:
    """A :data:`Composer` that builds a missing token from the table's own pieces, as
    ``--init subword`` does: ``unbelievable`` from ``un`` ``##bel`` ... under WordPiece,
    ``sunflower`` from ``sun`` + ``flower`` in a word-level table. ``pieces`` records what
    each composed token was made of.

    >>> import numpy as np
    >>> t = EmbeddingTable(["sun", "flower"], np.eye(2, dtype=np.float32))
    >>> compose = SubwordComposer(t)
    >>> compose("sunflower").tolist(), compose.pieces["sunflower"]
    ([0.5, 0.5], ('sun', 'flower'))
    """

    def __init__(self, table: EmbeddingTable, tokenizer: str | None = None) -> None:
        from embsurgeon.align.targets import source_vocabulary

        self.table = table
        self.vocabulary = source_vocabulary(table, tokenizer)
        self.pieces: dict[str, tuple[str, ...]] = {}

    def __call__(self, token: str) -> np.ndarray | None:
        from embsurgeon.align.forms import Surface
        from embsurgeon.align.init import InitContext
        from embsurgeon.align.subword import subword_init

        # A query typed on its own starts a word.
        result = subword_init([token], [Surface(token, word_initial=True)],
                              InitContext(source=self.table, source_vocab=self.vocabulary))
        if not result.filled[0]:
            return None
        self.pieces[token] = result.sources[0]
        return result.vectors[0]


def random_rows(table: EmbeddingTable, n: int, seed: int = DEFAULT_SEED) -> list[int]:
    """``n`` distinct random row numbers (all rows if ``n`` exceeds the table), reproducible."""
    rng = np.random.default_rng(seed)
    return [int(r) for r in rng.choice(len(table), size=min(n, len(table)), replace=False)]


def nearest_neighbors(
    table: EmbeddingTable,
    queries: Sequence[Query] | None = None,
    k: int = DEFAULT_K,
    *,
    metric: Metric | str = DEFAULT_METRIC,
    device: Device | str = DEFAULT_DEVICE,
    precision: Precision | str = DEFAULT_PRECISION,
    backend: Backend | str = DEFAULT_BACKEND,
    include_self: bool = False,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    compose: Composer | None = None,
) -> Neighbors:
    """Exact ``k`` nearest rows of ``table`` for each query (all rows when ``queries`` is None).

    Queries are tokens, row numbers or raw (D,) vectors; a query's own row is left out of its
    neighbours unless ``include_self``. ``k`` is clipped to the rows available.

    >>> neighbors = nearest_neighbors(table, ["king", "北京"], k=10)    # doctest: +SKIP
    >>> neighbors.tokens[0][:3], neighbors.scores[0][:3]               # doctest: +SKIP
    (('queen', 'prince', 'monarch'), array([0.79, 0.71, 0.69], dtype=float32))
    """
    resolved = resolve_queries(table, queries, compose)
    own_rows = not include_self and bool((resolved.rows >= 0).any())
    exclude = resolved.rows[:, None] if own_rows else None  # (Q, 1); -1 excludes nothing
    hits = get_search(backend)(resolved.vectors, table.vectors, k, metric=metric,
                               exclude=exclude, device=device, precision=precision,
                               memory_budget=memory_budget)
    return make_neighbors(resolved, table, hits.ids, hits.scores)


def make_neighbors(resolved: ResolvedQueries, searched: EmbeddingTable, ids: np.ndarray,
                   scores: np.ndarray) -> Neighbors:
    """Attach labels and the searched table's tokens to raw ids and scores."""
    tokens = searched.tokens
    return Neighbors(
        queries=resolved.labels,
        query_ids=resolved.rows,
        ids=ids,
        tokens=tuple(tuple(tokens[i] for i in row) for row in ids.tolist()),
        scores=scores,
    )

"""``EmbeddingTable``: the one data model. No I/O here.

A table is an ordered vocabulary (row ``i`` is token ``i``, always), a 2-D float matrix and
text-only metadata (so it round-trips through a safetensors header). Tables validate themselves
and are never mutated: every transform returns a new table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any

import numpy as np

from embsurgeon.errors import DtypeError, VocabularyError

#: Metadata key holding the dtype the vectors had in their source (e.g. ``bfloat16``), so that
#: writers and surgery can give back what they read.
SOURCE_DTYPE = "source_dtype"
#: Metadata key for the row index ``nn.Embedding(padding_idx=...)`` should use, when known.
PADDING_IDX = "padding_idx"

_FLOAT_DTYPES = (np.float16, np.float32, np.float64)


def placeholder_token(row: int) -> str:
    """The reserved name for a matrix row that has no token (padding rows in Qwen, T5...).

    >>> placeholder_token(32100)
    '<embsurgeon:row:32100>'
    """
    return f"<embsurgeon:row:{row}>"


@dataclass(frozen=True, eq=False)
class EmbeddingTable:
    """An ordered vocabulary with one vector per token.

    >>> import numpy as np
    >>> t = EmbeddingTable(["the", "cat"], np.eye(2, dtype=np.float32))
    >>> t.dim, len(t), t["cat"].tolist()
    (2, 2, [0.0, 1.0])
    """

    tokens: Sequence[str]
    vectors: np.ndarray  # (V, D), float16/32/64
    metadata: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        tokens = tuple(self.tokens)
        vectors = self.vectors
        if not isinstance(vectors, np.ndarray):
            raise DtypeError(f"vectors must be a numpy array, got {type(vectors).__name__}")
        if vectors.ndim != 2:
            raise VocabularyError(f"vectors must be 2-D (rows x dim), got shape {vectors.shape}")
        if vectors.dtype.type not in _FLOAT_DTYPES:
            raise DtypeError(
                f"vectors must be float16, float32 or float64, got {vectors.dtype}; "
                "upcast bfloat16 to float32 and record it under metadata['source_dtype']"
            )
        if len(tokens) != vectors.shape[0]:
            raise VocabularyError(
                f"{len(tokens)} tokens but {vectors.shape[0]} rows; they must agree"
            )
        # One pass over the distinct types, not an isinstance call per token (400k+ tokens).
        if not all(issubclass(kind, str) for kind in set(map(type, tokens))):
            token = next(t for t in tokens if not isinstance(t, str))
            raise VocabularyError(f"tokens must be str, got {type(token).__name__}: {token!r}")
        if len(set(tokens)) != len(tokens):
            seen: dict[str, int] = {}
            for i, token in enumerate(tokens):
                if token in seen:
                    raise VocabularyError(
                        f"duplicate token {token!r} at rows {seen[token]} and {i}"
                    )
                seen[token] = i
        object.__setattr__(self, "tokens", tokens)
        object.__setattr__(self, "metadata", _checked_metadata(self.metadata))

    # -- lookups ---------------------------------------------------------------------------
    @cached_property
    def index(self) -> Mapping[str, int]:
        """Token to row number."""
        return MappingProxyType({token: i for i, token in enumerate(self.tokens)})

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: object) -> bool:
        return token in self.index

    def __getitem__(self, token: str) -> np.ndarray:
        try:
            return self.vectors[self.index[token]]
        except KeyError:
            raise VocabularyError(f"token {token!r} is not in the vocabulary") from None

    def __repr__(self) -> str:
        return f"EmbeddingTable({len(self)} x {self.dim}, {self.vectors.dtype})"

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def source_dtype(self) -> str:
        """The dtype of the source file or tensor (``bfloat16`` survives as a name)."""
        return self.metadata.get(SOURCE_DTYPE, str(self.vectors.dtype))

    @property
    def padding_idx(self) -> int | None:
        value = self.metadata.get(PADDING_IDX)
        return int(value) if value not in (None, "") else None

    # -- transforms (each returns a new table) ------------------------------------------------
    def with_metadata(self, **updates: Any) -> EmbeddingTable:
        """A copy with metadata keys added or replaced (values are stringified; None removes)."""
        meta = dict(self.metadata)
        for key, value in updates.items():
            if value is None:
                meta.pop(key, None)
            else:
                meta[key] = str(value)
        # Tokens and vectors are this table's, already validated (checking 400k tokens again
        # costs tens of milliseconds per call): only the metadata is new.
        copy = object.__new__(EmbeddingTable)
        object.__setattr__(copy, "tokens", self.tokens)
        object.__setattr__(copy, "vectors", self.vectors)
        object.__setattr__(copy, "metadata", _checked_metadata(meta))
        return copy

    def with_vectors(self, vectors: np.ndarray, **metadata: Any) -> EmbeddingTable:
        """Same tokens, new matrix (for transforms such as PCA or normalization)."""
        return EmbeddingTable(self.tokens, vectors, self.metadata).with_metadata(**metadata)

    def take(self, rows: Iterable[int]) -> EmbeddingTable:
        """The rows at ``rows``, in that order; ``padding_idx`` follows its row (or is dropped).

        >>> t = EmbeddingTable(["<pad>", "a", "b"], np.eye(3, dtype=np.float32),
        ...                    {"padding_idx": "0"})
        >>> t.take([2, 0]).padding_idx, t.take([1]).padding_idx
        (1, None)
        """
        idx = np.fromiter(rows, dtype=np.int64)
        meta = dict(self.metadata)
        pad = self.padding_idx
        if pad is not None:
            # The padding row moves with its token, or the index would name another row.
            moved = np.flatnonzero(idx == pad)
            if len(moved):
                meta[PADDING_IDX] = str(int(moved[0]))
            else:
                meta.pop(PADDING_IDX)
        return EmbeddingTable([self.tokens[i] for i in idx], self.vectors[idx], meta)

    def head(self, n: int) -> EmbeddingTable:
        """The first ``n`` rows (``--limit``)."""
        return self if n >= len(self) else self.take(range(n))

    def keep(self, tokens: Iterable[str]) -> EmbeddingTable:
        """Rows whose token is in ``tokens``, in table order; unknown tokens are ignored."""
        wanted = set(tokens)
        return self.take(i for i, token in enumerate(self.tokens) if token in wanted)

    def astype(self, dtype: np.dtype | type | str) -> EmbeddingTable:
        return EmbeddingTable(self.tokens, self.vectors.astype(dtype, copy=False), self.metadata)


def _checked_metadata(metadata: Mapping[str, str]) -> Mapping[str, str]:
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise VocabularyError(
                f"metadata must map str to str (it goes into a safetensors header), "
                f"got {key!r}: {value!r}"
            )
    return MappingProxyType(dict(metadata))

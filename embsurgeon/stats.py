"""Summary statistics of a table, for ``embsurgeon inspect``."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from embsurgeon.linalg import row_norms
from embsurgeon.table import EmbeddingTable


@dataclass(frozen=True)
class NormStats:
    min: float
    mean: float
    median: float
    max: float


#: Tokens :func:`summarize` lists (``inspect --sample``) unless asked for another count.
DEFAULT_SAMPLE_TOKENS = 10


@dataclass(frozen=True)
class Summary:
    format: str
    source: str
    rows: int
    dim: int
    dtype: str
    source_dtype: str
    tensor: str | None
    padding_idx: int | None
    norms: NormStats | None
    zero_rows: int
    nonfinite_rows: int
    duplicates: int
    sample: list[str]
    metadata: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(table: EmbeddingTable, *, sample: int = DEFAULT_SAMPLE_TOKENS) -> Summary:
    """Shape, dtype, norm statistics and sample tokens of ``table``.

    >>> import numpy as np
    >>> summarize(EmbeddingTable(["a", "b"], np.eye(2, dtype=np.float32))).norms.mean
    1.0
    """
    norms = row_norms(table.vectors)  # (V,)
    finite = np.isfinite(norms)
    good = norms[finite]
    stats = None
    if good.size:
        stats = NormStats(float(good.min()), float(good.mean()), float(np.median(good)),
                          float(good.max()))
    meta = dict(table.metadata)
    return Summary(
        format=meta.get("format", "?"),
        source=meta.get("source", "?"),
        rows=len(table),
        dim=table.dim,
        dtype=str(table.vectors.dtype),
        source_dtype=table.source_dtype,
        tensor=meta.get("tensor"),
        padding_idx=table.padding_idx,
        norms=stats,
        zero_rows=int((good == 0).sum()),
        nonfinite_rows=int((~finite).sum()),
        duplicates=int(meta.get("duplicates", "0")),
        sample=list(table.tokens[:sample]),
        metadata=meta,
    )

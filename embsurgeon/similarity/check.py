"""Before/after sanity check of a conversion, alignment or transform.

Tables may differ in dimension (after PCA, say), so the check compares neighbourhoods, never
vectors: for a sample of tokens present in both tables it measures how many of the ``k``
nearest neighbours (among the shared tokens) survive, and how well each token's similarities
to a fixed sample of anchor tokens keep their order (Spearman). It also compares the norms of
rows copied from BEFORE with those of rows that were initialized, and lists the tokens whose
neighbourhoods changed most.

Which rows were copied comes from the provenance sidecar an alignment writes beside its output
(``out.provenance.jsonl``, one ``{"row", "token", "method", "sources", "weights"}`` object per
line; the match methods copy, padding/placeholder/unfilled rows count as neither). Without
one, a row counts as copied when BEFORE has its token with an equal vector (up to the
precision AFTER was stored in), or, when the dimensions differ, when BEFORE has its token.

>>> report = check_tables(before, after, k=10)                     # doctest: +SKIP
>>> report.overlap.mean, report.anchor_spearman.median             # doctest: +SKIP
(0.93, 0.97)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import Enum
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from embsurgeon.errors import FormatError, VocabularyError
from embsurgeon.linalg import row_norms, unit_rows
from embsurgeon.similarity.correlation import spearman_rows
from embsurgeon.similarity.evaluate import (
    AnalogyScore,
    WordPairScore,
    evaluate_analogies,
    evaluate_word_pairs,
    read_analogies,
    read_word_pairs,
)
from embsurgeon.similarity.knn import (
    DEFAULT_DEVICE,
    DEFAULT_K,
    DEFAULT_MEMORY_BUDGET,
    Device,
    Hits,
    search,
)
from embsurgeon.stats import NormStats
from embsurgeon.table import EmbeddingTable

DEFAULT_SAMPLE = 2000
DEFAULT_ANCHORS = 1000
DEFAULT_TOP_CHANGED = 10
DEFAULT_SEED = 0
#: The smaller check ``convert --check`` runs right after writing.
DEFAULT_QUICK_SAMPLE = 500
DEFAULT_QUICK_ANCHORS = 200
#: Fewest shared tokens a check accepts: with two, each token's only neighbour is the other.
MIN_SHARED_TOKENS = 3
_EXAMPLES = 5
#: Relative tolerance for "equal vectors", by the dtype AFTER was stored in.
_EQUAL_RTOL = {"float64": 1e-12, "float32": 1e-6, "float16": 1e-3, "bfloat16": 8e-3}


class Origin(str, Enum):
    """How the copied/initialized split was decided."""

    PROVENANCE = "provenance"  # the alignment's sidecar
    EQUAL_VECTORS = "equal-vectors"  # BEFORE has the token with the same vector
    SHARED_TOKENS = "shared-tokens"  # dimensions differ: BEFORE has the token


@dataclass(frozen=True)
class Summary:
    """Distribution of a per-token figure."""

    count: int
    mean: float | None
    median: float | None
    p10: float | None  # 10th percentile: the bad tail
    min: float | None

    @classmethod
    def of(cls, values: np.ndarray) -> Summary:
        v = values[np.isfinite(values)]
        if not v.size:
            return cls(0, None, None, None, None)
        return cls(int(v.size), float(v.mean()), float(np.median(v)),
                   float(np.percentile(v, 10)), float(v.min()))


@dataclass(frozen=True)
class ChangedToken:
    token: str
    overlap: float
    spearman: float | None
    before: tuple[str, ...]
    after: tuple[str, ...]


@dataclass(frozen=True)
class InitializedExample:
    token: str
    method: str
    neighbors: tuple[str, ...]


@dataclass(frozen=True)
class NormReport:
    copied: NormStats | None
    initialized: NormStats | None
    copied_rows: int
    initialized_rows: int
    origin: Origin

    @property
    def ratio(self) -> float | None:
        """Mean initialized norm over mean copied norm; far from 1 means new rows stand out."""
        if self.copied is None or self.initialized is None or self.copied.mean == 0:
            return None
        return self.initialized.mean / self.copied.mean


@dataclass(frozen=True)
class CheckReport:
    """Everything ``embsurgeon check`` prints; arrays stay out of :meth:`to_dict`."""

    before_rows: int
    after_rows: int
    before_dim: int
    after_dim: int
    common_tokens: int
    k: int  # the neighbourhood size used; below requested_k when the check reduced it
    overlap: Summary  # neighbour overlap@k, per sampled token
    anchor_spearman: Summary  # Spearman of similarities to the anchors, per sampled token
    anchors: int
    norms: NormReport
    most_changed: tuple[ChangedToken, ...]
    initialized_examples: tuple[InitializedExample, ...]
    similarity: tuple[tuple[WordPairScore, WordPairScore], ...] = ()  # (before, after)
    analogies: tuple[tuple[AnalogyScore, AnalogyScore], ...] = ()
    requested_k: int | None = None  # None: k is what was asked for
    overlaps: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    copied_norms: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    initialized_norms: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)

    @property
    def chance_overlap(self) -> float:
        """The overlap@k two random neighbour lists would have: ``k`` of the other shared
        tokens drawn twice. An overlap near it says nothing survived."""
        return self.k / max(self.common_tokens - 1, 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "before": {"rows": self.before_rows, "dim": self.before_dim},
            "after": {"rows": self.after_rows, "dim": self.after_dim},
            "common_tokens": self.common_tokens,
            "k": self.k,
            "requested_k": self.requested_k,
            "chance_overlap": self.chance_overlap,
            "overlap": asdict(self.overlap),
            "anchors": self.anchors,
            "anchor_spearman": asdict(self.anchor_spearman),
            "norms": {
                "origin": self.norms.origin.value,
                "copied_rows": self.norms.copied_rows,
                "initialized_rows": self.norms.initialized_rows,
                "copied": asdict(self.norms.copied) if self.norms.copied else None,
                "initialized": (asdict(self.norms.initialized) if self.norms.initialized
                                else None),
                "initialized_over_copied": self.norms.ratio,
            },
            "most_changed": [asdict(c) for c in self.most_changed],
            "initialized_examples": [asdict(e) for e in self.initialized_examples],
            "similarity": [{"before": b.to_dict(), "after": a.to_dict()}
                           for b, a in self.similarity],
            "analogies": [{"before": b.to_dict(), "after": a.to_dict()}
                          for b, a in self.analogies],
        }


def read_provenance(path: str | Path, table: EmbeddingTable) -> dict[int, str]:
    """Row -> method from a provenance sidecar, checked against ``table``'s tokens."""
    path = Path(path)
    methods: dict[int, str] = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                row, token, method = int(entry["row"]), str(entry["token"]), str(entry["method"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise FormatError(
                    f"{path}, line {number}: not a provenance record ({exc}); expected JSON "
                    "with keys row, token, method, sources, weights"
                ) from exc
            if not 0 <= row < len(table) or table.tokens[row] != token:
                actual = repr(table.tokens[row]) if 0 <= row < len(table) else "out of range"
                raise FormatError(
                    f"{path}, line {number}: row {row} is {token!r} in the provenance but "
                    f"{actual} in the table; the files do not belong together"
                )
            methods[row] = method
    return methods


def _copied_mask(before: EmbeddingTable, after: EmbeddingTable, rows_before: np.ndarray,
                 rows_after: np.ndarray, provenance: Mapping[int, str] | None
                 ) -> tuple[np.ndarray, Origin]:
    """Which AFTER rows were copied; ``rows_before[i]`` and ``rows_after[i]`` share a token."""
    copied = np.zeros(len(after), dtype=bool)
    if provenance is not None:
        from embsurgeon.align.api import COPIED_METHODS

        for row, method in provenance.items():
            copied[row] = method in COPIED_METHODS
        return copied, Origin.PROVENANCE
    if before.dim != after.dim:
        copied[rows_after] = True
        return copied, Origin.SHARED_TOKENS
    rtol = _EQUAL_RTOL.get(after.source_dtype, 1e-6)
    for start in range(0, len(rows_after), 65536):  # chunks keep the comparison small
        a = after.vectors[rows_after[start:start + 65536]].astype(np.float64)  # (B, D)
        b = before.vectors[rows_before[start:start + 65536]].astype(np.float64)  # (B, D)
        scale = np.abs(b).max(axis=1, keepdims=True)  # (B, 1)
        equal = (np.abs(a - b) <= rtol * np.maximum(scale, np.abs(a))).all(axis=1)
        copied[rows_after[start:start + 65536]] = equal
    return copied, Origin.EQUAL_VECTORS


def _norm_stats(norms: np.ndarray) -> NormStats | None:
    good = norms[np.isfinite(norms)]
    if not good.size:
        return None
    return NormStats(float(good.min()), float(good.mean()), float(np.median(good)),
                     float(good.max()))


def _gather(vectors: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``vectors[rows]``, without copying a whole table when ``rows`` is every row in order."""
    if len(rows) == len(vectors) and bool((rows == np.arange(len(rows))).all()):
        return vectors
    return vectors[rows]


def _similarities(vectors: np.ndarray, rows: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """Cosine of each row in ``rows`` to each anchor row, (Q, A), zero-safe."""
    return unit_rows(vectors[rows]) @ unit_rows(vectors[anchors]).T


def check_tables(
    before: EmbeddingTable,
    after: EmbeddingTable,
    *,
    k: int = DEFAULT_K,
    sample: int = DEFAULT_SAMPLE,
    anchors: int = DEFAULT_ANCHORS,
    top_changed: int = DEFAULT_TOP_CHANGED,
    seed: int = DEFAULT_SEED,
    reduce_k: bool = False,
    provenance: Mapping[int, str] | None = None,
    similarity_files: Sequence[str | Path] = (),
    analogy_files: Sequence[str | Path] = (),
    device: Device | str = DEFAULT_DEVICE,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> CheckReport:
    """Compare the neighbourhoods of ``before`` and ``after`` (see the module docstring).

    ``sample`` tokens (0: all shared tokens) are checked, against ``anchors`` anchor tokens.
    Neighbours are drawn from the shared tokens, so ``k`` may be at most half of the other
    shared tokens (longer lists would agree by chance, up to every list being all of them):
    a larger ``k`` raises :class:`VocabularyError`, or with ``reduce_k`` is lowered to that
    limit and recorded in ``report.requested_k``.

    >>> report = check_tables(glove, glove_pca100)                 # doctest: +SKIP
    >>> print(report.overlap.mean)                                 # doctest: +SKIP
    0.81
    """
    shared_after = [i for i, t in enumerate(after.tokens) if t in before.index]
    n_common = len(shared_after)
    if n_common < MIN_SHARED_TOKENS:
        raise VocabularyError(
            f"the tables share {n_common} token(s); a check needs at least "
            f"{MIN_SHARED_TOKENS} (are they the same vocabulary family?)"
        )
    requested_k, max_k = k, (n_common - 1) // 2
    k = min(k, max_k)
    if k < requested_k and not reduce_k:
        raise VocabularyError(
            f"the tables share {n_common} tokens, too few for overlap@{requested_k}: "
            f"neighbour lists that long among {n_common - 1} other tokens agree by chance; "
            f"use k {max_k} or less (-k {max_k}), or compare tables that share more tokens"
        )
    rows_a = np.asarray(shared_after, dtype=np.int64)  # (C,) rows of AFTER
    rows_b = np.asarray([before.index[after.tokens[i]] for i in shared_after], np.int64)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n_common)
    n_sample = n_common if sample <= 0 else min(sample, n_common)
    picked = np.sort(perm[:n_sample])  # positions in the shared list
    rest = perm[n_sample:]
    # Anchors apart from the sampled tokens where possible, so no pair is a token with itself.
    pool = rest if len(rest) >= min(anchors, n_common // 2) else perm
    anchor_pos = np.sort(pool[:min(anchors, len(pool))])

    vec_b = _gather(before.vectors, rows_b)  # (C, D_before) shared rows, in AFTER's order
    vec_a = _gather(after.vectors, rows_a)  # (C, D_after)
    run = partial(search, device=device, memory_budget=memory_budget)
    own = picked[:, None]  # (S, 1): a token is not its own neighbour
    hits_b = run(vec_b[picked], vec_b, k, exclude=own)
    hits_a = run(vec_a[picked], vec_a, k, exclude=own)
    overlaps = np.array([len(set(x) & set(y)) / k
                         for x, y in zip(hits_b.ids.tolist(), hits_a.ids.tolist(), strict=True)])
    rho = spearman_rows(_similarities(vec_b, picked, anchor_pos),
                        _similarities(vec_a, picked, anchor_pos))  # (S,)

    order = np.lexsort((picked, np.nan_to_num(rho, nan=-2.0), overlaps))[:top_changed]
    tokens = after.tokens
    most_changed = tuple(
        ChangedToken(
            token=tokens[rows_a[picked[i]]],
            overlap=float(overlaps[i]),
            spearman=None if np.isnan(rho[i]) else float(rho[i]),
            before=tuple(tokens[rows_a[j]] for j in hits_b.ids[i]),
            after=tuple(tokens[rows_a[j]] for j in hits_a.ids[i]),
        )
        for i in order
    )

    copied, origin = _copied_mask(before, after, rows_b, rows_a, provenance)
    norms = row_norms(after.vectors)
    initialized = ~copied
    if provenance is not None:
        from embsurgeon.align.api import PADDING, PLACEHOLDER, UNFILLED

        # Rows the sidecar does not mention, and the zero rows alignment leaves on purpose
        # (padding, placeholders, unfilled), are neither copied nor initialized.
        listed = np.zeros(len(after), dtype=bool)
        listed[[r for r, m in provenance.items()
                if m not in (PADDING, PLACEHOLDER, UNFILLED)]] = True
        initialized &= listed
    examples = _initialized_examples(after, initialized, provenance, rng, run)
    norm_report = NormReport(_norm_stats(norms[copied]), _norm_stats(norms[initialized]),
                             int(copied.sum()), int(initialized.sum()), origin)

    similarity = tuple(
        (evaluate_word_pairs(before, pairs), evaluate_word_pairs(after, pairs))
        for pairs in (read_word_pairs(p) for p in similarity_files)
    )
    analogies = tuple(
        (evaluate_analogies(before, questions, device=device, memory_budget=memory_budget),
         evaluate_analogies(after, questions, device=device, memory_budget=memory_budget))
        for questions in (read_analogies(p) for p in analogy_files)
    )
    return CheckReport(
        before_rows=len(before), after_rows=len(after), before_dim=before.dim,
        after_dim=after.dim, common_tokens=n_common, k=k,
        overlap=Summary.of(overlaps), anchor_spearman=Summary.of(rho),
        anchors=len(anchor_pos), norms=norm_report, most_changed=most_changed,
        initialized_examples=examples, similarity=similarity, analogies=analogies,
        requested_k=requested_k if k < requested_k else None,
        overlaps=overlaps, copied_norms=norms[copied], initialized_norms=norms[initialized],
    )


def _initialized_examples(after: EmbeddingTable, initialized: np.ndarray,
                          provenance: Mapping[int, str] | None, rng: np.random.Generator,
                          run: Callable[..., Hits]) -> tuple[InitializedExample, ...]:
    """A few initialized rows with their neighbours in AFTER: did they land somewhere sane?"""
    rows = np.flatnonzero(initialized)
    if not len(rows) or len(after) < 2:
        return ()
    chosen = np.sort(rng.choice(rows, size=min(_EXAMPLES, len(rows)), replace=False))
    hits = run(after.vectors[chosen], after.vectors, _EXAMPLES, exclude=chosen[:, None])
    return tuple(
        InitializedExample(after.tokens[row], (provenance or {}).get(row, "initialized"),
                           tuple(after.tokens[j] for j in ids))
        for row, ids in zip(chosen.tolist(), hits.ids.tolist(), strict=True)
    )

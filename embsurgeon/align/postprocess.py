"""Whole-matrix steps after the rows are built: learned map, all-but-the-top, PCA, normalization.

They run in that order on the aligned matrix: first into the target model's space (``map_to``,
anchored on the copied rows), then the common-direction removal and the dimension change are
fitted on the result, and row normalization comes last so the rows are unit length as asked.
The kernels live in :mod:`embsurgeon.align.transform`; this module only decides what to fit on.

>>> import numpy as np
>>> from embsurgeon.align.api import align
>>> from embsurgeon.table import EmbeddingTable
>>> src = EmbeddingTable([f"w{i}" for i in range(50)],
...                      np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32))
>>> out = align(src, src.tokens, init="mean", transforms=Transforms(dim=4, normalize="l2"))
>>> out.table.dim, round(float(np.linalg.norm(out.table.vectors[0])), 4)
(4, 1.0)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from embsurgeon.align.match import Matching, MatchLevel, match_tokens
from embsurgeon.align.transform import (
    DEFAULT_HOLDOUT,
    DEFAULT_MAP_METHOD,
    DEFAULT_NORMALIZATION,
    LinearMap,
    MapMethod,
    Normalization,
    Projection,
    fit_all_but_the_top,
    fit_linear_map,
    fit_pca,
    normalize,
)
from embsurgeon.errors import AlignmentError
from embsurgeon.table import EmbeddingTable
from embsurgeon.vocab import Vocabulary

# Rows that copied a real token's vector and may anchor a learned map. Special tokens are left
# out: `[CLS]` and `<s>` share a role, not a meaning a map should learn from.
_ANCHOR_LEVELS = frozenset({MatchLevel.EXACT, MatchLevel.CANONICAL, MatchLevel.CASE_FOLD,
                            MatchLevel.OVERRIDE})


@dataclass(frozen=True)
class Transforms:
    """Whole-matrix steps for :func:`embsurgeon.align.align` (``transforms=``).

    ``map_to`` is a target model's embedding table: a linear map (``map_method``) is learned
    from the copied rows onto that model's rows for the same tokens, and applied to every row.
    ``remove_top`` removes the mean and that many top principal directions (all-but-the-top).
    ``dim`` reduces to that many dimensions with PCA (``whiten`` scales them to unit variance);
    ``pca`` applies a previously fitted projection instead of fitting one. ``normalize`` is
    applied last.
    """

    map_to: EmbeddingTable | None = None
    map_method: MapMethod | str = DEFAULT_MAP_METHOD
    map_holdout: float = DEFAULT_HOLDOUT
    remove_top: int | None = None
    dim: int | None = None
    whiten: bool = False
    pca: Projection | None = None
    normalize: Normalization | str = DEFAULT_NORMALIZATION
    seed: int = 0

    def __post_init__(self) -> None:
        if self.pca is not None and (self.dim is not None or self.whiten):
            raise AlignmentError("give either a fitted PCA to reuse or --dim/--whiten to fit "
                                 "one, not both")
        if self.dim is not None and self.dim < 1:
            raise AlignmentError(f"--dim must be at least 1, got {self.dim}")
        object.__setattr__(self, "normalize", Normalization(self.normalize))
        object.__setattr__(self, "map_method", MapMethod(self.map_method))

    @property
    def empty(self) -> bool:
        return (self.map_to is None and self.remove_top is None and self.dim is None
                and not self.whiten and self.pca is None
                and self.normalize is Normalization.NONE)


@dataclass(frozen=True)
class Transformed:
    """The transformed matrix, what was fitted, and the figures for the report."""

    vectors: np.ndarray  # (T, D') float32
    details: Mapping[str, Any] = field(default_factory=dict)
    linear_map: LinearMap | None = None
    projection: Projection | None = None  # the PCA fitted here (to save beside the output)


def apply_transforms(transforms: Transforms, vectors: np.ndarray, target: Vocabulary,
                     matching: Matching, live: np.ndarray) -> Transformed:
    """Run ``transforms`` on the aligned ``vectors`` (T, D).

    ``live`` marks the rows to fit on (not the padding row, not rows left zero).
    """
    out = vectors.astype(np.float32)
    details: dict[str, Any] = {}
    linear_map = projection = None
    if transforms.map_to is not None:
        linear_map = _fit_map(transforms.map_to, transforms, out, target, matching)
        out = linear_map.apply(out)
        details["map_to"] = {
            "model": transforms.map_to.metadata.get("source", "table"),
            "method": linear_map.method.value, "anchors": linear_map.n_anchors,
            "heldout": linear_map.n_heldout, "train_cosine": round(linear_map.train_cosine, 4),
            "heldout_cosine": None if linear_map.heldout_cosine is None
            else round(linear_map.heldout_cosine, 4), "dim": linear_map.out_dim}
    fit_rows = out[live]
    if transforms.remove_top is not None:
        top = fit_all_but_the_top(fit_rows, transforms.remove_top, seed=transforms.seed)
        out = top.apply(out)
        details["all_but_the_top"] = {"removed": transforms.remove_top}
        fit_rows = out[live]
    if transforms.pca is not None:
        out = transforms.pca.apply(out)
        details["pca"] = {"dim": transforms.pca.out_dim, "fitted": False,
                          "whiten": transforms.pca.whiten}
    elif transforms.dim is not None or transforms.whiten:
        n = transforms.dim if transforms.dim is not None else min(fit_rows.shape)
        projection = fit_pca(fit_rows, n, whiten=transforms.whiten, seed=transforms.seed)
        out = projection.apply(out)
        kept = float(projection.explained_variance.sum() / _total_variance(fit_rows))
        details["pca"] = {"dim": n, "fitted": True, "whiten": transforms.whiten,
                          "explained_variance": round(kept, 4)}
    if transforms.normalize is not Normalization.NONE:
        mean = out[live].astype(np.float64).mean(axis=0)
        out = normalize(out, transforms.normalize, mean=mean)
        details["normalize"] = Normalization(transforms.normalize).value
    return Transformed(np.ascontiguousarray(out, dtype=np.float32), details, linear_map,
                       projection)


def _total_variance(rows: np.ndarray) -> float:
    work = rows.astype(np.float64)
    return float(((work - work.mean(axis=0)) ** 2).sum() / max(len(work) - 1, 1)) or 1.0


def _fit_map(model: EmbeddingTable, transforms: Transforms, vectors: np.ndarray,
             target: Vocabulary, matching: Matching) -> LinearMap:
    from embsurgeon.align.targets import table_vocabulary

    in_model = match_tokens(table_vocabulary(model), target,
                            levels=(MatchLevel.EXACT, MatchLevel.CANONICAL))
    seen: set[int] = set()
    picked = []
    for t, level in enumerate(matching.levels):
        # One anchor per source row: `the` copied into both `the` and `ｔｈｅ` is one pair.
        source_row = int(matching.source_rows[t])
        if level in _ANCHOR_LEVELS and in_model.source_rows[t] >= 0 and source_row not in seen:
            seen.add(source_row)
            picked.append(t)
    anchors = np.array(picked, dtype=np.int64)
    if anchors.size < 2:
        raise AlignmentError(
            f"--map-to: only {anchors.size} copied token(s) also have a row in "
            f"{model.metadata.get('source', 'the model')}; a map needs anchors shared by "
            "the source, the target and the model")
    return fit_linear_map(vectors[anchors], model.vectors[in_model.source_rows[anchors]],
                          transforms.map_method, holdout=transforms.map_holdout,
                          seed=transforms.seed)


def load_projection(path: str | Path) -> Projection:
    """A PCA saved by an earlier run (``OUT.pca.safetensors``), to reuse with ``--pca``."""
    return Projection.load(path)

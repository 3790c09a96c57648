"""Self-validation: how well would each init method have rebuilt rows we actually have?

A sample of shared whole-word tokens (copied rows matched exactly or canonically) is hidden:
their source rows leave the source table and its vocabulary, so no method can find them. Each
chain then rebuilds them from what is left, and the rebuilt rows are compared with the true ones
(cosine, and relative norm error after the same norm matching the real run applies). ``--init
auto`` uses the chain with the best mean cosine among those that build every row.

>>> import numpy as np
>>> from embsurgeon.align.api import align
>>> from embsurgeon.table import EmbeddingTable
>>> rng = np.random.default_rng(0)
>>> words = [f"w{i}" for i in range(200)]
>>> src = EmbeddingTable(words, rng.standard_normal((200, 8)).astype(np.float32))
>>> out = align(src, words[:150] + ["new"], init="auto", seed=1)
>>> out.report.details["validation"]["best"] in ("mean", "mvn", "normal", "zero")
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from embsurgeon.align.forms import surface
from embsurgeon.align.init import InitMethod
from embsurgeon.align.match import MatchLevel
from embsurgeon.align.norms import DEFAULT_NORM_MATCH, NormMatch, match_norms
from embsurgeon.errors import AlignmentError
from embsurgeon.linalg import row_cosines, row_norms
from embsurgeon.table import EmbeddingTable

if TYPE_CHECKING:
    from embsurgeon.align.api import AlignmentPlan
    from embsurgeon.align.targets import Target

#: Share of eligible shared tokens hidden, unless told otherwise.
DEFAULT_FRACTION = 0.1
#: At most this many tokens are hidden: enough for a mean cosine good to about +-0.01, and
#: cheap next to the alignment itself.
MAX_HIDDEN = 2000
MIN_HIDDEN = 5

_PARTIAL = (InitMethod.SUBWORD, InitMethod.SUBWORD_WEIGHTED)
_NEEDS_AUX = (InitMethod.KNN, InitMethod.OMP)
_TOTAL = (InitMethod.MEAN, InitMethod.MVN, InitMethod.NORMAL, InitMethod.ZERO)


@dataclass(frozen=True)
class ChainScore:
    """How one chain rebuilt the hidden rows."""

    chain: tuple[InitMethod, ...]
    mean_cosine: float  # over every hidden row; a row the chain could not build counts as 0
    cosine_built: float | None  # over the rows it built
    coverage: float  # share of hidden rows it built
    norm_error: float | None  # mean |‖built‖ - ‖true‖| / ‖true‖ over built rows
    by_method: dict[str, int]

    @property
    def name(self) -> str:
        return ",".join(m.value for m in self.chain)

    def to_dict(self) -> dict[str, Any]:
        return {"chain": self.name, "mean_cosine": _r(self.mean_cosine),
                "cosine_built": _r(self.cosine_built), "coverage": _r(self.coverage),
                "norm_error": _r(self.norm_error), "by_method": self.by_method}


def _r(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)


@dataclass(frozen=True)
class Validation:
    """Scores for every chain tried, and the best complete one."""

    hidden: int
    eligible: int
    seed: int
    scores: tuple[ChainScore, ...]
    best: tuple[InitMethod, ...] | None  # None when no chain ends in a total method

    def to_dict(self) -> dict[str, Any]:
        return {"hidden": self.hidden, "eligible": self.eligible, "seed": self.seed,
                "best": ",".join(m.value for m in self.best) if self.best else None,
                "chains": [s.to_dict() for s in self.scores]}


def candidate_chains(has_aux: bool) -> list[tuple[InitMethod, ...]]:
    """Chains ``--init auto`` measures: each method alone, and partial methods before a total
    one (the mean or a multivariate normal draw), alone and in pairs."""
    partial = list(_PARTIAL) + (list(_NEEDS_AUX) if has_aux else [])
    chains: list[tuple[InitMethod, ...]] = [(m,) for m in (*partial, *_TOTAL)]
    for last in (InitMethod.MEAN, InitMethod.MVN):
        chains += [(p, last) for p in partial]
    if has_aux:
        for first in partial:
            for second in partial:
                if first is not second and {first, second} != set(_PARTIAL):
                    chains.append((first, second, InitMethod.MEAN))
    return chains


def requested_chains(chain: Sequence[InitMethod]) -> list[tuple[InitMethod, ...]]:
    """``--validate`` with an explicit chain: each of its methods alone, then the chain."""
    chains: list[tuple[InitMethod, ...]] = [(m,) for m in chain]
    if len(chain) > 1:
        chains.append(tuple(chain))
    return chains


def eligible_rows(plan: AlignmentPlan) -> np.ndarray:
    """Target rows whose copied source row may be hidden: whole words matched exactly or
    canonically, each source row once."""
    seen: set[int] = set()
    rows = []
    for t, level in enumerate(plan.matching.levels):
        if level not in (MatchLevel.EXACT, MatchLevel.CANONICAL):
            continue
        form = surface(plan.target.tokens[t], plan.target)
        if form is None or not form.word_initial or not form.text.strip():
            continue
        s = int(plan.matching.source_rows[t])
        if s in seen:
            continue
        seen.add(s)
        rows.append(t)
    return np.asarray(rows, dtype=np.int64)


def validate_plan(plan: AlignmentPlan, chains: Sequence[Sequence[InitMethod]], *,
                  norm_match: NormMatch, seed: int, fraction: float | None = None,
                  max_hidden: int = MAX_HIDDEN) -> Validation:
    """Hide a sample of shared rows, rebuild them with every chain, and score the results.

    ``fraction`` of the eligible rows are hidden, at most ``max_hidden`` of them.
    """
    from embsurgeon.align.api import _context, finite_rows, run_chain

    fraction = DEFAULT_FRACTION if fraction is None else fraction
    if not 0 < fraction < 1:
        raise AlignmentError(f"the validation fraction must lie in (0, 1), got {fraction}")
    eligible = eligible_rows(plan)
    n_hide = min(max_hidden, round(fraction * eligible.size))
    if n_hide < MIN_HIDDEN or eligible.size - n_hide < MIN_HIDDEN:
        raise AlignmentError(
            f"only {eligible.size} whole-word tokens are shared with the source; self-validation "
            f"needs at least {2 * MIN_HIDDEN / fraction:.0f} to hide {fraction:.0%} of them")
    rng = np.random.default_rng(seed)
    hidden_t = np.sort(rng.choice(eligible, size=n_hide, replace=False))  # target rows
    matching = plan.matching
    hidden_s = matching.source_rows[hidden_t]  # their source rows
    source = plan.source
    keep = np.ones(len(source), dtype=bool)
    keep[hidden_s] = False
    new_id = np.cumsum(keep) - 1  # old source row -> row in the reduced table
    reduced = source.take(np.flatnonzero(keep))
    vocab = plan.source_vocab
    kept_tokens = set(reduced.tokens)
    # The tokenizer file stays: subword splits a piece whose row is hidden into smaller pieces
    # that still have rows, exactly as for a piece trimmed away by --limit.
    reduced_vocab = replace(vocab, tokens=tuple(reduced.tokens), counts=None,
                            special={r: t for r, t in vocab.special.items()
                                     if t in kept_tokens})
    copied = matching.source_rows[matching.source_rows >= 0]
    reference = np.unique(new_id[copied[keep[copied]]])
    reference = finite_rows(reduced.vectors, reference)
    anchors = None
    if plan.aux_to_source is not None:
        anchors = {tok: int(new_id[s]) for tok, s in plan.aux_to_source.items() if keep[s]}
    context = _context(plan, reduced, reduced_vocab, reference, anchors, seed)
    ref_norms = row_norms(reduced.vectors, reference)

    truth = source.vectors[hidden_s].astype(np.float64)  # (H, D)
    truth_norm = np.linalg.norm(truth, axis=1)
    tokens = [plan.target.tokens[t] for t in hidden_t]
    forms = [surface(tok, plan.target) for tok in tokens]
    scores = []
    for chain in chains:
        built = run_chain(tuple(chain), tokens, forms, context)
        done = np.array([m != "unfilled" for m in built.methods])
        vectors = built.vectors.astype(np.float64)
        if norm_match is not NormMatch.NONE and done.any():
            vectors[done] = match_norms(vectors[done], ref_norms, method=norm_match)
        cos = row_cosines(vectors, truth)
        by_method: dict[str, int] = {}
        for m in built.methods:
            by_method[m] = by_method.get(m, 0) + 1
        norms = np.linalg.norm(vectors, axis=1)
        live = done & (truth_norm > 0)
        scores.append(ChainScore(
            chain=tuple(chain), mean_cosine=float(np.where(done, cos, 0.0).mean()),
            cosine_built=float(cos[done].mean()) if done.any() else None,
            coverage=float(done.mean()),
            norm_error=float((np.abs(norms[live] - truth_norm[live]) / truth_norm[live]).mean())
            if live.any() else None,
            by_method=by_method))
    # Only a chain ending in a method that builds every row can fill every row of a real run:
    # subword may cover all hidden whole words and still miss control tokens and odd pieces.
    complete = [s for s in scores if s.chain[-1] in _TOTAL]
    # Ties go to the shorter, earlier chain: fewer moving parts for the same quality.
    best = max(complete, key=lambda s: (round(s.mean_cosine, 6), -len(s.chain)), default=None)
    return Validation(int(n_hide), int(eligible.size), seed, tuple(scores),
                      best.chain if best else None)


def validate_chains(table: EmbeddingTable, target: Target,
                    chains: Sequence[Sequence[InitMethod | str]] | None = None, *,
                    aux: EmbeddingTable | None = None, seed: int = 0,
                    fraction: float | None = None, max_hidden: int = MAX_HIDDEN,
                    norm_match: NormMatch | str = DEFAULT_NORM_MATCH,
                    **plan_options: Any) -> Validation:
    """Score init chains on ``table`` itself: what ``--validate`` and ``--init auto`` measure.

    ``chains`` defaults to every candidate of ``--init auto``. Other keywords go to
    :func:`embsurgeon.align.api.plan_alignment` (``source_vocab``, ``match``, ``k``...).

    >>> v = validate_chains(table, table.tokens, [("subword", "mean")])   # doctest: +SKIP
    >>> v.scores[0].mean_cosine                                           # doctest: +SKIP
    0.62
    """
    from embsurgeon.align.api import plan_alignment

    plan = plan_alignment(table, target, aux=aux, **plan_options)
    if chains is None:
        chains = candidate_chains(aux is not None)
    parsed = [tuple(InitMethod(m) for m in chain) for chain in chains]
    return validate_plan(plan, parsed, norm_match=NormMatch(norm_match), seed=seed,
                         fraction=fraction, max_hidden=max_hidden)

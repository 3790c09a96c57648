"""Self-validation: hidden shared rows, rebuilt by each chain, scored against the truth."""

from __future__ import annotations

import numpy as np
import pytest

from embsurgeon.align import InitMethod, align
from embsurgeon.align.api import plan_alignment
from embsurgeon.align.validate import (
    MAX_HIDDEN,
    candidate_chains,
    eligible_rows,
    requested_chains,
    validate_plan,
)
from embsurgeon.errors import AlignmentError
from embsurgeon.table import EmbeddingTable


@pytest.fixture
def compositional() -> EmbeddingTable:
    """Words whose vectors are sums of their two halves' vectors, so subword can rebuild them."""
    rng = np.random.default_rng(0)
    halves = [f"{a}{b}" for a in "bcdfgklmnp" for b in "aeiou"]  # 50 two-letter pieces
    base = {h: rng.standard_normal(24) for h in halves}
    words = [f"{a}{b}" for a in halves[:25] for b in halves[25:]]  # 625 four-letter words
    tokens = halves + words
    vectors = np.stack([base[t] if t in base else base[t[:2]] + base[t[2:]] for t in tokens])
    return EmbeddingTable(tokens, vectors.astype(np.float32))


def _plan_for(table, target, **kwargs):
    return plan_alignment(table, target, **{"match": "exact,canonical", **kwargs})


def test_subword_rebuilds_compositional_words(compositional):
    plan = _plan_for(compositional, list(compositional.tokens))
    result = validate_plan(plan, requested_chains((InitMethod.SUBWORD, InitMethod.MEAN)),
                           norm_match="none", seed=0)
    scores = {s.name: s for s in result.scores}
    # Four-letter words are exactly the mean of their halves' rows up to a factor of 2.
    assert scores["subword"].cosine_built == pytest.approx(1.0, abs=1e-5)
    assert scores["mean"].mean_cosine < 0.5
    assert scores["subword,mean"].coverage == 1.0
    assert result.hidden == round(0.1 * result.eligible)


def test_hidden_rows_are_really_hidden(compositional):
    """With noise added to every word, only a leaked row would be rebuilt exactly."""
    rng = np.random.default_rng(3)
    noisy = compositional.with_vectors(
        compositional.vectors + 0.5 * rng.standard_normal(compositional.vectors.shape).astype(
            np.float32) * (np.arange(len(compositional)) >= 50)[:, None])
    plan = _plan_for(noisy, list(noisy.tokens))
    score = validate_plan(plan, [(InitMethod.SUBWORD,)], norm_match="none", seed=1).scores[0]
    assert score.by_method["subword"] > 30
    assert 0.5 < score.cosine_built < 0.99


def test_auto_picks_the_best_complete_chain(compositional):
    target = [*compositional.tokens, "bagi", "zzzz"]
    out = align(compositional, target, init="auto", seed=0, norm_match="none")
    validation = out.report.details["validation"]
    assert validation["best"] == "subword,mean"
    assert out.report.init == ("subword", "mean")
    assert {c["chain"] for c in validation["chains"]} >= {"subword", "mean", "subword,mean"}
    assert [p.method for p in out.provenance[-2:]] == ["subword", "mean"]


def test_validate_reports_every_requested_method(compositional):
    out = align(compositional, list(compositional.tokens), init="subword,mvn", validate=True)
    names = [c["chain"] for c in out.report.details["validation"]["chains"]]
    assert names == ["subword", "mvn", "subword,mvn"]
    assert out.report.init == ("subword", "mvn")  # an explicit chain is kept as given


def test_validation_is_deterministic(compositional):
    a = align(compositional, list(compositional.tokens), init="mvn", validate=True, seed=5)
    b = align(compositional, list(compositional.tokens), init="mvn", validate=True, seed=5)
    assert a.report.details == b.report.details


def test_eligible_rows_are_whole_words_copied_once():
    table = EmbeddingTable(["play", "##ing", "[CLS]", "cat"], np.eye(4, dtype=np.float32))
    plan = _plan_for(table, ["play", "##ing", "[CLS]", "cat", "Cat"],
                     match="exact,canonical,case-fold,special")
    assert eligible_rows(plan).tolist() == [0, 3]


def test_candidates_need_aux_for_knn():
    assert all(InitMethod.KNN not in c for c in candidate_chains(False))
    assert (InitMethod.KNN, InitMethod.MEAN) in candidate_chains(True)
    assert MAX_HIDDEN >= 1000


def test_too_few_shared_tokens():
    table = EmbeddingTable(["a1", "b1", "c1"], np.eye(3, dtype=np.float32))
    with pytest.raises(AlignmentError, match="only 3 whole-word tokens are shared"):
        align(table, ["a1", "b1", "c1"], init="mean", validate=True)


def test_bad_fraction(compositional):
    with pytest.raises(AlignmentError, match=r"fraction must lie in \(0, 1\)"):
        align(compositional, list(compositional.tokens), validate=True, validate_fraction=1.5)


def test_validate_chains_public_helper(compositional):
    from embsurgeon.align.validate import validate_chains

    v = validate_chains(compositional, list(compositional.tokens), [("subword", "mean")],
                        max_hidden=10, norm_match="none")
    assert v.hidden == 10 and v.best == (InitMethod.SUBWORD, InitMethod.MEAN)
    assert v.scores[0].mean_cosine > 0.5 and v.scores[0].by_method["subword"] >= 5

"""Norm matching: quantile mapping onto the reference, zero-safety, errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from embsurgeon.align.norms import NormMatch, match_norms
from embsurgeon.errors import AlignmentError


def test_quantile_mapping_reproduces_the_reference_distribution():
    rng = np.random.default_rng(0)
    reference = rng.gamma(9.0, 0.5, size=5000)  # (C,)
    short = rng.standard_normal((4000, 16)) * 0.1  # averaged rows: much shorter
    out = match_norms(short, reference)
    got = np.linalg.norm(out, axis=1)
    qs = np.linspace(0.05, 0.95, 19)
    np.testing.assert_allclose(np.quantile(got, qs), np.quantile(reference, qs), rtol=0.02)


def test_directions_and_norm_order_are_kept():
    rng = np.random.default_rng(1)
    v = rng.standard_normal((50, 8)).astype(np.float32)
    out = match_norms(v, rng.uniform(1, 3, 200))
    assert out.dtype == np.float32
    cos = np.einsum("ij,ij->i", v, out) / (np.linalg.norm(v, axis=1) * np.linalg.norm(out, axis=1))
    np.testing.assert_allclose(cos, 1.0, atol=1e-5)
    assert (np.argsort(np.linalg.norm(v, axis=1)) == np.argsort(np.linalg.norm(out, axis=1))).all()


def test_zero_rows_stay_zero_and_take_no_quantile():
    v = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    out = match_norms(v, np.array([2.0, 4.0, 6.0]))
    assert out.tolist() == [[0.0, 0.0], [4.0, 0.0], [0.0, 0.0]]  # the lone row gets the median


@pytest.mark.parametrize(("method", "expected"), [("mean", 4.0), ("median", 3.0)])
def test_constant_targets(method, expected):
    out = match_norms(np.array([[3.0, 4.0], [0.1, 0.0]]), np.array([1.0, 3.0, 8.0]), method=method)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), expected)


def test_none_and_empty_are_copies():
    v = np.ones((2, 3))
    out = match_norms(v, np.array([5.0]), method=NormMatch.NONE)
    assert out is not v and (out == v).all()
    assert match_norms(np.zeros((0, 3)), np.array([1.0])).shape == (0, 3)


def test_rows_too_small_to_have_a_norm_count_as_zero():
    out = match_norms(np.array([[1e-200, 0.0], [1e-150, 1e-150]]), np.array([1e3, 2e3]))
    assert np.isfinite(out).all() and not out[0].any()
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), [0.0, 1500.0])


def test_errors():
    with pytest.raises(AlignmentError, match="unknown norm matching 'l1'; choose one of none"):
        match_norms(np.ones((1, 2)), np.ones(1), method="l1")
    with pytest.raises(AlignmentError, match="no reference norms"):
        match_norms(np.ones((1, 2)), np.array([]))
    with pytest.raises(AlignmentError, match="finite and non-negative"):
        match_norms(np.ones((1, 2)), np.array([np.nan]))
    with pytest.raises(AlignmentError, match="needs a 2-D matrix"):
        match_norms(np.ones(3), np.ones(1))


@settings(max_examples=100, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 30), st.integers(1, 5)),
              elements=st.floats(-1e3, 1e3)),
       arrays(np.float64, st.integers(1, 20), elements=st.floats(0, 1e3)))
def test_quantile_mapping_properties(vectors, reference):
    out = match_norms(vectors, reference)
    before, after = np.linalg.norm(vectors, axis=1), np.linalg.norm(out, axis=1)
    live = before >= np.sqrt(np.finfo(np.float64).tiny)  # smaller rows have no exact norm
    assert (after[~live] == 0).all() and np.isfinite(out).all()
    assert (after[live] >= reference.min() - 1e-9).all()
    assert (after[live] <= reference.max() + 1e-9).all()
    order = np.argsort(before[live], kind="stable")
    assert (np.diff(after[live][order]) >= -1e-9).all()  # the order of norms is kept

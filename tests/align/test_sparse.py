"""sparsemax against its definition; OMP against known codes and scikit-learn."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from embsurgeon.align.sparse import omp, softmax, sparsemax
from embsurgeon.errors import AlignmentError


def _brute_force_simplex_projection(z: np.ndarray) -> np.ndarray:
    """argmin_p |p - z| over the simplex, by trying every face (every support set)."""
    best, best_dist = None, np.inf
    for size in range(1, len(z) + 1):
        for support in itertools.combinations(range(len(z)), size):
            idx = list(support)
            tau = (z[idx].sum() - 1) / size
            p = np.zeros_like(z)
            p[idx] = z[idx] - tau
            if (p[idx] >= -1e-12).all():
                dist = np.linalg.norm(p - z)
                if dist < best_dist:
                    best, best_dist = p, dist
    assert best is not None
    return best


@settings(max_examples=200, deadline=None)
@given(arrays(np.float64, st.integers(1, 6), elements=st.floats(-5, 5)))
def test_sparsemax_is_the_projection_onto_the_simplex(z):
    p = sparsemax(z[None, :])[0]
    assert (p >= 0).all()
    assert p.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(p, _brute_force_simplex_projection(z), atol=1e-9)


def test_sparsemax_rows_are_independent_and_shift_invariant():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((64, 9)).astype(np.float32)
    p = sparsemax(z)
    assert p.dtype == np.float32 and p.shape == z.shape
    for row in range(0, 64, 7):
        np.testing.assert_allclose(p[row], sparsemax(z[row]), atol=1e-7)
    np.testing.assert_allclose(sparsemax(z + 100.0), p, atol=1e-5)
    assert (p == 0).any()  # genuinely sparse, unlike softmax


def test_sparsemax_ignores_masked_scores():
    p = sparsemax(np.array([[0.2, -np.inf, 0.1], [-np.inf, -np.inf, 3.0]]))
    np.testing.assert_allclose(p, [[0.55, 0.0, 0.45], [0.0, 0.0, 1.0]])


def test_sparsemax_errors():
    with pytest.raises(AlignmentError, match="non-empty vector or matrix"):
        sparsemax(np.zeros((2, 0)))
    with pytest.raises(AlignmentError, match="must not be NaN"):
        sparsemax(np.array([np.nan, 1.0]))
    with pytest.raises(AlignmentError, match="at least one finite score"):
        sparsemax(np.array([[-np.inf, -np.inf]]))


def test_softmax_with_temperature():
    p = softmax(np.array([[1.0, 0.0]]), temperature=0.5)
    np.testing.assert_allclose(p, [[1 / (1 + np.exp(-2)), 1 - 1 / (1 + np.exp(-2))]])


def _unit_atoms(n: int, d: int, seed: int) -> np.ndarray:
    atoms = np.random.default_rng(seed).standard_normal((n, d))
    return atoms / np.linalg.norm(atoms, axis=1, keepdims=True)


def test_omp_recovers_a_known_sparse_combination():
    rng = np.random.default_rng(1)
    atoms = _unit_atoms(300, 64, seed=2)  # (K, d)
    truth = np.zeros((40, 300))
    for row in truth:
        row[rng.choice(300, size=5, replace=False)] = rng.uniform(0.5, 2.0, 5) * rng.choice(
            [-1, 1], 5)
    code = omp(atoms, truth @ atoms, k=5)
    np.testing.assert_allclose(code.dense(300), truth, atol=1e-8)
    assert code.residual_norms.max() < 1e-8


def test_omp_matches_scikit_learn():
    from sklearn.linear_model import orthogonal_mp

    atoms = _unit_atoms(120, 30, seed=3)
    y = np.random.default_rng(4).standard_normal((25, 30))  # not sparse: the greedy path matters
    ours = omp(atoms, y, k=7).dense(120)
    theirs = orthogonal_mp(atoms.T, y.T, n_nonzero_coefs=7).T  # (25, 120)
    np.testing.assert_allclose(ours, theirs, atol=1e-6)


def test_omp_with_a_candidate_set_per_target():
    atoms = _unit_atoms(50, 16, seed=5)
    rng = np.random.default_rng(6)
    candidates = np.stack([atoms[rng.choice(50, 12, replace=False)] for _ in range(8)])  # (B, P, d)
    y = np.einsum("bp,bpd->bd", rng.standard_normal((8, 12)) * (rng.random((8, 12)) < 0.25),
                  candidates)
    code = omp(candidates, y, k=4)
    for b in range(8):
        alone = omp(candidates[b], y[b:b + 1], k=4)
        np.testing.assert_array_equal(code.indices[b], alone.indices[0])
        np.testing.assert_allclose(code.coefficients[b], alone.coefficients[0], atol=1e-9)


def test_omp_stops_early_and_marks_unused_slots():
    code = omp(np.eye(5), np.array([[0.0, 3.0, 0.0, 0.0, 0.0], [0.0] * 5]), k=3)
    assert code.indices.tolist() == [[1, -1, -1], [-1, -1, -1]]
    np.testing.assert_allclose(code.coefficients, [[3.0, 0.0, 0.0], [0.0, 0.0, 0.0]])


def test_omp_handles_duplicate_atoms_and_k_above_the_dictionary():
    atoms = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    code = omp(atoms, np.array([[2.0, 1.0]]), k=10)
    assert code.indices.shape == (1, 3)
    np.testing.assert_allclose(code.dense(3)[0, [0, 1]].sum(), 2.0)
    np.testing.assert_allclose(code.dense(3)[0, 2], 1.0)


def test_omp_blocks_give_the_same_answer(monkeypatch):
    import embsurgeon.align.sparse as sparse

    atoms = _unit_atoms(40, 8, seed=7)
    y = np.random.default_rng(8).standard_normal((30, 8))
    whole = omp(atoms, y, k=3)
    monkeypatch.setattr(sparse, "_BLOCK_ELEMENTS", 40 * 7)  # blocks of 7 targets
    split = omp(atoms, y, k=3)
    np.testing.assert_array_equal(whole.indices, split.indices)
    np.testing.assert_allclose(whole.coefficients, split.coefficients)


@pytest.mark.parametrize(("atoms", "y", "k", "words"), [
    (np.zeros((4, 3)), np.zeros((2, 5)), 2, r"dictionary of shape \(4, 3\) does not fit targets"),
    (np.zeros((0, 3)), np.zeros((2, 3)), 2, "the dictionary has no atoms"),
    (np.eye(3), np.zeros((2, 3)), 0, "k must be at least 1, got 0"),
    (np.eye(3), np.zeros(3), 1, r"targets must be a \(B, d\) matrix"),
])
def test_omp_errors(atoms, y, k, words):
    with pytest.raises(AlignmentError, match=words):
        omp(atoms, y, k)

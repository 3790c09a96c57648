"""Initialization methods: moments, subword, knn/omp, dispatch and errors."""

from __future__ import annotations

import numpy as np
import pytest

from embsurgeon.align.forms import Surface
from embsurgeon.align.init import (
    InitContext,
    InitMethod,
    initialize,
    sample_mvn,
)
from embsurgeon.errors import AlignmentError
from embsurgeon.table import EmbeddingTable


def _table(vectors: np.ndarray, prefix: str = "t") -> EmbeddingTable:
    return EmbeddingTable([f"{prefix}{i}" for i in range(len(vectors))],
                          np.asarray(vectors, dtype=np.float32))


def _targets(n: int) -> tuple[list[str], list[Surface]]:
    tokens = [f"new{i}" for i in range(n)]
    return tokens, [Surface(t, True) for t in tokens]


def _correlated(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((dim, dim)) / np.sqrt(dim)
    return rng.standard_normal((n, dim)) @ mix + rng.standard_normal(dim)


# -- moments -----------------------------------------------------------------------------------

def test_zero_fills_zeros():
    r = initialize(InitMethod.ZERO, *_targets(3), InitContext(_table(np.ones((4, 5)))))
    assert r.vectors.shape == (3, 5) and r.vectors.dtype == np.float32
    assert not r.vectors.any() and r.filled.all() and r.n_filled == 3


def test_mean_uses_reference_rows_when_given():
    src = _table(np.array([[0.0, 0.0], [2.0, 4.0], [4.0, 8.0]]))
    everything = initialize("mean", *_targets(2), InitContext(src))
    np.testing.assert_allclose(everything.vectors, [[2.0, 4.0]] * 2)
    copied = initialize("mean", *_targets(1), InitContext(src, reference_rows=np.array([1, 2])))
    np.testing.assert_allclose(copied.vectors, [[3.0, 6.0]])


def test_normal_matches_per_dimension_moments():
    x = _correlated(3000, 6)
    r = initialize("normal", *_targets(20000), InitContext(_table(x), seed=3))
    np.testing.assert_allclose(r.vectors.mean(0), x.mean(0), atol=0.05)
    np.testing.assert_allclose(r.vectors.std(0), x.std(0, ddof=1), rtol=0.03)
    off = np.corrcoef(r.vectors.T) - np.eye(6)
    assert np.abs(off).max() < 0.05  # per-dimension: no correlations


def test_mvn_has_the_source_covariance():
    x = _correlated(4000, 8)
    r = initialize("mvn", *_targets(40000), InitContext(_table(x), seed=7))
    np.testing.assert_allclose(r.vectors.mean(0), x.mean(0), atol=0.03)
    cov_src, cov_new = np.cov(x.T), np.cov(r.vectors.T.astype(np.float64))
    assert np.abs(cov_new - cov_src).max() < 0.05 * np.abs(cov_src).max()


@pytest.mark.parametrize("via", ["rows", "covariance"])
def test_both_mvn_routes_have_the_source_covariance(via):
    x = _correlated(300, 6, seed=5)
    draws = sample_mvn(x.astype(np.float32), 30000, np.random.default_rng(1), via=via)
    np.testing.assert_allclose(draws.mean(0), x.mean(0), atol=0.03)
    cov = np.cov(x.T)
    assert np.abs(np.cov(draws.T) - cov).max() < 0.05 * np.abs(cov).max()


def test_mvn_picks_the_cheaper_route_and_is_deterministic(monkeypatch):
    import embsurgeon.align.init as init

    x = _correlated(400, 64, seed=6)
    few = sample_mvn(x, 3, np.random.default_rng(2))  # 3 draws: by rows
    np.testing.assert_array_equal(few, sample_mvn(x, 3, np.random.default_rng(2), via="rows"))
    many = sample_mvn(x, 500, np.random.default_rng(2))  # 500 draws: by covariance
    np.testing.assert_array_equal(
        many, sample_mvn(x, 500, np.random.default_rng(2), via="covariance"))
    monkeypatch.setattr(init, "_DRAW_ELEMENTS", 7)  # chunking changes draws but not the law
    assert sample_mvn(x, 3, np.random.default_rng(2)).shape == (3, 64)
    with pytest.raises(AlignmentError, match="via must be auto, rows or covariance, not 'svd'"):
        sample_mvn(x, 3, np.random.default_rng(2), via="svd")


@pytest.mark.parametrize("via", ["rows", "covariance"])
def test_mvn_with_fewer_rows_than_dimensions_stays_in_their_span(via):
    x = _correlated(5, 32, seed=2)  # C < D: covariance of rank 4
    draws = sample_mvn(x, 20000, np.random.default_rng(0), via=via)
    centred = x - x.mean(0)
    # Every draw minus the mean lies in the span of the centred rows...
    coef, *_ = np.linalg.lstsq(centred.T, (draws - x.mean(0)).T, rcond=None)
    np.testing.assert_allclose(centred.T @ coef, (draws - x.mean(0)).T, atol=1e-8)
    # ...and the draws have the (singular) sample covariance.
    np.testing.assert_allclose(np.cov(draws.T), np.cov(x.T), atol=0.06 * np.abs(np.cov(x.T)).max())


def test_mvn_survives_a_rank_deficient_covariance_with_many_rows():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2000, 3)) @ rng.standard_normal((3, 10))  # rank 3 in 10-D, C > D
    draws = sample_mvn(x.astype(np.float32), 1000, rng)
    assert np.isfinite(draws).all()
    assert np.linalg.matrix_rank(draws - draws.mean(0), tol=1e-6) == 3


@pytest.mark.parametrize("method", ["normal", "mvn"])
def test_random_methods_are_deterministic_for_a_seed(method):
    src = _table(_correlated(50, 4))
    first = initialize(method, *_targets(5), InitContext(src, seed=11)).vectors
    again = initialize(method, *_targets(5), InitContext(src, seed=11)).vectors
    other = initialize(method, *_targets(5), InitContext(src, seed=12)).vectors
    assert (first == again).all() and not (first == other).all()


def test_single_reference_row_gives_its_copy():
    src = _table(np.array([[1.0, 2.0], [5.0, 5.0]]))
    r = initialize("mvn", *_targets(2), InitContext(src, reference_rows=np.array([0])))
    np.testing.assert_allclose(r.vectors, [[1.0, 2.0]] * 2)


# -- dispatch and errors --------------------------------------------------------------------

def test_empty_targets_give_an_empty_result():
    r = initialize("mean", [], [], InitContext(_table(np.ones((2, 3)))))
    assert r.vectors.shape == (0, 3) and r.filled.shape == (0,) and r.sources == ()


def test_unknown_method():
    with pytest.raises(AlignmentError, match="unknown init method 'fancy'; choose one of zero"):
        initialize("fancy", [], [], InitContext(_table(np.ones((1, 2)))))


def test_tokens_and_surfaces_must_agree():
    with pytest.raises(AlignmentError, match="2 target tokens but 1 surfaces"):
        initialize("zero", ["a", "b"], [Surface("a", True)], InitContext(_table(np.ones((1, 2)))))


def test_empty_source():
    empty = EmbeddingTable([], np.zeros((0, 4), dtype=np.float32))
    with pytest.raises(AlignmentError, match="--init mean: the source table has no rows"):
        initialize("mean", *_targets(1), InitContext(empty))


@pytest.mark.parametrize(("rows", "words"), [
    (np.array([], dtype=np.int64), "non-empty 1-D array"),
    (np.array([0, 9]), "reference row 9 is out of range for a source of 2 rows"),
])
def test_bad_reference_rows(rows, words):
    with pytest.raises(AlignmentError, match=words):
        initialize("mean", *_targets(1), InitContext(_table(np.ones((2, 2))), reference_rows=rows))


@pytest.mark.parametrize(("field", "value", "words"), [
    ("k", 0, "k must be at least 1, got 0"),
    ("temperature", 0.0, "temperature must be positive, got 0.0"),
    ("weighting", "argmax", "unknown weighting 'argmax'; choose one of softmax, sparsemax"),
])
def test_bad_knobs(field, value, words):
    context = InitContext(_table(np.ones((2, 2))), **{field: value})
    with pytest.raises(AlignmentError, match=words):
        initialize("knn", *_targets(1), context)


# -- knn and omp --------------------------------------------------------------------------------

def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.fixture
def aux_world():
    """A source of 40 words, an aux space of dim 24 holding them plus 3 unseen words."""
    rng = np.random.default_rng(10)
    words = [f"w{i}" for i in range(40)]
    source = EmbeddingTable(words, rng.standard_normal((40, 6)).astype(np.float32))
    shared = _unit(rng.standard_normal((40, 24)))
    new = np.stack([
        _unit((shared[3] + shared[7])[None])[0],  # equally close to w3 and w7
        0.7 * shared[5] - 0.2 * shared[11] + 1.5 * shared[20],  # a known sparse combination
        shared[30] * 2.0,  # the direction of w30
    ])
    aux = EmbeddingTable([*words, "Alpha", "beta", "gamma"],
                         np.vstack([shared, new]).astype(np.float32))
    return source, aux


def test_knn_averages_the_nearest_neighbours(aux_world):
    source, aux = aux_world
    context = InitContext(source, aux=aux, k=2, temperature=0.1)
    r = initialize("knn", ["Alpha"], [Surface("Alpha", True)], context)
    assert r.filled.tolist() == [True]
    assert set(r.sources[0]) == {"w3", "w7"}
    np.testing.assert_allclose(r.weights[0], [0.5, 0.5], atol=1e-5)
    np.testing.assert_allclose(r.vectors[0], (source["w3"] + source["w7"]) / 2, atol=1e-5)


def test_knn_sparsemax_keeps_only_the_neighbours_that_stand_out(aux_world):
    source, aux = aux_world
    context = InitContext(source, aux=aux, k=10, weighting="sparsemax", temperature=0.1)
    r = initialize("knn", ["gamma"], [Surface("gamma", True)], context)
    assert r.sources[0] == ("w30",) and r.weights[0] == (1.0,)
    np.testing.assert_allclose(r.vectors[0], source["w30"], atol=1e-6)
    soft = initialize("knn", ["gamma"], [Surface("gamma", True)],
                      InitContext(source, aux=aux, k=10, temperature=0.1))
    assert len(soft.sources[0]) == 10 and soft.weights[0][0] > 0.99


def test_knn_finds_targets_by_surface_and_case_fold(aux_world):
    source, aux = aux_world
    context = InitContext(source, aux=aux, k=1)
    r = initialize("knn", ["Ġalpha", "##BETA", "zzz"],
                   [Surface("alpha", True), Surface("BETA", False), Surface("zzz", True)], context)
    assert r.filled.tolist() == [True, True, False]
    assert r.sources[2] == () and not r.vectors[2].any()
    assert r.sources[1] == ("w20",)


def test_knn_never_uses_the_target_itself():
    # A held-out token that is in aux and (through the mapping) still has a source row.
    aux = EmbeddingTable(["a", "b", "c"], np.array([[1, 0], [0.9, 0.1], [0, 1]], np.float32))
    source = EmbeddingTable(["A", "B", "C"], np.eye(3, dtype=np.float32))
    mapping = {"a": 0, "b": 1, "c": 2}
    r = initialize("knn", ["a"], [Surface("a", True)],
                   InitContext(source, aux=aux, aux_to_source=mapping, k=1))
    assert r.sources[0] == ("B",)
    lonely = initialize("knn", ["a"], [Surface("a", True)],
                        InitContext(source, aux=aux, aux_to_source={"a": 0}, k=3))
    assert lonely.filled.tolist() == [False]


def test_omp_recovers_a_known_combination_and_applies_it_to_source_rows(aux_world):
    source, aux = aux_world
    r = initialize("omp", ["beta"], [Surface("beta", True)], InitContext(source, aux=aux, k=3))
    got = dict(zip(r.sources[0], r.weights[0], strict=True))
    assert got.keys() == {"w5", "w11", "w20"}
    np.testing.assert_allclose([got["w5"], got["w11"], got["w20"]], [0.7, -0.2, 1.5], atol=1e-5)
    expected = 0.7 * source["w5"] - 0.2 * source["w11"] + 1.5 * source["w20"]
    np.testing.assert_allclose(r.vectors[0], expected, atol=1e-5)


def test_knn_and_omp_are_deterministic_and_batched_consistently(aux_world, monkeypatch):
    import embsurgeon.align.neighbours as neighbours

    source, aux = aux_world
    tokens = ["Alpha", "beta", "gamma"]
    surfaces = [Surface(t, True) for t in tokens]
    for method in ("knn", "omp"):
        whole = initialize(method, tokens, surfaces, InitContext(source, aux=aux, k=4))
        monkeypatch.setattr(neighbours, "_BLOCK_ELEMENTS", 50)  # one target per block
        split = initialize(method, tokens, surfaces, InitContext(source, aux=aux, k=4))
        monkeypatch.undo()
        np.testing.assert_allclose(whole.vectors, split.vectors, atol=1e-6)
        assert whole.sources == split.sources


@pytest.mark.parametrize("method", ["knn", "omp"])
def test_a_zero_aux_vector_builds_nothing(method):
    aux = EmbeddingTable(["a", "b", "new"], np.array([[1, 0], [0, 1], [0, 0]], np.float32))
    source = EmbeddingTable(["a", "b"], np.eye(2, dtype=np.float32))
    r = initialize(method, ["new"], [Surface("new", True)], InitContext(source, aux=aux, k=1))
    assert r.filled.tolist() == [False] and r.sources == ((),)


def test_aux_to_source_maps_aux_tokens_onto_other_source_spellings():
    aux = EmbeddingTable(["cat", "dog", "kitten"],
                         np.array([[1, 0], [0, 1], [0.95, 0.05]], np.float32))
    source = EmbeddingTable(["▁cat", "▁dog"], np.array([[2, 2], [4, 0]], np.float32))
    r = initialize("knn", ["▁kitten"], [Surface("kitten", True)],
                   InitContext(source, aux=aux, aux_to_source={"cat": 0, "dog": 1}, k=1))
    assert r.sources == (("▁cat",),)
    np.testing.assert_allclose(r.vectors, [[2, 2]])


@pytest.mark.parametrize("method", ["knn", "omp"])
def test_aux_errors(method, aux_world):
    source, aux = aux_world
    one = (["Alpha"], [Surface("Alpha", True)])
    with pytest.raises(AlignmentError, match=f"--init {method} needs an auxiliary table"):
        initialize(method, *one, InitContext(source))
    stranger = EmbeddingTable(["x", "y"], np.ones((2, 24), np.float32))
    with pytest.raises(AlignmentError, match=r"no token of the auxiliary table \(2 tokens\) has a"):
        initialize(method, *one, InitContext(source, aux=stranger))
    with pytest.raises(AlignmentError, match="aux token 'w1' maps to source row 99, out of range"):
        initialize(method, *one, InitContext(source, aux=aux, aux_to_source={"w1": 99}))
    empty = EmbeddingTable([], np.zeros((0, 3), np.float32))
    with pytest.raises(AlignmentError, match="the auxiliary table is empty"):
        initialize(method, *one, InitContext(source, aux=empty))

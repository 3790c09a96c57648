import sys

import numpy as np
import pytest
from knn_reference import assert_matches, brute_force

from embsurgeon.errors import DtypeError, MissingDependencyError
from embsurgeon.similarity.backends import Backend, get_search
from embsurgeon.similarity.knn import SimilarityError, search

pytest.importorskip("faiss")

RNG = np.random.default_rng(3)
TABLE = RNG.standard_normal((500, 24)).astype(np.float32)


@pytest.mark.parametrize("metric", ["cosine", "dot"])
def test_faiss_backend_equals_torch_backend(metric):
    faiss_search = get_search(Backend.FAISS)
    own = np.arange(100)[:, None]
    ours = search(TABLE[:100], TABLE, 10, metric=metric, exclude=own, device="cpu")
    theirs = faiss_search(TABLE[:100], TABLE, 10, metric=metric, exclude=own)
    np.testing.assert_array_equal(theirs.ids, ours.ids)
    np.testing.assert_allclose(theirs.scores, ours.scores, atol=1e-5)
    assert_matches(theirs, brute_force(TABLE[:100], TABLE, 10, metric=metric, exclude=own))


def test_faiss_backend_handles_zero_rows_small_tables_and_no_queries():
    faiss_search = get_search("faiss")
    db = TABLE[:6].copy()
    db[2] = 0
    hits = faiss_search(db, db, 50, exclude=np.arange(6)[:, None])
    assert hits.ids.shape == (6, 5) and np.isfinite(hits.scores).all()
    np.testing.assert_array_equal(hits.scores[2], 0.0)
    assert faiss_search(db[:0], db, 3).ids.shape == (0, 3)


@pytest.mark.parametrize("metric", ["cosine", "dot"])
def test_faiss_backend_scores_nonfinite_rows_zero_like_torch(metric):
    # float64, Fortran-ordered input: the backend makes its own float32 C-ordered copy
    db = np.asfortranarray(TABLE[:8].astype(np.float64))
    db[1, 3], db[4, 0], db[6] = np.nan, np.inf, 0.0
    faiss_search = get_search("faiss")
    theirs = faiss_search(db, db, 7, metric=metric, exclude=np.arange(8)[:, None])
    ours = search(db, db, 7, metric=metric, exclude=np.arange(8)[:, None], device="cpu")
    assert np.isfinite(theirs.scores).all()
    for row in (1, 4, 6):
        np.testing.assert_array_equal(theirs.scores[row], 0.0)
    np.testing.assert_allclose(theirs.scores, ours.scores, atol=1e-5)
    assert np.isnan(db[1, 3])  # the caller's array is left alone


def test_faiss_backend_refuses_what_it_cannot_do():
    faiss_search = get_search("faiss")
    with pytest.raises(SimilarityError, match="use --backend torch for CUDA"):
        faiss_search(TABLE, TABLE, 3, device="cuda")
    with pytest.raises(DtypeError, match="computes in float32, not float16"):
        faiss_search(TABLE, TABLE, 3, precision="float16")
    with pytest.raises(SimilarityError, match="cannot apply column penalties"):
        faiss_search(TABLE, TABLE, 3, column_penalty=np.zeros(len(TABLE)))


def test_missing_faiss_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # makes `import faiss` fail
    with pytest.raises(MissingDependencyError, match=r"pip install 'embsurgeon\[faiss\]'"):
        get_search("faiss")(TABLE, TABLE, 3)

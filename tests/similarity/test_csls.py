import numpy as np
import pytest
from knn_reference import unit

from embsurgeon.errors import SimilarityError
from embsurgeon.similarity.csls import cross_neighbors
from embsurgeon.table import EmbeddingTable

RNG = np.random.default_rng(5)
SOURCE = EmbeddingTable([f"s{i}" for i in range(40)],
                        RNG.standard_normal((40, 6)).astype(np.float32))
TARGET = EmbeddingTable([f"t{i}" for i in range(55)],
                        RNG.standard_normal((55, 6)).astype(np.float32))


def csls_direct(src, tgt, k):
    cos = unit(src) @ unit(tgt).T  # (S, T)
    r_t = np.sort(cos, axis=1)[:, ::-1][:, :k].mean(axis=1)  # per source row
    r_s = np.sort(cos, axis=0)[::-1, :][:k, :].mean(axis=0)  # per target row
    return 2 * cos - r_t[:, None] - r_s[None, :]


@pytest.mark.parametrize("csls_k", [1, 5, 10])
def test_csls_equals_the_direct_formula(csls_k):
    got = cross_neighbors(SOURCE, TARGET, None, 7, csls_k=csls_k, device="cpu",
                          memory_budget=60_000)
    full = csls_direct(SOURCE.vectors, TARGET.vectors, csls_k)
    ids = np.argsort(-full, axis=1, kind="stable")[:, :7]
    np.testing.assert_array_equal(got.ids, ids)
    np.testing.assert_allclose(got.scores, np.take_along_axis(full, ids, 1), atol=1e-5)
    assert got.tokens[0] == tuple(f"t{i}" for i in ids[0])


def test_csls_reduces_hubness():
    # One target row close to everything is every query's cosine neighbour, not CSLS's.
    hub = np.vstack([np.ones((1, 6), np.float32), TARGET.vectors])
    target = EmbeddingTable(["hub", *TARGET.tokens], hub)
    cosine = cross_neighbors(SOURCE, target, None, 1, csls=False, device="cpu")
    csls = cross_neighbors(SOURCE, target, None, 1, device="cpu")
    assert (cosine.ids[:, 0] == 0).sum() > (csls.ids[:, 0] == 0).sum()


def test_plain_cosine_across_tables():
    got = cross_neighbors(SOURCE, TARGET, ["s3"], 4, csls=False, device="cpu")
    cos = unit(SOURCE.vectors[[3]]) @ unit(TARGET.vectors).T
    np.testing.assert_array_equal(got.ids[0], np.argsort(-cos[0], kind="stable")[:4])


def test_dimensions_must_agree():
    other = EmbeddingTable(["a"], np.zeros((1, 3), np.float32))
    with pytest.raises(SimilarityError, match="spaces of 6 and 3 dimensions"):
        cross_neighbors(SOURCE, other, None, 2, device="cpu")

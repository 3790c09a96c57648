import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from embsurgeon.similarity.correlation import average_ranks, pearson, spearman, spearman_rows

stats = pytest.importorskip("scipy.stats")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(-3, 3), st.floats(-5, 5, allow_nan=False)),
                min_size=3, max_size=40))
def test_spearman_equals_scipy_including_ties(pairs):
    a, b = (np.array(x, dtype=np.float64) for x in zip(*pairs, strict=True))
    ours = spearman(a, b)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        assert np.isnan(ours)
    else:
        assert ours == pytest.approx(stats.spearmanr(a, b).statistic, abs=1e-12)


def test_ranks_rows_and_pearson():
    x = np.array([[1.0, 1.0, 2.0, 0.5], [4.0, 3.0, 2.0, 1.0]])
    np.testing.assert_array_equal(average_ranks(x), [[2.5, 2.5, 4, 1], [4, 3, 2, 1]])
    np.testing.assert_allclose(spearman_rows(x, -x), [-1.0, -1.0])
    assert pearson([1, 2, 3], [2, 4, 7]) == pytest.approx(stats.pearsonr([1, 2, 3],
                                                                         [2, 4, 7]).statistic)
    assert np.isnan(spearman([1], [2]))

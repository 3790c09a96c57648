import numpy as np

from embsurgeon import linalg, stats
from embsurgeon.table import EmbeddingTable


def test_stats_row_norms_is_the_shared_kernel():
    assert stats.row_norms is linalg.row_norms


def test_summary_counts_zero_and_nonfinite_rows():
    vectors = np.array([[3, 4], [0, 0], [np.inf, 0], [np.nan, 1]], dtype=np.float32)
    summary = stats.summarize(EmbeddingTable(["a", "b", "c", "d"], vectors), sample=2)
    assert (summary.zero_rows, summary.nonfinite_rows) == (1, 2)
    assert summary.norms is not None and (summary.norms.min, summary.norms.max) == (0.0, 5.0)
    assert summary.sample == ["a", "b"]


def test_summary_of_an_all_nonfinite_table_has_no_norms():
    summary = stats.summarize(EmbeddingTable(["a"], np.full((1, 2), np.nan, np.float32)))
    assert summary.norms is None and summary.nonfinite_rows == 1

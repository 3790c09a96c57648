"""Similarity: exact nearest neighbours (torch on CPU/CUDA, optional faiss) and checks.

>>> from embsurgeon.similarity import nearest_neighbors
>>> neighbors = nearest_neighbors(table, ["king"], k=10)            # doctest: +SKIP
"""

from embsurgeon.similarity.backends import Backend
from embsurgeon.similarity.check import CheckReport, check_tables
from embsurgeon.similarity.csls import cross_neighbors
from embsurgeon.similarity.evaluate import (
    evaluate_analogies,
    evaluate_word_pairs,
    read_analogies,
    read_word_pairs,
)
from embsurgeon.similarity.knn import Device, Metric, Precision, SimilarityError, search
from embsurgeon.similarity.neighbors import Neighbors, nearest_neighbors

__all__ = [
    "Backend",
    "CheckReport",
    "Device",
    "Metric",
    "Neighbors",
    "Precision",
    "SimilarityError",
    "check_tables",
    "cross_neighbors",
    "evaluate_analogies",
    "evaluate_word_pairs",
    "nearest_neighbors",
    "read_analogies",
    "read_word_pairs",
    "search",
]

"""The search backends, as a registry: a ``str`` Enum naming each and the function behind it,
imported only when used (faiss is an optional extra).

>>> get_search(Backend.TORCH).__name__
'search'
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from enum import Enum
from typing import Any, Protocol

import numpy as np

from embsurgeon.similarity.knn import Hits


class Backend(str, Enum):
    """Search backends; values are the ``--backend`` spellings."""

    TORCH = "torch"  # tiled PyTorch matmul + top-k, CPU or CUDA; the default
    FAISS = "faiss"  # faiss-cpu's exact IndexFlatIP; needs the 'faiss' extra


class SearchFunction(Protocol):
    def __call__(self, queries: np.ndarray, database: np.ndarray, k: int = ...,
                 **options: Any) -> Hits: ...


DEFAULT_BACKEND = Backend.TORCH

_REGISTRY: Mapping[Backend, str] = {
    Backend.TORCH: "embsurgeon.similarity.knn:search",
    Backend.FAISS: "embsurgeon.similarity.faiss_knn:search",
}


def get_search(backend: Backend | str) -> SearchFunction:
    """The search function of ``backend`` (its module is imported now, not before)."""
    module, _, name = _REGISTRY[Backend(backend)].partition(":")
    search: SearchFunction = getattr(importlib.import_module(module), name)
    return search

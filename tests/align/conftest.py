"""Tokenizers of every family, trained offline once per session (fixtures/trained_tokenizers.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """name -> tokenizer file: wordpiece, byte-bpe, metaspace (tokenizer.json), spm (.model),
    words (a word list)."""
    here = Path(__file__).resolve().parents[2] / "fixtures"
    sys.path.insert(0, str(here))
    import trained_tokenizers

    return trained_tokenizers.build_all(tmp_path_factory.mktemp("tokenizers"))

"""Formats only gensim can read: fastText ``.bin`` models and gensim's pickled ``.kv``/``.model``.

fastText ``.bin`` keeps the subword n-gram table, so words it never saw still get a vector;
:func:`fasttext_compose` exposes that for out-of-vocabulary initialisation. The loaded model is
cached per file (path, size and modification time), so composing many batches of words loads
it once.

gensim's own ``.kv``/``.model`` files are pickles, and unpickling can run arbitrary code: they are
read only with ``ReadOptions(allow_pickle=True)`` (``--allow-pickle``).
"""

from __future__ import annotations

import pickle
import struct
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from embsurgeon.errors import FormatError, VocabularyError, require
from embsurgeon.io.compression import open_binary
from embsurgeon.io.formats import FormatName, ReadOptions
from embsurgeon.io.text import (
    check_encoding,
    first_bytes_error,
    looks_binary,
    looks_old_fasttext,
)
from embsurgeon.table import SOURCE_DTYPE, EmbeddingTable

_FASTTEXT_MAGIC = (793712314).to_bytes(4, "little")
_FASTTEXT_VERSIONS = (11, 12)
# What gensim raises on a damaged or unsupported fastText file.
_FASTTEXT_ERRORS = (struct.error, ValueError, EOFError, OSError, UnicodeDecodeError, IndexError,
                    MemoryError, NotImplementedError, AssertionError)


def sniff_fasttext_bin(path: Path, head: bytes) -> bool:
    """fastText's magic number and a known version, or the older header without them."""
    if head[:4] == _FASTTEXT_MAGIC:
        return int.from_bytes(head[4:8], "little") in _FASTTEXT_VERSIONS
    return looks_old_fasttext(head)


def _gensim(purpose: str) -> Any:
    return require("gensim", extra="gensim", purpose=purpose)


@lru_cache(maxsize=4)
def _load_fasttext(path: str, size: int, mtime_ns: int, encoding: str) -> Any:
    _gensim("reading fastText .bin files")
    from gensim.models.fasttext import load_facebook_vectors

    try:
        return load_facebook_vectors(path, encoding=encoding)
    except NotImplementedError as exc:
        raise FormatError(f"{path}: {exc}; only unsupervised (word-vector) models can be read"
                          ) from exc
    except _FASTTEXT_ERRORS as exc:
        raise FormatError(
            f"{path}: not a readable fastText .bin model ({type(exc).__name__}: {exc}); the file "
            "is truncated, damaged or another format"
        ) from exc


def load_fasttext_vectors(path: str | Path, encoding: str = "utf-8") -> Any:
    """gensim's ``FastTextKeyedVectors`` for a fastText ``.bin`` (cached per file version).

    >>> kv = load_fasttext_vectors("cc.en.300.bin")                 # doctest: +SKIP
    >>> kv["unseenword"].shape                                       # doctest: +SKIP
    (300,)
    """
    path = Path(path)
    if not path.is_file():
        raise FormatError(f"{path}: no such file")
    with open_binary(path) as handle:
        head = handle.read(4096)
    if not head:
        raise FormatError(f"{path}: the file is empty")
    if not sniff_fasttext_bin(path, head):
        other = first_bytes_error(path, head, FormatName.FASTTEXT_BIN.value)
        if other is None and not looks_binary(head):
            other = FormatError(f"{path}: this is text, not a fastText .bin model; pass --from "
                                "word2vec (or glove)")
        raise other or FormatError(
            f"{path}: no fastText header (magic number); this is not a fastText .bin model")
    check_encoding(encoding)
    stat = path.stat()
    return _load_fasttext(str(path.resolve()), stat.st_size, stat.st_mtime_ns, encoding)


def fasttext_compose(path: str | Path, words: Sequence[str], encoding: str = "utf-8"
                     ) -> np.ndarray:
    """Vectors for ``words`` from a fastText model, composed from character n-grams for words
    outside its vocabulary (in-vocabulary words get their trained vector). Returns (N, D) float32.

    >>> fasttext_compose("cc.en.300.bin", ["embsurgeon", "the"]).shape   # doctest: +SKIP
    (2, 300)
    """
    kv = load_fasttext_vectors(path, encoding)
    dim = int(kv.vector_size)
    out = np.empty((len(words), dim), dtype=np.float32)  # (N, D)
    for i, word in enumerate(words):
        if word not in kv.key_to_index and not _has_ngrams(kv, word):
            raise VocabularyError(
                f"{path}: {word!r} is not in the vocabulary and has no character n-grams in "
                f"the model (bucket {kv.bucket}, n-grams {kv.min_n}-{kv.max_n}); drop it or "
                "pick another initialisation"
            )
        out[i] = kv.get_vector(word)
    return out


def _has_ngrams(kv: Any, word: str) -> bool:
    if kv.bucket == 0:
        return False
    from gensim.models.fasttext import ft_ngram_hashes

    return len(ft_ngram_hashes(word, kv.min_n, kv.max_n, kv.bucket)) > 0


def read_fasttext_bin(path: Path, options: ReadOptions) -> EmbeddingTable:
    """The vocabulary of a fastText ``.bin`` model with its full word vectors (in file order).

    >>> table = read_fasttext_bin(Path("cc.en.300.bin"), ReadOptions())   # doctest: +SKIP
    """
    kv = load_fasttext_vectors(path, options.encoding)
    return _table(path, kv, {"subwords": f"n-grams {kv.min_n}-{kv.max_n}, bucket {kv.bucket}"},
                  options)


def read_gensim(path: Path, options: ReadOptions) -> EmbeddingTable:
    """gensim's pickled ``KeyedVectors`` (``.kv``) or a whole model (``.model``: its ``.wv``).

    Refused unless ``options.allow_pickle``: loading a pickle can run code.

    >>> read_gensim(Path("vectors.kv"), ReadOptions(allow_pickle=True))   # doctest: +SKIP
    """
    if not options.allow_pickle:
        raise FormatError(
            f"{path}: gensim .kv/.model files are pickles, and loading one can run arbitrary "
            "code; pass --allow-pickle (allow_pickle=True) only for files you trust, or export "
            "them with gensim's save_word2vec_format first"
        )
    if not path.is_file():
        raise FormatError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise FormatError(f"{path}: the file is empty")
    gensim = _gensim("reading gensim .kv/.model files")
    from gensim.utils import SaveLoad

    try:
        obj = SaveLoad.load(str(path))
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, ValueError,
            OSError, IndexError, TypeError) as exc:
        raise FormatError(
            f"{path}: not a loadable gensim pickle ({type(exc).__name__}: {exc})"
        ) from exc
    kv = getattr(obj, "wv", obj)
    if not isinstance(kv, gensim.models.KeyedVectors):
        raise FormatError(f"{path}: holds a {type(obj).__name__}, not gensim KeyedVectors or a "
                          "model with .wv")
    return _table(path, kv, {"gensim_class": type(kv).__name__}, options)


def _table(path: Path, kv: Any, extra: dict[str, str], options: ReadOptions) -> EmbeddingTable:
    tokens = [str(t) for t in kv.index_to_key]
    vectors = np.asarray(kv.vectors)
    if vectors.ndim != 2 or vectors.shape[0] != len(tokens):
        raise FormatError(f"{path}: {len(tokens)} keys but vectors of shape {vectors.shape}")
    source = str(vectors.dtype)
    vectors = vectors.astype(np.float32, copy=True)  # never share the cached model's memory
    if not options.allow_nonfinite and not np.isfinite(vectors).all():
        row = int(np.flatnonzero(~np.isfinite(vectors).all(axis=1))[0])
        raise FormatError(
            f"{path}: NaN or infinite value in the vector of {tokens[row]!r} (row {row}); pass "
            "--allow-nonfinite to keep such rows"
        )
    meta = {SOURCE_DTYPE: source if source in ("float16", "float32", "float64") else "float32",
            "duplicates": "0", **extra}
    return EmbeddingTable(tokens, vectors, meta)


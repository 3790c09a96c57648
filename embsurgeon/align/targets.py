"""Target vocabularies: what a table is aligned onto, in id order.

A target is a tokenizer (directory, ``tokenizer.json``, ``vocab.txt``, SentencePiece ``.model``),
a model directory, a plain word list, a ``token count`` frequency file (all read by
:func:`embsurgeon.vocab.load_vocabulary`), or another embedding table, whose tokens become the
target in its row order. Source tables that came without a tokenizer get a guessed
:class:`Vocabulary` (see :func:`embsurgeon.align.forms.guess_vocabulary`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from embsurgeon.align.forms import guess_vocabulary
from embsurgeon.errors import AlignmentError, FormatError, VocabularyError
from embsurgeon.io.formats import ReadOptions, plain_suffix, read_head, read_table
from embsurgeon.table import EmbeddingTable
from embsurgeon.vocab import Vocabulary, find_tokenizer_file, load_vocabulary

#: Metadata key where the Hugging Face reader records the tokenizer file of a model directory.
VOCABULARY_KEY = "vocabulary"

# Suffixes that can only be embedding tables, never vocabularies.
_TABLE_SUFFIXES = (".safetensors", ".pt", ".pth", ".vec", ".bin", ".kv", ".npy")

Target = Vocabulary | EmbeddingTable | Sequence[str] | str | Path


def load_target(target: Target, *, encoding: str | None = None,
                options: ReadOptions | None = None) -> Vocabulary:
    """Turn anything that names a vocabulary into a :class:`Vocabulary`, keeping id order.

    ``options`` are the reader options for a target that is an embedding table (encoding,
    ``decode_errors``, ``allow_pickle``...; which rows to keep is never taken from them);
    ``encoding`` (default: ``options.encoding``, else UTF-8) is that of a word list.

    >>> load_target(["the", "cat"]).tokens
    ('the', 'cat')
    >>> load_target("bert-base-uncased/").family                      # doctest: +SKIP
    <TokenizerFamily.WORDPIECE: 'wordpiece'>
    """
    if isinstance(target, Vocabulary):
        return target
    if isinstance(target, EmbeddingTable):
        return table_vocabulary(target)
    if isinstance(target, (str, Path)):
        options = _table_options(options or ReadOptions(
            encoding=encoding if encoding is not None else "utf-8"))
        return _load_path(Path(target), encoding or options.encoding, options)
    tokens = list(target)
    if not tokens:
        raise AlignmentError("the target vocabulary is empty; give at least one token")
    try:
        return guess_vocabulary(tokens, source="target list")
    except VocabularyError as exc:
        raise AlignmentError(str(exc)) from exc  # names "target list" and both ids


def table_vocabulary(table: EmbeddingTable) -> Vocabulary:
    """The vocabulary of a table: the tokenizer its reader recorded, else a guess.

    The Hugging Face reader records the model directory (``source``) and the tokenizer file's
    name (``vocabulary``); that tokenizer knows the family and normalizer for certain.
    """
    if len(table) == 0:
        raise AlignmentError(f"{table.metadata.get('source', 'table')}: the table has no rows")
    directory = Path(table.metadata.get("source", ""))
    recorded = table.metadata.get(VOCABULARY_KEY, "")
    if recorded and directory.is_dir() and (directory / recorded).is_file():
        return source_vocabulary(table, directory / recorded)
    return guess_vocabulary(table.tokens, source=table.metadata.get("source", "table"))


def source_vocabulary(table: EmbeddingTable,
                      tokenizer: Vocabulary | str | Path | None = None) -> Vocabulary:
    """The source table's vocabulary: ``tokenizer`` (loaded, or a file or directory) if given.

    A checkpoint's tokenizer may list fewer tokens than the matrix has rows (padding rows), or
    more (added tokens without rows); the vocabulary is cut or extended to the table's rows so
    row ``i`` stays token ``i``.
    """
    if tokenizer is None:
        return table_vocabulary(table)
    vocab = tokenizer if isinstance(tokenizer, Vocabulary) else load_vocabulary(tokenizer)
    if vocab.tokens == tuple(table.tokens):
        return vocab
    # The table's own token names are authoritative; keep what the tokenizer says about them.
    return replace(vocab, tokens=tuple(table.tokens), counts=None,
                   special={r: t for r, t in vocab.special.items() if t in table.index})


def _table_options(options: ReadOptions) -> ReadOptions:
    """Reader options for a target table: every row, and the file's own tensor."""
    return replace(options, keep=None, keep_if=None, limit=None, tensor=None)


def _load_path(path: Path, encoding: str, options: ReadOptions) -> Vocabulary:
    if not path.exists():
        raise AlignmentError(f"{path}: target not found; pass a tokenizer, model directory, "
                             "word list, frequency file or embedding table")
    if path.is_dir() and find_tokenizer_file(path) is None:
        return table_vocabulary(read_table(path, options=options))
    if path.is_file() and (_looks_like_table(path)):
        return table_vocabulary(read_table(path, options=options))
    try:
        return load_vocabulary(path, encoding=encoding)
    except (VocabularyError, FormatError) as exc:
        # An empty target is an alignment problem the user can name; other errors stay as is.
        if "empty" in str(exc) or "no tokens" in str(exc):
            raise AlignmentError(f"{path}: the target vocabulary is empty") from exc
        raise


def _looks_like_table(path: Path) -> bool:
    """An embedding file rather than a vocabulary: by suffix, else a first line of numbers."""
    if plain_suffix(path) in _TABLE_SUFFIXES:
        return True
    if path.name in ("vocab.txt", "vocab.json", "tokenizer.json") or path.suffix == ".model":
        return False
    try:
        head = read_head(path, 65536).decode("utf-8", errors="replace")
    except OSError:
        return False
    lines = head.split("\n")
    # `token v1 ... vD` (GloVe) or a `rows dim` header (word2vec): at least two numbers after
    # the first field rules out word lists and `token count` frequency files.
    for line in lines[:2]:
        fields = line.split()
        if len(fields) >= 3 and all(_is_float(f) for f in fields[1:]):
            return True
    return False


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True

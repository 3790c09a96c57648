"""``subword`` initialization: re-tokenize a target token with the source tokenizer.

A target token the source lacks is spelled out in source pieces (``Ġunbelievable`` becomes
``Ġun`` ``believ`` ``able`` under a byte-level BPE source, ``un`` ``##bel`` ... under WordPiece)
and gets the average of their rows, or an average weighted by piece length
(``subword-weighted``). Word-initial surfaces get the source's word-start form, continuations
its continuation form. Word-level sources compose a word from known words (a Chinese word from
its characters, ``sunflower`` from ``sun`` + ``flower``) or, given a fastText ``.bin``, from its
character n-grams.

Only pieces that have a row in the source table count: a piece without one (a row held out by
self-validation, or trimmed with ``--limit``) is split further into pieces that do have one.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np

from embsurgeon.align.forms import Surface, byte_to_unicode
from embsurgeon.align.init import InitContext, InitResult
from embsurgeon.errors import AlignmentError, require
from embsurgeon.table import EmbeddingTable
from embsurgeon.vocab import SpecialRole, TokenizerFamily, Vocabulary

#: Longest word BERT's WordPiece will split; longer words become [UNK].
WORDPIECE_MAX_CHARS = 100
#: Word-level composition: the shortest known word a piece may be, outside CJK scripts, so
#: "xyz" is not composed from the letters "x" "y" "z".
MIN_WORD_PIECE = 2

_Form = Literal["NFC", "NFD", "NFKC", "NFKD"]


@dataclass(frozen=True)
class _Known:
    """The source tokens that have a row, and the longest of them (bounds every search)."""

    tokens: Collection[str]
    longest: int

    @classmethod
    def of(cls, tokens: Collection[str]) -> _Known:
        return cls(tokens, max(map(len, tokens), default=0))

    def __contains__(self, token: str) -> bool:
        return token in self.tokens


@dataclass(frozen=True)
class _Piece:
    token: str  # a source token
    length: int  # its surface length: characters (bytes for byte-level BPE), markers excluded


def subword_init(tokens: Sequence[str], surfaces: Sequence[Surface], context: InitContext, *,
                 length_weighted: bool = False) -> InitResult:
    """Average (or length-weighted average) of the source rows of each target's pieces."""
    if context.fasttext_path is not None:
        return _fasttext_init(tokens, surfaces, context.fasttext_path, context.source.dim)
    source = context.source
    available = source.index
    pieces_of = _piece_finder(context.source_vocab, available)
    unk = _unknown_tokens(context.source_vocab)
    flat_rows: list[int] = []
    flat_weights: list[float] = []
    owners: list[int] = []
    names: list[tuple[str, ...]] = [()] * len(tokens)
    values: list[tuple[float, ...]] = [()] * len(tokens)
    found = [[p for p in pieces_of(surface) if p.token not in unk and p.token in available]
             for surface in surfaces]
    # Rows with NaN or inf (read with --allow-nonfinite) would make every average NaN.
    used = np.unique(np.array([available[p.token] for ps in found for p in ps], dtype=np.int64))
    bad = set(used[~np.isfinite(source.vectors[used]).all(axis=1)].tolist()) if used.size else set()
    for position, pieces in enumerate(found):
        if bad:
            pieces = [p for p in pieces if available[p.token] not in bad]
        if length_weighted:
            pieces = [p for p in pieces if p.length > 0]
            total = float(sum(p.length for p in pieces))
            weights = [p.length / total for p in pieces]
        else:
            weights = [1.0 / len(pieces)] * len(pieces) if pieces else []
        if not pieces:
            continue
        names[position] = tuple(p.token for p in pieces)
        values[position] = tuple(weights)
        flat_rows.extend(available[p.token] for p in pieces)
        flat_weights.extend(weights)
        owners.extend([position] * len(pieces))
    vectors = weighted_rows(source.vectors, len(tokens), np.array(owners, dtype=np.int64),
                            np.array(flat_rows, dtype=np.int64),
                            np.array(flat_weights, dtype=np.float32))
    filled = np.array([bool(n) for n in names], dtype=bool)
    return InitResult(vectors, filled, tuple(names), tuple(values))


_CHUNK_ELEMENTS = 1 << 24


def weighted_rows(matrix: np.ndarray, m: int, owners: np.ndarray, rows: np.ndarray,
                  weights: np.ndarray) -> np.ndarray:
    """``out[i] = sum of weights[j] * matrix[rows[j]]`` over ``j`` with ``owners[j] == i``.

    ``owners`` must be non-decreasing. Runs as gathers plus ``np.add.reduceat`` in chunks, so
    tens of thousands of targets cost a few vectorised passes, not a Python loop per target.

    >>> import numpy as np
    >>> weighted_rows(np.eye(2), 2, np.array([1, 1]), np.array([0, 1]), np.array([0.5, 0.5]))
    array([[0. , 0. ],
           [0.5, 0.5]], dtype=float32)
    """
    dim = matrix.shape[1]
    out = np.zeros((m, dim), dtype=np.float32)
    if len(rows) == 0:
        return out
    step = max(1, _CHUNK_ELEMENTS // max(1, dim))
    start = 0
    while start < len(rows):
        stop = min(len(rows), start + step)
        # Never split one target's pieces across chunks.
        while stop < len(rows) and owners[stop] == owners[stop - 1]:
            stop += 1
        part = matrix[rows[start:stop]].astype(np.float32) * weights[start:stop, None]  # (P, D)
        own = owners[start:stop]
        firsts = np.flatnonzero(np.r_[True, own[1:] != own[:-1]])
        out[own[firsts]] = np.add.reduceat(part, firsts, axis=0)
        start = stop
    return out


def _unknown_tokens(vocab: Vocabulary | None) -> frozenset[str]:
    if vocab is None:
        return frozenset({"[UNK]", "<unk>"})
    unk = vocab.special.get(SpecialRole.UNK)
    return frozenset({unk} if unk else ())


# -- choosing a segmenter -----------------------------------------------------------------

def _piece_finder(vocab: Vocabulary | None,
                  tokens: Collection[str]) -> Callable[[Surface], list[_Piece]]:
    available = _Known.of(tokens)
    if vocab is None or vocab.family is TokenizerFamily.WORD:
        return lambda surface: _word_pieces(surface, available)
    if vocab.family is TokenizerFamily.WORDPIECE:
        prefix = vocab.continuation_prefix or "##"
        return lambda surface: _wordpiece(surface, vocab, available, prefix)
    gpt2_vocab = None if vocab.tokenizer_file else _gpt2_files(vocab.source)
    if vocab.tokenizer_file is None and gpt2_vocab is None:
        raise AlignmentError(
            f"--init subword: the {vocab.family.value} source vocabulary {vocab.source!r} has no "
            "tokenizer file; pass the tokenizer.json, SentencePiece .model, or a vocab.json "
            "with merges.txt beside it as the source vocabulary"
        )
    model = (_load_model(vocab.tokenizer_file) if vocab.tokenizer_file
             else _load_gpt2(str(gpt2_vocab)))
    byte_level = vocab.family is TokenizerFamily.BYTE_BPE
    marker = "Ġ" if byte_level else "▁"
    normalize = _normalizer(vocab)
    byte_encoder = byte_to_unicode() if byte_level else None

    def pieces(surface: Surface) -> list[_Piece]:
        text = normalize(surface.text)
        if not text:
            return []
        if byte_encoder is not None:
            raw = (" " if surface.word_initial else "") + text
            spelled = "".join(byte_encoder[b] for b in raw.encode("utf-8"))
        else:
            spelled = ("▁" if surface.word_initial else "") + text.replace(" ", "▁")
        out: list[_Piece] = []
        for piece in (t.value for t in model.tokenize(spelled)):
            split = [piece] if piece in available else _greedy(piece, available)
            out.extend(_Piece(p, _marked_length(p, marker, byte_encoder)) for p in split)
        return out

    return pieces


def _marked_length(piece: str, marker: str, byte_encoder: dict[int, str] | None) -> int:
    body = piece.replace(marker, "") if byte_encoder is None else piece.removeprefix(marker)
    if byte_encoder is None and body.startswith("<0x") and body.endswith(">"):
        return 1  # SentencePiece byte fallback: one byte
    return len(body)


def _gpt2_files(source: str) -> str | None:
    """GPT-2 style ``vocab.json`` with ``merges.txt`` beside it (a BPE without tokenizer.json)."""
    path = Path(source)
    if path.name.endswith(".json") and (path.parent / "merges.txt").is_file():
        return str(path)
    return None


@lru_cache(maxsize=4)
def _load_gpt2(vocab_json: str) -> Any:
    tokenizers = require("tokenizers", extra="align", purpose="--init subword")
    return tokenizers.models.BPE.from_file(vocab_json, str(Path(vocab_json).parent / "merges.txt"))


@lru_cache(maxsize=4)
def _load_model(path: str) -> Any:
    """The source tokenizer's model (a `tokenizers` Model) for pre-split text."""
    tokenizers = require("tokenizers", extra="align", purpose="--init subword")
    if path.endswith(".model"):
        spm = require("sentencepiece", extra="sentencepiece", purpose="--init subword")
        processor = spm.SentencePieceProcessor()
        processor.Load(path)
        # Without protobuf the model type is not readable, so SentencePiece models are segmented
        # by Viterbi over the piece scores: exact for Unigram models (T5, XLM-R, ALBERT), close
        # for BPE ones (whose tokenizer.json, preferred when present, is exact).
        pieces = [(processor.IdToPiece(i), float(processor.GetScore(i)))
                  for i in range(processor.GetPieceSize())]
        unk = processor.unk_id()
        return tokenizers.models.Unigram(pieces, unk if unk >= 0 else None, False)
    # load_vocabulary has already parsed this file, so a failure here is a tokenizers bug.
    return tokenizers.Tokenizer.from_file(path).model


def _normalizer(vocab: Vocabulary) -> Callable[[str], str]:
    """Lower-casing, accent stripping and Unicode normalization the source tokenizer applies."""
    forms = _unicode_forms(vocab.tokenizer_file)

    def normalize(text: str) -> str:
        for form in forms:
            text = unicodedata.normalize(form, text)
        if vocab.lowercase:
            text = text.lower()
        if vocab.strip_accents:
            text = _strip_accents(text)
        return text

    return normalize


@lru_cache(maxsize=16)
def _unicode_forms(path: str | None) -> tuple[_Form, ...]:
    if path is None:
        return ()
    if path.endswith(".model"):
        return ("NFKC",)  # SentencePiece's default nmt_nfkc rule
    try:
        normalizer = json.loads(Path(path).read_text(encoding="utf-8")).get("normalizer")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return ()
    forms: list[_Form] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") in ("NFC", "NFD", "NFKC", "NFKD"):
                forms.append(node["type"])
            for child in node.get("normalizers") or ():
                walk(child)

    walk(normalizer)
    return tuple(forms)


def _strip_accents(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", text)
                   if unicodedata.category(c) != "Mn")


def _greedy(text: str, available: _Known, *, first: str = "",
            rest: str = "") -> list[str]:
    """Longest-match-first split of ``text`` into available pieces (prefixes ``first`` for the
    first piece, ``rest`` for the others); [] when some position matches nothing."""
    out: list[str] = []
    start = 0
    while start < len(text):
        prefix = first if start == 0 else rest
        for stop in range(min(len(text), start + available.longest), start, -1):
            candidate = prefix + text[start:stop]
            if candidate in available:
                out.append(candidate)
                start = stop
                break
        else:
            return []
    return out


# -- WordPiece ------------------------------------------------------------------------------

def _wordpiece(surface: Surface, vocab: Vocabulary, available: _Known,
               prefix: str) -> list[_Piece]:
    """BERT's basic tokenization, then greedy longest-match-first WordPiece per word."""
    text = surface.text
    if vocab.lowercase:
        text = text.lower()
    if vocab.strip_accents:
        text = _strip_accents(text)
    out: list[_Piece] = []
    for i, word in enumerate(_bert_words(text)):
        initial = surface.word_initial or i > 0
        if len(word) > WORDPIECE_MAX_CHARS:
            return []
        split = _greedy(word, available, first="" if initial else prefix, rest=prefix)
        if not split:
            return []  # BERT maps the whole word to [UNK]
        out.extend(_Piece(p, len(p) - (len(prefix) if j > 0 or not initial else 0))
                   for j, p in enumerate(split))
    return out


def _bert_words(text: str) -> list[str]:
    """Whitespace split, with punctuation and CJK characters as words of their own."""
    words: list[str] = []
    current: list[str] = []
    for char in text:
        if char.isspace() or unicodedata.category(char) in ("Cc", "Cf"):
            if current:
                words.append("".join(current))
                current = []
        elif _is_punctuation(char) or _is_cjk(char):
            if current:
                words.append("".join(current))
                current = []
            words.append(char)
        else:
            current.append(char)
    if current:
        words.append("".join(current))
    return words


def _is_punctuation(char: str) -> bool:
    code = ord(char)
    # BERT treats every non-alphanumeric ASCII character as punctuation ($, ^, `...).
    if 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def _is_cjk(char: str) -> bool:
    code = ord(char)
    return (0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0x20000 <= code <= 0x2A6DF
            or 0x2A700 <= code <= 0x2CEAF or 0xF900 <= code <= 0xFAFF
            or 0x2F800 <= code <= 0x2FA1F)


# -- word-level sources ---------------------------------------------------------------------

def _word_pieces(surface: Surface, available: _Known) -> list[_Piece]:
    """Fewest known words that spell the surface (case-folded if needed), CJK by character."""
    text = surface.text.strip()
    if not text:
        return []
    if text in available:
        return [_Piece(text, len(text))]
    for variant in (text, text.lower()):
        split = _fewest_words("".join(variant.split()), available)
        if split:
            return [_Piece(p, len(p)) for p in split]
    return []


def _fewest_words(text: str, available: _Known) -> list[str]:
    """Dynamic programme: the segmentation into the fewest available pieces (ties: longer first
    pieces), each at least ``MIN_WORD_PIECE`` long unless it is a CJK character."""
    n = len(text)
    best: list[int | None] = [None] * (n + 1)  # pieces needed to spell text[i:]
    nxt = [0] * (n + 1)
    best[n] = 0
    for i in range(n - 1, -1, -1):
        for j in range(min(n, i + available.longest), i, -1):
            after = best[j]
            if after is None:
                continue
            piece = text[i:j]
            if (j - i < MIN_WORD_PIECE and not _is_cjk(piece[0])) or piece not in available:
                continue
            current = best[i]
            if current is None or after + 1 < current:
                best[i], nxt[i] = after + 1, j
    if best[0] is None:
        return []
    out, i = [], 0
    while i < n:
        out.append(text[i:nxt[i]])
        i = nxt[i]
    return out


# -- fastText n-grams -----------------------------------------------------------------------

def _fasttext_init(tokens: Sequence[str], surfaces: Sequence[Surface], path: str,
                   dim: int) -> InitResult:
    """Average of each word's character n-gram vectors, as fastText builds unseen words.

    Only the n-grams are used, never the model's own vector for the word, so self-validation
    on held-out words cannot peek at them.
    """
    from embsurgeon.io.gensim_native import load_fasttext_vectors

    # The reader's cache: the source table was read from this file, so it is loaded once.
    model = load_fasttext_vectors(path)
    from gensim.models.fasttext import compute_ngrams, ft_ngram_hashes  # loaded by the above

    if model.vector_size != dim:
        raise AlignmentError(
            f"{path}: fastText vectors have dimension {model.vector_size} but the source table "
            f"has {dim}; use the .bin the source came from"
        )
    owners: list[int] = []
    rows: list[int] = []
    weights: list[float] = []
    names: list[tuple[str, ...]] = [()] * len(tokens)
    values: list[tuple[float, ...]] = [()] * len(tokens)
    for position, surface in enumerate(surfaces):
        word = surface.text
        hashes = ft_ngram_hashes(word, model.min_n, model.max_n, model.bucket) if word else []
        if not hashes:
            continue
        share = 1.0 / len(hashes)
        owners.extend([position] * len(hashes))
        rows.extend(hashes)
        weights.extend([share] * len(hashes))
        names[position] = tuple(compute_ngrams(word, model.min_n, model.max_n))
        values[position] = (share,) * len(names[position])
    vectors = weighted_rows(model.vectors_ngrams, len(tokens), np.array(owners, dtype=np.int64),
                            np.array(rows, dtype=np.int64), np.array(weights, dtype=np.float32))
    filled = np.array([bool(n) for n in names], dtype=bool)
    return InitResult(vectors, filled, tuple(names), tuple(values))


def source_pieces(surface: Surface, table: EmbeddingTable,
                  vocab: Vocabulary | None = None) -> list[str]:
    """The source pieces ``--init subword`` would average for ``surface`` (for reports).

    >>> import numpy as np
    >>> t = EmbeddingTable(["sun", "flower"], np.eye(2, dtype=np.float32))
    >>> source_pieces(Surface("sunflower", True), t)
    ['sun', 'flower']
    """
    unk = _unknown_tokens(vocab)
    return [p.token for p in _piece_finder(vocab, table.index)(surface)
            if p.token not in unk and p.token in table.index]

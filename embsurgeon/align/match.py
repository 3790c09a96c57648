"""Token matching: which source row, if any, each target token copies, and how sure we are.

Levels, tried in this order for every target token (``--match`` chooses which are allowed):

``exact``      the same token string with the same surface (``the`` in two word lists),
``canonical``  the same surface once family markers are off and the *source* tokenizer's own
               normalizer has run (``Ġcafé`` ↔ ``café`` ↔ ``▁café``; ``Café`` ↔ ``cafe``
               for an uncased BERT source, because that tokenizer itself lower-cases),
``case-fold``  the same surface after NFKC and Unicode case folding, an explicit fallback
               (``Paris`` ↔ ``paris`` for a lower-cased GloVe source),
``special``    control tokens by role (``[CLS]`` ↔ ``<s>``, ``[SEP]`` ↔ ``</s>``, ``[PAD]``...).

Overrides (``--map TARGET=SOURCE``, or a file of such lines) win over every level. When several
source tokens share a key, the earliest source row wins (word-vector files are sorted by
frequency), so the result never depends on hash order.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from pathlib import Path

import numpy as np

from embsurgeon.align.forms import (
    ROLE_EQUIVALENTS,
    Surface,
    fold,
    is_byte_fallback,
    normalize_like,
    roles_of,
    surface,
)
from embsurgeon.errors import AlignmentError
from embsurgeon.vocab import SpecialRole, TokenizerFamily, Vocabulary


class MatchLevel(str, Enum):
    """How a target row found its source row; values are the ``--match`` spellings."""

    EXACT = "exact"
    CANONICAL = "canonical"
    CASE_FOLD = "case-fold"
    SPECIAL = "special"
    OVERRIDE = "override"  # from --map / --map-file; always allowed, not a --match choice


#: The levels ``--match`` may choose from, in the order they are tried.
MATCH_LEVELS: tuple[MatchLevel, ...] = (
    MatchLevel.EXACT, MatchLevel.CANONICAL, MatchLevel.CASE_FOLD, MatchLevel.SPECIAL)
DEFAULT_MATCH: tuple[MatchLevel, ...] = MATCH_LEVELS


@dataclass(frozen=True)
class Matching:
    """Per target row: the source row it copies (-1: none) and the level that found it.

    >>> m = Matching(np.array([3, -1]), (MatchLevel.EXACT, None))
    >>> m.matched, m.counts()
    (1, {'exact': 1})
    """

    source_rows: np.ndarray  # (T,) int64; -1 where the row must be initialized
    levels: tuple[MatchLevel | None, ...]

    @property
    def matched(self) -> int:
        return int((self.source_rows >= 0).sum())

    def counts(self) -> dict[str, int]:
        """Rows per level, in level order, levels with no row left out."""
        out: dict[str, int] = {}
        for level in MatchLevel:
            n = sum(1 for lv in self.levels if lv is level)
            if n:
                out[level.value] = n
        return out


def parse_levels(spec: str | Iterable[str | MatchLevel]) -> tuple[MatchLevel, ...]:
    """``"exact,canonical"`` -> the levels, in the fixed order they are tried.

    >>> parse_levels("case-fold,exact")
    (<MatchLevel.EXACT: 'exact'>, <MatchLevel.CASE_FOLD: 'case-fold'>)
    """
    items = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    chosen = set()
    for item in items:
        if item == "":
            continue
        try:
            level = MatchLevel(item)
        except ValueError:
            raise AlignmentError(
                f"unknown match level {item!r}; choose from "
                f"{', '.join(lv.value for lv in MATCH_LEVELS)}"
            ) from None
        if level is MatchLevel.OVERRIDE:
            raise AlignmentError("'override' is not a --match level; overrides always apply")
        chosen.add(level)
    if not chosen:
        raise AlignmentError("no match level chosen; pass at least one of "
                             f"{', '.join(lv.value for lv in MATCH_LEVELS)}")
    return tuple(level for level in MATCH_LEVELS if level in chosen)


def parse_override(spec: str) -> tuple[str, str]:
    """``"TARGET=SOURCE"`` -> (target, source); the first ``=`` after the first character splits.

    >>> parse_override("<s>=[CLS]"), parse_override("===")
    (('<s>', '[CLS]'), ('=', '='))
    """
    cut = spec.find("=", 1)
    if cut < 0 or cut == len(spec) - 1:
        raise AlignmentError(f"override {spec!r} is not TARGET=SOURCE")
    return spec[:cut], spec[cut + 1:]


def read_overrides(path: str | Path) -> dict[str, str]:
    """A file of ``TARGET=SOURCE`` lines (or ``TARGET<TAB>SOURCE``); ``#`` starts a comment."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise AlignmentError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    out: dict[str, str] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip("\r")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if "\t" in line:
            target, _, source = line.partition("\t")
        else:
            try:
                target, source = parse_override(line)
            except AlignmentError as exc:
                raise AlignmentError(f"{path}:{lineno}: {exc}") from None
        out[target] = source
    return out


def _canonical_key(form: Surface, source: Vocabulary) -> tuple[str, bool]:
    return normalize_like(form.text, source), form.word_initial


def _fold_key(form: Surface, source: Vocabulary) -> tuple[str, bool]:
    return fold(normalize_like(form.text, source)), form.word_initial


def surfaces(vocab: Vocabulary) -> list[Surface | None]:
    """The surface of every token of ``vocab`` in id order (None for control tokens)."""
    return [surface(token, vocab) for token in vocab.tokens]


def match_tokens(
    source: Vocabulary,
    target: Vocabulary,
    *,
    levels: Sequence[MatchLevel] = DEFAULT_MATCH,
    overrides: Mapping[str, str] | None = None,
) -> Matching:
    """Find, for each target token in id order, the source row it should copy.

    >>> from embsurgeon.vocab import Vocabulary, TokenizerFamily
    >>> glove = Vocabulary(("the", "café", "paris"), TokenizerFamily.WORD)
    >>> gpt2 = Vocabulary(("Ġthe", "ĠcafÃ©", "ĠParis", "ing"), TokenizerFamily.BYTE_BPE)
    >>> m = match_tokens(glove, gpt2)
    >>> m.source_rows.tolist(), [lv and lv.value for lv in m.levels]
    ([0, 1, 2, -1], ['canonical', 'canonical', 'case-fold', None])
    """
    allowed = set(levels)
    src_forms = surfaces(source)
    src_index = {token: i for i, token in enumerate(source.tokens)}
    by_canonical: dict[tuple[str, bool], int] = {}
    by_fold: dict[tuple[str, bool], int] = {}
    # Byte-fallback pieces come last: `<0x61>` spells 'a' too, but the real piece 'a' is the
    # row the source model learned for that text.
    order = sorted(range(len(src_forms)), key=lambda i: is_byte_fallback(source.tokens[i]))
    for i in order:
        form = src_forms[i]
        if form is None:
            continue
        if MatchLevel.CANONICAL in allowed:
            by_canonical.setdefault(_canonical_key(form, source), i)
        if MatchLevel.CASE_FOLD in allowed:
            by_fold.setdefault(_fold_key(form, source), i)
    by_role = {role: src_index[token] for role, token in source.special.items()}

    overrides = dict(overrides or {})
    target_index = {token: i for i, token in enumerate(target.tokens)}
    for tgt, src in overrides.items():
        if tgt not in target_index:
            raise AlignmentError(f"override {tgt}={src}: {tgt!r} is not in the target vocabulary")
        if src not in src_index:
            raise AlignmentError(f"override {tgt}={src}: {src!r} is not in the source table")

    rows = np.full(len(target), -1, dtype=np.int64)
    how: list[MatchLevel | None] = [None] * len(target)
    for t, token in enumerate(target.tokens):
        if token in overrides:
            rows[t], how[t] = src_index[overrides[token]], MatchLevel.OVERRIDE
            continue
        form = surface(token, target)
        found = _find(token, form, target, source, src_index, src_forms, by_canonical, by_fold,
                      by_role, allowed)
        if found is not None:
            rows[t], how[t] = found
    return Matching(rows, tuple(how))


def _find(
    token: str,
    form: Surface | None,
    target: Vocabulary,
    source: Vocabulary,
    src_index: Mapping[str, int],
    src_forms: Sequence[Surface | None],
    by_canonical: Mapping[tuple[str, bool], int],
    by_fold: Mapping[tuple[str, bool], int],
    by_role: Mapping[SpecialRole, int],
    allowed: set[MatchLevel],
) -> tuple[int, MatchLevel] | None:
    if MatchLevel.EXACT in allowed:
        i = src_index.get(token)
        if i is not None and src_forms[i] == form:
            return i, MatchLevel.EXACT
    if form is None:
        if MatchLevel.SPECIAL not in allowed:
            return None
        roles = roles_of(token, target)
        for role in roles:  # the role itself first, then its stand-ins
            if role in by_role:
                return by_role[role], MatchLevel.SPECIAL
        for role in roles:
            for other in ROLE_EQUIVALENTS[role]:
                if other in by_role:
                    return by_role[other], MatchLevel.SPECIAL
        return None
    if MatchLevel.CANONICAL in allowed:
        i = by_canonical.get(_canonical_key(form, source))
        if i is not None:
            return i, MatchLevel.CANONICAL
    if MatchLevel.CASE_FOLD in allowed:
        i = by_fold.get(_fold_key(form, source))
        if i is not None:
            return i, MatchLevel.CASE_FOLD
    return None


# -- streaming: which source rows are worth keeping ------------------------------------------

_MAX_PIECE = 24


@lru_cache(maxsize=1 << 16)
def _loose_char(char: str) -> str:
    """One character's loose key: compatibility-decomposed, case-folded, accents and spaces off.

    Any normalization a level applies (NFC, lower-casing, accent stripping, NFKC case folding)
    maps two strings to the same text only if this map does, and it works a character at a
    time, so the key of a piece is a substring of the key of any text containing the piece.
    """
    return "".join(c for c in unicodedata.normalize("NFKD", char).casefold()
                   if not unicodedata.combining(c) and not c.isspace())


def _loose(text: str) -> str:
    if text.isascii():  # the common case, and NFKD and case folding are plain lower() there
        return "".join(text.lower().split())
    return "".join(_loose_char(c) for c in text)


def keep_predicate(
    target: Vocabulary,
    *,
    source_family: TokenizerFamily = TokenizerFamily.WORD,
    continuation_prefix: str = "",
    overrides: Mapping[str, str] | None = None,
    pieces: bool = True,
) -> Callable[[str], bool]:
    """A ``ReadOptions.keep_if`` predicate keeping only source rows the alignment can use.

    A row is kept when its token can match a target token at any level (exact, canonical,
    case-fold: compared by a key looser than all of them), when it is the source of an
    override, when it looks like a control token (``</s>`` may stand in for ``[SEP]`` by role,
    and which spelling holds a role depends on which ones the file has), or when (``pieces``)
    its surface is a substring of some target surface so subword composition may use it. The
    predicate assumes the source is of ``source_family`` (word-vector files are word-level).

    Streaming changes no result: mean/normal/mvn moments, norm matching and knn/omp anchors all
    come from the copied rows, which are kept. Only the report's ``source_rows`` is smaller.

    >>> from embsurgeon.vocab import Vocabulary, TokenizerFamily
    >>> keep = keep_predicate(Vocabulary(("北京", "cat", "[SEP]"), TokenizerFamily.WORD))
    >>> keep("北"), keep("Cat"), keep("dog"), keep("</s>")
    (True, True, False, True)
    """
    from embsurgeon.align.forms import CONTROL_PATTERN, raw_surface

    wanted = frozenset(target.tokens) | frozenset((overrides or {}).values())
    keys: set[str] = set()
    for form in surfaces(target):
        if form is None:
            continue
        text = _loose(form.text)
        keys.add(text)
        if pieces:
            n = len(text)
            for a in range(n):
                # Pieces longer than _MAX_PIECE are never needed to compose a real word, and
                # bounding them keeps the set linear in the target size for long tokens.
                for b in range(a + 1, min(n, a + _MAX_PIECE) + 1):
                    keys.add(text[a:b])
    prefix = continuation_prefix or ("##" if source_family is TokenizerFamily.WORDPIECE else "")

    def keep(token: str) -> bool:
        if token in wanted or CONTROL_PATTERN.match(token):
            return True
        return _loose(raw_surface(token, source_family, prefix).text) in keys

    return keep

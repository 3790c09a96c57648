"""Surface forms: what a token spells once its tokenizer's markers are taken off.

``##ing`` (WordPiece), ``Ġcafé`` (byte-level BPE, stored as ``ĠcafÃ©``) and ``▁café``
(SentencePiece) carry the same two facts: a text and whether it starts a word. Matching and
subword initialization work on these, not on raw token strings.

Bytes that are not whole UTF-8 characters (a byte-level BPE piece holding half of ``é``, or a
SentencePiece byte-fallback token ``<0xC3>``) decode with ``surrogateescape``, so the same byte
spells the same surface in every family and still never equals real text.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from embsurgeon.table import placeholder_token
from embsurgeon.vocab import SpecialRole, TokenizerFamily, Vocabulary

_METASPACE = "▁"
_PLACEHOLDER = placeholder_token(0).rsplit(":", 1)[0] + ":"  # rows without a token
_BYTE_FALLBACK = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")
# Added tokens that look like markup (`[unused3]`, `<|im_start|>`) are control tokens: they
# have no surface text and only ever match by identical spelling or by role.
CONTROL_PATTERN = re.compile(r"^(\[[^\[\]\s]+\]|<[^<>\s]+>)$")
_CONTROL = CONTROL_PATTERN


@dataclass(frozen=True)
class Surface:
    """A token's decoded text and whether it begins a word.

    >>> Surface("ing", word_initial=False)
    Surface(text='ing', word_initial=False)
    """

    text: str
    word_initial: bool


@lru_cache(maxsize=1)
def byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from the 256 byte values to printable characters.

    Printable Latin-1 bytes stand for themselves; the others (space, control bytes) are moved
    to U+0100 onwards, which is why a leading space shows as ``Ġ`` (U+0120).

    >>> byte_to_unicode()[ord(" ")], byte_to_unicode()[0xC3]
    ('Ġ', 'Ã')
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


@lru_cache(maxsize=1)
def unicode_to_byte() -> dict[str, int]:
    """The inverse of :func:`byte_to_unicode`."""
    return {ch: b for b, ch in byte_to_unicode().items()}


def encode_byte_level(text: str) -> str:
    """Spell ``text`` the way a byte-level BPE vocabulary stores it.

    >>> encode_byte_level(" café")
    'ĠcafÃ©'
    """
    table = byte_to_unicode()
    return "".join(table[b] for b in text.encode("utf-8", errors="surrogateescape"))


def _decode_bytes(data: bytes) -> str:
    return data.decode("utf-8", errors="surrogateescape")


def decode_byte_level(token: str) -> str | None:
    """The text a byte-level BPE token stands for, or None if it is not in byte-level form.

    >>> decode_byte_level("ĠcafÃ©")
    ' café'
    """
    table = unicode_to_byte()
    try:
        return _decode_bytes(bytes(table[ch] for ch in token))
    except KeyError:
        return None


def is_placeholder(token: str) -> bool:
    """A row without a token (``<embsurgeon:row:N>``): an id gap or a padding row."""
    return token.startswith(_PLACEHOLDER)


def is_byte_fallback(token: str) -> bool:
    """``<0xNN>``: a SentencePiece byte-fallback piece."""
    return _BYTE_FALLBACK.match(token) is not None


def is_control(token: str, vocab: Vocabulary) -> bool:
    """True for special and control tokens (``[CLS]``, ``<|endoftext|>``, ``[unused7]``)."""
    if vocab.role_of(token) is not None or is_placeholder(token):
        return True
    if token in vocab.added and _CONTROL.match(token):
        return True
    # WordPiece's reserved rows are control tokens even when not declared as added tokens.
    return vocab.family is TokenizerFamily.WORDPIECE and bool(_CONTROL.match(token))


def surface(token: str, vocab: Vocabulary) -> Surface | None:
    """The surface form of ``token`` in ``vocab``; None for control tokens.

    >>> from embsurgeon.vocab import Vocabulary, TokenizerFamily
    >>> bert = Vocabulary(("[CLS]", "play", "##ing"), TokenizerFamily.WORDPIECE,
    ...                   continuation_prefix="##")
    >>> surface("##ing", bert), surface("[CLS]", bert)
    (Surface(text='ing', word_initial=False), None)
    """
    if is_control(token, vocab):
        return None
    return raw_surface(token, vocab.family, vocab.continuation_prefix)


def raw_surface(token: str, family: TokenizerFamily, continuation_prefix: str = "") -> Surface:
    """The surface form of ``token`` by its family's markers alone (no control-token check)."""
    if family is TokenizerFamily.WORD:
        return Surface(token, True)
    if family is TokenizerFamily.WORDPIECE:
        prefix = continuation_prefix or "##"
        if token.startswith(prefix) and len(token) > len(prefix):
            return Surface(token[len(prefix):], False)
        return Surface(token, True)
    fallback = _BYTE_FALLBACK.match(token)
    if fallback:
        return Surface(_decode_bytes(bytes([int(fallback.group(1), 16)])), False)
    if family is TokenizerFamily.BYTE_BPE:
        text = decode_byte_level(token)
        if text is None:  # a BPE vocabulary that stores plain text, not mapped bytes
            text = token
        if text.startswith(" "):
            return Surface(text[1:], True)
        return Surface(text, False)
    # SentencePiece / Metaspace
    if token.startswith(_METASPACE):
        return Surface(token[1:].replace(_METASPACE, " "), True)
    return Surface(token.replace(_METASPACE, " "), False)


def spell(text: str, word_initial: bool, vocab: Vocabulary) -> str:
    """The token string ``vocab`` would store for a surface (the inverse of :func:`surface`).

    >>> from embsurgeon.vocab import Vocabulary, TokenizerFamily
    >>> spell("café", True, Vocabulary(("x",), TokenizerFamily.BYTE_BPE))
    'ĠcafÃ©'
    """
    family = vocab.family
    if family is TokenizerFamily.WORD:
        return text
    if family is TokenizerFamily.WORDPIECE:
        return text if word_initial else (vocab.continuation_prefix or "##") + text
    if family is TokenizerFamily.BYTE_BPE:
        return encode_byte_level((" " if word_initial else "") + text)
    return (_METASPACE if word_initial else "") + text.replace(" ", _METASPACE)


# -- text folding ----------------------------------------------------------------------------

def strip_accents(text: str) -> str:
    """Remove combining marks after NFD, as BERT's normalizer does.

    >>> strip_accents("café")
    'cafe'
    """
    return "".join(ch for ch in unicodedata.normalize("NFD", text)
                   if unicodedata.category(ch) != "Mn")


def normalize_like(text: str, vocab: Vocabulary) -> str:
    """What ``vocab``'s own normalizer makes of ``text`` (NFC, lower-casing, accent stripping).

    This is the *canonical* level: the tokenizer itself would turn ``Café`` into ``cafe``.

    >>> from embsurgeon.vocab import Vocabulary, TokenizerFamily
    >>> normalize_like("Café", Vocabulary(("x",), TokenizerFamily.WORDPIECE,
    ...                                   lowercase=True, strip_accents=True))
    'cafe'
    """
    text = unicodedata.normalize("NFC", text)
    if vocab.lowercase:
        text = text.lower()
    if vocab.strip_accents:
        text = unicodedata.normalize("NFC", strip_accents(text))
    return text


def fold(text: str) -> str:
    """The explicit *case-fold* fallback: NFKC compatibility forms and Unicode case folding.

    >>> fold("Ｃａｆé"), fold("Straße")
    ('café', 'strasse')
    """
    return unicodedata.normalize("NFKC", text).casefold()


# -- roles -----------------------------------------------------------------------------------

#: Roles that may stand in for one another when a vocabulary lacks the exact role:
#: BERT's ``[CLS]``/``[SEP]`` play the parts of ``<s>``/``</s>`` in RoBERTa-style models.
ROLE_EQUIVALENTS: dict[SpecialRole, tuple[SpecialRole, ...]] = {
    SpecialRole.CLS: (SpecialRole.BOS,),
    SpecialRole.BOS: (SpecialRole.CLS,),
    SpecialRole.SEP: (SpecialRole.EOS,),
    SpecialRole.EOS: (SpecialRole.SEP,),
    SpecialRole.PAD: (),
    SpecialRole.UNK: (),
    SpecialRole.MASK: (),
}


def roles_of(token: str, vocab: Vocabulary) -> tuple[SpecialRole, ...]:
    """Every role ``token`` plays (GPT-2's ``<|endoftext|>`` is bos, eos and often pad)."""
    return tuple(role for role, spelled in vocab.special.items() if spelled == token)


# -- guessing a vocabulary for a bare table ---------------------------------------------------

def guess_vocabulary(tokens: Sequence[str], source: str = "") -> Vocabulary:
    """A :class:`Vocabulary` for a table that came without its tokenizer.

    The family is read off the markers the tokens carry (``##``, ``Ġ``, ``▁``); a table with
    none is word-level. A WordPiece table with no upper-case letter is taken as uncased (lower-
    casing and accent stripping, as BERT's uncased tokenizers do); word-level tables get no
    normalizer, so case differences stay for the explicit case-fold level to bridge.

    >>> guess_vocabulary(["[CLS]", "the", "##s"]).family
    <TokenizerFamily.WORDPIECE: 'wordpiece'>
    """
    from embsurgeon.vocab import _special_roles  # the hf branch's role table, reused

    sample = tokens[:50_000]
    n = max(len(sample), 1)
    counts = {
        TokenizerFamily.WORDPIECE: sum(t.startswith("##") and len(t) > 2 for t in sample),
        TokenizerFamily.BYTE_BPE: sum(t.startswith("Ġ") for t in sample),
        TokenizerFamily.SENTENCEPIECE: sum(t.startswith(_METASPACE) for t in sample),
    }
    family, hits = max(counts.items(), key=lambda kv: kv[1])
    if hits < 0.02 * n:
        family = TokenizerFamily.WORD
    uncased = family is TokenizerFamily.WORDPIECE and not any(
        t[:1].isupper() for t in sample if not _CONTROL.match(t))
    return Vocabulary(
        tuple(tokens), family, source=source, lowercase=uncased, strip_accents=uncased,
        continuation_prefix="##" if family is TokenizerFamily.WORDPIECE else "",
        special=_special_roles(tokens, {}),
    )

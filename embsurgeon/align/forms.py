"""Surface forms: what a token spells once its tokenizer's markers are taken off.

``##ing`` (WordPiece), ``Ġcafé`` (byte-level BPE) and ``▁café`` (SentencePiece) carry the same
two facts: a text and whether it starts a word. Matching and subword initialization work on
these, not on raw token strings.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Surface:
    """A token's decoded text and whether it begins a word.

    >>> Surface("ing", word_initial=False)
    Surface(text='ing', word_initial=False)
    """

    text: str
    word_initial: bool

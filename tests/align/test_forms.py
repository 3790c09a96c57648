"""Surface forms: markers off, bytes decoded, the same text in every family."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from embsurgeon.align.forms import (
    Surface,
    byte_to_unicode,
    decode_byte_level,
    encode_byte_level,
    fold,
    guess_vocabulary,
    normalize_like,
    raw_surface,
    spell,
    surface,
)
from embsurgeon.vocab import TokenizerFamily, Vocabulary, load_vocabulary

WP = Vocabulary(("[CLS]", "[unused1]", "play", "##ing"), TokenizerFamily.WORDPIECE,
                continuation_prefix="##")
BPE = Vocabulary(("<|endoftext|>", "x"), TokenizerFamily.BYTE_BPE)
SP = Vocabulary(("<s>", "x"), TokenizerFamily.SENTENCEPIECE)
WORD = Vocabulary(("x",), TokenizerFamily.WORD)


def test_byte_map_is_gpt2s():
    table = byte_to_unicode()
    assert len(set(table.values())) == 256
    assert table[ord(" ")] == "Ġ" and table[ord("\n")] == "Ċ" and table[ord("a")] == "a"


def test_byte_level_spelling_matches_the_tokenizers_library():
    from tokenizers.pre_tokenizers import ByteLevel

    for text in (" café", " 北京", " naïve Straße"):
        pieces = ByteLevel(add_prefix_space=False, use_regex=False).pre_tokenize_str(text)
        assert encode_byte_level(text) == pieces[0][0]


@pytest.mark.parametrize(("token", "vocab", "expected"), [
    ("##ing", WP, Surface("ing", False)),
    ("play", WP, Surface("play", True)),
    ("ĠcafÃ©", BPE, Surface("café", True)),
    ("Ã©", BPE, Surface("é", False)),
    ("ĠåĮĹäº¬", BPE, Surface("北京", True)),
    ("▁café", SP, Surface("café", True)),
    ("▁New▁York", SP, Surface("New York", True)),
    ("fé", SP, Surface("fé", False)),
    ("café", WORD, Surface("café", True)),
])
def test_surfaces(token, vocab, expected):
    assert surface(token, vocab) == expected


def test_control_tokens_have_no_surface():
    assert surface("[CLS]", WP) is None and surface("[unused1]", WP) is None


def test_half_a_character_is_the_same_byte_in_every_family():
    gpt2_byte = raw_surface("Ã", TokenizerFamily.BYTE_BPE)
    fallback = raw_surface("<0xC3>", TokenizerFamily.SENTENCEPIECE)
    assert gpt2_byte == fallback
    assert gpt2_byte.text != "Ã" and gpt2_byte.text.encode("utf-8", "surrogateescape") == b"\xc3"


def test_plain_text_bpe_vocabularies_fall_back_to_the_token():
    assert decode_byte_level("北京") is None
    assert raw_surface("北京", TokenizerFamily.BYTE_BPE) == Surface("北京", False)


@given(st.text(min_size=1, max_size=12).filter(lambda s: "\x00" not in s), st.booleans())
def test_spell_inverts_surface(text, word_initial):
    for vocab in (BPE, SP):
        if vocab is SP and (text.startswith(" ") or "▁" in text):
            continue
        if vocab is BPE and text.startswith(" ") and not word_initial:
            continue
        assert raw_surface(spell(text, word_initial, vocab), vocab.family) == Surface(
            text, word_initial)


def test_normalize_like_follows_the_vocabulary():
    uncased = Vocabulary(("x",), TokenizerFamily.WORDPIECE, lowercase=True, strip_accents=True)
    assert normalize_like("Crème Brûlée", uncased) == "creme brulee"
    assert normalize_like("Crème", WORD) == "Crème"
    assert normalize_like("e\u0301", WORD) == "é"  # NFC


def test_fold_is_nfkc_and_casefold():
    assert fold("ＰＡＲＩＳ") == "paris" and fold("Straße") == "strasse"


@pytest.mark.parametrize(("tokens", "family", "lowercase"), [
    (["[CLS]", "the", "##s", "cat"], TokenizerFamily.WORDPIECE, True),
    (["<s>", "Ġthe", "Ġcat", "s"], TokenizerFamily.BYTE_BPE, False),
    (["<unk>", "▁the", "▁cat", "s"], TokenizerFamily.SENTENCEPIECE, False),
    (["the", "Paris", "cat"], TokenizerFamily.WORD, False),
])
def test_guess_vocabulary(tokens, family, lowercase):
    vocab = guess_vocabulary(tokens)
    assert vocab.family is family and vocab.lowercase is lowercase


def test_trained_tokenizers_decode_to_shared_words(trained):
    wp = load_vocabulary(trained["wordpiece"])
    bpe = load_vocabulary(trained["byte-bpe"])
    spm = load_vocabulary(trained["spm"])
    assert Surface("café", True) in {surface(t, bpe) for t in bpe.tokens}
    assert Surface("café", True) in {surface(t, spm) for t in spm.tokens}
    assert Surface("cafe", True) in {surface(t, wp) for t in wp.tokens}  # uncased: accents off

"""Token matching across tokenizer families, on tokenizers trained offline."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from embsurgeon.align.forms import spell, surface
from embsurgeon.align.match import (
    MATCH_LEVELS,
    MatchLevel,
    keep_predicate,
    match_tokens,
    parse_levels,
    parse_override,
    read_overrides,
)
from embsurgeon.errors import AlignmentError
from embsurgeon.vocab import TokenizerFamily, Vocabulary, load_vocabulary

FAMILIES = ("wordpiece", "byte-bpe", "metaspace", "spm", "words")


def _match(source: Vocabulary, target: Vocabulary, token: str, **kwargs):
    m = match_tokens(source, target, **kwargs)
    t = target.tokens.index(token)
    s = int(m.source_rows[t])
    return (source.tokens[s] if s >= 0 else None), m.levels[t]


@pytest.fixture(scope="module")
def vocabs(trained):
    return {name: load_vocabulary(path) for name, path in trained.items()}


# (source, target, target token, expected source token, level)
CROSS_FAMILY = [
    ("spm", "byte-bpe", "ĠcafÃ©", "▁café", MatchLevel.CANONICAL),
    ("byte-bpe", "spm", "▁café", "ĠcafÃ©", MatchLevel.CANONICAL),
    ("byte-bpe", "words", "café", "ĠcafÃ©", MatchLevel.CANONICAL),
    ("spm", "words", "北京", "▁北京", MatchLevel.CANONICAL),
    ("words", "spm", "▁北京", "北京", MatchLevel.CANONICAL),
    # The uncased WordPiece source lower-cases and strips accents itself: canonical, not fold.
    ("wordpiece", "words", "café", "cafe", MatchLevel.CANONICAL),
    ("wordpiece", "words", "Paris", "paris", MatchLevel.CANONICAL),
    ("wordpiece", "byte-bpe", "ĠParis", "paris", MatchLevel.CANONICAL),
    ("byte-bpe", "words", "coffee", "Ġcoffee", MatchLevel.CANONICAL),
    ("words", "words", "Straße", "Straße", MatchLevel.EXACT),
    # Special tokens by role: [CLS] plays <s>, [SEP] plays </s>.
    ("byte-bpe", "wordpiece", "[CLS]", "<s>", MatchLevel.SPECIAL),
    ("byte-bpe", "wordpiece", "[SEP]", "</s>", MatchLevel.SPECIAL),
    ("byte-bpe", "wordpiece", "[PAD]", "<pad>", MatchLevel.SPECIAL),
    ("byte-bpe", "wordpiece", "[UNK]", "<unk>", MatchLevel.SPECIAL),
    ("byte-bpe", "wordpiece", "[MASK]", "<mask>", MatchLevel.SPECIAL),
    ("wordpiece", "byte-bpe", "<s>", "[CLS]", MatchLevel.SPECIAL),
    ("wordpiece", "spm", "</s>", "[SEP]", MatchLevel.SPECIAL),
    ("byte-bpe", "spm", "<unk>", "<unk>", MatchLevel.EXACT),
    # Byte-fallback pieces and byte-level bytes are the same byte.
    ("byte-bpe", "spm", "<0xC3>", "Ã", MatchLevel.CANONICAL),
]


@pytest.mark.parametrize(("src", "tgt", "token", "expected", "level"), CROSS_FAMILY)
def test_cross_family_table(vocabs, src, tgt, token, expected, level):
    assert _match(vocabs[src], vocabs[tgt], token) == (expected, level)


@pytest.mark.parametrize("src", FAMILIES)
@pytest.mark.parametrize("tgt", FAMILIES)
def test_every_spelled_word_is_found(vocabs, src, tgt):
    """Whenever the source spells a target token's surface, the match finds that very token."""
    source, target = vocabs[src], vocabs[tgt]
    m = match_tokens(source, target)
    src_tokens = set(source.tokens)
    checked = 0
    for t, token in enumerate(target.tokens):
        form = surface(token, target)
        if form is None or source.lowercase:
            continue
        spelled = spell(form.text, form.word_initial, source)
        if token in src_tokens and surface(token, source) == form:
            spelled = token  # the very same token (a byte piece <0x2C> beside ',') wins
        if spelled in src_tokens and surface(spelled, source) == form:
            assert source.tokens[m.source_rows[t]] == spelled, token
            assert m.levels[t] in (MatchLevel.EXACT, MatchLevel.CANONICAL)
            checked += 1
    if src != "wordpiece" and tgt != "wordpiece" and {src, tgt} != {"metaspace", "words"}:
        assert checked > 0


def test_word_initial_and_continuation_never_mix(vocabs):
    m = match_tokens(vocabs["byte-bpe"], vocabs["wordpiece"])
    for t, token in enumerate(vocabs["wordpiece"].tokens):
        s = m.source_rows[t]
        if s >= 0 and m.levels[t] is not MatchLevel.SPECIAL:
            a = surface(token, vocabs["wordpiece"])
            b = surface(vocabs["byte-bpe"].tokens[s], vocabs["byte-bpe"])
            assert a is not None and b is not None and a.word_initial == b.word_initial


def test_case_fold_is_a_fallback_after_canonical():
    source = Vocabulary(("PARIS", "paris", "Paris"), TokenizerFamily.WORD)
    target = Vocabulary(("ĠParis", "ĠpARIS"), TokenizerFamily.BYTE_BPE)
    m = match_tokens(source, target)
    assert m.source_rows.tolist() == [2, 0]  # canonical first; then the earliest fold
    assert m.levels == (MatchLevel.CANONICAL, MatchLevel.CASE_FOLD)


def test_levels_restrict_matching():
    source = Vocabulary(("paris", "cafe"), TokenizerFamily.WORD)
    target = Vocabulary(("Paris", "cafe"), TokenizerFamily.WORD)
    m = match_tokens(source, target, levels=(MatchLevel.EXACT,))
    assert m.source_rows.tolist() == [-1, 1]
    assert m.counts() == {"exact": 1}


def test_deterministic_whatever_the_hash_seed():
    import subprocess
    import sys

    code = ("from embsurgeon.align.match import match_tokens\n"
            "from embsurgeon.vocab import Vocabulary, TokenizerFamily\n"
            "s = Vocabulary(tuple(f'W{i % 50}' if i % 2 else f'w{i % 50}' for i in range(100)"
            " if True) [:50] + tuple(f'x{i}' for i in range(50)), TokenizerFamily.WORD)\n"
            "t = Vocabulary(tuple(f'w{i}' for i in range(60)), TokenizerFamily.WORD)\n"
            "print(match_tokens(s, t).source_rows.tolist())\n")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env={"PYTHONHASHSEED": str(seed), "PYTHONPATH": sys.path[0]},
                           check=True).stdout for seed in (1, 2, 3)}
    assert len(outs) == 1


def test_overrides_win():
    source = Vocabulary(("the", "[CLS]", "cat"), TokenizerFamily.WORD)
    target = Vocabulary(("the", "<bos>"), TokenizerFamily.WORD)
    m = match_tokens(source, target, overrides={"the": "cat", "<bos>": "[CLS]"})
    assert m.source_rows.tolist() == [2, 1]
    assert m.levels == (MatchLevel.OVERRIDE, MatchLevel.OVERRIDE)


@pytest.mark.parametrize(("overrides", "words"), [
    ({"dog": "the"}, "'dog' is not in the target vocabulary"),
    ({"the": "dog"}, "'dog' is not in the source table"),
])
def test_bad_overrides(overrides, words):
    v = Vocabulary(("the",), TokenizerFamily.WORD)
    with pytest.raises(AlignmentError, match=words):
        match_tokens(v, v, overrides=overrides)


def test_override_parsing(tmp_path):
    assert parse_override("<s>=[CLS]") == ("<s>", "[CLS]")
    assert parse_override("===") == ("=", "=")
    with pytest.raises(AlignmentError, match="is not TARGET=SOURCE"):
        parse_override("nothing")
    path = tmp_path / "map.txt"
    path.write_text("# roles\n<s>=[CLS]\n</s>\t[SEP]\n\nbad line\n", encoding="utf-8")
    with pytest.raises(AlignmentError, match=r"map.txt:5: override 'bad line' is not"):
        read_overrides(path)
    path.write_text("<s>=[CLS]\n</s>\t[SEP]\n", encoding="utf-8")
    assert read_overrides(path) == {"<s>": "[CLS]", "</s>": "[SEP]"}


def test_parse_levels():
    assert parse_levels("special,exact") == (MatchLevel.EXACT, MatchLevel.SPECIAL)
    assert parse_levels(list(MATCH_LEVELS)) == MATCH_LEVELS
    with pytest.raises(AlignmentError, match="unknown match level 'fuzzy'; choose from exact"):
        parse_levels("exact,fuzzy")
    with pytest.raises(AlignmentError, match="'override' is not a --match level"):
        parse_levels("override")
    with pytest.raises(AlignmentError, match="no match level chosen"):
        parse_levels("")


def test_keep_predicate_keeps_matches_and_pieces(vocabs):
    keep = keep_predicate(vocabs["spm"])
    assert keep("café") and keep("Café") and keep("北京") and keep("北")
    assert not keep("zebra") and not keep("冰箱")
    exact_only = keep_predicate(vocabs["words"], pieces=False)
    assert exact_only("Paris") and exact_only("paris") and not exact_only("Par")


_TEXT = st.text(alphabet=st.sampled_from("abcxyzéüßçÅ北京中国ńłΩжё"), min_size=1, max_size=8)
_FAMILIES = st.sampled_from([TokenizerFamily.WORDPIECE, TokenizerFamily.BYTE_BPE,
                             TokenizerFamily.SENTENCEPIECE, TokenizerFamily.WORD])


@given(st.lists(st.tuples(_TEXT, st.booleans()), min_size=1, max_size=6, unique=True),
       _FAMILIES, _FAMILIES)
def test_any_surface_spelled_in_two_families_matches(forms, a, b):
    """Property: the same surfaces spelled by two families match one to one."""
    if TokenizerFamily.WORD in (a, b):
        forms = [(text, True) for text, _ in forms]  # word lists only hold whole words
    forms = list(dict.fromkeys(forms))
    src = Vocabulary(tuple(dict.fromkeys(spell(t, w, Vocabulary(("x",), a,
                                          continuation_prefix="##")) for t, w in forms)), a,
                     continuation_prefix="##" if a is TokenizerFamily.WORDPIECE else "")
    tgt = Vocabulary(tuple(dict.fromkeys(spell(t, w, Vocabulary(("x",), b,
                                          continuation_prefix="##")) for t, w in forms)), b,
                     continuation_prefix="##" if b is TokenizerFamily.WORDPIECE else "")
    m = match_tokens(src, tgt)
    for t, token in enumerate(tgt.tokens):
        s = m.source_rows[t]
        assert s >= 0 and m.levels[t] in (MatchLevel.EXACT, MatchLevel.CANONICAL), token
        assert surface(src.tokens[s], src) == surface(token, tgt)


def test_keep_predicate_keeps_role_stand_ins_and_override_sources():
    from embsurgeon.align.targets import load_target

    target = load_target(["[SEP]", "[CLS]", "strasse", "zebra", "new york"])
    keep = keep_predicate(target, overrides={"zebra": "filler7"})
    assert keep("</s>") and keep("<s>")  # stand-ins for [SEP] and [CLS] by role
    assert keep("filler7") and not keep("filler8")
    assert keep("Straße") and keep("STRASSE")  # case-fold keys, ß folded
    assert keep("wy")  # subword composition spells "new york" without its space

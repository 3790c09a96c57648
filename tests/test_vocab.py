import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from embsurgeon.errors import VocabularyError
from embsurgeon.table import placeholder_token
from embsurgeon.vocab import SpecialRole, TokenizerFamily, Vocabulary, load_vocabulary


def _hf_vocab(directory: Path) -> tuple[str, ...]:
    from transformers import AutoTokenizer

    vocab = AutoTokenizer.from_pretrained(str(directory)).get_vocab()
    return tuple(sorted(vocab, key=vocab.__getitem__))


# -- tokenizer.json of each model kind -----------------------------------------------------

@pytest.mark.parametrize(("name", "family", "lowercase"), [
    ("tiny-bert", TokenizerFamily.WORDPIECE, True),       # WordPiece
    ("tiny-roberta", TokenizerFamily.BYTE_BPE, False),    # byte-level BPE
    ("tiny-gpt2", TokenizerFamily.BYTE_BPE, False),
    ("tiny-t5", TokenizerFamily.SENTENCEPIECE, False),    # Unigram + Metaspace
    ("tiny-albert", TokenizerFamily.SENTENCEPIECE, False),
])
def test_tokenizer_json(fixtures_dir, name, family, lowercase):
    vocab = load_vocabulary(fixtures_dir / name / "tokenizer.json")
    assert vocab.tokens == _hf_vocab(fixtures_dir / name)
    assert vocab.family is family
    assert vocab.lowercase is lowercase
    assert vocab.tokenizer_file == str(fixtures_dir / name / "tokenizer.json")
    # A directory reads the same file.
    assert load_vocabulary(fixtures_dir / name).tokens == vocab.tokens


def test_wordpiece_details_and_special_roles(fixtures_dir):
    vocab = load_vocabulary(fixtures_dir / "tiny-bert")
    assert vocab.continuation_prefix == "##" and vocab.strip_accents
    assert vocab.special[SpecialRole.CLS] == "[CLS]"
    assert vocab.special[SpecialRole.PAD] == "[PAD]"
    assert vocab.role_of("[MASK]") is SpecialRole.MASK
    assert vocab.index["[SEP]"] == 3
    roberta = load_vocabulary(fixtures_dir / "tiny-roberta")
    assert roberta.special[SpecialRole.BOS] == "<s>" and roberta.special[SpecialRole.PAD] == "<pad>"
    assert {"<s>", "<pad>", "</s>", "<unk>", "<mask>"} <= roberta.added


def test_wordlevel_tokenizer_and_added_tokens(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({"[UNK]": 0, "hello": 1, "world": 2}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(["<extra>"])
    tok.save(str(tmp_path / "tokenizer.json"))
    vocab = load_vocabulary(tmp_path / "tokenizer.json")
    assert vocab.tokens == ("[UNK]", "hello", "world", "<extra>")
    assert vocab.family is TokenizerFamily.WORD
    assert vocab.added == frozenset({"<extra>"})
    assert vocab.special[SpecialRole.UNK] == "[UNK]"


def test_gaps_in_ids_become_placeholders(tmp_path):
    data = {"model": {"type": "WordLevel", "vocab": {"a": 0, "b": 2}, "unk_token": "a"},
            "added_tokens": [{"id": 4, "content": "<x>"}]}
    (tmp_path / "tokenizer.json").write_text(json.dumps(data))
    vocab = load_vocabulary(tmp_path)
    assert vocab.tokens == ("a", placeholder_token(1), "b", placeholder_token(3), "<x>")


# -- vocab.txt, vocab.json, SentencePiece ---------------------------------------------------

def test_vocab_txt_uncased_and_cased(tmp_path, fixtures_dir):
    vocab = load_vocabulary(fixtures_dir / "tiny-bert-bin")  # vocab.txt only
    assert vocab.tokens == tuple((fixtures_dir / "tiny-bert-bin" / "vocab.txt")
                                 .read_text("utf-8").splitlines())
    assert vocab.family is TokenizerFamily.WORDPIECE and vocab.lowercase
    cased = tmp_path / "vocab.txt"
    cased.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nThe\nthe\n##s\n\n", encoding="utf-8")
    vocab = load_vocabulary(cased)
    assert not vocab.lowercase and not vocab.strip_accents
    assert vocab.tokens[4:6] == ("The", "the") and vocab.tokens[-1] == ""
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
    assert load_vocabulary(cased).lowercase  # the config outranks the guess


def test_real_minilm_vocab_txt(minilm_dir):
    vocab = load_vocabulary(minilm_dir / "vocab.txt")
    assert len(vocab) == 30522 and vocab.lowercase
    assert vocab.tokens == load_vocabulary(minilm_dir / "tokenizer.json").tokens


def test_vocab_json_with_added_tokens(tmp_path):
    (tmp_path / "vocab.json").write_text(json.dumps({"Ġthe": 1, "a": 0, "Ġcat": 2}))
    (tmp_path / "added_tokens.json").write_text(json.dumps({"<|extra|>": 3}))
    vocab = load_vocabulary(tmp_path)
    assert vocab.tokens == ("a", "Ġthe", "Ġcat", "<|extra|>")
    assert vocab.family is TokenizerFamily.BYTE_BPE and vocab.added == {"<|extra|>"}


def test_sentencepiece_model(fixtures_dir):
    import sentencepiece as spm

    path = fixtures_dir / "tiny-xlnet" / "spiece.model"
    sp = spm.SentencePieceProcessor(model_file=str(path))
    vocab = load_vocabulary(path)
    assert vocab.tokens == tuple(sp.IdToPiece(i) for i in range(sp.GetPieceSize()))
    assert vocab.family is TokenizerFamily.SENTENCEPIECE
    assert vocab.special[SpecialRole.UNK] == sp.IdToPiece(sp.unk_id())
    assert vocab.special[SpecialRole.PAD] == sp.IdToPiece(3)


def test_freshly_trained_sentencepiece(tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "fixtures"))
    from checkpoints import sentencepiece_model

    path = sentencepiece_model(tmp_path / "sp", vocab_size=90)
    vocab = load_vocabulary(path)
    assert 0 < len(vocab) <= 90 and any(t.startswith("▁") for t in vocab)


# -- word lists and frequency files --------------------------------------------------------

def test_word_list(tmp_path):
    path = tmp_path / "words.txt"
    path.write_text("\ufeffthe\nNew York\n\ncafé\r\n北京\n", encoding="utf-8")
    vocab = load_vocabulary(path)
    assert vocab.tokens == ("the", "New York", "café", "北京")
    assert vocab.family is TokenizerFamily.WORD and vocab.counts is None


def test_frequency_file(tmp_path):
    path = tmp_path / "freq.txt"
    path.write_text("the 120\nnew york\t7\nc 3\n", encoding="utf-8")
    vocab = load_vocabulary(path)
    assert vocab.tokens == ("the", "new york", "c")
    assert vocab.counts == (120, 7, 3)


def test_jieba_frequency_file_with_tags(jieba_dict):
    vocab = load_vocabulary(jieba_dict)
    assert len(vocab) > 300_000 and vocab.counts is not None
    assert "北京" in vocab.index
    assert vocab.counts[vocab.index["北京"]] > 0
    assert vocab.duplicates > 0  # jieba repeats a few words; the first place is kept


def test_repeated_words_are_merged(tmp_path):
    (tmp_path / "freq.txt").write_text("a 2\nb 1\na 5\n")
    vocab = load_vocabulary(tmp_path / "freq.txt")
    assert vocab.tokens == ("a", "b") and vocab.counts == (7, 1) and vocab.duplicates == 1
    (tmp_path / "words.txt").write_text("x\ny\nx\n")
    assert load_vocabulary(tmp_path / "words.txt").tokens == ("x", "y")


def test_latin1_word_list(tmp_path):
    path = tmp_path / "words.txt"
    path.write_bytes("café\nnaïve\n".encode("latin-1"))
    with pytest.raises(VocabularyError, match=r"cannot decode as utf-8 at byte 3; "
                                              r"pass the right --encoding"):
        load_vocabulary(path)
    assert load_vocabulary(path, encoding="latin-1").tokens == ("café", "naïve")


# -- errors --------------------------------------------------------------------------------

def test_frequency_file_with_a_bad_line(tmp_path):
    path = tmp_path / "freq.txt"
    lines = [f"w{i} {i}" for i in range(1000)] + ["", "broken"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(VocabularyError, match=r"freq\.txt:1002: expected 'token count'"):
        load_vocabulary(path)


def test_duplicate_token(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("[PAD]\nthe\ncat\nthe\n", encoding="utf-8")
    with pytest.raises(VocabularyError, match=r"token 'the' at ids 1 and 3"):
        load_vocabulary(path)


def test_empty_and_missing_files(tmp_path):
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(VocabularyError, match="the vocabulary file is empty"):
        load_vocabulary(tmp_path / "empty.txt")
    with pytest.raises(VocabularyError, match="no such file or directory"):
        load_vocabulary(tmp_path / "absent.txt")
    (tmp_path / "sub").mkdir()
    with pytest.raises(VocabularyError, match=r"no tokenizer file found \(looked for "
                                              r"tokenizer\.json, vocab\.txt"):
        load_vocabulary(tmp_path / "sub")


def test_bad_json_files(tmp_path):
    (tmp_path / "tokenizer.json").write_text('{"model": ')
    with pytest.raises(VocabularyError, match=r"not valid JSON .*is the file complete\?"):
        load_vocabulary(tmp_path / "tokenizer.json")
    (tmp_path / "other.json").write_text('["model"]')
    with pytest.raises(VocabularyError, match=r"neither a tokenizer\.json nor a token-to-id map"):
        load_vocabulary(tmp_path / "other.json")
    (tmp_path / "vocab.json").write_text("{}")
    with pytest.raises(VocabularyError, match=r"neither a tokenizer\.json nor a token-to-id map"):
        load_vocabulary(tmp_path / "vocab.json")
    (tmp_path / "vocab.json").write_text('{"a": -1, "b": 0}')
    with pytest.raises(VocabularyError, match="negative id -1 for token 'a'"):
        load_vocabulary(tmp_path / "vocab.json")


def test_unsupported_and_empty_tokenizer(tmp_path):
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps({"model": {"type": "Mystery", "vocab": {}}}))
    with pytest.raises(VocabularyError, match="unsupported tokenizer model type 'Mystery'"):
        load_vocabulary(path)
    path.write_text(json.dumps({"model": {"type": "BPE", "vocab": {}, "merges": []}}))
    with pytest.raises(VocabularyError, match="the tokenizer has an empty vocabulary"):
        load_vocabulary(path)


def test_not_a_sentencepiece_model(tmp_path):
    path = tmp_path / "spiece.model"
    path.write_bytes(b"not a protobuf at all")
    with pytest.raises(VocabularyError, match=r"spiece\.model: not a SentencePiece model"):
        load_vocabulary(path)


def test_vocabulary_validates_itself():
    with pytest.raises(VocabularyError, match="no tokens"):
        Vocabulary((), TokenizerFamily.WORD)
    v = Vocabulary(("a", "b"), TokenizerFamily.WORD)
    assert v.index is v.index  # built once
    assert list(v) == ["a", "b"] and len(v) == 2


_WORD = st.text(st.characters(blacklist_categories=("Z", "C")), min_size=1, max_size=6)
_TOKEN = st.builds(" ".join, st.lists(_WORD, min_size=1, max_size=3))


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(_TOKEN, st.integers(0, 10**12), min_size=1, max_size=30),
       st.sampled_from([" ", "\t"]))
def test_frequency_file_round_trip(tmp_path_factory, entries, sep):
    path = tmp_path_factory.mktemp("freq") / "counts.txt"
    path.write_text("".join(f"{t}{sep}{c}\n" for t, c in entries.items()), encoding="utf-8")
    vocab = load_vocabulary(path)
    assert vocab.tokens == tuple(entries)
    assert vocab.counts == tuple(entries.values())

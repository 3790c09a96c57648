"""``--init subword``: re-tokenizing target tokens with the source tokenizer, and its errors."""

from __future__ import annotations

import numpy as np
import pytest

from embsurgeon.align.forms import Surface
from embsurgeon.align.init import InitContext, initialize
from embsurgeon.align.subword import MIN_WORD_PIECE, source_pieces, weighted_rows
from embsurgeon.errors import AlignmentError
from embsurgeon.table import EmbeddingTable


def _table(vectors: np.ndarray, prefix: str = "t") -> EmbeddingTable:
    return EmbeddingTable([f"{prefix}{i}" for i in range(len(vectors))],
                          np.asarray(vectors, dtype=np.float32))


CORPUS = [
    "the unbelievable players were playing in the park",
    "unbelievably, the player played and replayed the game",
    "a believer believes what believable people believe",
    "café owners play games; the café is playful",
    "playing and playful players play all day long",
] * 20


def _random_table(tokens, dim: int = 8, seed: int = 0) -> EmbeddingTable:
    rng = np.random.default_rng(seed)
    return EmbeddingTable(list(tokens), rng.standard_normal((len(tokens), dim)).astype(np.float32))


def _subword(table, vocab, surfaces, method="subword"):
    return initialize(method, [s.text for s in surfaces], surfaces,
                      InitContext(table, source_vocab=vocab))


def _mean_of(table, pieces):
    return np.mean([table[p] for p in pieces], axis=0)


@pytest.fixture(scope="module")
def wordpiece(tmp_path_factory):
    from embsurgeon.vocab import load_vocabulary

    path = tmp_path_factory.mktemp("wp") / "vocab.txt"
    path.write_text("\n".join([
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "##believ", "##able", "play",
        "##ing", "ing", "the", "##s", "cafe", ".", "##.", "中", "国", "##er",
    ]) + "\n", encoding="utf-8")
    vocab = load_vocabulary(path)
    return vocab, _random_table(vocab.tokens)


def test_wordpiece_word_initial_and_continuation(wordpiece):
    vocab, table = wordpiece
    r = _subword(table, vocab, [Surface("unbelievable", True), Surface("ing", False),
                                Surface("ing", True), Surface("players", False)])
    assert r.sources == (("un", "##believ", "##able"), ("##ing",), ("ing",), ())
    assert r.filled.tolist() == [True, True, True, False]  # "players": no ##play: [UNK]
    np.testing.assert_allclose(r.vectors[0], _mean_of(table, ["un", "##believ", "##able"]),
                               rtol=1e-6)
    np.testing.assert_allclose(r.weights[0], [1 / 3] * 3)


def test_wordpiece_normalizes_and_splits_like_bert(wordpiece):
    vocab, table = wordpiece
    assert vocab.lowercase and vocab.strip_accents
    r = _subword(table, vocab, [Surface("Café.", True), Surface("中国", True)])
    assert r.sources == (("cafe", "."), ("中", "国"))


def test_subword_weighted_weights_by_piece_length(wordpiece):
    vocab, table = wordpiece
    r = _subword(table, vocab, [Surface("unbelievable", True)], method="subword-weighted")
    np.testing.assert_allclose(r.weights[0], [2 / 12, 6 / 12, 4 / 12])
    expected = (2 * table["un"] + 6 * table["##believ"] + 4 * table["##able"]) / 12
    np.testing.assert_allclose(r.vectors[0], expected, rtol=1e-5)


def test_unk_pieces_do_not_count(wordpiece):
    vocab, table = wordpiece
    r = _subword(table, vocab, [Surface("[UNK]", True)])
    assert not r.filled.any()


def test_held_out_pieces_are_split_further(wordpiece):
    vocab, table = wordpiece
    kept = table.take(i for i, t in enumerate(table.tokens) if t != "ing")  # "ing" held out
    r = _subword(kept, vocab, [Surface("ing", True), Surface("playing", True)])
    assert r.sources == ((), ("play", "##ing"))


def _train_bpe(path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=330,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<|endoftext|>"], show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    tok.save(str(path))
    return tok


def _train_unigram(path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=120, special_tokens=["<unk>"], unk_token="<unk>",
                                      show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    tok.save(str(path))
    return tok


WORDS = ["unbelievable", "playful", "café", "replayed", "believers", "gamesplayer"]


def test_byte_level_bpe_matches_the_tokenizer(tmp_path):
    from embsurgeon.vocab import TokenizerFamily, load_vocabulary

    tok = _train_bpe(tmp_path / "tokenizer.json")
    vocab = load_vocabulary(tmp_path / "tokenizer.json")
    assert vocab.family is TokenizerFamily.BYTE_BPE
    table = _random_table(vocab.tokens)
    initial = _subword(table, vocab, [Surface(w, True) for w in WORDS])
    continuation = _subword(table, vocab, [Surface(w, False) for w in WORDS])
    for i, word in enumerate(WORDS):
        assert list(initial.sources[i]) == tok.encode(" " + word).tokens
        assert list(continuation.sources[i]) == tok.encode(word).tokens
        assert initial.sources[i][0].startswith("Ġ")
        assert not any(p.startswith("Ġ") for p in continuation.sources[i])
        np.testing.assert_allclose(initial.vectors[i], _mean_of(table, initial.sources[i]),
                                   rtol=1e-5, atol=1e-6)


def test_byte_level_lengths_count_bytes(tmp_path):
    from embsurgeon.vocab import load_vocabulary

    _train_bpe(tmp_path / "tokenizer.json")
    vocab = load_vocabulary(tmp_path / "tokenizer.json")
    table = _random_table(vocab.tokens)
    r = _subword(table, vocab, [Surface("café", True)], method="subword-weighted")
    lengths = np.array(r.weights[0]) * len("café".encode())
    np.testing.assert_allclose(lengths, np.round(lengths))  # whole bytes: Ġ is not counted
    assert sum(r.weights[0]) == pytest.approx(1.0)


def test_byte_level_held_out_token_is_rebuilt_from_smaller_pieces(tmp_path):
    from embsurgeon.vocab import load_vocabulary

    tok = _train_bpe(tmp_path / "tokenizer.json")
    vocab = load_vocabulary(tmp_path / "tokenizer.json")
    whole = tok.encode(" the").tokens
    assert whole == ["Ġthe"]
    table = _random_table(vocab.tokens)
    held = table.take(i for i, t in enumerate(table.tokens) if t != "Ġthe")
    r = _subword(held, vocab, [Surface("the", True)])
    assert len(r.sources[0]) > 1 and "".join(r.sources[0]) == "Ġthe"


def test_unigram_metaspace_matches_the_tokenizer(tmp_path):
    from tokenizers import pre_tokenizers

    from embsurgeon.vocab import TokenizerFamily, load_vocabulary

    tok = _train_unigram(tmp_path / "tokenizer.json")
    vocab = load_vocabulary(tmp_path / "tokenizer.json")
    assert vocab.family is TokenizerFamily.SENTENCEPIECE
    table = _random_table(vocab.tokens)
    initial = _subword(table, vocab, [Surface(w, True) for w in WORDS])
    continuation = _subword(table, vocab, [Surface(w, False) for w in WORDS])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="never")
    for i, word in enumerate(WORDS):
        expected = [p for p in tok.encode(word).tokens if p != "<unk>"]
        assert list(continuation.sources[i]) == expected
        assert not continuation.sources[i][0].startswith("▁")
        assert initial.sources[i][0].startswith("▁")
        assert "".join(initial.sources[i]).replace("▁", "") == word or "<unk>" in tok.encode(
            word).tokens


def test_sentencepiece_model_file(tmp_path):
    import io

    import sentencepiece as spm

    from embsurgeon.vocab import TokenizerFamily, load_vocabulary

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(CORPUS), model_writer=model,
                                   vocab_size=48, model_type="unigram", minloglevel=2)
    path = tmp_path / "spiece.model"
    path.write_bytes(model.getvalue())
    vocab = load_vocabulary(path)
    assert vocab.family is TokenizerFamily.SENTENCEPIECE
    table = _random_table(vocab.tokens)
    processor = spm.SentencePieceProcessor(model_file=str(path))
    words = ["unbelievable", "playful", "replayed", "believers"]
    initial = _subword(table, vocab, [Surface(w, True) for w in words])
    continuation = _subword(table, vocab, [Surface(w, False) for w in words])
    for i, word in enumerate(words):
        assert list(initial.sources[i]) == processor.encode(word, out_type=str)
        assert "".join(continuation.sources[i]) == word


def test_word_level_source_composes_words():
    table = _random_table(["sun", "flower", "中", "国", "人", "a", "b", "x", "y", "z", "Rain"])
    r = _subword(table, None, [Surface("中国人", True), Surface("sunflower", True),
                              Surface("xyz", True), Surface("Sun flower", True),
                              Surface("rain", True)])
    assert r.sources == (("中", "国", "人"), ("sun", "flower"), (), ("sun", "flower"), ())
    np.testing.assert_allclose(r.vectors[0], _mean_of(table, ["中", "国", "人"]), rtol=1e-6)


def test_chinese_word_from_jieba_characters(jieba_dict):
    lines = jieba_dict.read_text(encoding="utf-8").splitlines()
    chars = sorted({line.split()[0] for line in lines if len(line.split()[0]) == 1})
    table = _random_table(chars, seed=3)
    words = [w for w in (line.split()[0] for line in lines[:20000])
             if len(w) == 3 and all(c in table for c in w)][:50]
    assert len(words) == 50
    r = _subword(table, None, [Surface(w, True) for w in words])
    assert r.filled.all()
    assert all(r.sources[i] == tuple(w) for i, w in enumerate(words))


def test_fasttext_ngrams_match_gensim(gensim_data):
    from gensim.models.fasttext import load_facebook_vectors

    path = gensim_data / "lee_fasttext.bin"
    kv = load_facebook_vectors(str(path))
    table = EmbeddingTable(list(kv.index_to_key), kv.vectors.astype(np.float32))
    words = ["unforeseeably", "governmentalism", "zq"]
    r = initialize("subword", words, [Surface(w, True) for w in words],
                   InitContext(table, fasttext_path=str(path)))
    assert r.filled.tolist() == [True, True, True]
    for i, word in enumerate(words):
        assert word not in kv.key_to_index
        np.testing.assert_allclose(r.vectors[i], kv.get_vector(word), rtol=1e-5, atol=1e-6)
    assert "<un" in r.sources[0]


def test_fasttext_of_another_dimension(gensim_data):
    path = gensim_data / "lee_fasttext.bin"
    with pytest.raises(AlignmentError, match="fastText vectors have dimension 10 but the source"):
        initialize("subword", ["x"], [Surface("x", True)],
                   InitContext(_table(np.ones((2, 3))), fasttext_path=str(path)))


def test_subword_without_a_tokenizer_file():
    from embsurgeon.vocab import TokenizerFamily, Vocabulary

    vocab = Vocabulary(("a", "b"), TokenizerFamily.BYTE_BPE, source="vocab.json")
    with pytest.raises(AlignmentError, match=r"vocabulary 'vocab\.json' has no tokenizer file"):
        _subword(_random_table(["a", "b"]), vocab, [Surface("ab", True)])


def test_wordpiece_agrees_with_the_real_minilm_tokenizer(minilm_dir):
    from tokenizers import Tokenizer

    from embsurgeon.vocab import load_vocabulary

    tok = Tokenizer.from_file(str(minilm_dir / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    for source in ("tokenizer.json", "vocab.txt"):
        vocab = load_vocabulary(minilm_dir / source)
        table = _random_table(vocab.tokens, dim=4)
        stems = [t for t in vocab.tokens[2000:30000:97] if t.isalpha()]
        words = [w for stem in stems for w in (stem + "ization", "Un" + stem + "ly")]
        words += ["Café", "naïve", "don't", "中国人", "e-mail", "ü", "x" * 120, "Straße"]
        r = _subword(table, vocab, [Surface(w, True) for w in words])
        for i, word in enumerate(words):
            expected = [p for p in tok.encode(word, add_special_tokens=False).tokens
                        if p != "[UNK]"]
            assert list(r.sources[i]) == expected, (source, word)


def test_gpt2_vocab_json_with_merges(tmp_path):
    from embsurgeon.vocab import TokenizerFamily, load_vocabulary

    tok = _train_bpe(tmp_path / "tokenizer.json")
    files = tmp_path / "gpt2"
    files.mkdir()
    tok.model.save(str(files))  # vocab.json + merges.txt, as GPT-2 checkpoints ship them
    vocab = load_vocabulary(files / "vocab.json")
    assert vocab.family is TokenizerFamily.BYTE_BPE and vocab.tokenizer_file is None
    table = _random_table(vocab.tokens)
    r = _subword(table, vocab, [Surface(w, True) for w in WORDS])
    for i, word in enumerate(WORDS):
        assert list(r.sources[i]) == tok.encode(" " + word).tokens


def test_fasttext_path_that_is_not_a_fasttext_model(tmp_path):
    from embsurgeon.errors import FormatError

    bogus = tmp_path / "vectors.bin"
    bogus.write_bytes(b"not a model at all" * 10)
    with pytest.raises(FormatError, match=r"not a fastText \.bin model"):
        initialize("subword", ["x"], [Surface("x", True)],
                   InitContext(_table(np.ones((2, 3))), fasttext_path=str(bogus)))


def test_source_pieces_and_the_shortest_word_piece():
    table = _random_table(["sun", "flower", "x", "y", "z", "北", "京"])
    assert source_pieces(Surface("Sunflower", True), table) == ["sun", "flower"]
    assert MIN_WORD_PIECE == 2 and source_pieces(Surface("xyz", True), table) == []
    assert source_pieces(Surface("北京", True), table) == ["北", "京"]  # CJK by character


def test_weighted_rows_sums_each_owners_pieces_across_chunks(monkeypatch):
    import embsurgeon.align.subword as subword

    monkeypatch.setattr(subword, "_CHUNK_ELEMENTS", 4)  # two rows of width 2 per chunk
    matrix = np.arange(12, dtype=np.float64).reshape(6, 2)
    owners = np.array([0, 0, 0, 2, 3, 3])
    rows = np.array([0, 1, 2, 5, 3, 4])
    weights = np.array([0.5, 0.25, 0.25, 1.0, 0.5, 0.5], dtype=np.float32)
    out = weighted_rows(matrix, 4, owners, rows, weights)
    expected = np.zeros((4, 2))
    for o, r, w in zip(owners, rows, weights, strict=True):
        expected[o] += w * matrix[r]
    np.testing.assert_allclose(out, expected)
    assert not weighted_rows(matrix, 3, owners[:0], rows[:0], weights[:0]).any()


def test_byte_level_source_without_a_tokenizer_through_align():
    from embsurgeon.align import align

    table = _random_table(["Ġthe", "Ġsun", "flower", "Ġcat"])
    with pytest.raises(AlignmentError, match=r"--init subword: the byte-bpe source vocabulary "
                                             r".* has no tokenizer file; pass the tokenizer\.json"):
        align(table, ["the", "sunflower"], init="subword,mean")


def test_nonfinite_pieces_are_left_out():
    vectors = np.array([[1, 0], [np.nan, 0], [0, 2], [np.inf, np.inf]], dtype=np.float32)
    table = EmbeddingTable(["sun", "flower", "moon", "shine"], vectors)
    r = initialize("subword", ["sunflower", "moonshine", "shineshine"],
                   [Surface("sunflower", True), Surface("moonshine", True),
                    Surface("shineshine", True)], InitContext(table))
    assert r.sources[:2] == (("sun",), ("moon",)) and r.filled.tolist() == [True, True, False]
    np.testing.assert_array_equal(r.vectors[:2], [[1, 0], [0, 2]])

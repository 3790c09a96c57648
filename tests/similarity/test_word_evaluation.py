"""The word-pair and analogy readers on gensim's own files, scored like gensim scores them."""

import numpy as np
import pytest

from embsurgeon.errors import FormatError
from embsurgeon.similarity.evaluate import (
    evaluate_analogies,
    evaluate_word_pairs,
    read_analogies,
    read_word_pairs,
)
from embsurgeon.table import EmbeddingTable

gensim_models = pytest.importorskip("gensim.models")

# Real vectors from gensim's test data that cover enough of the evaluation files to matter.
VECTORS = [("euclidean_vectors.bin", True), ("lee_fasttext.vec", False)]


def load(gensim_data, name, binary):
    kv = gensim_models.KeyedVectors.load_word2vec_format(str(gensim_data / name), binary=binary)
    return kv, EmbeddingTable(list(kv.index_to_key), kv.vectors)


def test_readers_on_gensims_files(gensim_data):
    simlex = read_word_pairs(gensim_data / "simlex999.txt")
    assert len(simlex.pairs) == 999 and simlex.pairs[0] == ("old", "new", 1.58)
    wordsim = read_word_pairs(gensim_data / "wordsim353.tsv")
    assert len(wordsim.pairs) == 353 and wordsim.pairs[0] == ("love", "sex", 6.77)
    questions = read_analogies(gensim_data / "questions-words.txt")
    assert len(questions.sections) == 14
    assert sum(len(q) for q in questions.sections.values()) == 19544
    assert questions.sections["capital-common-countries"][0] == ("Athens", "Greece", "Baghdad",
                                                                 "Iraq")


@pytest.mark.parametrize(("name", "binary"), VECTORS)
@pytest.mark.parametrize("pairs", ["simlex999.txt", "wordsim353.tsv"])
def test_word_pair_spearman_equals_gensim(gensim_data, name, binary, pairs):
    kv, table = load(gensim_data, name, binary)
    pearson, spearman, oov_percent = kv.evaluate_word_pairs(str(gensim_data / pairs))
    ours = evaluate_word_pairs(table, read_word_pairs(gensim_data / pairs))
    assert ours.spearman == pytest.approx(spearman.statistic, abs=1e-9)
    assert ours.pearson == pytest.approx(pearson.statistic, abs=1e-6)
    assert ours.oov_percent == pytest.approx(oov_percent)
    assert ours.pairs > 40


@pytest.mark.parametrize(("name", "binary"), VECTORS)
def test_analogy_accuracy_equals_gensim(gensim_data, name, binary):
    kv, table = load(gensim_data, name, binary)
    path = gensim_data / "questions-words.txt"
    score, sections = kv.evaluate_word_analogies(str(path))
    ours = evaluate_analogies(table, read_analogies(path), device="cpu")
    assert ours.accuracy == pytest.approx(score)
    theirs = {s["section"]: (len(s["correct"]), len(s["correct"]) + len(s["incorrect"]))
              for s in sections[:-1]}
    assert {s.section: (s.correct, s.total) for s in ours.sections} == theirs
    assert ours.total > 90


def test_analogies_that_hold_are_all_solved():
    # country + capital offset: every 'a b c d' with the same offset is exactly solvable
    rng = np.random.default_rng(0)
    countries = rng.standard_normal((6, 20)).astype(np.float32)
    offset = rng.standard_normal(20).astype(np.float32) * 3
    tokens = [f"c{i}" for i in range(6)] + [f"cap{i}" for i in range(6)]
    table = EmbeddingTable(tokens, np.vstack([countries, countries + offset]))
    from embsurgeon.similarity.evaluate import Analogies

    questions = tuple((f"c{i}", f"cap{i}", f"c{j}", f"cap{j}")
                      for i in range(6) for j in range(6) if i != j)
    score = evaluate_analogies(table, Analogies("synthetic", {"capitals": questions}, ()),
                               device="cpu")
    assert (score.correct, score.total, score.accuracy) == (30, 30, 1.0)


def test_case_folding_like_gensim():
    table = EmbeddingTable(["Paris", "paris", "rome"],
                           np.array([[1, 0], [0, 1], [1, 0.1]], dtype=np.float32))
    from embsurgeon.similarity.evaluate import WordPairs

    pairs = WordPairs("x", (("PARIS", "Rome", 9.0), ("paris", "rome", 8.0),
                            ("paris", "nowhere", 1.0)), ())
    folded = evaluate_word_pairs(table, pairs)
    assert (folded.pairs, folded.oov) == (2, 1)  # the first spelling, 'Paris', answers both
    exact = evaluate_word_pairs(table, pairs, case_insensitive=False)
    assert (exact.pairs, exact.oov) == (1, 2)
    assert exact.spearman is None  # one pair has no rank correlation


def test_reader_errors_name_the_file_and_line(tmp_path):
    empty = tmp_path / "pairs.txt"
    empty.write_text("# only a comment\nword1\tword2\tPOS\n")
    with pytest.raises(FormatError, match=r"pairs\.txt: no word pairs found"):
        read_word_pairs(empty)
    headless = tmp_path / "q.txt"
    headless.write_text("a b c d\n")
    with pytest.raises(FormatError, match=r"q\.txt, line 1: a question before any"):
        read_analogies(headless)
    nothing = tmp_path / "n.txt"
    nothing.write_text(": empty\n")
    with pytest.raises(FormatError, match="no analogy questions found"):
        read_analogies(nothing)
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9\tbar\t1.0\n".encode("latin-1"))
    with pytest.raises(FormatError, match=r"latin\.txt: not utf-8 text \(byte 3\)"):
        read_word_pairs(latin)
    assert read_word_pairs(latin, encoding="latin-1").pairs == (("café", "bar", 1.0),)


def test_skipped_lines_are_counted(tmp_path):
    path = tmp_path / "mixed.txt"
    path.write_text("word1 word2 score\nold new 1.5\n\nbad line here too\n")
    pairs = read_word_pairs(path)
    assert pairs.pairs == (("old", "new", 1.5),) and pairs.skipped_lines == (1, 4)

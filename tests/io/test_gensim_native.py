import sys

import numpy as np
import pytest
from click.testing import CliRunner

from embsurgeon import read_table
from embsurgeon.cli import cli
from embsurgeon.errors import FormatError, MissingDependencyError, VocabularyError
from embsurgeon.io import gensim_native
from embsurgeon.io.formats import ReadOptions, detect_format
from embsurgeon.io.gensim_native import (
    fasttext_compose,
    load_fasttext_vectors,
    read_fasttext_bin,
    read_gensim,
    sniff_fasttext_bin,
)
from embsurgeon.table import EmbeddingTable

# Old header (no magic number), new header, Cyrillic vocabulary, non-ASCII, cp852-encoded.
FASTTEXT = [("lee_fasttext.bin", "utf-8"), ("lee_fasttext_new.bin", "utf-8"),
            ("crime-and-punishment.bin", "utf-8"), ("toy-model.bin", "utf-8"),
            ("non_ascii_fasttext.bin", "utf-8"), ("cp852_fasttext.bin", "cp852")]


@pytest.mark.parametrize(("name", "encoding"), FASTTEXT)
def test_same_as_gensim_load_facebook_vectors(gensim_data, name, encoding):
    from gensim.models.fasttext import load_facebook_vectors

    table = read_fasttext_bin(gensim_data / name, ReadOptions(encoding=encoding))
    kv = load_facebook_vectors(str(gensim_data / name), encoding=encoding)
    assert list(table.tokens) == list(kv.index_to_key)
    np.testing.assert_array_equal(table.vectors, kv.vectors)
    assert table.metadata["source_dtype"] == "float32"
    assert table.metadata["subwords"].startswith("n-grams")


def test_detected_by_magic_or_old_header(gensim_data):
    for name, _ in FASTTEXT:
        assert detect_format(gensim_data / name).name.value == "fasttext-bin"
    head = (gensim_data / "euclidean_vectors.bin").read_bytes()[:4096]
    assert not sniff_fasttext_bin(gensim_data / "euclidean_vectors.bin", head)


def test_compose_oov_words_from_ngrams(gensim_data):
    path = gensim_data / "lee_fasttext.bin"
    kv = load_fasttext_vectors(path)
    assert load_fasttext_vectors(path) is kv  # cached
    vectors = fasttext_compose(path, ["the", "surgeonish", "embeddingz"])
    assert vectors.shape == (3, 10) and vectors.dtype == np.float32
    np.testing.assert_array_equal(vectors[0], kv["the"])
    assert "surgeonish" not in kv.key_to_index
    np.testing.assert_allclose(vectors[1], kv.get_vector("surgeonish"))
    assert np.linalg.norm(vectors[2]) > 0


def test_compose_word_without_ngrams(gensim_data):
    # min_n is 3, so a one-letter unknown word has only its bracketed 3-gram "<q>".
    with pytest.raises(VocabularyError, match="no character n-grams"):
        fasttext_compose(gensim_data / "lee_fasttext.bin", ["", "the"])


def test_keep_and_limit_through_registry(gensim_data):
    path = gensim_data / "crime-and-punishment.bin"
    full = read_table(path)
    assert read_table(path, limit=4).tokens == full.tokens[:4]
    assert read_table(path, keep=frozenset({"the", "and"})).tokens == tuple(
        t for t in full.tokens if t in {"the", "and"})


@pytest.mark.parametrize(("name", "message"), [
    ("pang_lee_polarity_fasttext.bin", "Supervised fastText models are not supported; only "
                                       "unsupervised"),
    ("euclidean_vectors.bin", "this is word2vec-bin data, not fasttext-bin; pass --from "
                              "word2vec-bin"),
    ("lee_fasttext.vec", r"this is text, not a fastText .bin model; pass --from word2vec"),
    ("ft_kv_3.6.0.model.gz", "this is a pickle or zip archive"),
])
def test_unreadable_fasttext(gensim_data, name, message):
    with pytest.raises(FormatError, match=message):
        read_fasttext_bin(gensim_data / name, ReadOptions())


def test_truncated_fasttext(tmp_path, gensim_data):
    path = tmp_path / "cut.bin"
    path.write_bytes((gensim_data / "lee_fasttext_new.bin").read_bytes()[:5000])
    with pytest.raises(FormatError, match=r"cut.bin: not a readable fastText .bin model .*"
                                          r"truncated, damaged"):
        read_fasttext_bin(path, ReadOptions())
    with pytest.raises(FormatError, match=r"empty.bin: no such file"):
        read_fasttext_bin(tmp_path / "empty.bin", ReadOptions())
    (tmp_path / "empty.bin").write_bytes(b"")
    with pytest.raises(FormatError, match=r"empty.bin: the file is empty"):
        read_fasttext_bin(tmp_path / "empty.bin", ReadOptions())


def test_missing_gensim_names_the_extra(monkeypatch, gensim_data):
    gensim_native._load_fasttext.cache_clear()
    monkeypatch.setitem(sys.modules, "gensim", None)  # makes `import gensim` fail
    with pytest.raises(MissingDependencyError, match=r"reading fastText .bin files needs the "
                                                     r"'gensim' package: pip install "
                                                     r"'embsurgeon\[gensim\]'"):
        read_fasttext_bin(gensim_data / "toy-model.bin", ReadOptions())


@pytest.fixture
def kv_file(tmp_path):
    from gensim.models import KeyedVectors

    kv = KeyedVectors(vector_size=3)
    kv.add_vectors(["北京", "b", "c"], np.arange(9, dtype=np.float32).reshape(3, 3))
    path = tmp_path / "vectors.kv"
    kv.save(str(path))
    return path


def test_gensim_pickle_needs_allow_pickle(kv_file):
    with pytest.raises(FormatError, match=r"vectors.kv: gensim .kv/.model files are pickles, and "
                                          r"loading one can run arbitrary code; pass "
                                          r"--allow-pickle"):
        read_table(kv_file)
    table = read_table(kv_file, allow_pickle=True)
    assert table.tokens == ("北京", "b", "c")
    np.testing.assert_array_equal(table.vectors, np.arange(9).reshape(3, 3))
    assert table.metadata["format"] == "gensim"


def test_gensim_full_model_uses_its_wv(tmp_path):
    from gensim.models import Word2Vec

    model = Word2Vec([["a", "b", "c"], ["b", "c", "a"]], vector_size=4, min_count=1, seed=1,
                     workers=1)
    model.save(str(tmp_path / "w2v.model"))
    table = read_gensim(tmp_path / "w2v.model", ReadOptions(allow_pickle=True))
    assert list(table.tokens) == list(model.wv.index_to_key)
    np.testing.assert_array_equal(table.vectors, model.wv.vectors)


@pytest.mark.parametrize(("content", "message"), [
    (b"", "the file is empty"),
    (b"not a pickle at all", "not a loadable gensim pickle"),
])
def test_bad_gensim_files(tmp_path, content, message):
    path = tmp_path / "bad.kv"
    path.write_bytes(content)
    with pytest.raises(FormatError, match=message):
        read_gensim(path, ReadOptions(allow_pickle=True))


def test_gensim_pickle_of_something_else(tmp_path):
    from gensim.utils import SaveLoad

    SaveLoad().save(str(tmp_path / "other.kv"))
    with pytest.raises(FormatError, match="holds a SaveLoad, not gensim KeyedVectors"):
        read_gensim(tmp_path / "other.kv", ReadOptions(allow_pickle=True))


def test_cli_convert_fasttext_and_pickle(tmp_path, gensim_data, kv_file):
    runner = CliRunner()
    out = tmp_path / "ft.vec"
    result = runner.invoke(cli, ["convert", str(gensim_data / "lee_fasttext.bin"), str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text(encoding="utf-8").startswith("1762 10\n")
    result = runner.invoke(cli, ["inspect", str(kv_file)])
    assert result.exit_code == 1 and "--allow-pickle" in result.output
    result = runner.invoke(cli, ["inspect", str(kv_file), "--allow-pickle"])
    assert result.exit_code == 0 and "3 x 3" in result.output


def test_table_guard_against_shared_memory(gensim_data):
    a = read_fasttext_bin(gensim_data / "toy-model.bin", ReadOptions())
    a.vectors[0, 0] = 1234.0  # must not leak into the cached model
    b = read_fasttext_bin(gensim_data / "toy-model.bin", ReadOptions())
    assert b.vectors[0, 0] != 1234.0
    assert isinstance(b, EmbeddingTable)

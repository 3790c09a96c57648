"""Target vocabularies: lists, vocabulary files, tables, and the reader options tables get."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from embsurgeon.align.files import align_file
from embsurgeon.align.targets import load_target, source_vocabulary, table_vocabulary
from embsurgeon.errors import AlignmentError, FormatError
from embsurgeon.io.formats import ReadOptions, write_table
from embsurgeon.table import EmbeddingTable
from embsurgeon.vocab import TokenizerFamily


def _table(tokens, dim=3):
    return EmbeddingTable(list(tokens), np.ones((len(tokens), dim), dtype=np.float32))


def test_a_list_keeps_its_order_and_guesses_its_family():
    vocab = load_target(["[CLS]", "play", "##ing"])
    assert vocab.tokens == ("[CLS]", "play", "##ing")
    assert vocab.family is TokenizerFamily.WORDPIECE


def test_list_errors():
    with pytest.raises(AlignmentError, match="the target vocabulary is empty; give at least one"):
        load_target([])
    with pytest.raises(AlignmentError, match="target list: token 'a' at ids 0 and 2"):
        load_target(["a", "b", "a"])


def test_path_errors(tmp_path):
    with pytest.raises(AlignmentError, match=r"missing\.txt: target not found; pass a tokenizer, "
                                             "model directory, word list, frequency file or "
                                             "embedding table"):
        load_target(tmp_path / "missing.txt")
    empty = tmp_path / "words.txt"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(AlignmentError, match=r"words\.txt: the target vocabulary is empty"):
        load_target(empty)


def test_a_table_without_rows_is_refused():
    empty = EmbeddingTable([], np.zeros((0, 2), np.float32), {"source": "e.safetensors"})
    with pytest.raises(AlignmentError, match=r"e\.safetensors: the table has no rows"):
        table_vocabulary(empty)
    with pytest.raises(AlignmentError, match="table: the table has no rows"):
        load_target(EmbeddingTable([], np.zeros((0, 2), np.float32)))


@pytest.mark.parametrize("name", ["t.safetensors", "t.vec", "t.VEC.gz", "t.txt"])
def test_tables_are_told_from_word_lists(tmp_path, name):
    path = tmp_path / name
    if name.endswith(".safetensors"):
        write_table(_table(["x", "y"]), path)
    else:
        text = "x 1 2 3\ny 4 5 6\n"
        path.write_bytes(gzip.compress(text.encode()) if name.endswith(".gz") else text.encode())
    assert load_target(path).tokens == ("x", "y")


def test_a_frequency_file_is_a_vocabulary_not_a_table(tmp_path):
    path = tmp_path / "freq.txt"
    path.write_text("the 100\ncat 7\n", encoding="utf-8")
    assert load_target(path).tokens == ("the", "cat")


def test_a_table_target_is_read_with_the_callers_options(tmp_path):
    path = tmp_path / "target.vec"
    path.write_bytes("2 2\ncafé 1 2\nthe 3 4\n".encode("latin-1"))
    with pytest.raises(FormatError):
        load_target(path)  # not UTF-8
    assert load_target(path, options=ReadOptions(encoding="latin-1")).tokens == ("café", "the")
    replaced = load_target(path, options=ReadOptions(decode_errors="replace"))
    assert replaced.tokens == ("caf\ufffd", "the")
    # Which rows to keep belongs to the source, never to the target.
    trimmed = ReadOptions(encoding="latin-1", limit=1, keep=frozenset({"the"}))
    assert load_target(path, options=trimmed).tokens == ("café", "the")


def test_align_file_passes_its_reader_options_to_a_table_target(tmp_path):
    src = tmp_path / "src.txt"
    src.write_bytes("café 1 2\nthe 3 4\ncat 5 6\n".encode("latin-1"))
    target = tmp_path / "target.vec"
    target.write_bytes("2 2\nthe 0 0\ncafé 0 0\n".encode("latin-1"))
    done = align_file(src, tmp_path / "out.safetensors", target,
                      read=ReadOptions(encoding="latin-1"), init="zero")
    assert done.alignment.table.tokens == ("the", "café")
    assert done.alignment.report.copied == 2


def test_source_vocabulary_follows_the_tables_rows(tmp_path):
    vocab_txt = tmp_path / "vocab.txt"
    vocab_txt.write_text("[PAD]\n[UNK]\nplay\n##ing\n", encoding="utf-8")
    table = _table(["[PAD]", "[UNK]", "play"])  # a checkpoint may have fewer rows
    vocab = source_vocabulary(table, vocab_txt)
    assert vocab.tokens == ("[PAD]", "[UNK]", "play")
    assert vocab.family is TokenizerFamily.WORDPIECE and "[UNK]" in vocab.special.values()

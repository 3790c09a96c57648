"""The format registry: detection order, the errors that list what was tried, option plumbing."""

import numpy as np
import pytest

from embsurgeon import read_table, write_table
from embsurgeon.errors import FormatError
from embsurgeon.io.formats import (
    FORMATS,
    FormatName,
    ReadOptions,
    WriteOptions,
    detect_format,
    output_format,
)
from embsurgeon.table import EmbeddingTable


@pytest.fixture
def table() -> EmbeddingTable:
    return EmbeddingTable(["a", "b", "c"], np.arange(6, dtype=np.float32).reshape(3, 2))


def test_explicit_name_wins_over_suffix_and_content(tmp_path):
    path = tmp_path / "vectors.vec"
    path.write_text("a 1 2\nb 3 4\n")
    assert detect_format(path, "glove").name is FormatName.GLOVE
    assert detect_format(path, FormatName.PT).name is FormatName.PT


def test_suffix_decides_without_reading(tmp_path):
    # A suffix owned by a format without a sniffer selects it: the file need not exist.
    assert detect_format(tmp_path / "missing.kv").name is FormatName.GENSIM
    assert detect_format(tmp_path / "missing.model").name is FormatName.GENSIM


def test_suffix_narrows_sniffing_first(tmp_path, table):
    # '.pt' content that is really safetensors: the pt sniffer is tried first, then the rest.
    write_table(table, tmp_path / "emb.safetensors")
    (tmp_path / "emb.safetensors").rename(tmp_path / "emb.pt")
    assert detect_format(tmp_path / "emb.pt").name is FormatName.SAFETENSORS
    gz = tmp_path / "v.vec.gz"
    import gzip

    gz.write_bytes(gzip.compress(b"2 2\na 1 2\nb 3 4\n"))
    assert detect_format(gz).name is FormatName.WORD2VEC


def test_content_sniffing_when_the_suffix_says_nothing(tmp_path, table):
    glove = tmp_path / "vectors.data"
    glove.write_text("a 1 2\nb 3 4\n")
    assert detect_format(glove).name is FormatName.GLOVE
    w2v = tmp_path / "vectors.txt"
    w2v.write_text("2 2\na 1 2\nb 3 4\n")
    assert detect_format(w2v).name is FormatName.WORD2VEC
    write_table(table, tmp_path / "emb.safetensors")
    renamed = tmp_path / "emb.weights"
    (tmp_path / "emb.safetensors").rename(renamed)
    assert detect_format(renamed).name is FormatName.SAFETENSORS
    assert detect_format(tmp_path).name is FormatName.HF


def test_unrecognised_lists_every_format_tried(tmp_path):
    path = tmp_path / "mystery.dat"
    path.write_bytes(b"\x00\x01\x02 not embeddings \xff")
    with pytest.raises(FormatError, match=r"format not recognised \(tried ") as info:
        detect_format(path)
    tried = str(info.value).split("(tried ")[1].split(")")[0].split(", ")
    assert sorted(tried) == sorted(f.name.value for f in FORMATS)
    assert "pass --from NAME" in str(info.value)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(FormatError, match=r"no such file or directory"):
        detect_format(tmp_path / "nope.data")
    (tmp_path / "empty.data").write_bytes(b"")
    with pytest.raises(FormatError, match=r"the file is empty"):
        detect_format(tmp_path / "empty.data")


def test_output_format_from_suffix_or_name(tmp_path):
    assert output_format("o.safetensors").name is FormatName.SAFETENSORS
    assert output_format("o.txt.gz").name is FormatName.WORD2VEC
    assert output_format("o.bin").name is FormatName.WORD2VEC_BIN
    assert output_format("o.anything", "glove").name is FormatName.GLOVE


def test_output_format_errors():
    with pytest.raises(FormatError, match=r"cannot tell the output format from suffix "
                                          r"'.xyz' \(known: .*\); pass --to NAME"):
        output_format("o.xyz")
    with pytest.raises(FormatError, match=r"suffix '\(none\)'"):
        output_format("noext")
    with pytest.raises(FormatError, match=r"embsurgeon cannot write hf; choose one of "
                                          r"safetensors, pt, word2vec-bin, word2vec, glove"):
        output_format("o.safetensors", "hf")


def test_options_and_keywords_together_are_refused(tmp_path, table):
    path = tmp_path / "t.vec"
    write_table(table, path)
    assert len(read_table(path, options=ReadOptions(limit=2))) == 2
    assert len(read_table(path, limit=1)) == 1
    with pytest.raises(TypeError, match=r"read_table\(\) got options= and keyword options "
                                        r"\(limit\); pass one or the other"):
        read_table(path, options=ReadOptions(limit=2), limit=1)
    with pytest.raises(TypeError, match=r"write_table\(\) got options= and keyword options "
                                        r"\(force\)"):
        write_table(table, path, options=WriteOptions(), force=True)
    assert len(read_table(path)) == 3  # the refused write left the file alone

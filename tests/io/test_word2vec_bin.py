import gzip
import re
import tracemalloc

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embsurgeon import read_table
from embsurgeon.cli import cli
from embsurgeon.errors import DtypeError, FormatError, VocabularyError
from embsurgeon.io import word2vec_bin
from embsurgeon.io.formats import ReadOptions, WriteOptions
from embsurgeon.io.text import read_text
from embsurgeon.io.word2vec_bin import read_word2vec_bin, sniff_word2vec_bin, write_word2vec_bin
from embsurgeon.table import EmbeddingTable

# Every test runs through the compiled parser and the numpy one (see conftest.py).
pytestmark = pytest.mark.usefixtures("parser")

def _read(path, **kwargs):
    return read_word2vec_bin(path, ReadOptions(**kwargs))


# euclidean_vectors.bin and high_precision.kv.bin have no newline between records.
@pytest.mark.parametrize("name", ["euclidean_vectors.bin", "high_precision.kv.bin",
                                  "poincare_vectors.bin"])
def test_same_as_gensim_on_its_own_files(gensim_data, name):
    from gensim.models import KeyedVectors

    table = _read(gensim_data / name)
    kv = KeyedVectors.load_word2vec_format(str(gensim_data / name), binary=True)
    assert list(table.tokens) == list(kv.index_to_key)
    np.testing.assert_array_equal(table.vectors, kv.vectors)
    assert table.metadata["source_dtype"] == "float32"


def test_gensim_reads_what_we_write(tmp_path, fixtures_dir):
    from gensim.models import KeyedVectors

    table = read_text(fixtures_dir / "word2vec.vec", ReadOptions())
    write_word2vec_bin(table, tmp_path / "out.bin", WriteOptions())
    kv = KeyedVectors.load_word2vec_format(str(tmp_path / "out.bin"), binary=True)
    assert list(kv.index_to_key) == list(table.tokens)
    np.testing.assert_array_equal(kv.vectors, table.vectors)


def test_fixture_matches_text_and_gz(tmp_path, fixtures_dir):
    table = _read(fixtures_dir / "word2vec.bin")
    glove = read_text(fixtures_dir / "glove.txt", ReadOptions())
    assert list(table.tokens) == [t.replace(" ", "_") for t in glove.tokens]
    np.testing.assert_allclose(table.vectors, glove.vectors, atol=1e-6)
    packed = tmp_path / "w.bin.gz"
    packed.write_bytes(gzip.compress((fixtures_dir / "word2vec.bin").read_bytes()))
    np.testing.assert_array_equal(_read(packed).vectors, table.vectors)


def test_streaming_filters(fixtures_dir):
    path = fixtures_dir / "word2vec.bin"
    full = _read(path)
    assert _read(path, limit=3).tokens == full.tokens[:3]
    kept = _read(path, keep=frozenset({"cat", "king", "nope"}))
    assert kept.tokens == ("king", "cat")
    np.testing.assert_array_equal(kept.vectors, full.vectors[[3, 19]])
    assert _read(path, keep_if=lambda t: t.startswith("c")).tokens == ("café", "computer",
                                                                        "cat")
    assert read_table(path, limit=2).tokens == full.tokens[:2]


def test_filtered_read_never_holds_the_dropped_rows(tmp_path, monkeypatch):
    rows = np.random.default_rng(0).standard_normal((20_000, 50)).astype(np.float32)  # 4 MB
    table = EmbeddingTable([f"w{i}" for i in range(20_000)], rows)
    write_word2vec_bin(table, tmp_path / "big.bin", WriteOptions())
    monkeypatch.setattr(word2vec_bin, "CHUNK_BYTES", 64 << 10)
    tracemalloc.start()
    try:
        kept = _read(tmp_path / "big.bin", keep=frozenset({"w3", "w19999"}))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert kept.tokens == ("w3", "w19999")
    np.testing.assert_array_equal(kept.vectors, rows[[3, 19999]])
    assert peak < 1_500_000, peak


def test_filtered_read_grows_only_to_the_rows_it_keeps(tmp_path, monkeypatch):
    rows = np.random.default_rng(0).standard_normal((50_000, 40)).astype(np.float32)  # 8 MB
    table = EmbeddingTable([f"w{i}" for i in range(50_000)], rows)
    write_word2vec_bin(table, tmp_path / "big.bin", WriteOptions())
    monkeypatch.setattr(word2vec_bin, "CHUNK_BYTES", 64 << 10)
    tracemalloc.start()
    try:
        kept = _read(tmp_path / "big.bin", keep_if=lambda t: t[-1] in "05")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(kept.vectors, rows[::5])  # 10,000 rows, 1.6 MB
    # About 3.6 MB with tokens and sets; growing to the records left made it 6.7 MB.
    assert peak < 5_000_000, peak


def test_nonfinite_rows_dropped_by_the_filter_do_not_matter(tmp_path):
    rows = np.array([[1, 2], [np.nan, 0], [3, 4]], dtype=np.float32)
    write_word2vec_bin(EmbeddingTable(["a", "b", "c"], rows), tmp_path / "n.bin", WriteOptions())
    assert _read(tmp_path / "n.bin", keep=frozenset({"a", "c"})).tokens == ("a", "c")
    with pytest.raises(FormatError, match=r"n.bin, record 2: NaN or infinite value in the "
                                          r"vector of 'b'"):
        _read(tmp_path / "n.bin")


def test_small_chunks_and_duplicates(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((50, 3)).astype(np.float32)
    tokens = [f"t{i % 45}" for i in range(50)]  # the last five repeat t0..t4
    blob = b"50 3\n" + b"".join(t.encode() + b" " + r.tobytes() + b"\n"
                                for t, r in zip(tokens, rows, strict=True))
    (tmp_path / "d.bin").write_bytes(blob)
    monkeypatch.setattr(word2vec_bin, "CHUNK_BYTES", 7)
    table = _read(tmp_path / "d.bin")
    assert len(table) == 45 and table.metadata["duplicates"] == "5"
    np.testing.assert_array_equal(table.vectors, rows[:45])


_TOKEN = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp")),
                 min_size=1, max_size=10).filter(lambda t: not any(c.isspace() for c in t))


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tokens=st.lists(_TOKEN | st.sampled_from(["北京", "上海"]), min_size=1, max_size=10,
                       unique=True),
       dim=st.integers(1, 5), data=st.data())
def test_round_trip(tmp_path, tokens, dim, data):
    bits = data.draw(st.lists(st.integers(0, 2**32 - 1), min_size=len(tokens) * dim,
                              max_size=len(tokens) * dim))
    # Every float32 bit pattern, NaN and Inf included, survives the binary format.
    vectors = np.array(bits, dtype=np.uint32).view(np.float32).reshape(-1, dim)
    table = EmbeddingTable(tokens, vectors)
    write_word2vec_bin(table, tmp_path / "rt.bin", WriteOptions(force=True))
    back = _read(tmp_path / "rt.bin", allow_nonfinite=True)
    assert back.tokens == table.tokens
    assert back.vectors.view(np.uint32).tolist() == vectors.view(np.uint32).tolist()


@pytest.mark.parametrize(("token", "problem"), [
    ("new york", "contains whitespace"), ("tab\there", "contains whitespace"),
    ("a\nb", "contains a line break"), ("", "is empty"),
])
def test_writer_refuses_tokens_the_format_cannot_hold(tmp_path, token, problem):
    table = EmbeddingTable(["ok", token], np.zeros((2, 2), dtype=np.float32))
    with pytest.raises(VocabularyError, match=re.escape(
            f"token {token!r} (row 1) {problem}, which word2vec binary cannot hold")):
        write_word2vec_bin(table, tmp_path / "x.bin", WriteOptions())
    assert list(tmp_path.iterdir()) == []


def test_writer_refuses_other_dtypes(tmp_path):
    table = EmbeddingTable(["a"], np.zeros((1, 2), dtype=np.float32))
    with pytest.raises(DtypeError, match="word2vec binary writes float32 values; drop --dtype "
                                         "bfloat16"):
        write_word2vec_bin(table, tmp_path / "x.bin", WriteOptions(dtype="bfloat16"))


def _record(token, values):
    return token + b" " + np.asarray(values, dtype="<f4").tobytes()


@pytest.mark.parametrize(("content", "message"), [
    (b"", "the file is empty"),
    (b"1000000 300\nthe " + b"\x00" * 1200, "the header promises 1000000 rows of 300 floats "
                                            r"\(at least 1202000000 bytes\) but only 1204"),
    (b"3 2\n" + _record(b"a", [1, 2]) + b"\n" + _record(b"b", [3, 4]) + b"\n",
     "at least 30 bytes"),
    (b"2 2\n" + _record(b"a" * 10, [1, 2]) + b"\n" + _record(b"b", [3, 4])[:-3],
     "ends inside record 2"),
    (b"1 2\n" + _record(b"a", [1, 2]) + b"\nextra\x00\x01 and more",
     "data follows the 1 rows the header promises"),
    (b"2 2\n" + _record(b"a", [1, 2]) + b"x\ny" + _record(b"b", [3, 4]),
     r"record 2: token b'x\\nyb' is empty, too long or holds a line break"),
    (b"1 2\n" + b"\x01" * 5000, "record 1: no token separator within 4096 bytes"),
    (b"1 2\n" + _record(b"a", [np.nan, 2]), r"record 1: NaN or infinite value in the vector of "
                                            r"'a'; pass --allow-nonfinite"),
    (b"1 2\n" + _record(b"\xff\xfe", [1, 2]), r"record 1: token bytes b'\\xff\\xfe' are not "
                                              r"valid utf-8"),
    (b"hello\x00 world", "not a 'rows dim' header, so this is not word2vec binary"),
    (b"0 0\n", "the header says dim 0"),
])
def test_bad_binary_files(tmp_path, content, message):
    path = tmp_path / "bad.bin"
    path.write_bytes(content)
    with pytest.raises(FormatError, match=message):
        _read(path)


def test_missing_file(tmp_path):
    with pytest.raises(FormatError, match=r"nope.bin: no such file"):
        _read(tmp_path / "nope.bin")


def test_truncated_fixture(fixtures_dir):
    with pytest.raises(FormatError, match="truncated.bin: the file ends inside record 20 "
                                          r"\(the header promises more rows\)"):
        _read(fixtures_dir / "truncated.bin")


@pytest.mark.parametrize("kind", ["gz", "bz2"])
def test_corrupt_compressed_binary(tmp_path, kind):
    import bz2

    rows = np.random.default_rng(0).standard_normal((2000, 20)).astype(np.float32)
    table = EmbeddingTable([f"w{i}" for i in range(2000)], rows)
    write_word2vec_bin(table, tmp_path / "w.bin", WriteOptions())
    data = (tmp_path / "w.bin").read_bytes()
    packed = gzip.compress(data) if kind == "gz" else bz2.compress(data)
    path = tmp_path / f"w.bin.{kind}"
    path.write_bytes(packed[: len(packed) // 2] + b"\x00garbage" * 100)
    name = "gzip" if kind == "gz" else "bzip2"
    with pytest.raises(FormatError, match=rf"w.bin.{kind}: damaged {name} stream"):
        _read(path)


def test_truncated_gzip_is_caught_in_the_stream(tmp_path, fixtures_dir):
    path = tmp_path / "t.bin.gz"
    path.write_bytes(gzip.compress((fixtures_dir / "truncated.bin").read_bytes()))
    with pytest.raises(FormatError, match=r"t.bin.gz: the file ends inside record 20"):
        _read(path)


@pytest.mark.parametrize(("name", "use"), [
    ("lee_fasttext.vec", "--from word2vec"), ("test_glove.txt", "--from word2vec"),
    ("crime-and-punishment.bin", "--from fasttext-bin"),
])
def test_other_formats_given_to_binary_reader(gensim_data, name, use):
    with pytest.raises(FormatError, match=f"{name}: this is .* not word2vec-bin; pass {use}"):
        _read(gensim_data / name)


def test_sniffer(gensim_data, fixtures_dir):
    head = (gensim_data / "euclidean_vectors.bin").read_bytes()[:4096]
    assert sniff_word2vec_bin(gensim_data / "euclidean_vectors.bin", head)
    head = (fixtures_dir / "word2vec.vec").read_bytes()[:4096]
    assert not sniff_word2vec_bin(fixtures_dir / "word2vec.vec", head)


def test_cli_convert_text_to_binary_and_back(tmp_path, fixtures_dir):
    runner = CliRunner()
    out = tmp_path / "w.bin"
    result = runner.invoke(cli, ["convert", str(fixtures_dir / "word2vec.vec"), str(out)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["inspect", str(out), "--json"])
    assert result.exit_code == 0 and '"format": "word2vec-bin"' in result.output
    back = tmp_path / "back.vec"
    assert runner.invoke(cli, ["convert", str(out), str(back)]).exit_code == 0
    np.testing.assert_array_equal(read_text(back, ReadOptions()).vectors,
                                  _read(out).vectors)
    # A token with a space cannot go into word2vec binary: one line, exit 1, nothing written.
    result = runner.invoke(cli, ["convert", str(fixtures_dir / "glove.txt"),
                                 str(tmp_path / "g.bin")])
    assert result.exit_code == 1
    assert "token 'new york' (row 16) contains whitespace" in result.output
    assert not (tmp_path / "g.bin").exists()

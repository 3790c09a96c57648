import bz2
import gzip
import re
import tracemalloc

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embsurgeon import read_table, write_table
from embsurgeon.cli import cli
from embsurgeon.errors import DtypeError, FormatError, OutputError, VocabularyError
from embsurgeon.io import text
from embsurgeon.io.formats import ReadOptions, WriteOptions, detect_format
from embsurgeon.io.text import read_text, sniff_glove, sniff_word2vec, write_glove, write_word2vec
from embsurgeon.table import EmbeddingTable

# Every test runs through the compiled parser and the numpy one (see conftest.py).
pytestmark = pytest.mark.usefixtures("parser")

# (file, has header): gensim's own test files, each with a quirk (see test names).
GENSIM_TEXT = [
    ("test_glove.txt", False),  # GloVe, no header
    ("lee_fasttext.vec", False),  # fastText: trailing space on every line
    ("EN.1-10.cbow1_wind5_hs0_neg10_size300_smpl1e-05.txt", False),  # 19-digit exponents
    ("high_precision.kv.txt", False),  # 19 significant digits, blank last line
    ("crime-and-punishment.vec", False),  # Cyrillic tokens, trailing spaces
    ("toy-model.vec", False),
]


def _read(path, **kwargs):
    return read_text(path, ReadOptions(**kwargs))


def _gensim_kv(path, **kwargs):
    from gensim.models import KeyedVectors

    return KeyedVectors.load_word2vec_format(str(path), binary=False, **kwargs)


# gensim's no_header reader leaves its second file handle open (its bug, not ours).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize(("name", "_"), GENSIM_TEXT)
def test_same_as_gensim_on_its_own_files(gensim_data, name, _):
    path = gensim_data / name
    table = _read(path)
    kv = _gensim_kv(path, no_header=name == "test_glove.txt")
    assert list(table.tokens) == list(kv.index_to_key)
    np.testing.assert_array_equal(table.vectors, kv.vectors)
    assert table.vectors.dtype == np.float32
    assert table.metadata["source_dtype"] == "float32"
    assert table.metadata["duplicates"] == "0"


def test_bad_utf8_in_gensim_file_replaced_like_gensim(gensim_data):
    path = gensim_data / "pang_lee_polarity_fasttext.vec"
    with pytest.raises(FormatError, match=r"line 150: token bytes .* not valid utf-8.*"
                                          r"--decode-errors replace"):
        _read(path)
    table = _read(path, decode_errors="replace")
    kv = _gensim_kv(path, unicode_errors="replace")
    assert list(table.tokens) == list(kv.index_to_key)
    np.testing.assert_array_equal(table.vectors, kv.vectors)
    assert table.metadata["decode_replaced"] == "5"


def test_lying_header_of_gensim_pretrained_vec(gensim_data):
    with pytest.raises(FormatError, match=r"pretrained.vec: the header promises 3 rows but the "
                                          r"file holds 1; the file is truncated"):
        _read(gensim_data / "pretrained.vec")


@pytest.mark.parametrize(("name", "use"), [
    ("euclidean_vectors.bin", "--from word2vec-bin"),
    ("lee_fasttext.bin", "--from fasttext-bin"),  # old header, no magic number
    ("crime-and-punishment.bin", "--from fasttext-bin"),
    ("ft_kv_3.6.0.model.gz", "--from gensim --allow-pickle"),
])
def test_binary_given_to_text_reader_names_the_format(gensim_data, name, use):
    with pytest.raises(FormatError, match=f"{name}: .*{use}"):
        _read(gensim_data / name)


def test_glove_fixture_keeps_token_with_space(fixtures_dir):
    table = _read(fixtures_dir / "glove.txt")
    assert len(table) == 20 and table.dim == 8
    assert "new york" in table and "北京" in table


def _plain(tokens):
    return [t.replace(" ", "_") for t in tokens]


def test_word2vec_vec_with_trailing_spaces(fixtures_dir):
    glove = _read(fixtures_dir / "glove.txt")
    table = _read(fixtures_dir / "word2vec.vec")
    assert list(table.tokens) == _plain(glove.tokens)
    np.testing.assert_allclose(table.vectors, glove.vectors, atol=1e-4)


def test_crlf_bom_and_blank_trailing_lines(fixtures_dir):
    glove = _read(fixtures_dir / "glove.txt")
    table = _read(fixtures_dir / "crlf-bom.vec")
    assert list(table.tokens) == _plain(glove.tokens)
    np.testing.assert_array_equal(table.vectors, glove.vectors)


@pytest.mark.parametrize(("name", "plain"), [("glove.txt.gz", "glove.txt"),
                                              ("word2vec.vec.bz2", "word2vec.vec")])
def test_compressed_equals_plain(fixtures_dir, name, plain):
    a, b = _read(fixtures_dir / name), _read(fixtures_dir / plain)
    assert a.tokens == b.tokens
    np.testing.assert_array_equal(a.vectors, b.vectors)


@pytest.mark.parametrize("kind", ["gz", "bz2"])
def test_corrupt_compressed_file(tmp_path, fixtures_dir, kind):
    data = (fixtures_dir / "glove.txt").read_bytes() * 50
    packed = gzip.compress(data) if kind == "gz" else bz2.compress(data)
    path = tmp_path / f"broken.txt.{kind}"
    path.write_bytes(packed[: len(packed) // 2])
    name = "gzip" if kind == "gz" else "bzip2"
    with pytest.raises(FormatError, match=f"broken.txt.{kind}: damaged {name} stream .*truncated "
                                          "or corrupt"):
        _read(path)


def test_gb18030_chinese_file(fixtures_dir):
    path = fixtures_dir / "glove-gb18030.txt"
    table = _read(path, encoding="gb18030")
    assert list(table.tokens) == list(_read(fixtures_dir / "glove.txt").tokens)
    with pytest.raises(FormatError, match=r"glove-gb18030.txt, line 12: token bytes .* not "
                                          r"valid utf-8 .*--encoding \(e.g. gb18030\)"):
        _read(path)
    damaged = _read(path, decode_errors="replace")
    assert damaged.metadata["decode_replaced"] == "5"  # café naïve 北京 中国 上海
    assert "\ufffd" in damaged.tokens[11]


def test_unknown_and_non_ascii_encodings(fixtures_dir):
    with pytest.raises(FormatError, match="unknown encoding 'klingon'"):
        _read(fixtures_dir / "glove.txt", encoding="klingon")
    with pytest.raises(FormatError, match="'utf-16' is not ASCII-compatible"):
        _read(fixtures_dir / "glove.txt", encoding="utf-16")


def test_duplicates_keep_first_and_are_counted(fixtures_dir):
    table = _read(fixtures_dir / "duplicates.vec")
    rows = np.random.default_rng(1).standard_normal((22, 8)).astype(np.float32)  # the builder's
    assert len(table) == 20 and table.metadata["duplicates"] == "2"
    np.testing.assert_allclose(table["king"], rows[3], atol=1e-6)
    np.testing.assert_allclose(table["cat"], rows[19], atol=1e-6)


def test_nonfinite_named_by_line_unless_allowed(fixtures_dir):
    path = fixtures_dir / "nonfinite.txt"
    with pytest.raises(FormatError, match=r"nonfinite.txt, line 4: NaN or infinite value .* "
                                          r"'king'; pass --allow-nonfinite"):
        _read(path)
    table = _read(path, allow_nonfinite=True)
    assert np.isnan(table["king"][2]) and np.isposinf(table["man"][0])


def test_nonfinite_rows_dropped_by_the_filter_do_not_matter(fixtures_dir):
    table = _read(fixtures_dir / "nonfinite.txt", keep=frozenset({"the", "queen"}))
    assert table.tokens == ("the", "queen")
    with pytest.raises(FormatError, match="line 6: NaN or infinite value"):
        _read(fixtures_dir / "nonfinite.txt", keep_if=lambda t: t != "king")


def test_value_too_large_for_float32_is_refused(tmp_path):
    path = tmp_path / "big.txt"
    path.write_text("a 1 2\nb 1e39 2\n")
    with pytest.raises(FormatError, match=r"line 2: NaN or infinite value .*too large"):
        _read(path)


# -- tokens with spaces and dimension inference ----------------------------------------------

def test_spaced_tokens_take_the_last_dim_fields(tmp_path):
    path = tmp_path / "spaced.txt"
    path.write_text("new york 1 2 3\nthe 4 5 6\nlos  angeles 7 8 9\nof 1 1 1\nroute 66 2 2 2\n"
                    "a 0 0 0\nb 0 0 0\n")
    table = _read(path)
    assert table.tokens == ("new york", "the", "los  angeles", "of", "route 66", "a", "b")
    np.testing.assert_array_equal(table["route 66"], [2, 2, 2])


def test_spaced_token_with_a_number_in_a_file_with_trailing_spaces(tmp_path):
    path = tmp_path / "trailing.vec"
    path.write_text("a 1 2 \nroute 66 3 4 \nb 5 6 \n")
    table = _read(path)
    assert table.tokens == ("a", "route 66", "b")
    np.testing.assert_array_equal(table["route 66"], [3, 4])


def test_headerless_dim_from_most_common_field_count(tmp_path):
    path = tmp_path / "first-line-odd.txt"
    # Line 1 alone would suggest dim 4; the rest say 3.
    path.write_text("new york 1 2 3\n" + "".join(f"w{i} {i} 0 1\n" for i in range(5)))
    assert _read(path).dim == 3


def test_header_decides_dim_for_spaced_tokens(tmp_path):
    path = tmp_path / "w2v.vec"
    path.write_text("2 2\nice cream 1 2\nhot dog 3 4\n")
    table = _read(path)
    assert table.tokens == ("ice cream", "hot dog") and table.dim == 2


def test_one_dimensional_glove_whose_first_token_is_a_number(tmp_path):
    path = tmp_path / "one.txt"
    path.write_text("3 5\na 1\nb 2\n")
    table = _read(path)
    assert table.tokens == ("3", "a", "b") and table.dim == 1


def test_utf8_byte_a0_inside_a_token_is_not_a_separator(tmp_path):
    path = tmp_path / "nbsp.txt"
    path.write_text("噠1 0 2\na 1 1\n", encoding="utf-8")  # 噠 ends in byte 0xA0
    table = _read(path)
    assert table.tokens == ("噠1", "a")
    np.testing.assert_array_equal(table.vectors, [[0, 2], [1, 1]])


def test_tabs_separate_fields(tmp_path):
    path = tmp_path / "tabs.txt"
    path.write_text("a\t1\t2\nb\t3\t4\n")
    np.testing.assert_array_equal(_read(path).vectors, [[1, 2], [3, 4]])


def test_chunks_split_lines_anywhere(tmp_path, monkeypatch):
    """Tiny chunks: every line straddles a chunk boundary somewhere; numbers stay exact."""
    rng = np.random.default_rng(3)
    rows = rng.standard_normal((300, 7)).astype(np.float32)
    table = EmbeddingTable([f"w{i}" for i in range(300)], rows)
    write_word2vec(table, tmp_path / "a.vec", WriteOptions())
    monkeypatch.setattr(text, "CHUNK_BYTES", 97)
    back = _read(tmp_path / "a.vec")
    assert back.tokens == table.tokens
    np.testing.assert_array_equal(back.vectors, rows)


# -- streaming -----------------------------------------------------------------------------

def _big(tmp_path, rows=20_000, dim=50):
    vectors = np.random.default_rng(0).standard_normal((rows, dim)).astype(np.float32)
    table = EmbeddingTable([f"w{i}" for i in range(rows)], vectors)
    write_glove(table, tmp_path / "big.txt", WriteOptions())
    return tmp_path / "big.txt", table


def test_limit_keep_and_keep_if_while_reading(tmp_path):
    path, table = _big(tmp_path, rows=3000, dim=4)
    assert _read(path, limit=10).tokens == table.tokens[:10]
    kept = _read(path, keep=frozenset({"w5", "w2999", "w7", "absent"}))
    assert kept.tokens == ("w5", "w7", "w2999")
    np.testing.assert_array_equal(kept.vectors, table.vectors[[5, 7, 2999]])
    odd = _read(path, keep_if=lambda t: t.endswith("1"), limit=3)
    assert odd.tokens == ("w1", "w11", "w21")
    # Through the registry too (the format is streaming, so it is not filtered twice).
    assert read_table(path, limit=2).tokens == ("w0", "w1")


def test_filtered_read_never_holds_the_dropped_rows(tmp_path, monkeypatch):
    path, _ = _big(tmp_path)  # 20k x 50 float32: 4 MB as a matrix
    monkeypatch.setattr(text, "CHUNK_BYTES", 64 << 10)
    tracemalloc.start()
    try:
        kept = _read(path, keep=frozenset({"w1", "w19999"}))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert kept.tokens == ("w1", "w19999")
    assert peak < 1_500_000, peak


def test_filtered_read_grows_only_to_the_rows_it_keeps(tmp_path, monkeypatch):
    """keep_if keeps 10,000 of 50,000 rows: the matrix grows with the kept rows, not to the
    rows left in the file (resize zero-fills, so an over-estimate would be resident)."""
    path, table = _big(tmp_path, rows=50_000, dim=40)  # 8 MB as a matrix, 1.6 MB kept
    monkeypatch.setattr(text, "CHUNK_BYTES", 64 << 10)
    tracemalloc.start()
    try:
        kept = _read(path, keep_if=lambda t: t[-1] in "05")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(kept.vectors, table.vectors[::5])
    # About 3.6-3.9 MB with tokens and sets; growing to the file's rows made it 6.7-7.2 MB.
    assert peak < 5_000_000, peak


def test_lying_header_allocates_nothing_absurd(tmp_path):
    path = tmp_path / "liar.vec"
    path.write_text("900000000000 300\n" + "a " + " ".join(["1"] * 300) + "\n")
    with pytest.raises(FormatError, match="promises 900000000000 rows but the file holds 1"):
        _read(path)


# -- errors ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("content", "message"), [
    (b"", r"empty.txt: the file is empty"),
    (b"\n\n  \n", r"empty.txt: the file holds no vectors"),
    (b"3 2\na 1 2\nb 3 4\n", r"the header promises 3 rows but the file holds 2"),
    (b"1 2\na 1 2\nb 3 4\n", r"the header promises 1 rows but the file holds more"),
    (b"a 1 2\nb 3 4\nc 5\nd 6 7\n", r"empty.txt, line 3: 2 fields; expected a token and 2 "
                                    r"numbers"),
    (b"a 1 2\nb 3 4\nc 5 x\n", r"empty.txt, line 3: b'x' is not a number"),
    (b"a 1 2\nb 3 1_0\n", r"line 2: b'1_0' is not a number"),
    (b"2 5\na 1 2\nb 3 4\n", r"empty.txt, line 2: the header says dim 5 but the lines have 2 "
                             r"numbers"),
    (b"hello world\n", r"empty.txt, line 1: b'world' is not a number"),
    (b"hello\n", r"line 1: expected 'token v1 ... vD'"),
    (b"2 0\n", r"line 1: the header says dim 0"),
])
def test_bad_text_files(tmp_path, content, message):
    path = tmp_path / "empty.txt"
    path.write_bytes(content)
    with pytest.raises(FormatError, match=message):
        _read(path)


def test_missing_file(tmp_path):
    with pytest.raises(FormatError, match=r"nope.txt: no such file"):
        _read(tmp_path / "nope.txt")


def test_binary_garbage_is_not_text(tmp_path):
    path = tmp_path / "noise.txt"
    path.write_bytes(b"a 1 2\n" + bytes(range(256)) * 4)
    with pytest.raises(FormatError, match="holds binary bytes, so it is not word-vector text"):
        _read(path)


# -- sniffing --------------------------------------------------------------------------------

def test_sniffers(fixtures_dir, gensim_data):
    head = (fixtures_dir / "word2vec.vec").read_bytes()[:4096]
    assert sniff_word2vec(fixtures_dir / "word2vec.vec", head)
    assert not sniff_glove(fixtures_dir / "word2vec.vec", head)
    head = (fixtures_dir / "glove.txt").read_bytes()[:4096]
    assert sniff_glove(fixtures_dir / "glove.txt", head) and not sniff_word2vec(None, head)
    binary = (gensim_data / "euclidean_vectors.bin").read_bytes()[:4096]
    assert not sniff_word2vec(None, binary) and not sniff_glove(None, binary)
    assert not sniff_glove(None, b"just some words\nin a text file\n")


@pytest.mark.parametrize(("name", "fmt"), [
    ("glove.txt", "glove"), ("glove.txt.gz", "glove"), ("word2vec.vec", "word2vec"),
    ("crlf-bom.vec", "word2vec"), ("word2vec.vec.bz2", "word2vec"),
    ("word2vec.bin", "word2vec-bin"), ("nonfinite.txt", "glove"),
])
def test_detection(fixtures_dir, name, fmt):
    assert detect_format(fixtures_dir / name).name.value == fmt


# -- writing ---------------------------------------------------------------------------------

_TOKEN_CHARS = st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp"))
_TOKENS = st.lists(st.text(_TOKEN_CHARS, min_size=1, max_size=12) | st.sampled_from(
    ["北京", "中国", "日本語", "café", "ü"]), min_size=1, max_size=12, unique=True)
_FLOATS = st.floats(width=32, allow_nan=False, allow_infinity=False) | st.sampled_from(
    [np.finfo(np.float32).max, -np.finfo(np.float32).max, np.finfo(np.float32).tiny,
     np.float32(1e-45), -0.0, 0.1, 1 / 3])


def _tables(with_spaces: bool):
    def build(tokens, dim, data):
        if with_spaces:
            tokens = [t if i % 3 else f"{t} {t}" for i, t in enumerate(tokens)]
            tokens = list(dict.fromkeys(tokens))
        values = data.draw(st.lists(_FLOATS, min_size=len(tokens) * dim,
                                    max_size=len(tokens) * dim))
        return EmbeddingTable(tokens, np.array(values, dtype=np.float32).reshape(-1, dim))
    return st.builds(build, _TOKENS, st.integers(1, 6), st.data())


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(table=_tables(with_spaces=True))
def test_word2vec_text_round_trip(tmp_path, table):
    path = tmp_path / "rt.vec"
    write_word2vec(table, path, WriteOptions(force=True))
    back = _read(path)
    assert back.tokens == table.tokens
    np.testing.assert_array_equal(back.vectors, table.vectors)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(table=_tables(with_spaces=False))
def test_glove_text_round_trip(tmp_path, table):
    path = tmp_path / "rt.txt"
    if table.dim == 1 and table.tokens[0].isdigit() and table.tokens[0].isascii():
        # The one ambiguous case ("3 5" looks like a header), refused by design.
        with pytest.raises(VocabularyError, match="would read back as a word2vec header"):
            write_glove(table, path, WriteOptions(force=True))
        return
    write_glove(table, path, WriteOptions(force=True))
    back = _read(path)
    assert back.tokens == table.tokens
    np.testing.assert_array_equal(back.vectors, table.vectors)


@pytest.mark.parametrize(("token", "problem"), [
    ("", "is empty"), ("a\nb", "contains a line break"), ("a\rb", "contains a line break"),
    (" lead", "starts or ends with whitespace"), ("trail\t", "starts or ends with whitespace"),
    ("bell\x07", "contains a control character"),
])
def test_writers_refuse_tokens_text_cannot_hold(tmp_path, token, problem):
    table = EmbeddingTable(["ok", token], np.zeros((2, 2), dtype=np.float32))
    with pytest.raises(VocabularyError, match=re.escape(
            f"token {token!r} (row 1) {problem}, which word2vec text cannot hold")):
        write_word2vec(table, tmp_path / "x.vec", WriteOptions())
    assert not (tmp_path / "x.vec").exists()


def test_glove_refuses_header_lookalike(tmp_path):
    table = EmbeddingTable(["3", "a"], np.ones((2, 1), dtype=np.float32))
    with pytest.raises(VocabularyError, match=r"token '3' \(row 0\) .* would read back as a "
                                              r"word2vec header"):
        write_glove(table, tmp_path / "x.txt", WriteOptions())


def test_text_writers_refuse_dtype_and_overwrite(tmp_path):
    table = EmbeddingTable(["a"], np.ones((1, 2), dtype=np.float32))
    with pytest.raises(DtypeError, match="word2vec text writes float32 values; drop --dtype "
                                         "float16"):
        write_word2vec(table, tmp_path / "x.vec", WriteOptions(dtype="float16"))
    write_glove(table, tmp_path / "x.txt", WriteOptions())
    with pytest.raises(OutputError, match=r"x.txt already exists; pass --force"):
        write_glove(table, tmp_path / "x.txt", WriteOptions())


def test_nonfinite_values_written_and_read_back_when_allowed(tmp_path):
    table = EmbeddingTable(["a", "b"], np.array([[np.nan, 1], [np.inf, -np.inf]], np.float32))
    write_word2vec(table, tmp_path / "nf.vec", WriteOptions())
    back = _read(tmp_path / "nf.vec", allow_nonfinite=True)
    np.testing.assert_array_equal(back.vectors, table.vectors)


def test_write_table_picks_text_writers_by_suffix(tmp_path, fixtures_dir):
    table = _read(fixtures_dir / "glove.txt")
    assert write_table(table, tmp_path / "out.vec") == [tmp_path / "out.vec"]
    assert (tmp_path / "out.vec").read_text(encoding="utf-8").startswith("20 8\n")
    write_table(table, tmp_path / "out.glove", format="glove")
    assert read_table(tmp_path / "out.glove", format="glove").tokens == table.tokens


# -- the command line ---------------------------------------------------------------------------

def _cli(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_cli_inspect_and_convert_text(tmp_path, fixtures_dir):
    result = _cli("inspect", fixtures_dir / "duplicates.vec")
    assert result.exit_code == 0, result.output
    assert "20 x 8" in result.output and "duplicates dropped  2" in result.output
    out = tmp_path / "g.bin"
    result = _cli("convert", fixtures_dir / "glove.txt.gz", out, "--to", "word2vec",
                  "--limit", "5")
    assert result.exit_code == 0, result.output
    assert _read(out).tokens == _read(fixtures_dir / "glove.txt").tokens[:5]
    result = _cli("inspect", fixtures_dir / "glove-gb18030.txt", "--encoding", "gb18030",
                  "--sample", "20")
    assert result.exit_code == 0 and "北京" in result.output


@pytest.mark.parametrize(("args", "message"), [
    (["glove-gb18030.txt"], "line 12: token bytes"),
    (["nonfinite.txt"], "line 4: NaN or infinite value"),
    (["word2vec.bin", "--from", "glove"], "this is word2vec-bin data, not word2vec; pass --from "
                                          "word2vec-bin"),
])
def test_cli_errors_are_one_line_and_leave_no_output(tmp_path, fixtures_dir, args, message):
    out = tmp_path / "out.vec"
    result = _cli("convert", fixtures_dir / args[0], out, *args[1:])
    assert result.exit_code == 1
    assert message in result.output
    assert result.output.strip().count("\n") == 0
    assert not out.exists() and list(tmp_path.iterdir()) == []

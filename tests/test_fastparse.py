"""The optional compiled parser: same values as Python's float() (then float32), never out of
bounds on any input, and readers that behave the same with and without it."""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from embsurgeon.errors import FormatError
from embsurgeon.io import text
from embsurgeon.io.formats import ReadOptions
from embsurgeon.io.text import read_text

fastparse = pytest.importorskip("embsurgeon._fastparse", reason="the C extension is not built")

_GUARD = np.float32(-7.25)  # what the rows past the output's end hold, and must keep holding
_F32 = np.finfo(np.float32)


def _python_value(field: bytes) -> np.float32:
    """What gensim and the numpy path make of a field: Python's float, rounded to float32."""
    with np.errstate(over="ignore"):
        return np.float32(float(field))


def _guarded(rows: int, dim: int, extra: int = 3) -> tuple[np.ndarray, np.ndarray]:
    whole = np.full((rows + extra, dim), _GUARD, dtype=np.float32)
    return whole, whole[:rows]


_VALUES = st.floats(width=32, allow_nan=False, allow_infinity=False) | st.sampled_from(
    [_F32.max, -_F32.max, _F32.tiny, -_F32.tiny, np.float32(1e-45), -0.0, 0.0, 1e38, -1e38,
     0.1, 1 / 3, 123456789.0, 1e-40])
_STYLES = st.sampled_from(["%.9g", "%.5g", "%.17g", "%.25e", "%.3e", "%.30f", "%r", "%+.9g",
                           "%.9G", "0%.9g", "%.0f.", "%.8e"])


def _format(value: float, style: str) -> bytes:
    if style == "%r":
        return repr(float(value)).encode()
    out = (style % value).encode()
    return out.replace(b"0-", b"-0") if style.startswith("0") else out


@settings(max_examples=300, deadline=None)
@given(values=st.lists(st.tuples(_VALUES, _STYLES), min_size=1, max_size=12))
@example(values=[(0.0, "%.9g")])
def test_numbers_are_python_float_rounded_to_float32(values):
    fields = [_format(float(v), style) for v, style in values]
    line = b"tok " + b" ".join(fields) + b"\n"
    whole, out = _guarded(1, len(fields))
    blob, rows, stop, nonfinite = fastparse.parse_text(line, 0, len(fields), out)
    assert (blob, rows, stop) == (b"tok", 1, len(line))
    expected = np.array([_python_value(f) for f in fields], dtype=np.float32)
    assert out[0].view(np.uint32).tolist() == expected.view(np.uint32).tolist(), fields
    assert nonfinite == (-1 if np.isfinite(expected).all() else 0)
    assert (whole[1:] == _GUARD).all()


@pytest.mark.parametrize(("field", "value"), [
    (b"1e39", math.inf), (b"-1e39", -math.inf), (b"1e999", math.inf), (b"1e-999", 0.0),
    (b"3.4028235e38", float(_F32.max)), (b"1.4e-45", 1e-45), (b"0.000000000000000000000001", 1e-24),
    (b"12345678901234567890123", 1.2345678901234568e22), (b"-0", -0.0), (b".5", 0.5),
    (b"5.", 5.0), (b"1E+05", 1e5), (b"+2", 2.0),
])
def test_edge_numbers(field, value):
    _, out = _guarded(1, 1)
    _, rows, _, nonfinite = fastparse.parse_text(b"t " + field, 0, 1, out)
    assert rows == 1
    assert out[0, 0].tobytes() == np.float32(value).tobytes() == _python_value(field).tobytes()
    assert (nonfinite == 0) == math.isinf(value)


@pytest.mark.parametrize("line", [
    b"t nan 1\n", b"t inf 1\n", b"t 1_0 1\n", b"t 1,5 1\n", b"t 1e 1\n", b"t . 1\n", b"t - 1\n",
    b"t 1 2 3\n", b"t 1\n", b"new york 1 2\n", b"t  1 2\n", b"t\t1 2\n", b" t 1 2\n", b"\n",
    b"t 0x10 1\n", b"t 1 2x\n", b"t 1e5e5 1\n",
])
def test_declines_what_it_does_not_fully_understand(line):
    """Each of these goes to the line-exact Python path, which decides what it is."""
    whole, out = _guarded(2, 2)
    data = b"a 1 2\n" + line + b"b 3 4\n"
    blob, rows, stop, _ = fastparse.parse_text(data, 0, 2, out)
    assert (blob, rows, stop) == (b"a", 1, 6)
    assert (whole[2:] == _GUARD).all()  # row 1 is scratch until a row is returned there


def test_trailing_whitespace_and_a_last_line_without_newline():
    _, out = _guarded(3, 2)
    data = b"a 1 2 \nb 3 4\r\nc 5 6"
    assert fastparse.parse_text(data, 0, 2, out) == (b"a\nb\nc", 3, len(data), -1)
    np.testing.assert_array_equal(out, [[1, 2], [3, 4], [5, 6]])


def test_stops_when_the_output_is_full_and_checks_its_arguments():
    whole, out = _guarded(1, 2)
    assert fastparse.parse_text(b"a 1 2\nb 3 4\n", 0, 2, out)[:3] == (b"a", 1, 6)
    assert (whole[1:] == _GUARD).all()
    with pytest.raises(ValueError, match="start is outside"):
        fastparse.parse_text(b"a 1 2\n", 99, 2, out)
    with pytest.raises(ValueError, match="dim must be"):
        fastparse.parse_text(b"a 1 2\n", 0, 0, out)
    with pytest.raises(TypeError):
        fastparse.parse_text(b"a 1 2\n", 0, 2, b"read-only")


_TEXTISH = st.binary(max_size=200) | st.lists(st.sampled_from(
    [b"a", b"1", b"-", b".", b"e", b"5", b" ", b"\n", b"\r", b"\t", b"nan", b"9" * 25, b"\xe4",
     b"+", b"E", b"0", b"\x00"]), max_size=80).map(b"".join)


@settings(max_examples=400, deadline=None)
@given(data=_TEXTISH, dim=st.integers(1, 4), rows=st.integers(0, 6), start=st.integers(0, 5))
def test_garbage_text_never_reads_or_writes_out_of_bounds(data, dim, rows, start):
    start = min(start, len(data))
    whole, out = _guarded(rows, dim)
    blob, got, stop, _ = fastparse.parse_text(data, start, dim, out)
    assert 0 <= got <= rows and start <= stop <= len(data)
    assert (whole[rows:] == _GUARD).all()
    # Every line it took is a plain 'token v1 ... vD' line, read exactly as Python reads it.
    lines = data[start:stop].split(b"\n")[:got]
    assert blob.split(b"\n") == [line.split(b" ", 1)[0] for line in lines] or got == 0
    for row, line in enumerate(lines):
        fields = line.rstrip(b" \t\r\x0b\x0c").split(b" ")
        assert len(fields) == dim + 1 and fields[0]
        expected = [_python_value(f) for f in fields[1:]]
        assert out[row].tobytes() == np.array(expected, dtype=np.float32).tobytes()


def _record(token: bytes, values) -> bytes:
    return token + b" " + np.asarray(values, dtype="<f4").tobytes()


@settings(max_examples=400, deadline=None)
@given(data=st.binary(max_size=300), dim=st.integers(1, 3), rows=st.integers(0, 5),
       max_token=st.integers(0, 8))
def test_garbage_records_never_read_or_write_out_of_bounds(data, dim, rows, max_token):
    whole, out = _guarded(rows, dim)
    blob, got, stop, bad, _ = fastparse.scan_records(data, 0, len(data), dim, 4, max_token, out)
    assert 0 <= got <= min(rows, 4) and 0 <= stop <= len(data)
    assert (whole[rows:] == _GUARD).all()
    assert bad in (-1, got)
    # Walk the same records in Python: each token, then exactly dim float32s.
    pos = 0
    tokens = blob.split(b"\n", got)[:got] if got else []
    for row in range(got):
        pos = len(data[:pos]) + len(data[pos:]) - len(data[pos:].lstrip(b"\n"))
        space = data.index(b" ", pos)
        assert data[pos:space] == tokens[row]
        assert out[row].tobytes() == data[space + 1:space + 1 + 4 * dim]
        pos = space + 1 + 4 * dim
    assert stop == pos


def test_records_with_newlines_and_a_bad_token():
    _, out = _guarded(3, 2)
    data = _record(b"a", [1, 2]) + b"\n\n" + _record(b"bb", [3, 4]) + b"x\ny " + b"\0" * 8
    blob, rows, stop, bad, nonfinite = fastparse.scan_records(data, 0, len(data), 2, 9, 64, out)
    assert (blob, rows, bad, nonfinite) == (b"a\nbb\nx\ny", 2, 2, -1)
    assert stop == len(_record(b"a", [1, 2]) + b"\n\n" + _record(b"bb", [3, 4]))
    nan = _record(b"a", [1, 2]) + _record(b"n", [np.nan, 0])
    assert fastparse.scan_records(nan, 0, len(nan), 2, 9, 64, out)[1:] == (2, len(nan), -1, 1)


# -- the readers with and without it ---------------------------------------------------------

def test_halves_parsed_at_once_keep_order_and_line_numbers(tmp_path, monkeypatch):
    rng = np.random.default_rng(5)
    rows = rng.standard_normal((3000, 5)).astype(np.float32)
    lines = [f"w{i} " + " ".join(f"{v:.9g}" for v in row) for i, row in enumerate(rows)]
    lines[1700] = "new york " + lines[1700].split(" ", 1)[1]  # declined, in the second half
    lines[2200] = ""  # a blank line shifts the line numbers after it
    path = tmp_path / "big.txt"
    path.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(text, "PARALLEL", True)
    monkeypatch.setattr(text, "SPLIT_BYTES", 0)
    monkeypatch.setattr(text, "CHUNK_BYTES", 50_000)
    table = read_text(path, ReadOptions())
    assert table.tokens[1700] == "new york" and table.tokens[2200] == "w2201"
    np.testing.assert_array_equal(table.vectors, np.delete(rows, 2200, axis=0))
    lines[2900] = "w2900 1 2 3 4 x"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(FormatError, match=r"big.txt, line 2901: b'x' is not a number"):
        read_text(path, ReadOptions())


_TOKEN = st.sampled_from([b"the", b"caf\xc3\xa9", b"\xe5\x8c\x97\xe4\xba\xac", b"a.b", b"x1",
                          b"new york", b"\xff\xfe", b"1", b"-"])
_FIELD = st.one_of(
    st.tuples(_VALUES, _STYLES).map(lambda vs: _format(float(vs[0]), vs[1])),
    st.sampled_from([b"nan", b"-inf", b"1e39", b"x", b"1_0", b""]),
)
_LINE = st.one_of(
    st.tuples(_TOKEN, st.lists(_FIELD, min_size=3, max_size=3),
              st.sampled_from([b"\n", b" \n", b"\r\n", b"\t\n"])).map(
        lambda t: t[0] + b" " + b" ".join(t[1]) + t[2]),
    st.sampled_from([b"\n", b"  \n", b"w 1 2\n", b"w\t1\t2\t3\n", b"v 1 2 3 4\n"]),
)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(_LINE, min_size=1, max_size=12), chunk=st.integers(8, 200),
       options=st.sampled_from([{}, {"allow_nonfinite": True}, {"decode_errors": "replace"},
                                {"keep": frozenset({"the", "x1"})}, {"limit": 2}]),
       split=st.booleans())
def test_readers_agree_with_and_without_it(tmp_path, monkeypatch, lines, chunk, options, split):
    path = tmp_path / "mixed.txt"
    path.write_bytes(b"".join(lines))
    monkeypatch.setattr(text, "CHUNK_BYTES", chunk)
    # split: every chunk parsed in two halves at once, as big chunks are on two cores.
    monkeypatch.setattr(text, "PARALLEL", split)
    monkeypatch.setattr(text, "SPLIT_BYTES", 0 if split else 1 << 20)
    results = []
    for compiled in (fastparse, None):
        monkeypatch.setattr(text, "COMPILED", compiled)
        try:
            table = read_text(path, ReadOptions(**options))
        except FormatError as exc:
            results.append(("error", str(exc)))
        else:
            results.append((table.tokens, table.vectors.tobytes(), dict(table.metadata)))
    assert results[0] == results[1]

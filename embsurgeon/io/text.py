"""Word-vector text: word2vec (``rows dim`` header), GloVe (no header) and fastText ``.vec``.

One reader serves all three: a first line of exactly two integers is a header when the data
lines agree with its dimension. Each data line is ``token v1 ... vD``; a token may contain
spaces (GloVe 840B has them), so the vector is the *last* ``D`` fields and the rest is the
token. Headerless files take ``D`` from the most common field count of their first lines.

Speed comes from reading big byte chunks of whole lines and parsing each chunk in one call:
with the optional compiled module :mod:`embsurgeon._fastparse` (built at install time where a C
compiler exists) a line the compiled parser declines (a token with spaces, a blank line,
``nan``, a damaged line) is read by the line-exact Python path and the parser resumes after
it; without the module, numpy's C parser (``np.loadtxt``) takes the chunk and a chunk that does
not fit the simple layout (tokens with spaces, tabs, blank lines, a damaged line) is re-read
line by line, which also finds the exact line to blame. Both give the same values bit for bit
(the double Python's ``float()`` gives, rounded to float32), the same errors and line numbers.

``limit``/``keep``/``keep_if`` are applied chunk by chunk, so a filtered read never holds the
rows it drops, and the output matrix is sized from what the file size can justify, never from
a header alone.
"""

from __future__ import annotations

import codecs
import io
import math
import os
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from embsurgeon.errors import DtypeError, FormatError, VocabularyError
from embsurgeon.io.atomic import atomic_paths
from embsurgeon.io.compression import compression_of, open_binary
from embsurgeon.io.formats import DecodeErrors, DType, ReadOptions, WriteOptions
from embsurgeon.progress import progress_bar
from embsurgeon.table import SOURCE_DTYPE, EmbeddingTable

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

try:
    from embsurgeon import _fastparse
except ImportError:  # not built (no C compiler at install time): the numpy paths are used
    _fastparse = None  # type: ignore[assignment]

#: The compiled parser both readers use, or None for the pure-numpy path. Set the environment
#: variable ``EMBSURGEON_PURE_NUMPY=1`` (or this attribute to None) to force the numpy path.
COMPILED = None if os.environ.get("EMBSURGEON_PURE_NUMPY") else _fastparse

#: Bytes read per chunk: big enough that numpy's per-call overhead vanishes, small enough that
#: the chunk and its parsed block stay a rounding error next to the output matrix.
CHUNK_BYTES = 4 << 20
#: Lines looked at to infer the dimension of a headerless file.
SNIFF_LINES = 100
#: Widest token the fast path takes (bytes); a chunk with a longer one goes line by line.
_TOKEN_WIDTH = 256
#: Chunks at least this big are parsed in two halves at once by the compiled parser, when
#: PARALLEL (a second core) allows.
SPLIT_BYTES = 1 << 20
PARALLEL = (os.cpu_count() or 1) > 1
#: Significant digits written: 9 is the least that round-trips every float32 exactly.
FLOAT_DIGITS = 9

_BOM = codecs.BOM_UTF8
_FASTTEXT_MAGIC = (793712314).to_bytes(4, "little")
# Bytes no text file holds (NUL and C0 controls other than tab, LF, VT, FF, CR).
_BINARY_BYTES = bytes([*range(0, 9), *range(14, 32)])
# Decompression failures surface as these while reading a damaged .gz/.bz2 stream.
STREAM_ERRORS = (EOFError, zlib.error, OSError)


# -- small helpers shared with the binary reader ------------------------------------------------

def looks_binary(data: bytes) -> bool:
    """True if ``data`` holds bytes that never occur in a text file (NUL, control codes)."""
    return bool(data) and len(data.translate(None, _BINARY_BYTES)) != len(data)


def all_finite(block: np.ndarray) -> bool:
    """True if ``block`` holds no NaN or Inf: one float64 sum (finite float32 values cannot
    overflow it) instead of a boolean array the size of the block."""
    with np.errstate(invalid="ignore"):  # inf + -inf is NaN: not finite, which is the answer
        return bool(np.isfinite(block.sum(dtype=np.float64)))


def parse_header(line: bytes) -> tuple[int, int] | None:
    """``(rows, dim)`` if ``line`` is a word2vec header (two non-negative integers), else None."""
    fields = line.split()
    if len(fields) != 2 or not all(f.isdigit() for f in fields):
        return None
    return int(fields[0]), int(fields[1])


def check_encoding(encoding: str) -> None:
    """Refuse unknown encodings and those (UTF-16/32) whose digits are not ASCII bytes."""
    try:
        codecs.lookup(encoding)
    except LookupError as exc:
        raise FormatError(f"unknown encoding {encoding!r}; pass e.g. --encoding utf-8") from exc
    if "0 .-\n".encode(encoding) != b"0 .-\n":
        raise FormatError(
            f"encoding {encoding!r} is not ASCII-compatible; re-encode the file as UTF-8 first"
        )


class Decoder:
    """Turns token bytes into ``str`` under ``--encoding``/``--decode-errors``, counting damage."""

    def __init__(self, path: Path, encoding: str, errors: DecodeErrors, unit: str = "line"
                 ) -> None:
        self.path, self.encoding, self.errors, self.unit = path, encoding, errors, unit
        self.replaced = 0

    def one(self, raw: bytes | bytearray, line: int) -> str:
        try:
            return raw.decode(self.encoding)
        except UnicodeDecodeError as exc:
            if self.errors is DecodeErrors.STRICT:
                raise FormatError(
                    f"{self.path}, {self.unit} {line}: token bytes {bytes(raw[:40])!r} are not "
                    f"valid {self.encoding} (byte {exc.start}); pass --encoding (e.g. gb18030) or "
                    "--decode-errors replace"
                ) from exc
            self.replaced += 1
            return raw.decode(self.encoding, errors="replace")

    def many(self, raws: Sequence[bytes | bytearray], first_line: int) -> list[str]:
        """Decode a chunk's tokens in one call; only a failure goes token by token."""
        try:
            joined = b"\n".join(raws).decode(self.encoding)
        except UnicodeDecodeError:
            return [self.one(raw, first_line + i) for i, raw in enumerate(raws)]
        return joined.split("\n") if raws else []

    def joined(self, blob: bytes, count: int, first_line: int) -> list[str]:
        """Like :meth:`many` for ``count`` tokens already joined by ``b"\\n"``."""
        if not count:
            return []
        try:
            return blob.decode(self.encoding).split("\n")
        except UnicodeDecodeError:
            return [self.one(raw, first_line + i) for i, raw in enumerate(blob.split(b"\n"))]


def corrupt_stream(path: Path, exc: BaseException) -> FormatError:
    kind = compression_of(path) or "plain"
    what = f"damaged {kind} stream" if kind != "plain" else "read error"
    return FormatError(f"{path}: {what} ({exc}); the file is truncated or corrupt")


def first_bytes_error(path: Path, head: bytes, reading: str) -> FormatError | None:
    """An error saying which ``--from`` to use, when ``head`` is another known format."""
    from embsurgeon.io.formats import FormatName

    if head.startswith(_FASTTEXT_MAGIC) or looks_old_fasttext(head):
        other = FormatName.FASTTEXT_BIN
    elif head.startswith(b"\x80") or head.startswith(b"PK\x03\x04"):
        return FormatError(
            f"{path}: this is a pickle or zip archive, not {reading}; for a gensim .kv/.model "
            "pass --from gensim --allow-pickle, for a torch file --from pt"
        )
    elif reading != FormatName.WORD2VEC_BIN.value and _looks_word2vec_bin(head):
        other = FormatName.WORD2VEC_BIN
    elif reading == FormatName.WORD2VEC_BIN.value and not looks_binary(head[:65536]):
        other = FormatName.WORD2VEC
    else:
        return None
    hint = " (or glove)" if other is FormatName.WORD2VEC else ""
    return FormatError(f"{path}: this is {other.value}{hint} data, not {reading}; pass --from "
                       f"{other.value}{hint}")


def _looks_word2vec_bin(head: bytes) -> bool:
    first, nl, rest = head.partition(b"\n")
    return bool(nl) and parse_header(first) is not None and looks_binary(rest[:1024])


def looks_old_fasttext(head: bytes) -> bool:
    """fastText .bin from before the magic number: a header of plausible small integers."""
    if len(head) < 48:
        return False
    dim, ws, epoch, min_count, neg, ngrams, loss, model, bucket, minn, maxn, lr_rate = (
        np.frombuffer(head[:48], dtype="<i4").tolist()
    )
    return (0 < dim <= 100_000 and 0 < ws <= 1000 and 0 < epoch <= 100_000 and min_count >= 0
            and neg >= 0 and 0 < ngrams <= 100 and loss in (1, 2, 3, 4) and model in (1, 2, 3)
            and bucket >= 0 and 0 <= minn <= maxn <= 100 and lr_rate > 0)


# -- sniffing --------------------------------------------------------------------------------

def _text_head(head: bytes) -> bytes | None:
    head = head.removeprefix(_BOM)
    return None if looks_binary(head) else head


def is_vector_line(line: bytes, dim: int | None = None) -> bool:
    fields = line.split()
    if len(fields) < 2 or (dim is not None and len(fields) < dim + 1):
        return False
    return all(_is_float(f) for f in fields[-(dim or len(fields) - 1):])


def sniff_word2vec(path: Path, head: bytes) -> bool:
    """Text whose first line is ``rows dim`` and whose next line (if any) has ``dim`` numbers."""
    text = _text_head(head)
    if text is None:
        return False
    first, _, rest = text.partition(b"\n")
    header = parse_header(first)
    if header is None:
        return False
    second = rest.split(b"\n", 1)[0]
    complete = b"\n" in rest or len(text) < len(head)
    return not rest.strip() or not complete or is_vector_line(second, header[1])


def sniff_glove(path: Path, head: bytes) -> bool:
    """Text with no header whose lines read ``token v1 ... vD``."""
    text = _text_head(head)
    if text is None:
        return False
    lines = text.split(b"\n")
    if len(lines) > 1:
        lines.pop()  # possibly cut off by the 4 KiB head
    lines = [line for line in lines if line.strip()][:SNIFF_LINES]
    if not lines or parse_header(lines[0]) is not None:
        return False
    # The most common field count gives the dimension, as in the reader: tokens may hold spaces.
    dim = Counter(len(line.split()) for line in lines).most_common(1)[0][0] - 1
    return dim >= 1 and all(is_vector_line(line, dim) for line in lines)


# -- reading ---------------------------------------------------------------------------------

@dataclass
class RowSink:
    """The growing output: rows kept so far, with the streaming filters applied on the way in.

    Readers call :meth:`accept` with a chunk's tokens, copy the accepted rows into
    :meth:`reserve`'s view, then :meth:`commit` them; dropped rows are never stored.
    """

    dim: int
    capacity: int
    limit: int | None = None
    keep: frozenset[str] | None = None
    keep_if: Callable[[str], bool] | None = None

    @classmethod
    def for_options(cls, dim: int, most: int, options: ReadOptions) -> RowSink:
        """A sink for at most ``most`` rows, reserving no more than the filters can keep.

        A filtered read starts small and grows only with the rows it keeps.
        """
        capacity = most
        if options.limit is not None:
            capacity = min(capacity, options.limit)
        if options.keep is not None:
            capacity = min(capacity, len(options.keep))
        if options.keep_if is not None:
            capacity = min(capacity, 4096)
        return cls(dim, max(capacity, 0), options.limit, options.keep, options.keep_if)

    def __post_init__(self) -> None:
        self.vectors = np.empty((self.capacity, self.dim), dtype=np.float32)  # (cap, D)
        self.tokens: list[str] = []
        self.seen: set[str] = set()  # membership only: the table builds its own index
        self.duplicates = 0

    @property
    def full(self) -> bool:
        return self.limit is not None and len(self.tokens) >= self.limit

    def accept(self, tokens: list[str]) -> tuple[list[str], list[int] | None]:
        """The tokens to store and their positions in ``tokens`` (None: the first n of them)."""
        start = len(self.tokens)
        room = len(tokens) if self.limit is None else self.limit - start
        if self.keep is None and self.keep_if is None:
            head = tokens[:room]
            self.seen.update(head)
            if len(self.seen) == start + len(head):  # the usual case: all new, all kept
                return head, None
            # A duplicate: undo, then take the careful path below.
            self.seen.difference_update(head)
            self.seen.update(self.tokens)
        rows: list[int] = []
        taken: list[str] = []
        for i, token in enumerate(tokens):
            if (self.keep is not None and token not in self.keep) or (
                    self.keep_if is not None and not self.keep_if(token)):
                continue
            if token in self.seen:
                self.duplicates += 1
                continue
            if len(taken) == room:
                break
            self.seen.add(token)
            rows.append(i)
            taken.append(token)
        return taken, rows

    def reserve(self, n: int, estimate_more: int = 0) -> np.ndarray:
        """A (n, D) view of the next rows, growing the matrix when needed."""
        start = len(self.tokens)
        if start + n > self.capacity:
            self._grow(start + max(estimate_more, n))
        return self.vectors[start:start + n]

    def commit(self, tokens: list[str]) -> None:
        self.tokens.extend(tokens)

    def _grow(self, capacity: int) -> None:
        capacity = max(capacity, int(self.capacity * 1.25) + 1)
        if self.limit is not None:
            capacity = max(min(capacity, self.limit), len(self.tokens))
        # In-place realloc where the allocator can; we never hold a second full copy.
        self.vectors.resize((capacity, self.dim), refcheck=False)
        self.capacity = capacity

    def finish(self) -> np.ndarray:
        if self.capacity != len(self.tokens):
            self.vectors.resize((len(self.tokens), self.dim), refcheck=False)
        return self.vectors


@dataclass(frozen=True)
class _Parsed:
    """One chunk's rows, before filtering."""

    tokens: list[str]
    vectors: np.ndarray  # (B, D)
    lines: int  # lines the chunk spans, blank ones included
    first_line: int
    line_nos: list[int] | None = None  # per row, when blank lines were skipped
    finite: bool = False  # True: known to hold no NaN/Inf, so the check can be skipped

    def line_of(self, row: int) -> int:
        return self.line_nos[row] if self.line_nos is not None else self.first_line + row


class _TextReader:
    """One pass over a word-vector text file; see the module docstring."""

    def __init__(self, path: Path, options: ReadOptions) -> None:
        self.path = path
        self.options = options
        self.decoder = Decoder(path, options.encoding, options.decode_errors)
        self.file_size = path.stat().st_size
        self.compressed = compression_of(path) is not None
        self._scratch: np.ndarray | None = None  # the compiled parser's per-chunk output
        self._pool: ThreadPoolExecutor | None = None  # a second core for the compiled parser

    def _chunks(self, handle: BinaryIO, first: bytes, bar: object) -> Iterator[bytes]:
        """Runs of whole lines, each copied once (reading is a large share of the time)."""
        pending = first
        while True:
            try:
                more = handle.read(CHUNK_BYTES)
            except STREAM_ERRORS as exc:
                raise corrupt_stream(self.path, exc) from exc
            bar.update(len(more))  # type: ignore[attr-defined]
            if not more:
                if pending:
                    yield pending
                return
            cut = more.rfind(b"\n") + 1
            if cut == 0:  # no line ends in this read: a very long line
                pending = b"".join((pending, more))
                continue
            yield b"".join((pending, memoryview(more)[:cut])) if pending else (
                more if cut == len(more) else more[:cut])
            pending = more[cut:]

    def read(self) -> EmbeddingTable:
        opts = self.options
        check_encoding(opts.encoding)
        if self.file_size == 0:
            raise FormatError(f"{self.path}: the file is empty")
        from concurrent.futures import ThreadPoolExecutor

        parallel = COMPILED is not None and PARALLEL
        with open_binary(self.path) as handle, progress_bar(
                opts.progress, total=None if self.compressed else self.file_size,
                desc=f"reading {self.path.name}") as bar, (
                ThreadPoolExecutor(1, thread_name_prefix="embsurgeon-parse") if parallel
                else nullcontext(None)) as self._pool:
            head = b""
            try:
                # Enough whole lines to find the header and the dimension (or the whole file).
                while head.count(b"\n") <= SNIFF_LINES and (more := handle.read(CHUNK_BYTES)):
                    head += more
                    bar.update(len(more))
            except STREAM_ERRORS as exc:
                raise corrupt_stream(self.path, exc) from exc
            head = head.removeprefix(_BOM)
            if not head.strip():
                raise FormatError(f"{self.path}: the file holds no vectors (only blank lines)")
            self._refuse_binary(head)
            header, dim, body_start = self._layout(head)
            body, head = head[body_start:], b""  # do not hold the first chunk twice
            sink = self._sink(header, dim, body, body_start)
            rows_seen = 0
            line_no = 2 if header else 1
            filtered = opts.keep is not None or opts.keep_if is not None
            for chunk in self._chunks(handle, body, bar):
                body = b""
                parsed = self._parse(chunk, dim, line_no)
                line_no += parsed.lines
                rows_seen += len(parsed.tokens)
                if header and rows_seen > header[0]:
                    raise FormatError(
                        f"{self.path}: the header promises {header[0]} rows but the file holds "
                        "more; fix the header (first line) or pass --limit"
                    )
                # Growing to the rows the rest of the file holds is right only when all are kept.
                estimate = 0 if filtered else self._estimate_rows(chunk, len(parsed.tokens),
                                                                  handle)
                self._store(sink, parsed, estimate)
                if sink.full:
                    break
            else:
                if header and rows_seen < header[0]:
                    raise FormatError(
                        f"{self.path}: the header promises {header[0]} rows but the file holds "
                        f"{rows_seen}; the file is truncated or the header is wrong"
                    )
        vectors = sink.finish()
        meta = {SOURCE_DTYPE: "float32", "duplicates": str(sink.duplicates)}
        if self.decoder.replaced:
            meta["decode_replaced"] = str(self.decoder.replaced)
        return EmbeddingTable(sink.tokens, vectors, meta)

    def _refuse_binary(self, head: bytes) -> None:
        from embsurgeon.io.formats import FormatName

        error = first_bytes_error(self.path, head, FormatName.WORD2VEC.value)
        if error is not None:
            raise error
        if looks_binary(head[:65536]):
            raise FormatError(
                f"{self.path}: holds binary bytes, so it is not word-vector text; "
                "pass --from word2vec-bin or --from fasttext-bin if that is what it is"
            )

    def _layout(self, head: bytes) -> tuple[tuple[int, int] | None, int, int]:
        """(header or None, dim, offset of the first data line) from the first chunk."""
        # Whole lines only: the head holds more than SNIFF_LINES of them, or the whole file.
        lines = head.split(b"\n", SNIFF_LINES + 1)[: SNIFF_LINES + 1]
        header = parse_header(lines[0])
        data = [line for line in lines[1 if header else 0:] if line.strip()]
        counts = Counter(len(line.split()) for line in data)
        inferred = counts.most_common(1)[0][0] - 1 if counts else None
        if header is not None:
            _, dim = header
            if inferred is None or inferred == dim or (len(data) and all(
                    len(line.split()) > dim for line in data)):
                if dim == 0:
                    raise FormatError(f"{self.path}, line 1: the header says dim 0")
                return header, dim, len(lines[0]) + 1
            if inferred != 1:
                raise FormatError(
                    f"{self.path}, line 2: the header says dim {dim} but the lines have "
                    f"{inferred} numbers; fix the header (first line)"
                )
            # A one-dimensional GloVe file whose first token is a number: no header after all.
        if inferred is None or inferred < 1:
            raise FormatError(
                f"{self.path}, line 1: expected 'token v1 ... vD' (or a 'rows dim' header), "
                f"got {lines[0][:60]!r}"
            )
        return None, inferred, 0

    def _sink(self, header: tuple[int, int] | None, dim: int, body: bytes,
              body_start: int) -> RowSink:
        opts = self.options
        # A row takes at least 2 * dim + 2 bytes ("t 1 2\n"): a header promising more rows
        # than that is not believed when sizing the matrix.
        justified = max(self.file_size, 1) // (2 * dim + 2) + 1
        if self.compressed:
            justified *= 8  # text compresses several-fold; the sink grows past this if needed
        lines = body[:CHUNK_BYTES].count(b"\n")
        if header is not None:
            wanted = header[0]
        elif lines:
            avg = max(len(body[:CHUNK_BYTES]) / lines, 1.0)
            wanted = math.ceil((self.file_size - body_start) / avg * 1.02) + 16
        else:
            wanted = 16
        return RowSink.for_options(dim, min(wanted, justified), opts)

    def _store(self, sink: RowSink, parsed: _Parsed, estimate_more: int) -> None:
        """Keep the rows the filters accept; only those must be finite."""
        taken, rows = sink.accept(parsed.tokens)
        if not taken:
            return
        kept = (parsed.vectors if rows is None else parsed.vectors[rows])[:len(taken)]  # (k, D)
        if not self.options.allow_nonfinite and not parsed.finite and not all_finite(kept):
            j = int(np.flatnonzero(~np.isfinite(kept).all(axis=1))[0])
            row = j if rows is None else rows[j]
            raise FormatError(
                f"{self.path}, line {parsed.line_of(row)}: NaN or infinite value (or one too "
                f"large for float32) in the vector of {parsed.tokens[row]!r}; pass "
                "--allow-nonfinite to keep such rows"
            )
        sink.reserve(len(taken), estimate_more)[:] = kept
        sink.commit(taken)

    def _estimate_rows(self, chunk: bytes, rows: int, handle: BinaryIO) -> int:
        if self.compressed or not rows:
            return rows
        try:
            left = self.file_size - handle.tell()
        except (OSError, ValueError):
            return rows
        return max(int(left / (len(chunk) / rows) * 1.02), 0) + 16

    # -- parsing one chunk ------------------------------------------------------------------

    def _parse(self, chunk: bytes, dim: int, first_line: int) -> _Parsed:
        if COMPILED is not None:
            return self._parse_compiled(COMPILED, chunk, dim, first_line)
        fast = self._parse_fast(chunk, dim)
        if fast is not None:  # no blank lines on this path: one line per token
            tokens, block = fast
            return _Parsed(self.decoder.many(tokens, first_line), block, len(tokens), first_line)
        return self._parse_slow(chunk, dim, first_line)

    def _parse_compiled(self, compiled: ModuleType, chunk: bytes, dim: int, first_line: int
                        ) -> _Parsed:
        """The chunk through the compiled parser. With a second core, the parser runs on the
        chunk's second half in a worker thread (it releases the GIL) while this thread takes
        the first half; everything else stays in order on this thread."""
        size = len(chunk)
        mid = size
        if self._pool is not None and size >= SPLIT_BYTES:
            mid = chunk.find(b"\n", size // 2) + 1 or size
        n1, n2 = _row_bound(mid, dim), _row_bound(size - mid, dim) if mid < size else 0
        block = self._block(n1 + n2, dim)  # (n1 + n2, D)
        second = None
        if n2 and self._pool is not None:
            second = self._pool.submit(compiled.parse_text, chunk, mid, dim, block[n1:])
        with memoryview(chunk) as view, view[:mid] as head:
            one = self._segment(compiled, chunk, head, 0, mid, dim, block[:n1], first_line, None)
        if second is None:
            return one
        two = self._segment(compiled, chunk, chunk, mid, size, dim, block[n1:],
                            first_line + one.lines, second.result())
        r1, r2 = len(one.tokens), len(two.tokens)
        block[r1:r1 + r2] = block[n1:n1 + r2]  # numpy copes with the overlap
        line_nos = None
        if one.line_nos is not None or two.line_nos is not None:
            line_nos = [*(one.line_nos or range(first_line, first_line + r1)),
                        *(two.line_nos or range(two.first_line, two.first_line + r2))]
        return _Parsed(one.tokens + two.tokens, block[:r1 + r2], one.lines + two.lines,
                       first_line, line_nos, one.finite and two.finite)

    def _segment(self, compiled: ModuleType, chunk: bytes, data: bytes | memoryview, pos: int,
                 end: int, dim: int, block: np.ndarray, first_line: int,
                 first: tuple[bytes, int, int, int] | None) -> _Parsed:
        """``chunk[pos:end]`` (``data`` ends at ``end``) through the compiled parser, starting
        from its result ``first`` if given; each line it declines goes through
        :meth:`_parse_slow` alone (which decides, or names the line's error), then it resumes."""
        tokens: list[str] = []
        line_nos: list[int] | None = None  # only once a line was skipped or declined
        row = 0
        line = first_line
        finite = True
        while True:
            blob, count, pos, nonfinite = first or compiled.parse_text(data, pos, dim, block[row:])
            first = None
            finite = finite and nonfinite < 0
            tokens += self.decoder.joined(blob, count, line)
            if line_nos is not None:
                line_nos += range(line, line + count)
            row += count
            line += count
            if pos >= end:
                break
            stop = chunk.find(b"\n", pos, end) + 1 or end
            one = self._parse_slow(chunk[pos:stop], dim, line)
            if line_nos is None:
                line_nos = list(range(first_line, line))
            if one.tokens:  # not a blank line
                block[row] = one.vectors[0]
                finite = finite and bool(np.isfinite(block[row]).all())
                tokens.append(one.tokens[0])
                line_nos.append(line)
                row += 1
            line += 1
            pos = stop
        return _Parsed(tokens, block[:row], line - first_line, first_line, line_nos, finite)

    def _block(self, rows: int, dim: int) -> np.ndarray:
        if self._scratch is None or len(self._scratch) < rows:
            self._scratch = np.empty((max(rows, 1024), dim), dtype=np.float32)
        return self._scratch[:rows]

    def _parse_fast(self, chunk: bytes, dim: int) -> tuple[list[bytes], np.ndarray] | None:
        """The whole chunk through numpy's C parser; None when it needs reading line by line.

        The structured dtype (token bytes, then ``dim`` floats) makes numpy check that every
        line holds exactly ``dim + 1`` single-space-separated fields, so a token with spaces is
        never misread as numbers; such chunks, and those with tabs, blank lines, over-long
        tokens or damage, go line by line. A trailing space (fastText writes one) is allowed
        when the chunk's first line has one too.
        """
        body = chunk if chunk.endswith(b"\n") else chunk + b"\n"
        if b"\t" in body:
            return None
        first = body[:body.find(b"\n")]
        fields = [("token", f"S{_TOKEN_WIDTH}"), ("vector", "<f4", (dim,))]
        if first.endswith((b" ", b" \r")):
            fields.append(("trailing", "S1"))
        try:
            # Single-space delimiter: latin-1 would make byte 0xA0 inside a UTF-8 token a
            # (non-breaking) space, and whitespace splitting would split the token there.
            parsed = np.loadtxt(io.BytesIO(body), dtype=np.dtype(fields), delimiter=" ",
                                comments=None, quotechar=None, encoding="latin-1", ndmin=1)
        except ValueError:
            return None
        # numpy skips blank lines; they would shift the line numbers of later errors.
        if len(parsed) != body.count(b"\n"):
            return None
        # The trailing field must be empty: "route 66 1 2 " is a spaced token, not "route".
        if len(fields) == 3 and parsed["trailing"].any():
            return None
        raw = parsed["token"].tolist()
        if not all(raw) or max(map(len, raw)) >= _TOKEN_WIDTH:
            return None  # an empty token, or one that may have been cut at the field width
        return raw, parsed["vector"]  # (B, D), a strided view into the records

    def _parse_slow(self, chunk: bytes, dim: int, first_line: int) -> _Parsed:
        tokens: list[str] = []
        line_nos: list[int] = []
        values: list[list[float]] = []
        for offset, line in enumerate(chunk.split(b"\n")):
            line = line.rstrip()
            if not line:
                continue  # blank lines (trailing ones especially) carry nothing
            line_no = first_line + offset
            parts = line.rsplit(None, dim)
            if len(parts) != dim + 1 or not parts[0].strip():
                raise FormatError(
                    f"{self.path}, line {line_no}: {len(line.split())} fields; expected a "
                    f"token and {dim} numbers"
                )
            try:
                values.append([_to_float(x) for x in parts[1:]])
            except ValueError as exc:
                bad = next(x for x in parts[1:] if not _is_float(x))
                raise FormatError(
                    f"{self.path}, line {line_no}: {bad[:30]!r} is not a number"
                ) from exc
            tokens.append(self.decoder.one(parts[0].strip(), line_no))
            line_nos.append(line_no)
        with np.errstate(over="ignore"):  # too large for float32 becomes inf, refused later
            block = np.array(values, dtype=np.float32).reshape(len(values), dim)
        lines = chunk.count(b"\n") + (not chunk.endswith(b"\n"))
        return _Parsed(tokens, block, lines, first_line, line_nos)


def _row_bound(size: int, dim: int) -> int:
    """Most rows ``size`` bytes of text can hold: every line that makes a row holds at least
    ``2 * dim + 1`` bytes and its newline (the last may lack one); no need to count lines."""
    return size // (2 * dim + 2) + 1


def _to_float(text: bytes) -> float:
    if b"_" in text:  # Python's float() takes 1_000; no vector file means that
        raise ValueError(f"not a number: {text!r}")
    return float(text)


def _is_float(text: bytes) -> bool:
    try:
        _to_float(text)
    except ValueError:
        return False
    return True


def read_text(path: Path, options: ReadOptions) -> EmbeddingTable:
    """Read word2vec text, GloVe text or fastText ``.vec`` (plain, ``.gz`` or ``.bz2``).

    >>> table = read_text(Path("glove.6B.300d.txt"), ReadOptions(limit=50_000))  # doctest: +SKIP
    >>> table.metadata["duplicates"]                                              # doctest: +SKIP
    '0'
    """
    if not path.is_file():
        raise FormatError(f"{path}: no such file")
    return _TextReader(path, options).read()


# -- writing ---------------------------------------------------------------------------------

def check_token(token: str, row: int, fmt: str, *, spaces: bool) -> None:
    """Refuse tokens ``fmt`` cannot hold, naming the token and its row."""
    problem = None
    if not token:
        problem = "is empty"
    elif "\n" in token or "\r" in token:
        problem = "contains a line break"
    elif token != token.strip():
        problem = "starts or ends with whitespace"
    elif not spaces and any(ch.isspace() for ch in token):
        problem = "contains whitespace"
    elif any(ch < " " and ch != "\t" for ch in token):
        problem = "contains a control character"  # readers take such bytes for binary data
    if problem is not None:
        raise VocabularyError(
            f"token {token!r} (row {row}) {problem}, which {fmt} cannot hold; rename or drop it"
        )


def _format_rows(tokens: list[str], vectors: np.ndarray) -> str:
    # %.9g of the exact double of each float32 value reads back to the same float32.
    fmt = "%s " + " ".join([f"%.{FLOAT_DIGITS}g"] * vectors.shape[1]) + "\n"
    return "".join([fmt % (token, *row) for token, row in zip(tokens, vectors.tolist(),
                                                              strict=True)])


def refuse_dtype(options: WriteOptions, fmt: str) -> None:
    """Word-vector formats hold float32 only; ``--dtype`` would be silently ignored."""
    if options.dtype not in (None, DType.FLOAT32):
        raise DtypeError(f"{fmt} writes float32 values; drop --dtype {options.dtype.value}")


def _write_text(table: EmbeddingTable, path: Path, options: WriteOptions, *, header: bool,
                fmt: str) -> list[Path]:
    refuse_dtype(options, fmt)
    for row, token in enumerate(table.tokens):
        check_token(token, row, fmt, spaces=True)
    if header is False and len(table) and table.dim == 1 and parse_header(
            f"{table.tokens[0]} 0".encode()) is not None:
        raise VocabularyError(
            f"token {table.tokens[0]!r} (row 0) with a 1-dimensional vector would read back as "
            "a word2vec header; write word2vec text instead"
        )
    # NaN/Inf are written as nan/inf, which the reader takes back with --allow-nonfinite.
    vectors = table.vectors
    block = max(1, (4 << 20) // (12 * max(table.dim, 1)))
    with atomic_paths(path, force=options.force) as (tmp,), open(
            tmp, "w", encoding="utf-8", newline="\n") as handle, progress_bar(
            options.progress, total=len(table), desc=f"writing {path.name}", unit="rows") as bar:
        if header:
            handle.write(f"{len(table)} {table.dim}\n")
        for start in range(0, len(table), block):
            rows = vectors[start:start + block].astype(np.float32, copy=False)
            handle.write(_format_rows(list(table.tokens[start:start + block]), rows))
            bar.update(len(rows))
    return [path]


def write_word2vec(table: EmbeddingTable, path: Path, options: WriteOptions) -> list[Path]:
    """word2vec text (``rows dim`` header), which fastText ``.vec`` readers also take.

    >>> write_word2vec(table, Path("out.vec"), WriteOptions())     # doctest: +SKIP
    [PosixPath('out.vec')]
    """
    return _write_text(table, path, options, header=True, fmt="word2vec text")


def write_glove(table: EmbeddingTable, path: Path, options: WriteOptions) -> list[Path]:
    """GloVe text: ``token v1 ... vD`` per line, no header.

    >>> write_glove(table, Path("out.txt"), WriteOptions())        # doctest: +SKIP
    [PosixPath('out.txt')]
    """
    return _write_text(table, path, options, header=False, fmt="GloVe text")


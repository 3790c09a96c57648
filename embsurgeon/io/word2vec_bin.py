"""word2vec binary, the C tool's format: a ``rows dim`` text line, then per row the token, one
space, ``dim`` little-endian float32 values and (usually) a newline.

Nothing in the format marks where a record ends but the arithmetic, so the reader checks it
all: the header against the file size before allocating, every token (no line breaks, a
space within reach, valid encoding), that the last record is complete and that nothing but
newlines follows it. A text file handed to this reader, or this format to the text reader,
gets an error naming the ``--from`` to use.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any, BinaryIO

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from embsurgeon.errors import FormatError
from embsurgeon.io import text
from embsurgeon.io.atomic import atomic_paths
from embsurgeon.io.compression import compression_of, open_binary
from embsurgeon.io.formats import FormatName, ReadOptions, WriteOptions
from embsurgeon.io.text import (
    STREAM_ERRORS,
    Decoder,
    RowSink,
    all_finite,
    check_encoding,
    check_token,
    corrupt_stream,
    first_bytes_error,
    is_vector_line,
    looks_binary,
    parse_header,
    refuse_dtype,
)
from embsurgeon.progress import progress_bar
from embsurgeon.table import SOURCE_DTYPE, EmbeddingTable

#: Bytes read per chunk.
CHUNK_BYTES = 16 << 20
#: The longest token we believe; a longer one means the record boundaries are off.
MAX_TOKEN_BYTES = 4096
_MAX_HEADER_BYTES = 64
_ROW_DTYPE = np.dtype("<f4")


def sniff_word2vec_bin(path: Path, head: bytes) -> bool:
    """A ``rows dim`` line followed by binary bytes."""
    first, nl, rest = head.partition(b"\n")
    return bool(nl) and parse_header(first) is not None and looks_binary(rest[:1024])


def _read_header(path: Path, head: bytes) -> tuple[int, int, int]:
    """(rows, dim, header length in bytes), or an error naming the format it looks like."""
    error = first_bytes_error(path, head, FormatName.WORD2VEC_BIN.value)
    first, nl, rest = head.partition(b"\n")
    header = parse_header(first) if nl and len(first) <= _MAX_HEADER_BYTES else None
    if header is None:
        raise error or FormatError(
            f"{path}: the first line is not a 'rows dim' header, so this is not word2vec binary"
        )
    rows, dim = header
    body = rest.lstrip(b"\n")
    if error is not None and is_vector_line(body.split(b"\n", 1)[0], dim) and not looks_binary(
            body[:65536]):
        raise error  # numbers as text after the header: word2vec text
    if dim == 0:
        raise FormatError(f"{path}: the header says dim 0")
    return rows, dim, len(first) + 1


class _BinaryReader:
    def __init__(self, path: Path, options: ReadOptions) -> None:
        self.path = path
        self.options = options
        self.decoder = Decoder(path, options.encoding, options.decode_errors, unit="record")
        self._scratch: np.ndarray | None = None  # the compiled scanner's rows when filtering

    def read(self) -> EmbeddingTable:
        path, opts = self.path, self.options
        if not path.is_file():
            raise FormatError(f"{path}: no such file")
        size = path.stat().st_size
        if size == 0:
            raise FormatError(f"{path}: the file is empty")
        check_encoding(opts.encoding)
        compressed = compression_of(path) is not None
        with open_binary(path) as handle, progress_bar(
                opts.progress, total=None if compressed else size,
                desc=f"reading {path.name}") as bar:
            # One reusable buffer filled with readinto: the bytes are copied once, from the
            # file into the buffer, and once more, record by record, into the matrix.
            buf = bytearray(CHUNK_BYTES)
            n = self._fill(handle, buf, 0, bar)
            rows, dim, pos = _read_header(path, bytes(buf[:min(n, 65536)]))
            nbytes = dim * _ROW_DTYPE.itemsize
            # Each record needs a token byte, a space and the vector: refuse a header the file
            # cannot hold before allocating for it.
            least = rows * (nbytes + 2)
            if not compressed and least > size - pos:
                raise FormatError(
                    f"{path}: the header promises {rows} rows of {dim} floats (at least "
                    f"{least} bytes) but only {size - pos} bytes follow; the file is truncated "
                    "or the header is wrong"
                )
            most = rows if not compressed else min(rows, 8 * size // (nbytes + 2) + 1)
            sink = RowSink.for_options(dim, most, opts)
            record = 0
            eof = n < len(buf)
            step = nbytes + 1  # from a token's space to the byte after its vector
            compiled = text.COMPILED
            while record < rows and not sink.full:
                if compiled is not None:
                    done, pos = self._scan(compiled, sink, buf, n, pos, dim, record, rows)
                    record += done
                else:
                    # Find the space ending each complete record's token; everything else
                    # about the records is worked out with numpy in _store.
                    start, last = pos, n - step
                    spaces: list[int] = []
                    find, add = buf.find, spaces.append
                    for _ in range(rows - record):
                        space = find(b" ", pos, n)
                        if space < 0 or space > last:
                            break
                        add(space)
                        pos = space + step
                    if spaces:
                        self._store(sink, buf, n, start, spaces, nbytes, record, rows)
                        record += len(spaces)
                if record >= rows or sink.full:
                    break
                if n - pos > MAX_TOKEN_BYTES + step + 1:  # room for a record, yet none fits
                    raise FormatError(
                        f"{path}, record {record + 1}: no token separator within "
                        f"{MAX_TOKEN_BYTES} bytes; the header's dim is wrong or the file is "
                        "damaged"
                    )
                if eof:
                    self._broken(record)
                # Keep the unfinished record, make room for one whole record, read on.
                rest = n - pos
                buf[:rest] = buf[pos:n]
                if rest + MAX_TOKEN_BYTES + nbytes + 2 > len(buf):
                    buf.extend(bytes(rest + MAX_TOKEN_BYTES + nbytes + 2 - len(buf)))
                n = self._fill(handle, buf, rest, bar)
                eof = n < len(buf)
                pos = 0
            if not sink.full:
                self._check_tail(handle, bytes(buf[pos:n]), rows)
        meta = {SOURCE_DTYPE: "float32", "duplicates": str(sink.duplicates)}
        if self.decoder.replaced:
            meta["decode_replaced"] = str(self.decoder.replaced)
        return EmbeddingTable(sink.tokens, sink.finish(), meta)

    def _fill(self, handle: BinaryIO, buf: bytearray, start: int, bar: Any) -> int:
        """Read into ``buf[start:]`` until it is full or the file ends; the new data length."""
        n = start
        with memoryview(buf) as view:
            while n < len(buf):
                with view[n:] as target:
                    try:
                        got = handle.readinto(target)  # type: ignore[attr-defined]
                    except STREAM_ERRORS as exc:
                        raise corrupt_stream(self.path, exc) from exc
                if not got:
                    break
                bar.update(got)
                n += got
        return n

    def _scan(self, compiled: ModuleType, sink: RowSink, buf: bytearray, n: int, pos: int,
              dim: int, record: int, rows: int) -> tuple[int, int]:
        """The whole records in ``buf[pos:n]`` through the compiled scanner, checked, filtered
        and stored as :meth:`_store` does; (records consumed, offset after them)."""
        filtered = self.options.keep is not None or self.options.keep_if is not None
        first = record
        while record < rows and not sink.full:
            # Each record takes at least a token byte, a space and the vector.
            room = min(rows - record, (n - pos) // (dim * 4 + 2))
            if filtered:  # scratch rows, of which only the kept are copied into the sink
                if self._scratch is None or len(self._scratch) < room:
                    self._scratch = np.empty((room, dim), dtype=np.float32)
                dest = self._scratch[:room]  # (room, D)
            else:  # straight into the output; duplicates and the limit are sorted out below
                dest = sink.reserve(room, rows - record)  # (<= room, D) under a limit
            blob, count, pos, bad, nonfinite = compiled.scan_records(
                buf, pos, n, dim, rows - record, MAX_TOKEN_BYTES, dest)
            if bad >= 0:
                raw = blob.split(b"\n", count)[-1]  # the good tokens hold no newline
                raise FormatError(
                    f"{self.path}, record {record + bad + 1}: token {raw[:40]!r} is empty, too "
                    "long or holds a line break, so the record boundaries are off (the header's "
                    "dim is wrong or the file is damaged)"
                )
            tokens = self.decoder.joined(blob, count, record + 1)
            taken, keep_rows = sink.accept(tokens)
            if taken:
                kept = dest[:len(taken)] if keep_rows is None else dest[keep_rows]  # (k, D)
                if nonfinite >= 0:  # else known finite: no second pass over the rows
                    self._check_finite(kept, taken, keep_rows, record)
                if filtered or keep_rows is not None:
                    sink.reserve(len(taken))[...] = kept
                sink.commit(taken)
            record += count
            if not count or count < len(dest):  # stopped short of its rows: the data ran out
                break
        return record - first, pos

    def _check_finite(self, kept: np.ndarray, taken: list[str], keep_rows: list[int] | None,
                      record: int) -> None:
        if not self.options.allow_nonfinite and not all_finite(kept):
            row = int(np.flatnonzero(~np.isfinite(kept).all(axis=1))[0])
            raise FormatError(
                f"{self.path}, record {record + (keep_rows[row] if keep_rows else row) + 1}: "
                f"NaN or infinite value in the vector of {taken[row]!r}; pass --allow-nonfinite "
                "to keep such rows"
            )

    def _store(self, sink: RowSink, buf: bytearray, n: int, start: int, spaces: list[int],
               nbytes: int, record: int, rows: int) -> None:
        """Check, decode, filter and copy the records whose token-ending spaces are given."""
        data = np.frombuffer(buf, dtype=np.uint8, count=n)
        ends = np.array(spaces, dtype=np.int64)  # (K,) the space after each token
        starts = np.empty_like(ends)  # (K,)
        starts[0] = start
        starts[1:] = ends[:-1] + nbytes + 1
        starts += data[starts] == 10  # the newline the C tool writes after each vector
        widths = ends - starts + 1  # each token with its space
        # All tokens in one gather, "tok1 tok2 ... tokK ", then one split.
        shift = np.repeat(starts - (np.cumsum(widths) - widths), widths)
        joined = data[np.arange(int(widths.sum()), dtype=np.int64) + shift].tobytes()
        raws = joined.split(b" ")[:-1]
        if b"\n" in joined:  # several newlines before a token, or damage
            raws = [raw.lstrip(b"\n") for raw in raws]
        if not all(raws) or (widths > MAX_TOKEN_BYTES + 1).any() or b"\n" in b" ".join(raws):
            i = next(i for i, raw in enumerate(raws)
                     if not raw or b"\n" in raw or len(raw) > MAX_TOKEN_BYTES)
            raise FormatError(
                f"{self.path}, record {record + i + 1}: token {raws[i][:40]!r} is empty, too "
                "long or holds a line break, so the record boundaries are off (the header's "
                "dim is wrong or the file is damaged)"
            )
        tokens = self.decoder.many(raws, record + 1)
        taken, keep_rows = sink.accept(tokens)
        if not taken:
            return
        vectors = sliding_window_view(data, nbytes)  # (n - nbytes + 1, nbytes), no copy
        picks = ends[:len(taken)] + 1 if keep_rows is None else ends[keep_rows] + 1
        # Growing to the rows still to come is right only when all are kept.
        filtered = self.options.keep is not None or self.options.keep_if is not None
        dest = sink.reserve(len(taken), 0 if filtered else rows - record)  # (k, D)
        dest.view(np.uint8)[...] = vectors[picks]
        self._check_finite(dest, taken, keep_rows, record)
        sink.commit(taken)

    def _broken(self, record: int) -> None:
        raise FormatError(
            f"{self.path}: the file ends inside record {record + 1} (the header promises "
            "more rows); the file is truncated or the header is wrong"
        )

    def _check_tail(self, handle: object, tail: bytes, rows: int) -> None:
        try:
            more = handle.read(4096)  # type: ignore[attr-defined]
        except STREAM_ERRORS as exc:
            raise corrupt_stream(self.path, exc) from exc
        if (tail + more).strip(b"\n\r"):
            raise FormatError(
                f"{self.path}: data follows the {rows} rows the header promises; the header "
                "is wrong or the file is damaged"
            )


def read_word2vec_bin(path: Path, options: ReadOptions) -> EmbeddingTable:
    """Read the word2vec C tool's binary format (plain, ``.gz`` or ``.bz2``).

    >>> table = read_word2vec_bin(Path("GoogleNews-vectors-negative300.bin.gz"),
    ...                           ReadOptions(limit=100_000))    # doctest: +SKIP
    """
    return _BinaryReader(path, options).read()


def write_word2vec_bin(table: EmbeddingTable, path: Path, options: WriteOptions) -> list[Path]:
    """Write word2vec binary: float32 little-endian, a newline after each vector.

    >>> write_word2vec_bin(table, Path("out.bin"), WriteOptions())   # doctest: +SKIP
    [PosixPath('out.bin')]
    """
    refuse_dtype(options, "word2vec binary")
    for row, token in enumerate(table.tokens):
        check_token(token, row, "word2vec binary", spaces=False)
    with np.errstate(over="ignore"):
        vectors = np.ascontiguousarray(table.vectors, dtype=_ROW_DTYPE)  # (V, D)
    block = max(1, (8 << 20) // max(vectors.shape[1] * 4, 1))
    with atomic_paths(path, force=options.force) as (tmp,), open(tmp, "wb") as handle, \
            progress_bar(options.progress, total=len(table), desc=f"writing {path.name}",
                         unit="rows") as bar:
        handle.write(f"{len(table)} {table.dim}\n".encode())
        for start in range(0, len(table), block):
            rows = vectors[start:start + block]
            handle.write(b"".join([
                token.encode("utf-8") + b" " + row.tobytes() + b"\n"
                for token, row in zip(table.tokens[start:start + block], rows, strict=True)
            ]))
            bar.update(len(rows))
    return [path]

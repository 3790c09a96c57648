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
from typing import Any, BinaryIO

import numpy as np

from embsurgeon.errors import FormatError
from embsurgeon.io.atomic import atomic_paths
from embsurgeon.io.compression import compression_of, open_binary
from embsurgeon.io.formats import FormatName, ReadOptions, WriteOptions
from embsurgeon.io.text import (
    STREAM_ERRORS,
    Decoder,
    RowSink,
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
            capacity = rows if not compressed else min(rows, 8 * size // (nbytes + 2) + 1)
            if opts.limit is not None:
                capacity = min(capacity, opts.limit)
            if opts.keep is not None:
                capacity = min(capacity, len(opts.keep))
            if opts.keep_if is not None:
                capacity = min(capacity, 4096)
            sink = RowSink(dim, capacity, opts.limit, opts.keep, opts.keep_if)
            record = 0
            eof = n < len(buf)
            while record < rows and not sink.full:
                # Parse every complete record in the buffer.
                raws: list[bytearray] = []
                offsets: list[int] = []
                find, add_raw, add_offset = buf.find, raws.append, offsets.append
                for _ in range(rows - record):
                    if pos < n and buf[pos] == 10:  # the newline after the previous vector
                        pos += 1
                    space = find(b" ", pos, n)
                    if space < 0 or space + 1 + nbytes > n or space - pos > MAX_TOKEN_BYTES:
                        if eof or space - pos > MAX_TOKEN_BYTES or (
                                space < 0 and n - pos > MAX_TOKEN_BYTES):
                            self._broken(record + len(raws), n, pos, space)
                        break
                    add_raw(buf[pos:space])
                    add_offset(space + 1)
                    pos = space + 1 + nbytes
                if raws:
                    self._store(sink, raws, offsets, buf, dim, record, rows)
                    record += len(raws)
                if record >= rows or sink.full:
                    break
                if eof:
                    self._broken(record, n, pos, -1)
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

    def _store(self, sink: RowSink, raws: list[bytearray], offsets: list[int], buf: bytearray,
               dim: int, record: int, rows: int) -> None:
        if b"\n" in b" ".join(raws):  # several newlines before a token, or damage
            raws = [raw.lstrip(b"\n") for raw in raws]
        if not all(raws) or b"\n" in b" ".join(raws):
            i = next(i for i, raw in enumerate(raws) if not raw or b"\n" in raw)
            raise FormatError(
                f"{self.path}, record {record + i + 1}: token {bytes(raws[i][:40])!r} is empty or "
                "holds a line break, so the record boundaries are off (the header's dim is "
                "wrong or the file is damaged)"
            )
        tokens = self.decoder.many(raws, record + 1)
        taken, keep_rows = sink.accept(tokens)
        if not taken:
            return
        nbytes = dim * _ROW_DTYPE.itemsize
        dest = sink.reserve(len(taken), rows - record)  # (n, D)
        target = dest.data.cast("B")
        picks = offsets[:len(taken)] if keep_rows is None else [offsets[r] for r in keep_rows]
        at = 0
        with memoryview(buf) as source:
            for offset in picks:
                target[at:at + nbytes] = source[offset:offset + nbytes]
                at += nbytes
        if not self.options.allow_nonfinite and not np.isfinite(dest).all():
            row = int(np.flatnonzero(~np.isfinite(dest).all(axis=1))[0])
            raise FormatError(
                f"{self.path}, record {record + (keep_rows[row] if keep_rows else row) + 1}: "
                f"NaN or infinite value in the vector of {taken[row]!r}; pass --allow-nonfinite "
                "to keep such rows"
            )
        sink.commit(taken)

    def _broken(self, record: int, n: int, start: int, space: int) -> None:
        if start >= n or 0 <= space - start <= MAX_TOKEN_BYTES:
            raise FormatError(
                f"{self.path}: the file ends inside record {record + 1} (the header promises "
                "more rows); the file is truncated or the header is wrong"
            )
        raise FormatError(
            f"{self.path}, record {record + 1}: no token separator within {MAX_TOKEN_BYTES} "
            "bytes; the header's dim is wrong or the file is damaged"
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

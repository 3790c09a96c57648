"""The format registry: one literal table of every format, probed in a fixed order.

Detection order for reading: an explicit ``--from``, then the file suffix, then content
sniffing; when nothing fits, the error lists every format tried. Readers, writers and sniffers
are named as ``"module:function"`` strings and imported only when used, so ``import embsurgeon``
never pulls in torch or gensim.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from embsurgeon.errors import FormatError
from embsurgeon.table import EmbeddingTable


class FormatName(str, Enum):
    """Format names; the values are the ``--from`` / ``--to`` spellings."""

    HF = "hf"
    SAFETENSORS = "safetensors"
    PT = "pt"
    WORD2VEC = "word2vec"
    GLOVE = "glove"
    WORD2VEC_BIN = "word2vec-bin"
    FASTTEXT_BIN = "fasttext-bin"
    GENSIM = "gensim"


class DType(str, Enum):
    """Output dtypes (``--dtype``)."""

    FLOAT32 = "float32"
    FLOAT16 = "float16"
    BFLOAT16 = "bfloat16"


class DecodeErrors(str, Enum):
    """What to do with bytes that do not decode in the chosen encoding (``--decode-errors``)."""

    STRICT = "strict"  # stop with an error naming the line
    REPLACE = "replace"  # substitute U+FFFD and count the damaged tokens


@dataclass(frozen=True)
class ReadOptions:
    """Knobs shared by every reader; a reader ignores those that do not apply to it."""

    encoding: str = "utf-8"
    decode_errors: DecodeErrors = DecodeErrors.STRICT
    allow_nonfinite: bool = False
    limit: int | None = None  # keep only the first N rows
    keep: frozenset[str] | None = None  # keep only these tokens, dropped while streaming
    keep_if: Callable[[str], bool] | None = None  # and/or only tokens passing this predicate
    tensor: str | None = None  # checkpoint tensor name override
    allow_pickle: bool = False  # formats whose loading can run code
    progress: bool = False

    def __post_init__(self) -> None:
        # Library callers may pass plain strings; the rest of the code sees the Enum.
        object.__setattr__(self, "decode_errors", DecodeErrors(self.decode_errors))


@dataclass(frozen=True)
class WriteOptions:
    dtype: DType | None = None  # None: the table's source dtype where the format can hold it
    force: bool = False
    progress: bool = False
    report: Mapping[str, Any] | None = None  # extra entries for the JSON report
    # One JSON object per output row ({"row", "token", "method", "sources", "weights"}),
    # written beside the output as OUT.provenance.jsonl, atomically with the other sidecars.
    provenance: Sequence[Mapping[str, Any]] | None = None

    def __post_init__(self) -> None:
        if self.dtype is not None:
            object.__setattr__(self, "dtype", DType(self.dtype))


Reader = Callable[[Path, ReadOptions], EmbeddingTable]
Writer = Callable[[EmbeddingTable, Path, WriteOptions], list[Path]]
Sniffer = Callable[[Path, bytes], bool]


@dataclass(frozen=True)
class Format:
    name: FormatName
    description: str
    suffixes: tuple[str, ...]  # suffixes that select this format without sniffing
    read: str  # "module:function" -> Reader
    write: str | None = None  # "module:function" -> Writer
    sniff: str | None = None  # "module:function" -> Sniffer, for ambiguous suffixes
    directory: bool = False  # reads a directory
    streaming: bool = False  # the reader applies ReadOptions.limit/keep while reading

    def reader(self) -> Reader:
        return _resolve(self.read)

    def writer(self) -> Writer:
        if self.write is None:
            raise FormatError(f"embsurgeon cannot write the {self.name.value} format")
        return _resolve(self.write)

    def sniffer(self) -> Sniffer | None:
        return None if self.sniff is None else _resolve(self.sniff)


def _resolve(spec: str) -> Any:
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


_TEXT = "embsurgeon.io.text"
_W2V_BIN = "embsurgeon.io.word2vec_bin"
_STATE = "embsurgeon.io.state_dict"
_HF = "embsurgeon.io.hf"
_GENSIM = "embsurgeon.io.gensim_native"

#: Probed in this order when sniffing: the most specific signatures first.
FORMATS: tuple[Format, ...] = (
    Format(FormatName.HF, "Hugging Face checkpoint (directory, safetensors or pytorch_model.bin)",
           (), f"{_HF}:read_hf", None, f"{_HF}:sniff_hf", directory=True),
    Format(FormatName.SAFETENSORS, "nn.Embedding state dict {'weight'} in safetensors",
           (".safetensors",), f"{_STATE}:read_safetensors", f"{_STATE}:write_safetensors",
           f"{_STATE}:sniff_safetensors"),
    Format(FormatName.PT, "nn.Embedding state dict {'weight'} saved by torch.save",
           (".pt", ".pth"), f"{_STATE}:read_pt", f"{_STATE}:write_pt", f"{_STATE}:sniff_pt"),
    Format(FormatName.FASTTEXT_BIN, "fastText binary model (via gensim; keeps subword n-grams)",
           (), f"{_GENSIM}:read_fasttext_bin", None, f"{_GENSIM}:sniff_fasttext_bin"),
    Format(FormatName.WORD2VEC_BIN, "word2vec C binary format",
           (), f"{_W2V_BIN}:read_word2vec_bin", f"{_W2V_BIN}:write_word2vec_bin",
           f"{_W2V_BIN}:sniff_word2vec_bin", streaming=True),
    Format(FormatName.WORD2VEC, "word2vec text: 'rows dim' header, then 'token v1 ... vD'",
           (".vec",), f"{_TEXT}:read_text", f"{_TEXT}:write_word2vec", f"{_TEXT}:sniff_word2vec",
           streaming=True),
    Format(FormatName.GLOVE, "GloVe text: no header, 'token v1 ... vD' per line",
           (), f"{_TEXT}:read_text", f"{_TEXT}:write_glove", f"{_TEXT}:sniff_glove",
           streaming=True),
    Format(FormatName.GENSIM, "gensim KeyedVectors pickle (.kv, .model); needs --allow-pickle",
           (".kv", ".model"), f"{_GENSIM}:read_gensim", None, None),
)

BY_NAME: Mapping[FormatName, Format] = {f.name: f for f in FORMATS}

# Suffixes for writing when no --to is given. '.bin' can only mean word2vec binary on output.
_WRITE_SUFFIXES: Mapping[str, FormatName] = {
    ".safetensors": FormatName.SAFETENSORS,
    ".pt": FormatName.PT,
    ".pth": FormatName.PT,
    ".vec": FormatName.WORD2VEC,
    ".txt": FormatName.WORD2VEC,
    ".bin": FormatName.WORD2VEC_BIN,
}

COMPRESSION_SUFFIXES = (".gz", ".bz2")

_SNIFF_BYTES = 4096


def plain_suffix(path: Path) -> str:
    """The suffix that names the format, under any compression suffix.

    >>> plain_suffix(Path("glove.6B.50d.TXT.gz"))
    '.txt'
    """
    suffixes = [s.lower() for s in path.suffixes]
    while suffixes and suffixes[-1] in COMPRESSION_SUFFIXES:
        suffixes.pop()
    return suffixes[-1] if suffixes else ""


def read_head(path: Path, size: int = _SNIFF_BYTES) -> bytes:
    """The first ``size`` bytes, decompressed if the file is gzip or bzip2."""
    from embsurgeon.io.compression import open_binary

    with open_binary(path) as handle:
        return handle.read(size)


def detect_format(path: str | Path, explicit: FormatName | str | None = None) -> Format:
    """Pick the reader for ``path``: explicit name, then suffix, then sniffing.

    >>> detect_format("vectors.vec").name
    <FormatName.WORD2VEC: 'word2vec'>
    """
    path = Path(path)
    if explicit is not None:
        return BY_NAME[FormatName(explicit)]
    if path.is_dir():
        return BY_NAME[FormatName.HF]
    suffix = plain_suffix(path)
    for fmt in FORMATS:
        if suffix in fmt.suffixes and fmt.sniff is None:
            return fmt
    if not path.exists():
        raise FormatError(f"{path}: no such file or directory")
    try:
        head = read_head(path)
    except OSError as exc:
        raise FormatError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if not head:
        raise FormatError(f"{path}: the file is empty")
    tried = []
    # A suffix that names sniffable formats narrows the candidates before the full probe.
    candidates = [f for f in FORMATS if suffix in f.suffixes] or list(FORMATS)
    for fmt in candidates + [f for f in FORMATS if f not in candidates]:
        sniffer = fmt.sniffer()
        tried.append(fmt.name.value)
        if sniffer is not None and sniffer(path, head):
            return fmt
    raise FormatError(
        f"{path}: format not recognised (tried {', '.join(tried)}); "
        "pass --from NAME if you know it"
    )


def output_format(path: str | Path, explicit: FormatName | str | None = None) -> Format:
    """Pick the writer for ``path``: explicit ``--to``, then the suffix."""
    if explicit is not None:
        fmt = BY_NAME[FormatName(explicit)]
    else:
        suffix = plain_suffix(Path(path))
        if suffix not in _WRITE_SUFFIXES:
            known = ", ".join(sorted(_WRITE_SUFFIXES))
            raise FormatError(
                f"{path}: cannot tell the output format from suffix {suffix or '(none)'!r} "
                f"(known: {known}); pass --to NAME"
            )
        fmt = BY_NAME[_WRITE_SUFFIXES[suffix]]
    if fmt.write is None:
        writable = ", ".join(f.name.value for f in FORMATS if f.write)
        raise FormatError(f"embsurgeon cannot write {fmt.name.value}; choose one of {writable}")
    return fmt


def _options(kind: Any, options: Any, kwargs: Mapping[str, Any], caller: str) -> Any:
    """``options`` or options built from keywords; both at once would silently drop one."""
    if options is None:
        return kind(**kwargs)
    if kwargs:
        raise TypeError(
            f"{caller}() got options= and keyword options ({', '.join(sorted(kwargs))}); "
            f"pass one or the other, e.g. dataclasses.replace(options, {next(iter(kwargs))}=...)"
        )
    return options


def read_table(
    path: str | Path,
    format: FormatName | str | None = None,
    options: ReadOptions | None = None,
    **kwargs: Any,
) -> EmbeddingTable:
    """Read any supported embedding file or checkpoint into an :class:`EmbeddingTable`.

    Keyword arguments are :class:`ReadOptions` fields.

    >>> table = read_table("glove.6B.300d.txt", limit=50_000)     # doctest: +SKIP
    >>> table = read_table("bert-base-uncased/")                   # doctest: +SKIP
    """
    path = Path(path)
    opts = _options(ReadOptions, options, kwargs, "read_table")
    fmt = detect_format(path, format)
    table = fmt.reader()(path, opts)
    if not fmt.streaming:
        if opts.keep is not None:
            table = table.keep(opts.keep)
        if opts.keep_if is not None:
            table = table.take(i for i, t in enumerate(table.tokens) if opts.keep_if(t))
        if opts.limit is not None:
            table = table.head(opts.limit)
    return table.with_metadata(format=fmt.name.value, source=str(path))


def write_table(
    table: EmbeddingTable,
    path: str | Path,
    format: FormatName | str | None = None,
    options: WriteOptions | None = None,
    **kwargs: Any,
) -> list[Path]:
    """Write ``table`` to ``path`` atomically; returns every file written (sidecars included).

    >>> write_table(table, "emb.safetensors")                      # doctest: +SKIP
    [PosixPath('emb.safetensors'), PosixPath('emb.vocab.txt'), PosixPath('emb.report.json')]
    """
    opts = _options(WriteOptions, options, kwargs, "write_table")
    fmt = output_format(path, format)
    return fmt.writer()(table, Path(path), opts)

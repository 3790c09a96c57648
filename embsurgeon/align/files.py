"""Align a file onto a target and write the result: the pipeline behind ``convert --target``.

Reads the source (streaming only the rows the target can use, when the reader streams), aligns
it, and writes the table with its report and per-row provenance beside it, all-or-nothing.

>>> from embsurgeon.align.files import align_file
>>> out = align_file("glove.6B.300d.txt", "glove-bert.safetensors",
...                  target="bert-base-uncased/", init="subword,mean")      # doctest: +SKIP
>>> out.alignment.report.summary()                                       # doctest: +SKIP
'30522 rows: 21947 copied (...), 8574 initialized (...), 1 padding'
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embsurgeon.align.api import Alignment, align
from embsurgeon.align.match import keep_predicate
from embsurgeon.align.postprocess import Transforms
from embsurgeon.align.targets import Target, load_target, source_vocabulary
from embsurgeon.errors import AlignmentError, OutputError
from embsurgeon.io.atomic import atomic_paths, check_writable
from embsurgeon.io.formats import (
    FormatName,
    ReadOptions,
    WriteOptions,
    detect_format,
    output_format,
    read_table,
    write_table,
)
from embsurgeon.io.state_dict import provenance_path, sidecar_paths, write_provenance
from embsurgeon.table import EmbeddingTable
from embsurgeon.vocab import Vocabulary, find_tokenizer_file, load_vocabulary


@dataclass(frozen=True)
class AlignedOutput:
    """What :func:`align_file` did."""

    alignment: Alignment
    written: list[Path]  # every file, sidecars included
    source: EmbeddingTable  # the rows read (only those the target can use, when streamed)
    streamed: bool

    @property
    def rows_read(self) -> int:
        return len(self.source)


def pca_path(out: Path) -> Path:
    """``out.safetensors`` -> ``out.pca.safetensors`` (the fitted PCA, reusable with --pca)."""
    stem = out.with_suffix("")
    return stem.with_name(stem.name + ".pca.safetensors")


def align_file(
    src: str | Path,
    out: str | Path,
    target: Target | None = None,
    *,
    read: ReadOptions | None = None,
    write: WriteOptions | None = None,
    from_: FormatName | str | None = None,
    to: FormatName | str | None = None,
    source_tokenizer: str | Path | None = None,
    aux: str | Path | None = None,
    map_to: str | Path | None = None,
    transforms: Transforms | None = None,
    stream: bool = True,
    report_file: str | Path | None = None,
    **align_options: Any,
) -> AlignedOutput:
    """Read ``src``, align it onto ``target`` and write ``out`` (plus report and provenance).

    ``map_to`` is a model (or table) whose embedding space the output is mapped into; without
    ``target`` its vocabulary is the target. ``align_options`` are the keyword arguments of
    :func:`embsurgeon.align.align` (``init``, ``match``, ``overrides``, ``k``, ``seed``...).
    """
    src, out = Path(src), Path(out)
    read = read or ReadOptions()
    write = write or WriteOptions()
    if target is None and map_to is None:
        raise AlignmentError("align_file needs a target vocabulary (or map_to, whose vocabulary "
                             "is the target)")
    fmt = output_format(out, to)  # fail on a bad output before a long read
    transforms = transforms or Transforms()
    pca_out = pca_path(out) if transforms.dim or transforms.whiten else None
    report_path = Path(report_file) if report_file is not None else None
    outputs = [out, *sidecar_paths(out), provenance_path(out), *([pca_out] if pca_out else [])]
    if report_path is not None:
        _check_report_path(report_path, out, outputs)
    check_writable([out, provenance_path(out), *(p for p in (report_path, pca_out) if p)],
                   force=write.force)

    plain = dataclasses.replace(read, keep=None, keep_if=None, limit=None)
    if map_to is not None:
        transforms = dataclasses.replace(transforms, map_to=read_table(map_to, options=plain))
    vocab = load_target(target if target is not None else Path(str(map_to)), options=plain)
    source_format = detect_format(src, from_)
    streamed = source_format.streaming and stream
    # Loaded once: the streaming filter and the alignment both need it.
    source = load_vocabulary(source_tokenizer) if source_tokenizer is not None else None
    if streamed:
        read = dataclasses.replace(read, keep_if=_predicate(vocab, source,
                                                            align_options.get("overrides")))
    table = read_table(src, source_format.name, read)
    if streamed and len(table) == 0:
        raise AlignmentError(f"{src}: no row matches a token of the target; check --target, "
                             "or pass --no-stream if the file is not word-level")
    tokenizer: Vocabulary | Path | None = source
    if tokenizer is None and src.is_dir() and find_tokenizer_file(src) is not None:
        tokenizer = src
    alignment = align(
        table, vocab, source_vocab=source_vocabulary(table, tokenizer),
        aux=read_table(aux, options=plain) if aux is not None else None,
        fasttext_path=str(src) if source_format.name is FormatName.FASTTEXT_BIN else None,
        transforms=transforms, **align_options)

    report = alignment.report.to_dict()
    if streamed:
        report["streamed"] = {"rows_kept": len(table)}
    provenance = [row.to_dict() for row in alignment.provenance]
    with _all_or_nothing([*outputs, *([report_path] if report_path else [])],
                         force=write.force) as written:
        written += write_table(alignment.table, out, fmt.name, dataclasses.replace(
            write, report={**(write.report or {}), "alignment": report}, provenance=provenance))
        extra = [p for p in (provenance_path(out), report_path) if p and p not in written]
        if extra:  # writers without sidecars (word2vec text, ...), and --report
            with atomic_paths(*extra, force=write.force) as temps:
                for temp, path in zip(temps, extra, strict=True):
                    if path == report_path:
                        temp.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n",
                                        encoding="utf-8")
                    else:
                        write_provenance(temp, provenance)
            written += extra
        if alignment.projection is not None and pca_out is not None:
            written.append(alignment.projection.save(pca_out, force=write.force))
    return AlignedOutput(alignment, written, table, streamed)


def _predicate(target: Vocabulary, source: Vocabulary | None,
               overrides: Mapping[str, str] | None) -> Callable[[str], bool]:
    """keep_if for a streamed source: word-level unless its tokenizer says otherwise."""
    if source is None:
        return keep_predicate(target, overrides=overrides)
    return keep_predicate(target, source_family=source.family,
                          continuation_prefix=source.continuation_prefix, overrides=overrides)


def _check_report_path(report: Path, out: Path, outputs: Sequence[Path]) -> None:
    """--report must not be OUT or a file written beside it: one would overwrite the other."""
    mine = os.path.abspath(report)
    for path in outputs:
        if os.path.abspath(path) == mine:
            what = "the output itself" if path == out else f"a file written beside {out}"
            raise OutputError(f"--report {report} is {what}; give the report another name")


@contextlib.contextmanager
def _all_or_nothing(paths: Sequence[Path], *, force: bool) -> Iterator[list[Path]]:
    """Several atomic writes as one: if a later one fails, the earlier ones are undone.

    Under ``force``, existing files are moved aside first and put back on failure, so a failed
    run leaves the directory as it found it (without ``force`` the writers refuse to replace
    anything). The caller adds every file it writes to the yielded list.
    """
    saved: dict[Path, Path] = {}
    written: list[Path] = []
    try:
        for path in dict.fromkeys(paths):
            if force and path.is_file():
                fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".old",
                                            dir=path.parent)
                os.close(fd)
                os.replace(path, name)
                saved[path] = Path(name)
        yield written
    except BaseException:
        for path in dict.fromkeys(written):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        for path, old in saved.items():
            os.replace(old, path)
        raise
    # Files moved aside but not written again (an unrelated OUT.vocab.txt beside a .vec) return.
    for path, old in saved.items():
        if path in written:
            old.unlink()
        else:
            os.replace(old, path)

"""Our own output: an ``nn.Embedding`` state dict with its vocabulary and report beside it.

``out.safetensors`` (or ``out.pt``) holds ``{"weight": (V, D) tensor}`` and loads with
``nn.Embedding.from_pretrained(load_file(path)["weight"])`` or ``load_state_dict``.
``out.vocab.txt`` lists the tokens, one a line, row ``i`` on line ``i + 1``.
``out.report.json`` holds the metadata (source, dtypes, padding index, version) and whatever
report the caller adds (alignment statistics, for instance).
The safetensors header carries the text metadata too, so the file alone is self-describing.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from embsurgeon.errors import FormatError, TensorNotFoundError, VocabularyError
from embsurgeon.io.atomic import atomic_paths
from embsurgeon.io.formats import ReadOptions, WriteOptions
from embsurgeon.io.safetensors_file import (
    StoredTensor,
    read_safetensors_tensor,
    safetensors_header,
    write_safetensors_file,
)
from embsurgeon.io.tensors import (
    bfloat16_bits,
    numpy_cast,
    numpy_to_tensor,
    resolve_dtype,
    tensor_to_numpy,
)
from embsurgeon.table import PADDING_IDX, SOURCE_DTYPE, EmbeddingTable, placeholder_token

#: Bumped when the layout of the files below changes.
FORMAT_VERSION = "1"
WEIGHT = "weight"
_FORBIDDEN_IN_TOKENS = ("\n", "\r")


def provenance_path(path: Path) -> Path:
    """``out.safetensors`` -> ``out.provenance.jsonl`` (one JSON object per row)."""
    stem = path.with_suffix("")
    return stem.with_name(stem.name + ".provenance.jsonl")


def write_provenance(handle_path: Path, rows: Any) -> None:
    """One JSON object a line, in row order (``ensure_ascii=False``: tokens stay readable)."""
    with open(handle_path, "w", encoding="utf-8") as handle:
        for entry in rows:
            handle.write(json.dumps(entry, ensure_ascii=False) + "\n")


def sidecar_paths(path: Path) -> tuple[Path, Path]:
    """``out.safetensors`` -> (``out.vocab.txt``, ``out.report.json``)."""
    stem = path.with_suffix("")
    return stem.with_name(stem.name + ".vocab.txt"), stem.with_name(stem.name + ".report.json")


# -- sniffing --------------------------------------------------------------------------------

def sniff_safetensors(path: Path, head: bytes) -> bool:
    """A safetensors file holding exactly one tensor called ``weight``."""
    if len(head) < 9 or head[8:9] != b"{":
        return False
    header = safetensors_header(path)
    return header is not None and [k for k in header if k != "__metadata__"] == [WEIGHT]


def sniff_pt(path: Path, head: bytes) -> bool:
    """A torch.save zip whose single data record is the ``weight`` tensor (cheap name check)."""
    if not head.startswith(b"PK\x03\x04"):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if "/data/" in n]
    except zipfile.BadZipFile:
        return False
    return len(names) == 1


# -- reading ---------------------------------------------------------------------------------

def _read_vocab_sidecar(path: Path, rows: int) -> tuple[list[str], bool]:
    vocab_path, _ = sidecar_paths(path)
    if not vocab_path.is_file():
        return [placeholder_token(i) for i in range(rows)], False
    text = vocab_path.read_text(encoding="utf-8")
    tokens = text.split("\n")
    if tokens and tokens[-1] == "":
        tokens.pop()
    if len(tokens) != rows:
        raise VocabularyError(
            f"{vocab_path}: {len(tokens)} tokens but {path} has {rows} rows; "
            "the files do not belong together"
        )
    return tokens, True


def _read_report(path: Path) -> dict[str, str]:
    _, report_path = sidecar_paths(path)
    if not report_path.is_file():
        return {}
    try:
        report = json.loads(report_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise FormatError(f"{report_path}: not valid JSON ({exc})") from exc
    meta = report.get("metadata", {}) if isinstance(report, dict) else {}
    return {str(k): str(v) for k, v in meta.items()}


def _table_from_matrix(path: Path, vectors: np.ndarray, dtype: str,
                       metadata: dict[str, str]) -> EmbeddingTable:
    tokens, has_vocab = _read_vocab_sidecar(path, vectors.shape[0])
    # The stored tensor is now the source: an fp16 file reads back as fp16, whatever came before.
    meta = {**metadata, SOURCE_DTYPE: dtype, "tensor": WEIGHT}
    if not has_vocab:
        meta["vocabulary"] = "missing (rows named by number)"
    return EmbeddingTable(tokens, vectors, meta)


def read_safetensors(path: Path, options: ReadOptions) -> EmbeddingTable:
    """Read an ``nn.Embedding`` state dict in safetensors (with its sidecars, when present)."""
    header = safetensors_header(path)
    if header is None:
        raise FormatError(f"{path}: not a valid safetensors file (unreadable header); it may be "
                          "truncated or corrupt")
    keys = [k for k in header if k != "__metadata__"]
    name = options.tensor or WEIGHT
    if name not in keys:
        raise TensorNotFoundError(
            f"{path}: no tensor {name!r} (has {', '.join(keys) or 'none'}); "
            "pass --tensor NAME, or --from hf for a model checkpoint"
        )
    vectors, dtype, _ = read_safetensors_tensor(path, name, f"{path}: tensor {name!r}", None)
    stored = header.get("__metadata__")
    meta = {str(k): str(v) for k, v in stored.items()} if isinstance(stored, dict) else {}
    return _table_from_matrix(path, vectors, dtype, {**meta, **_read_report(path)})


def read_pt(path: Path, options: ReadOptions) -> EmbeddingTable:
    """Read a ``torch.save``d ``{"weight": tensor}`` (never unpickling code: weights_only).

    Zip and legacy (``_use_new_zipfile_serialization=False``) files both load, through the
    same safe loader as ``.bin`` checkpoints.
    """
    from embsurgeon.io.hf import load_torch_state

    state = load_torch_state(path, bare=WEIGHT)
    name = options.tensor or WEIGHT
    if name not in state:
        raise TensorNotFoundError(
            f"{path}: no tensor {name!r} (has {', '.join(map(str, state)) or 'none'}); "
            "pass --tensor NAME, or --from hf for a model checkpoint"
        )
    weight = state[name]
    if weight.ndim != 2:
        raise FormatError(f"{path}: tensor {name!r} has shape {tuple(weight.shape)}; expected 2-D")
    vectors, dtype = tensor_to_numpy(weight, what=f"{path}: tensor {name!r}")
    return _table_from_matrix(path, np.array(vectors, copy=True), dtype, _read_report(path))


# -- writing ---------------------------------------------------------------------------------

def _check_tokens(table: EmbeddingTable) -> None:
    for i, token in enumerate(table.tokens):
        if any(ch in token for ch in _FORBIDDEN_IN_TOKENS):
            raise VocabularyError(
                f"token {token!r} (row {i}) contains a line break, which the vocabulary file "
                "cannot hold; rename or drop it first"
            )


def _metadata(table: EmbeddingTable, dtype: str) -> dict[str, str]:
    from embsurgeon import __version__

    meta = dict(table.metadata)
    meta.update({
        "embsurgeon_version": __version__,
        "embsurgeon_format": FORMAT_VERSION,
        "dtype": dtype,
        SOURCE_DTYPE: table.source_dtype,
        "rows": str(len(table)),
        "dim": str(table.dim),
    })
    return meta


def _write(table: EmbeddingTable, path: Path, options: WriteOptions, save: Any) -> list[Path]:
    _check_tokens(table)
    dtype = resolve_dtype(options.dtype.value if options.dtype else None, table.source_dtype)
    meta = _metadata(table, dtype)
    report: dict[str, Any] = {
        "file": path.name,
        "rows": len(table),
        "dim": table.dim,
        "dtype": dtype,
        PADDING_IDX: table.padding_idx,
        "load_with": f"nn.Embedding.from_pretrained(weight{_padding_hint(table)})",
        "metadata": meta,
    }
    if options.report:
        report.update(options.report)
    vocab_path, report_path = sidecar_paths(path)
    paths = [path, vocab_path, report_path]
    if options.provenance is not None:
        if len(options.provenance) != len(table):
            raise VocabularyError(f"{len(options.provenance)} provenance entries but "
                                  f"{len(table)} rows; they must agree")
        paths.append(provenance_path(path))
    with atomic_paths(*paths, force=options.force) as temps:
        save(table.vectors, dtype, temps[0], meta)
        temps[1].write_text("".join(t + "\n" for t in table.tokens), encoding="utf-8")
        temps[2].write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n",
                            encoding="utf-8")
        if options.provenance is not None:
            write_provenance(temps[3], options.provenance)
    return paths


def _padding_hint(table: EmbeddingTable) -> str:
    return "" if table.padding_idx is None else f", padding_idx={table.padding_idx}"


def write_safetensors(table: EmbeddingTable, path: Path, options: WriteOptions) -> list[Path]:
    """``{"weight": tensor}`` in safetensors, plus ``.vocab.txt`` and ``.report.json``."""

    def save(vectors: np.ndarray, dtype: str, tmp: Path, meta: dict[str, str]) -> None:
        # Our own writer: identical runs give identical bytes, and bfloat16 needs no torch.
        if dtype == "bfloat16":
            stored = StoredTensor(bfloat16_bits(vectors), "BF16")
        else:
            stored = StoredTensor.of(numpy_cast(vectors, dtype))
        write_safetensors_file(tmp, {WEIGHT: stored}, meta)

    return _write(table, path, options, save)


def write_pt(table: EmbeddingTable, path: Path, options: WriteOptions) -> list[Path]:
    """``torch.save({"weight": tensor})``, loadable with ``torch.load(..., weights_only=True)``."""

    def save(vectors: np.ndarray, dtype: str, tmp: Path, meta: dict[str, str]) -> None:
        import torch

        torch.save({WEIGHT: numpy_to_tensor(vectors, dtype)}, str(tmp))

    return _write(table, path, options, save)

"""Model surgery: write an embedding table back into a Hugging Face checkpoint.

The output is a copy of the model directory in which the input-embedding tensor (and a tied
output head stored beside it) holds the table's rows. Only the file that holds the embedding is
rewritten; other shards are hard-linked (or copied), so surgery on a 10 GB model costs the one
shard. The dtype stays the checkpoint's own (bf16 in, bf16 out) unless asked otherwise.

The table's rows must be in the model tokenizer's id order: align first
(``embsurgeon convert SRC table.safetensors --target MODEL``). A table with a different number of
rows resizes the model: ``config.json``'s ``vocab_size`` follows, an untied ``lm_head`` keeps its
rows for the ids both share and gets mean rows for new ids (as transformers'
``resize_token_embeddings`` does), and a new tokenizer comes from ``tokenizer=DIR``.

>>> from embsurgeon import read_table
>>> from embsurgeon.surgery import transplant
>>> table = read_table("aligned.safetensors")                      # doctest: +SKIP
>>> transplant(table, "bert-base-uncased", "bert-new").tensor       # doctest: +SKIP
'bert.embeddings.word_embeddings.weight'
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from embsurgeon.errors import AlignmentError, OutputError, VocabularyError
from embsurgeon.io.hf import (
    CONFIG,
    Checkpoint,
    WeightKind,
    find_embedding,
    load_torch_state,
    open_checkpoint,
    read_tensor,
)
from embsurgeon.io.tensors import numpy_to_tensor
from embsurgeon.table import EmbeddingTable, placeholder_token
from embsurgeon.vocab import find_tokenizer_file, load_vocabulary

#: The report written into the output directory.
REPORT = "embsurgeon_surgery.json"
# Files that carry a tokenizer; replaced as a set when a new tokenizer is given.
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                    "added_tokens.json", "vocab.txt", "vocab.json", "merges.txt",
                    "spiece.model", "sentencepiece.bpe.model", "tokenizer.model")
_HEAD_NAMES = ("lm_head.weight",)


@dataclass(frozen=True)
class SurgeryReport:
    output: str
    tensor: str
    rows: int
    old_rows: int
    dim: int
    dtype: str
    head: str | None  # the output-head tensor rewritten too (tied copy or resized)
    rewritten: list[str] = field(default_factory=list)  # weight files written anew
    source: dict[str, str] = field(default_factory=dict)  # the table's metadata

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def transplant(
    table: EmbeddingTable,
    model: str | Path,
    out: str | Path,
    *,
    tensor: str | None = None,
    dtype: str | None = None,
    tokenizer: str | Path | None = None,
    force: bool = False,
) -> SurgeryReport:
    """Write ``table`` into a copy of checkpoint ``model`` at directory ``out``.

    ``tensor`` overrides embedding detection, ``dtype`` the stored dtype, ``tokenizer`` is a
    directory whose tokenizer files replace the model's (for a new vocabulary).
    """
    model, out = Path(model), Path(out)
    checkpoint = open_checkpoint(model)
    name = find_embedding(checkpoint, tensor)
    old = read_tensor(checkpoint, name, limit=1)
    if table.dim != old.vectors.shape[1]:
        raise AlignmentError(
            f"the table has dimension {table.dim} but {name} in {model} has "
            f"{old.vectors.shape[1]}; map it first (convert --target {model} --map-to {model} "
            "or --dim)"
        )
    tokenizer_dir = Path(tokenizer) if tokenizer is not None else checkpoint.directory
    _check_vocabulary(table, tokenizer_dir)
    if table.tokens and len(table) != old.total_rows and tokenizer is None:
        found = find_tokenizer_file(checkpoint.directory)
        vocab_size = len(load_vocabulary(found)) if found else old.total_rows
        if len(table) < vocab_size:
            raise VocabularyError(
                f"the table has {len(table)} rows but the tokenizer of {model} has {vocab_size} "
                "tokens; pass --tokenizer DIR with the tokenizer that belongs to the table"
            )
    write_dtype = dtype or old.source_dtype
    if out.exists() and not force:
        raise OutputError(f"{out} already exists; pass --force to overwrite it")
    if out.resolve() == model.resolve() or model.resolve() in out.resolve().parents:
        raise OutputError(f"{out}: write the operated model to a new directory, not into {model}")
    weight = numpy_to_tensor(table.vectors, write_dtype)
    with _staging(out, force) as stage:
        rewritten, head = _rewrite_weights(checkpoint, name, weight, old.total_rows, stage)
        _copy_rest(checkpoint, stage, skip=set(rewritten), tokenizer=tokenizer_dir
                   if tokenizer is not None else None)
        if len(table) != old.total_rows:
            _update_config(stage / CONFIG, len(table))
        report = SurgeryReport(str(out), name, len(table), old.total_rows, table.dim,
                               write_dtype, head, sorted(rewritten), dict(table.metadata))
        (stage / REPORT).write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False)
                                    + "\n", encoding="utf-8")
    return report


def _check_vocabulary(table: EmbeddingTable, tokenizer_dir: Path) -> None:
    """Row i of the table must be token i of the tokenizer the model will use."""
    found = find_tokenizer_file(tokenizer_dir)
    if found is None:
        return
    vocab = load_vocabulary(found)
    for i, expected in enumerate(vocab.tokens[:len(table)]):
        got = table.tokens[i]
        if got != expected and got != placeholder_token(i):
            raise VocabularyError(
                f"row {i} of the table is {got!r} but token {i} of {found} is {expected!r}; "
                f"align the table to that tokenizer first (convert --target {tokenizer_dir})"
            )


@contextlib.contextmanager
def _staging(out: Path, force: bool) -> Iterator[Path]:
    """A temporary directory beside ``out``, renamed onto it only when everything succeeded."""
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"{out}: directory {parent} does not exist; create it first")
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=parent))
    try:
        yield stage
        if out.exists():
            if not force:
                raise OutputError(f"{out} appeared while writing; pass --force to overwrite")
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        os.replace(stage, out)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)


def _rewrite_weights(checkpoint: Checkpoint, name: str, weight: Any, old_rows: int,
                     stage: Path) -> tuple[set[str], str | None]:
    """Rewrite the file holding ``name`` (and the head's file); returns names and the head."""
    old_embedding = read_tensor(checkpoint, name).vectors  # (V0, D)
    head = next((h for h in _HEAD_NAMES if h in checkpoint.weight_map and h != name), None)
    files = {checkpoint.weight_map[name]}
    if head is not None:
        files.add(checkpoint.weight_map[head])
    head_done: str | None = None
    for file in sorted(files):
        state = _load_all(checkpoint, file)
        if name in state:
            state[name] = weight.clone()
        if head is not None and head in state:
            old_head = state[head]
            tied = old_head.shape == old_embedding.shape and np.array_equal(
                old_head.float().numpy(), old_embedding.astype(np.float32))
            if tied:
                state[head] = weight.clone()
            elif weight.shape[0] != old_rows:
                state[head] = _resize_rows(old_head, weight.shape[0])
            else:
                head = None  # an untied head of the right size stays as it was
            head_done = head
        _save_all(checkpoint, state, file, stage / file.name)
        del state
    if checkpoint.index is not None:
        _update_index(checkpoint.index, stage, files)
    return {f.name for f in files}, head_done


def _resize_rows(head: Any, rows: int) -> Any:
    """Keep the shared rows; new rows are the mean row (transformers' resize does the same)."""
    import torch

    kept = head[:rows].clone()
    if rows <= head.shape[0]:
        return kept
    mean = head.float().mean(dim=0, keepdim=True).to(head.dtype)
    return torch.cat([kept, mean.expand(rows - head.shape[0], -1)], dim=0).contiguous()


def _load_all(checkpoint: Checkpoint, file: Path) -> dict[str, Any]:
    if checkpoint.kind is WeightKind.SAFETENSORS:
        from safetensors.torch import load_file

        return dict(load_file(str(file)))
    # Materialise: the file is rewritten, so no tensor may keep viewing its memory map.
    return {k: v.clone() for k, v in load_torch_state(file).items()}


def _save_all(checkpoint: Checkpoint, state: dict[str, Any], source: Path, path: Path) -> None:
    import torch

    if checkpoint.kind is WeightKind.SAFETENSORS:
        from safetensors import safe_open
        from safetensors.torch import save_file

        with safe_open(str(source), framework="pt") as src:
            metadata = src.metadata() or {"format": "pt"}
        # Tied tensors share storage after loading; safetensors refuses shared storage.
        save_file({k: v.contiguous().clone() for k, v in state.items()}, str(path),
                  metadata=metadata)
    else:
        torch.save(state, str(path))


def _update_index(index: Path, stage: Path, rewritten: set[Path]) -> None:
    data = json.loads(index.read_text(encoding="utf-8"))
    total = 0
    for shard in sorted(set(data["weight_map"].values())):
        new = stage / shard
        total += (new if new.exists() else index.parent / shard).stat().st_size
    data.setdefault("metadata", {})["total_size"] = total  # an upper bound, as HF's own is
    (stage / index.name).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _copy_rest(checkpoint: Checkpoint, stage: Path, *, skip: set[str],
               tokenizer: Path | None) -> None:
    """Every other file of the model directory, hard-linked where possible."""
    skip = skip | ({checkpoint.index.name} if checkpoint.index else set()) | {REPORT}
    if tokenizer is not None:
        skip |= set(_TOKENIZER_FILES)
        for name in _TOKENIZER_FILES:
            if (tokenizer / name).is_file():
                shutil.copy2(tokenizer / name, stage / name)
    for item in checkpoint.directory.iterdir():
        if item.name in skip or not item.is_file():
            continue
        try:
            os.link(item, stage / item.name)
        except OSError:  # another file system, or links not allowed
            shutil.copy2(item, stage / item.name)


def _update_config(config: Path, rows: int) -> None:
    if not config.is_file():
        return
    data = json.loads(config.read_text(encoding="utf-8"))
    target = data.get("text_config") if isinstance(data.get("text_config"), dict) and \
        "vocab_size" in data["text_config"] else data
    target["vocab_size"] = rows
    config.unlink()  # it may be a hard link to the source model's file
    config.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")

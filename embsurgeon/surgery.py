"""Model surgery: write an embedding table back into a Hugging Face checkpoint.

The output is a copy of the model directory in which the input-embedding tensor (and a tied
output head stored beside it) holds the table's rows. Only the file that holds the embedding is
rewritten; other shards are hard-linked (or copied), so surgery on a 10 GB model costs the one
shard. The dtype stays the checkpoint's own (bf16 in, bf16 out) unless asked otherwise.

The table's rows must be in the model tokenizer's id order: align first
(``embsurgeon convert SRC table.safetensors --target MODEL``). A table with a different number of
rows resizes the model: ``config.json``'s ``vocab_size`` follows, and so does every other tensor
with a vocabulary axis: an untied output head keeps its rows for the ids both share and gets
mean rows for new ids (as transformers' ``resize_token_embeddings`` does), vocabulary biases
(``cls.predictions.bias``, ``lm_head.bias``, ``final_logits_bias``) keep theirs and get zeros;
a new tokenizer comes from ``tokenizer=DIR``.

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
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from embsurgeon.errors import AlignmentError, FormatError, OutputError, VocabularyError
from embsurgeon.io.atomic import default_mode
from embsurgeon.io.hf import (
    CONFIG,
    Checkpoint,
    WeightKind,
    all_shapes,
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


class VocabAxis(str, Enum):
    """How a tensor other than the embedding carries the vocabulary, and how it is resized."""

    ROWS = "rows"  # (V, X): an output head; tied copies follow, else mean rows for new ids
    BIAS = "bias"  # (V,): cls.predictions.bias, lm_head.bias; zeros for new ids
    BIAS_ROW = "bias_row"  # (1, V): final_logits_bias (BART, Marian, Pegasus); zeros


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
    resized: list[str] = field(default_factory=list)  # other tensors given the new rows
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
    if not model.is_dir():
        raise FormatError(
            f"{model}: not a directory; transplant needs the model directory (config, "
            "tokenizer and weights together)"
            + (f", e.g. {model.parent}" if model.is_file() else "")
        )
    _check_out(model, out, force)
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
    axes = _vocab_tensors(checkpoint, name, old.total_rows, table.dim,
                          resizing=len(table) != old.total_rows)
    write_dtype = dtype or old.source_dtype
    weight = numpy_to_tensor(table.vectors, write_dtype)
    with _staging(model, out, force) as stage:
        rewritten, changed = _rewrite_weights(checkpoint, name, weight, axes, stage)
        _copy_rest(checkpoint, stage, skip=set(rewritten), tokenizer=tokenizer_dir
                   if tokenizer is not None else None)
        if len(table) != old.total_rows:
            _update_config(stage / CONFIG, len(table))
        head = next((n for n in changed if axes[n] is VocabAxis.ROWS), None)
        report = SurgeryReport(str(out), name, len(table), old.total_rows, table.dim,
                               write_dtype, head, sorted(rewritten), sorted(changed),
                               dict(table.metadata))
        (stage / REPORT).write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False)
                                    + "\n", encoding="utf-8")
    return report


def _check_out(model: Path, out: Path, force: bool) -> None:
    """OUT is new, or (with ``force``) a previous transplant's output that MODEL is not in."""
    model_abs, out_abs = model.resolve(), out.resolve()
    if out_abs == model_abs or model_abs in out_abs.parents:
        raise OutputError(f"{out}: write the operated model to a new directory, not into {model}")
    if out_abs in model_abs.parents:
        raise OutputError(f"{out} contains the model {model}; replacing it would delete the "
                          "model: choose a new directory")
    if out.exists() or out.is_symlink():
        if not force:
            raise OutputError(f"{out} already exists; pass --force to overwrite it")
        _check_replaceable(out)


def _check_replaceable(out: Path) -> None:
    """--force replaces only what a transplant made: a directory holding our report."""
    if out.is_symlink() or not out.is_dir() or not (out / REPORT).is_file():
        raise OutputError(
            f"{out} exists and is not the output of an earlier transplant (no {REPORT} in it); "
            "--force replaces only those: choose a new directory or remove it yourself"
        )


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
def _staging(model: Path, out: Path, force: bool) -> Iterator[Path]:
    """A temporary directory beside ``out``, renamed onto it only when everything succeeded."""
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"{out}: directory {parent} does not exist; create it first")
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=parent))
    old: Path | None = None
    try:
        yield stage
        # mkdtemp makes 0o700 (private while writing); the output gets the usual mode.
        stage.chmod(default_mode(directory=True))
        if out.exists() or out.is_symlink():
            if not force:
                raise OutputError(f"{out} appeared while writing; pass --force to overwrite")
            _check_out(model, out, force)
            # Move the earlier output aside, not delete it: a failed rename can put it back.
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=parent))
            os.replace(out, old / out.name)
        try:
            os.replace(stage, out)
        except OSError:
            if old is not None:  # put the earlier output back rather than lose it
                os.replace(old / out.name, out)
            raise
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _vocab_tensors(checkpoint: Checkpoint, name: str, old_rows: int, dim: int, *,
                   resizing: bool) -> dict[str, VocabAxis]:
    """Every tensor besides the embedding that has a vocabulary axis, and which kind it is.

    Without resizing only (V, D) tensors matter (a tied head stored as a copy); when the row
    count changes, every tensor with an axis of ``old_rows`` must follow or the checkpoint no
    longer loads, so one we cannot interpret is refused before anything is written.
    """
    found: dict[str, VocabAxis] = {}
    unknown: list[str] = []
    for other, shape in sorted(all_shapes(checkpoint).items()):
        if other == name or old_rows not in shape:
            continue
        if shape == (old_rows, dim) or (resizing and len(shape) == 2 and shape[0] == old_rows):
            found[other] = VocabAxis.ROWS
        elif not resizing:
            continue
        elif shape == (old_rows,):
            found[other] = VocabAxis.BIAS
        elif shape == (1, old_rows):
            found[other] = VocabAxis.BIAS_ROW
        else:
            unknown.append(f"{other} {'x'.join(map(str, shape))}")
    if unknown:
        raise FormatError(
            f"{checkpoint.source}: cannot resize {', '.join(unknown)}: a vocabulary-sized axis "
            f"({old_rows}) embsurgeon does not know how to resize; keep {old_rows} rows, or "
            "resize with transformers' resize_token_embeddings first"
        )
    return found


def _rewrite_weights(checkpoint: Checkpoint, name: str, weight: Any,
                     axes: Mapping[str, VocabAxis], stage: Path) -> tuple[set[str], list[str]]:
    """Rewrite the files holding ``name`` and the tensors in ``axes``.

    Returns the file names written and the tensors of ``axes`` that changed.
    """
    old_embedding = read_tensor(checkpoint, name).vectors  # (V0, D)
    rows = int(weight.shape[0])
    files = {checkpoint.weight_map[name]} | {checkpoint.weight_map[n] for n in axes}
    written: set[Path] = set()
    changed: list[str] = []
    for file in sorted(files):
        state = _load_all(checkpoint, file)
        touched = name in state
        if touched:
            state[name] = weight
        for other in sorted(set(axes) & set(state)):
            new = _follow(state[other], axes[other], old_embedding, weight, rows)
            if new is not None:
                state[other] = new
                changed.append(other)
                touched = True
        if touched:
            _save_all(checkpoint, state, file, stage / file.name)
            written.add(file)
        del state
    if checkpoint.index is not None:
        _update_index(checkpoint.index, stage, written)
    return {f.name for f in written}, changed


def _follow(tensor: Any, axis: VocabAxis, old_embedding: np.ndarray, weight: Any,
            rows: int) -> Any | None:
    """``tensor`` resized for ``rows`` ids (or the new rows, if it is a tied copy); None: as is."""
    import torch

    if axis is VocabAxis.ROWS:
        tied = tuple(tensor.shape) == old_embedding.shape and np.array_equal(
            tensor.float().numpy(), old_embedding.astype(np.float32))
        if tied:
            return weight
        return None if rows == tensor.shape[0] else _resize_rows(tensor, rows)
    along = 0 if axis is VocabAxis.BIAS else 1
    old_rows = int(tensor.shape[along])
    if rows == old_rows:
        return None
    kept = tensor.narrow(along, 0, min(rows, old_rows)).clone()
    if rows < old_rows:
        return kept.contiguous()
    # New ids get a zero bias: their logits are then set by the head rows alone.
    shape = list(tensor.shape)
    shape[along] = rows - old_rows
    return torch.cat([kept, tensor.new_zeros(shape)], dim=along).contiguous()


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
        # safetensors refuses tensors that share storage (tied weights after loading, or the
        # new rows placed under two names): copy only those, not the whole shard.
        unshared: dict[str, Any] = {}
        storages: set[int] = set()
        for key, tensor in state.items():
            tensor = tensor.contiguous()
            storage = tensor.untyped_storage().data_ptr()
            if storage in storages:
                tensor = tensor.clone()
            storages.add(tensor.untyped_storage().data_ptr())
            unshared[key] = tensor
        save_file(unshared, str(path), metadata=metadata)
        path.chmod(default_mode())  # safetensors creates its files 0o600
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

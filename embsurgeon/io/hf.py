"""Hugging Face checkpoints: find the input-embedding matrix, read only it, name its rows.

A checkpoint is a directory (or one of its files) holding ``model.safetensors``, sharded
safetensors with ``model.safetensors.index.json``, ``pytorch_model.bin`` or sharded ``.bin``
with ``pytorch_model.bin.index.json``. The embedding tensor is found from ``config.json``
(``model_type``) and name patterns that tolerate the prefixes of fine-tuned heads
(``bert.``, ``roberta.``, ``model.``, ``transformer.`` ...). Only that tensor is read, and
only from the shard that holds it; the model is never instantiated and pickles are loaded with
``weights_only=True``, so a checkpoint cannot run code. Rows are named by the tokenizer found
beside the weights (see :mod:`embsurgeon.vocab`).

>>> table = read_table("bert-base-uncased/")                     # doctest: +SKIP
>>> table.metadata["tensor"], table.vectors.shape                  # doctest: +SKIP
('embeddings.word_embeddings.weight', (30522, 768))
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from embsurgeon.errors import FormatError, TensorNotFoundError, VocabularyError
from embsurgeon.io.formats import ReadOptions
from embsurgeon.io.safetensors_file import (
    NUMPY_NATIVE,
    check_2d,
    read_safetensors_tensor,
    safetensors_header,
    tensor_shape,
)
from embsurgeon.io.state_dict import WEIGHT
from embsurgeon.io.tensors import tensor_to_numpy
from embsurgeon.table import PADDING_IDX, SOURCE_DTYPE, EmbeddingTable, placeholder_token

if TYPE_CHECKING:
    from embsurgeon.vocab import Vocabulary

SAFE_WEIGHTS = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
TORCH_WEIGHTS = "pytorch_model.bin"
TORCH_INDEX = "pytorch_model.bin.index.json"
#: Weight files of a model directory, in order of preference (safetensors never runs code).
WEIGHT_FILES = (SAFE_WEIGHTS, SAFE_INDEX, TORCH_WEIGHTS, TORCH_INDEX)
CONFIG = "config.json"

#: Metadata keys this reader sets besides ``tensor``, ``source_dtype`` and ``padding_idx``.
PADDING_ROWS = "padding_rows"
VOCABULARY = "vocabulary"
NO_VOCABULARY = "missing (rows named by number)"

# Input-embedding tensor names by model_type, most specific first. A name matches a key equal
# to it or ending in "." + it, so the prefixes of task heads ("bert.", "roberta.", "model.",
# "transformer.", "distilbert.", ...) need no listing of their own.
_BERT = ("embeddings.word_embeddings.weight",)
_DECODER = ("embed_tokens.weight",)
_SEQ2SEQ = ("shared.weight", "encoder.embed_tokens.weight")
_GPT2 = ("wte.weight",)
EMBEDDING_NAMES: Mapping[str, tuple[str, ...]] = {
    **dict.fromkeys(("bert", "roberta", "xlm-roberta", "camembert", "distilbert", "albert",
                     "electra", "deberta", "deberta-v2", "mpnet", "ernie", "xlm-roberta-xl",
                     "roformer", "megatron-bert", "nomic_bert", "esm"), _BERT),
    **dict.fromkeys(("llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe",
                     "gemma", "gemma2", "gemma3_text", "phi", "phi3", "olmo", "olmo2",
                     "starcoder2", "stablelm", "cohere", "granite"), _DECODER),
    **dict.fromkeys(("t5", "mt5", "umt5", "bart", "mbart", "pegasus", "marian", "m2m_100"),
                    _SEQ2SEQ),
    **dict.fromkeys(("gpt2", "gpt_neo", "gptj", "codegen", "gpt_bigcode"), _GPT2),
    "xlnet": ("word_embedding.weight",),
    "gpt_neox": ("embed_in.weight",),
    "bloom": ("word_embeddings.weight",),
    "falcon": ("word_embeddings.weight",),
    "opt": ("decoder.embed_tokens.weight",),
    "modernbert": ("embeddings.tok_embeddings.weight",),
    "model2vec": ("embeddings",),
}
# Tried in this order when config.json is missing or names an unknown model_type. Seq2seq
# names come first so "encoder.embed_tokens" wins over the bare "embed_tokens" it contains.
_GENERIC_NAMES = ("shared.weight", "encoder.embed_tokens.weight",
                  "embeddings.word_embeddings.weight", "embeddings.tok_embeddings.weight",
                  "decoder.embed_tokens.weight", "embed_tokens.weight", "wte.weight",
                  "word_embedding.weight", "word_embeddings.weight", "embed_in.weight")
#: Output embedding used when the input one is not stored because the two are tied.
_TIED_HEAD = "lm_head.weight"
_MAX_LISTED = 12

# First bytes of the legacy (pre-zip) torch.save format: a pickled magic number.
_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"


class WeightKind(str, Enum):
    SAFETENSORS = "safetensors"
    TORCH = "torch"  # torch.save zip or legacy pickle, loaded with weights_only=True


@dataclass(frozen=True)
class Checkpoint:
    """Where a checkpoint's tensors live, learnt without reading any tensor data.

    ``shapes`` is filled from safetensors headers and ``.bin`` pickles; for a sharded
    checkpoint it stays empty until needed, so that only the index and one shard are opened.
    """

    directory: Path
    kind: WeightKind
    weight_map: Mapping[str, Path]  # tensor name -> file holding it
    index: Path | None = None
    shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    config: Mapping[str, Any] = field(default_factory=dict)

    @property
    def source(self) -> Path:
        """The file that lists the tensors (the index, or the single weight file)."""
        if self.index is not None:
            return self.index
        return next(iter(self.weight_map.values()), self.directory)

    @property
    def model_types(self) -> tuple[str, ...]:
        """``model_type`` of the config and of a nested ``text_config`` (multimodal models)."""
        found = []
        for cfg in (self.config, self.config.get("text_config")):
            if isinstance(cfg, dict) and isinstance(cfg.get("model_type"), str):
                found.append(cfg["model_type"])
        return tuple(found)


# -- sniffing --------------------------------------------------------------------------------

def sniff_hf(path: Path, head: bytes) -> bool:
    """Checkpoint files: multi-tensor safetensors, torch state-dict pickles, shard indexes.

    The complement of :mod:`embsurgeon.io.state_dict`'s sniffers: a safetensors file holding
    exactly one tensor ``weight``, or a torch zip with exactly one tensor record, is ours
    (formats ``safetensors`` / ``pt``), never a checkpoint.
    """
    name = path.name
    if name.endswith(".index.json") or name == CONFIG:
        data = _json_or_none(path)
        key = "weight_map" if name.endswith(".index.json") else "model_type"
        return isinstance(data, dict) and key in data
    if len(head) >= 9 and head[8:9] == b"{":
        header = safetensors_header(path)
        if header is not None:
            names = [k for k in header if k != "__metadata__"]
            return bool(names) and names != [WEIGHT]
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as archive:
                if not any(n.endswith("/data.pkl") for n in archive.namelist()):
                    return False
                return sum("/data/" in n for n in archive.namelist()) != 1
        except zipfile.BadZipFile:
            return False
    if head.startswith(_LEGACY_TORCH_MAGIC):
        return True
    # A pickle under a checkpoint's name: claim it so that the reader refuses it safely.
    return head[:1] == b"\x80" and name.startswith("pytorch_model") and name.endswith(".bin")


def _json_or_none(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


# -- locating the weights ------------------------------------------------------------------

def open_checkpoint(path: str | Path) -> Checkpoint:
    """Find the weight files of a checkpoint directory or file and list its tensors.

    >>> ckpt = open_checkpoint("tiny-bert")                          # doctest: +SKIP
    >>> sorted(ckpt.weight_map)[:1], ckpt.kind.value                 # doctest: +SKIP
    (['embeddings.LayerNorm.bias'], 'safetensors')
    """
    path = Path(path)
    if not path.exists():
        raise FormatError(f"{path}: no such file or directory")
    directory = path if path.is_dir() else path.parent
    weights = _weights_in(directory) if path.is_dir() or path.name == CONFIG else path
    config = read_config(directory)
    if weights.name.endswith(".index.json"):
        return _from_index(weights, config)
    if _is_safetensors(weights):
        header = safetensors_header(weights)
        if header is None:
            raise FormatError(
                f"{weights}: not a valid safetensors file (unreadable header); the file may "
                "be truncated or corrupt: download it again"
            )
        shapes = {k: tensor_shape(v) for k, v in header.items() if k != "__metadata__"}
        return Checkpoint(directory, WeightKind.SAFETENSORS, dict.fromkeys(shapes, weights),
                          shapes=shapes, config=config)
    state = load_torch_state(weights)
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    return Checkpoint(directory, WeightKind.TORCH, dict.fromkeys(shapes, weights),
                      shapes=shapes, config=config)


def _weights_in(directory: Path) -> Path:
    for name in WEIGHT_FILES:
        if (directory / name).is_file():
            return directory / name
    # Non-standard names: accept a lone index or a lone safetensors file.
    for pattern in ("*.safetensors.index.json", "*.bin.index.json", "*.safetensors"):
        found = sorted(directory.glob(pattern))
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise FormatError(
                f"{directory}: several weight files ({', '.join(p.name for p in found)}) and "
                f"none called {SAFE_WEIGHTS}; pass the one to read"
            )
    raise FormatError(
        f"{directory}: no model weights found (looked for {', '.join(WEIGHT_FILES)}); "
        "is this a Hugging Face model directory?"
    )


def _is_safetensors(path: Path) -> bool:
    if path.suffix == ".safetensors":
        return True
    with open(path, "rb") as handle:
        head = handle.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def read_config(directory: Path) -> dict[str, Any]:
    """``config.json`` of a model directory, or ``{}`` when there is none."""
    file = directory / CONFIG
    if not file.is_file():
        return {}
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(
            f"{file}: not valid JSON ({exc}); fix or remove it (it only says which tensor is "
            "the embedding and which row pads; without it pass --tensor NAME)"
        ) from exc
    if not isinstance(config, dict):
        raise FormatError(f"{file}: expected a JSON object, got {type(config).__name__}")
    return config


def _from_index(index: Path, config: dict[str, Any]) -> Checkpoint:
    data = _json_or_none(index)
    if data is None:
        raise FormatError(f"{index}: not valid JSON; the shard index is damaged")
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise FormatError(f"{index}: no 'weight_map' naming the shard of each tensor")
    files: dict[str, Path] = {}
    for name, shard in weight_map.items():
        # Shard names are plain file names beside the index; refuse paths that leave it.
        if not isinstance(shard, str) or Path(shard).name != shard:
            raise FormatError(f"{index}: tensor {name!r} has an invalid shard name {shard!r}")
        files[name] = index.parent / shard
    kind = (WeightKind.SAFETENSORS if index.name.endswith(".safetensors.index.json")
            or all(p.suffix == ".safetensors" for p in files.values()) else WeightKind.TORCH)
    return Checkpoint(index.parent, kind, files, index=index, config=config)


# -- finding the embedding -----------------------------------------------------------------

def find_embedding(checkpoint: Checkpoint, override: str | None = None) -> str:
    """The name of the input-embedding tensor (``override`` if given, after checking it).

    >>> find_embedding(open_checkpoint("tiny-llama"))               # doctest: +SKIP
    'model.embed_tokens.weight'
    """
    names = checkpoint.weight_map
    if override is not None:
        if override not in names:
            raise TensorNotFoundError(
                f"{checkpoint.source}: no tensor {override!r}; "
                f"{_candidates(checkpoint)}; pass one of them to --tensor"
            )
        return override
    shapes = checkpoint.shapes
    usable = [n for n in names if not shapes or len(shapes.get(n, ())) == 2]
    for pattern in _patterns(checkpoint.model_types):
        exact = pattern == "embeddings"  # model2vec's bare key; never a suffix of another
        matches = [n for n in usable
                   if n == pattern or (not exact and n.endswith("." + pattern))]
        if not matches:
            continue
        # A head's prefix ("bert.") wraps one embedding; deeper copies are encoders' own.
        depth = min(m.count(".") for m in matches)
        shallow = [m for m in matches if m.count(".") == depth]
        if len(shallow) == 1:
            return shallow[0]
        shapes = all_shapes(checkpoint)
        listed = ", ".join(f"{m} {_shape_text(shapes.get(m))}" for m in shallow)
        raise TensorNotFoundError(
            f"{checkpoint.source}: several tensors could be the input embedding ({listed}); "
            "pass --tensor NAME"
        )
    tied = checkpoint.config.get("tie_word_embeddings", True) is not False
    if tied and _TIED_HEAD in usable:
        return _TIED_HEAD
    kind = ", ".join(checkpoint.model_types) or "unknown (no config.json)"
    raise TensorNotFoundError(
        f"{checkpoint.source}: no input-embedding tensor found (model_type {kind}); "
        f"{_candidates(checkpoint)}; pass --tensor NAME"
    )


def _patterns(model_types: Iterable[str]) -> list[str]:
    ordered: list[str] = []
    for model_type in model_types:
        ordered.extend(EMBEDDING_NAMES.get(model_type, ()))
    ordered.extend(_GENERIC_NAMES)
    return list(dict.fromkeys(ordered))


def all_shapes(checkpoint: Checkpoint) -> dict[str, tuple[int, ...]]:
    """Every tensor's shape; opens every shard, so only for error messages."""
    if checkpoint.shapes:
        return dict(checkpoint.shapes)
    shapes: dict[str, tuple[int, ...]] = {}
    for file in sorted(set(checkpoint.weight_map.values())):
        if not file.is_file():
            continue
        if checkpoint.kind is WeightKind.SAFETENSORS:
            header = safetensors_header(file) or {}
            shapes.update({k: tensor_shape(v) for k, v in header.items() if k != "__metadata__"})
        else:
            shapes.update({k: tuple(v.shape) for k, v in load_torch_state(file).items()})
    return shapes


def _shape_text(shape: tuple[int, ...] | None) -> str:
    return "x".join(map(str, shape)) if shape is not None else "(shape unknown)"


def _candidates(checkpoint: Checkpoint) -> str:
    shapes = all_shapes(checkpoint)
    two_d = sorted(((n, s) for n, s in shapes.items() if len(s) == 2),
                   key=lambda item: (-item[1][0], item[0]))
    if not two_d:
        return "it holds no 2-D tensor"
    shown = ", ".join(f"{n} {_shape_text(s)}" for n, s in two_d[:_MAX_LISTED])
    more = f" and {len(two_d) - _MAX_LISTED} more" if len(two_d) > _MAX_LISTED else ""
    return f"2-D tensors: {shown}{more}"


# -- reading one tensor --------------------------------------------------------------------

@dataclass(frozen=True)
class Matrix:
    """One tensor read from a checkpoint, as float numpy, with where it came from."""

    name: str
    vectors: np.ndarray  # (N, D): the first N rows of the tensor, all of them by default
    source_dtype: str
    file: Path
    total_rows: int  # V, the tensor's full height


def read_tensor(checkpoint: Checkpoint, name: str, *, limit: int | None = None) -> Matrix:
    """Read tensor ``name`` (and nothing else) from the one file that holds it.

    ``limit`` reads only the first rows (``--limit``), so a slice of a huge matrix is cheap.
    """
    file = checkpoint.weight_map[name]
    if not file.is_file():
        where = f"{checkpoint.index} names shard {file.name} for {name!r}, but"
        raise FormatError(f"{where} {file} does not exist; download the missing shard")
    what = f"{file}: tensor {name!r}"
    if checkpoint.kind is WeightKind.SAFETENSORS:
        vectors, dtype, total = read_safetensors_tensor(file, name, what, limit)
    else:
        state = load_torch_state(file)
        if name not in state:
            raise TensorNotFoundError(
                f"{file}: no tensor {name!r}, although {checkpoint.index} says it is there; "
                "the index and the shard do not belong together"
            )
        tensor = state[name]
        check_2d(what, tuple(tensor.shape))
        total = int(tensor.shape[0])
        vectors, dtype = tensor_to_numpy(tensor[:limit], what=what)
        if dtype in NUMPY_NATIVE:
            # The array views a memory map of the file; own it, so rewriting the file is safe.
            vectors = np.array(vectors, copy=True)
    return Matrix(name, vectors, dtype, file, total)


def load_torch_state(file: Path, *, bare: str | None = None) -> dict[str, Any]:
    """A ``torch.save``d state dict, memory-mapped, never unpickling code.

    Legacy (pre-zip) pickles are read whole. With ``bare``, a file holding one tensor rather
    than a dict (``torch.save(weight, path)``) reads as ``{bare: tensor}``.
    """
    import pickle

    import torch

    try:
        # mmap needs the zip layout; legacy pickles are read whole (still weights_only).
        state = torch.load(str(file), map_location="cpu", weights_only=True,
                           mmap=zipfile.is_zipfile(file))
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, zipfile.BadZipFile,
            AttributeError, ModuleNotFoundError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FormatError(
            f"{file}: refused to load ({first}); embsurgeon loads only tensors "
            "(weights_only=True), never code: convert the checkpoint to safetensors if you "
            "trust it"
        ) from exc
    if bare is not None and isinstance(state, torch.Tensor):
        state = {bare: state}
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise FormatError(
            f"{file}: holds a {type(state).__name__}, not a state dict of named tensors"
        )
    return state


# -- the reader ----------------------------------------------------------------------------

def read_hf(path: Path, options: ReadOptions) -> EmbeddingTable:
    """Read the input-embedding matrix of a Hugging Face checkpoint with its vocabulary.

    Rows beyond the tokenizer's tokens (padding rows, as in Qwen or T5) keep their vectors
    under ``<embsurgeon:row:N>`` names and are counted in metadata ``padding_rows``. Without
    tokenizer files every row is named that way and metadata ``vocabulary`` says so.

    >>> t = read_hf(Path("Qwen2-0.5B"), ReadOptions())              # doctest: +SKIP
    >>> t.metadata["padding_rows"], t.metadata["tensor"]             # doctest: +SKIP
    ('293', 'model.embed_tokens.weight')
    """
    checkpoint = open_checkpoint(path)
    name = find_embedding(checkpoint, options.tensor)
    # --limit keeps the first rows, unless a token filter must see every row first.
    early = options.limit if options.keep is None and options.keep_if is None else None
    matrix = read_tensor(checkpoint, name, limit=early)
    rows = len(matrix.vectors)
    tokens, meta = _row_names(checkpoint.directory, matrix.total_rows, rows, name)
    config = checkpoint.config
    meta.update({"tensor": name, SOURCE_DTYPE: matrix.source_dtype,
                 "shard": matrix.file.name})
    if checkpoint.model_types:
        meta["model_type"] = checkpoint.model_types[0]
    pad = config.get("pad_token_id")
    if isinstance(pad, int) and not isinstance(pad, bool) and 0 <= pad < rows:
        meta[PADDING_IDX] = str(pad)
    if "tie_word_embeddings" in config:
        meta["tie_word_embeddings"] = str(bool(config["tie_word_embeddings"])).lower()
    return EmbeddingTable(tokens, matrix.vectors, meta)


def _row_names(directory: Path, total: int, rows: int,
               tensor: str) -> tuple[list[str], dict[str, str]]:
    """Names for the first ``rows`` of a ``total``-row matrix, checked against the tokenizer."""
    from embsurgeon.vocab import find_tokenizer_file, load_vocabulary

    found = find_tokenizer_file(directory)
    if found is None:
        return [placeholder_token(i) for i in range(rows)], {VOCABULARY: NO_VOCABULARY}
    vocab: Vocabulary = load_vocabulary(found)
    if len(vocab) > total:
        raise VocabularyError(
            f"{found}: the tokenizer has {len(vocab)} tokens but tensor {tensor!r} has only "
            f"{total} rows; the tokenizer does not belong to these weights"
        )
    tokens = list(vocab.tokens[:rows]) + [placeholder_token(i)
                                          for i in range(len(vocab), rows)]
    # Rows past the tokenizer and gaps in its id space are both placeholder rows.
    padding = sum(t == placeholder_token(i) for i, t in enumerate(tokens))
    meta = {VOCABULARY: found.name, "tokenizer_family": vocab.family.value}
    if padding:
        meta[PADDING_ROWS] = str(padding)
    return tokens, meta

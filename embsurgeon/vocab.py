"""Vocabularies: the ordered token lists of tokenizers, models and word lists.

A :class:`Vocabulary` is what the readers attach to a checkpoint's matrix and what alignment
maps a table onto. Besides the tokens in id order it records what the tokenizer *does* to text
(its family, lower-casing, accent stripping, continuation markers, special tokens), because
matching tokens across tokenizer families needs exactly that.

>>> from embsurgeon.vocab import load_vocabulary
>>> vocab = load_vocabulary("path/to/bert-base-uncased")          # doctest: +SKIP
>>> vocab.family, vocab.lowercase, len(vocab)                      # doctest: +SKIP
(<TokenizerFamily.WORDPIECE: 'wordpiece'>, True, 30522)
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any

from embsurgeon.errors import VocabularyError, require
from embsurgeon.table import placeholder_token


class TokenizerFamily(str, Enum):
    """How a tokenizer marks word boundaries; values are the CLI spellings."""

    WORDPIECE = "wordpiece"  # BERT: '##' marks a continuation piece
    BYTE_BPE = "byte-bpe"  # GPT-2, RoBERTa, Llama 3, Qwen: 'Ġ' marks a word start, bytes mapped
    SENTENCEPIECE = "sentencepiece"  # T5, XLM-R, Llama 2, ALBERT: '▁' marks a word start
    WORD = "word"  # GloVe, word2vec, word lists: every token is a whole word


class SpecialRole(str, Enum):
    """Roles that special tokens play, so ``[CLS]`` can be matched with ``<s>``."""

    PAD = "pad"
    UNK = "unk"
    CLS = "cls"
    SEP = "sep"
    MASK = "mask"
    BOS = "bos"
    EOS = "eos"


# Spellings seen across common tokenizers, used when no tokenizer config names the role.
_ROLE_SPELLINGS: dict[SpecialRole, tuple[str, ...]] = {
    SpecialRole.PAD: ("[PAD]", "<pad>", "<|pad|>", "<|endoftext|>"),
    SpecialRole.UNK: ("[UNK]", "<unk>", "<|unk|>"),
    SpecialRole.CLS: ("[CLS]", "<cls>"),
    SpecialRole.SEP: ("[SEP]", "<sep>"),
    SpecialRole.MASK: ("[MASK]", "<mask>", "<|mask|>"),
    SpecialRole.BOS: ("<s>", "<bos>", "<|begin_of_text|>", "<|startoftext|>", "<|im_start|>"),
    SpecialRole.EOS: ("</s>", "<eos>", "<|end_of_text|>", "<|endoftext|>", "<|im_end|>"),
}


@dataclass(frozen=True)
class Vocabulary:
    """Tokens in id order plus what the tokenizer does to text.

    >>> v = Vocabulary(("[PAD]", "the", "##s"), TokenizerFamily.WORDPIECE, lowercase=True)
    >>> v.index["##s"], v.continuation_prefix
    (2, '##')
    """

    tokens: tuple[str, ...]
    family: TokenizerFamily
    source: str = ""
    lowercase: bool = False
    strip_accents: bool = False
    continuation_prefix: str = ""  # '##' for WordPiece
    special: Mapping[SpecialRole, str] = field(default_factory=dict)
    added: frozenset[str] = frozenset()  # tokens added on top of the model vocabulary
    tokenizer_file: str | None = None  # a file `tokenizers` or `sentencepiece` can load
    counts: tuple[int, ...] | None = None  # from a `token count` frequency file
    duplicates: int = 0  # repeated lines merged away (word lists and frequency files only)

    def __post_init__(self) -> None:
        if not self.tokens:
            raise VocabularyError(f"{self.source or 'vocabulary'}: no tokens")
        seen: dict[str, int] = {}
        for i, token in enumerate(self.tokens):
            if token in seen:
                raise VocabularyError(
                    f"{self.source or 'vocabulary'}: token {token!r} at ids {seen[token]} and {i}"
                )
            seen[token] = i
        object.__setattr__(self, "special", MappingProxyType(dict(self.special)))

    @cached_property
    def index(self) -> Mapping[str, int]:
        """Token to id; built once (alignment looks tokens up many times)."""
        return MappingProxyType({token: i for i, token in enumerate(self.tokens)})

    def __len__(self) -> int:
        return len(self.tokens)

    def __iter__(self) -> Iterator[str]:
        return iter(self.tokens)

    def role_of(self, token: str) -> SpecialRole | None:
        for role, spelled in self.special.items():
            if spelled == token:
                return role
        return None


# -- loading ---------------------------------------------------------------------------------

_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "spiece.model", "sentencepiece.bpe.model",
                    "tokenizer.model", "sentencepiece.model", "vocab.json")


def find_tokenizer_file(directory: Path) -> Path | None:
    """The tokenizer file a model directory holds, in order of preference (fast first)."""
    for name in _TOKENIZER_FILES:
        if (directory / name).is_file():
            return directory / name
    return None


def load_vocabulary(path: str | Path, *, encoding: str = "utf-8") -> Vocabulary:
    """Read a vocabulary from a tokenizer, a model directory, a word list or a frequency file.

    Recognised: a directory with ``tokenizer.json`` / ``vocab.txt`` / a SentencePiece model /
    GPT-2 style ``vocab.json``; any of those files directly; a plain word list (one token a
    line); a ``token count`` frequency file (counts kept in ``Vocabulary.counts``).

    >>> load_vocabulary("model-dir").tokens[:3]                    # doctest: +SKIP
    ('[PAD]', '[unused0]', '[unused1]')
    """
    path = Path(path)
    if path.is_dir():
        found = find_tokenizer_file(path)
        if found is None:
            raise VocabularyError(
                f"{path}: no tokenizer file found (looked for {', '.join(_TOKENIZER_FILES)}); "
                "pass the tokenizer file itself"
            )
        path = found
    if not path.is_file():
        raise VocabularyError(f"{path}: no such file or directory")
    config = _tokenizer_config(path.parent)
    if path.name.endswith(".json"):
        data = _read_json(path)
        if isinstance(data, dict) and isinstance(data.get("model"), dict):
            return _from_tokenizer_json(path, data, config)
        if isinstance(data, dict) and data and all(
            isinstance(v, int) and not isinstance(v, bool) for v in data.values()
        ):
            return _from_token_to_id(path, data, config)
        raise VocabularyError(
            f"{path}: JSON file is neither a tokenizer.json nor a token-to-id map"
        )
    if path.suffix == ".model":
        return _from_sentencepiece(path, config)
    return _from_text(path, config, encoding)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VocabularyError(f"{path}: not valid JSON ({exc}); is the file complete?") from exc


def _tokenizer_config(directory: Path) -> dict[str, Any]:
    """Merge ``tokenizer_config.json`` and ``special_tokens_map.json`` when present."""
    merged: dict[str, Any] = {}
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        file = directory / name
        if file.is_file():
            try:
                merged.update(json.loads(file.read_text(encoding="utf-8")))
            except (UnicodeDecodeError, json.JSONDecodeError):
                continue  # advisory files; the tokenizer itself stays authoritative
    return merged


def _config_token(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return None


def _special_roles(tokens: Sequence[str], config: Mapping[str, Any]) -> dict[SpecialRole, str]:
    present = set(tokens)
    roles: dict[SpecialRole, str] = {}
    for role in SpecialRole:
        named = _config_token(config.get(f"{role.value}_token"))
        if named is not None and named in present:
            roles[role] = named
            continue
        for spelling in _ROLE_SPELLINGS[role]:
            if spelling in present:
                roles[role] = spelling
                break
    return roles


def _components(node: Any) -> Iterator[dict[str, Any]]:
    """Walk a tokenizer.json normalizer/pre_tokenizer/decoder tree, Sequences included."""
    if isinstance(node, dict):
        yield node
        for key in ("normalizers", "pretokenizers", "decoders", "processors"):
            for child in node.get(key) or ():
                yield from _components(child)
    elif isinstance(node, list):
        for child in node:
            yield from _components(child)


def _from_tokenizer_json(path: Path, data: dict[str, Any], config: Mapping[str, Any]) -> Vocabulary:
    model = data["model"]
    kind = model.get("type")
    if kind is None:  # very old files leave the type out; infer from the vocab's shape
        vocab_field = model.get("vocab")
        kind = "Unigram" if isinstance(vocab_field, list) else ("BPE" if "merges" in model
                                                                  else "WordPiece")
    ids: dict[int, str] = {}
    if kind == "Unigram":
        for i, entry in enumerate(model.get("vocab") or ()):
            ids[i] = entry[0]
    elif kind in ("WordPiece", "BPE", "WordLevel"):
        for token, i in (model.get("vocab") or {}).items():
            ids[int(i)] = token
    else:
        raise VocabularyError(f"{path}: unsupported tokenizer model type {kind!r}")
    added = set()
    for entry in data.get("added_tokens") or ():
        ids[int(entry["id"])] = entry["content"]
        added.add(entry["content"])
    if not ids:
        raise VocabularyError(f"{path}: the tokenizer has an empty vocabulary")
    size = max(ids) + 1
    # Gaps in the id space keep their rows under placeholder names, so row i is still id i.
    tokens = tuple(ids.get(i, placeholder_token(i)) for i in range(size))

    parts = list(_components(data.get("normalizer"))) + list(
        _components(data.get("pre_tokenizer"))) + list(_components(data.get("decoder")))
    types = {part.get("type") for part in parts}
    lowercase = strip_accents = False
    for part in parts:
        if part.get("type") == "BertNormalizer":
            lowercase = bool(part.get("lowercase"))
            accents = part.get("strip_accents")
            strip_accents = lowercase if accents is None else bool(accents)
    lowercase = lowercase or "Lowercase" in types
    strip_accents = strip_accents or "StripAccents" in types

    prefix = ""
    if kind == "WordPiece":
        family = TokenizerFamily.WORDPIECE
        prefix = model.get("continuing_subword_prefix") or "##"
    elif "ByteLevel" in types:
        family = TokenizerFamily.BYTE_BPE
    elif "Metaspace" in types or kind == "Unigram" or any(
        part.get("type") == "Replace" and part.get("content") == "▁" for part in parts
    ):
        family = TokenizerFamily.SENTENCEPIECE
    elif kind == "WordLevel":
        family = TokenizerFamily.WORD
    else:
        family = TokenizerFamily.BYTE_BPE
    return Vocabulary(
        tokens, family, source=str(path), lowercase=lowercase, strip_accents=strip_accents,
        continuation_prefix=prefix, special=_special_roles(tokens, config),
        added=frozenset(added), tokenizer_file=str(path),
    )


def _from_token_to_id(path: Path, data: Mapping[str, int], config: Mapping[str, Any]) -> Vocabulary:
    """GPT-2 style ``vocab.json`` (byte-level BPE, token to id), plus ``added_tokens.json``."""
    ids = {int(i): token for token, i in data.items()}
    added_file = path.parent / "added_tokens.json"
    added: dict[str, int] = {}
    if path.name == "vocab.json" and added_file.is_file():
        extra = _read_json(added_file)
        if not isinstance(extra, dict) or not all(isinstance(v, int) for v in extra.values()):
            raise VocabularyError(f"{added_file}: expected a JSON object of token to id")
        added = extra
        ids.update({int(i): token for token, i in added.items()})
    if min(ids) < 0:
        raise VocabularyError(f"{path}: negative id {min(ids)} for token {ids[min(ids)]!r}")
    tokens = tuple(ids.get(i, placeholder_token(i)) for i in range(max(ids) + 1))
    return Vocabulary(tokens, TokenizerFamily.BYTE_BPE, source=str(path),
                      special=_special_roles(tokens, config), added=frozenset(added))


def _from_sentencepiece(path: Path, config: Mapping[str, Any]) -> Vocabulary:
    spm = require("sentencepiece", extra="sentencepiece", purpose=f"reading {path}")
    processor = spm.SentencePieceProcessor()
    try:
        processor.Load(str(path))
    except (OSError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise VocabularyError(f"{path}: not a SentencePiece model ({first})") from exc
    tokens = tuple(processor.IdToPiece(i) for i in range(processor.GetPieceSize()))
    special = _special_roles(tokens, config)
    for role, piece_id in ((SpecialRole.UNK, processor.unk_id()),
                           (SpecialRole.BOS, processor.bos_id()),
                           (SpecialRole.EOS, processor.eos_id()),
                           (SpecialRole.PAD, processor.pad_id())):
        if 0 <= piece_id < len(tokens):
            special.setdefault(role, tokens[piece_id])
    return Vocabulary(tokens, TokenizerFamily.SENTENCEPIECE, source=str(path),
                      lowercase=bool(config.get("do_lower_case", False)),
                      special=special, tokenizer_file=str(path))


# 'token count', or jieba's 'token count tag'; a token may hold spaces ("new york 12").
_COUNT_LINE = re.compile(r"^(.*?\S)[ \t]+(\d+)(?:[ \t]+[^\s\d]\S*)?$")


def _from_text(path: Path, config: Mapping[str, Any], encoding: str) -> Vocabulary:
    """``vocab.txt`` (WordPiece), a word list, or a ``token count`` frequency file."""
    try:
        text = path.read_text(encoding=encoding)
    except UnicodeDecodeError as exc:
        raise VocabularyError(
            f"{path}: cannot decode as {encoding} at byte {exc.start}; pass the right --encoding"
        ) from exc
    lines = text.removeprefix("\ufeff").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    numbered = [(n, line.removesuffix("\r")) for n, line in enumerate(lines, 1)]
    id_ordered = path.name == "vocab.txt"
    if not id_ordered:
        # In a word list blank lines are noise; in vocab.txt line i is id i, so they stay.
        numbered = [(n, line) for n, line in numbered if line.strip()]
    if not numbered:
        raise VocabularyError(f"{path}: the vocabulary file is empty")
    if not id_ordered and all(_COUNT_LINE.match(line) for _, line in numbered[:1000]):
        return _from_counts(path, numbered, config)
    tokens = tuple(line for _, line in numbered)
    wordpiece = id_ordered or ("[CLS]" in tokens and any(
        t.startswith("##") for t in tokens[:5000]))
    if wordpiece:
        # Without a tokenizer_config.json, a vocabulary with no upper-case word is uncased.
        cased = any(t[:1].isupper() for t in tokens if not t.startswith(("[", "<")))
        lowercase = bool(config.get("do_lower_case", not cased))
        accents = config.get("strip_accents")
        return Vocabulary(tokens, TokenizerFamily.WORDPIECE, source=str(path),
                          lowercase=lowercase,
                          strip_accents=lowercase if accents is None else bool(accents),
                          continuation_prefix="##", special=_special_roles(tokens, config))
    unique = tuple(dict.fromkeys(tokens))
    return Vocabulary(unique, TokenizerFamily.WORD, source=str(path),
                      special=_special_roles(unique, config),
                      duplicates=len(tokens) - len(unique))


def _from_counts(path: Path, numbered: Sequence[tuple[int, str]],
                 config: Mapping[str, Any]) -> Vocabulary:
    """A ``token count [tag]`` file; a repeated token keeps its first place, counts add up."""
    counts: dict[str, int] = {}
    repeats = 0
    for lineno, line in numbered:
        m = _COUNT_LINE.match(line)
        if m is None:
            raise VocabularyError(
                f"{path}:{lineno}: expected 'token count' like the lines above it"
            )
        token, count = m.group(1), int(m.group(2))
        repeats += token in counts
        counts[token] = counts.get(token, 0) + count
    tokens = tuple(counts)
    return Vocabulary(tokens, TokenizerFamily.WORD, source=str(path),
                      special=_special_roles(tokens, config), counts=tuple(counts.values()),
                      duplicates=repeats)

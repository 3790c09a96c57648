"""Intrinsic evaluation: word-pair similarity files and word analogies.

Readers and scoring follow gensim's ``KeyedVectors.evaluate_word_pairs`` and
``evaluate_word_analogies`` (their defaults included: upper-case matching where the first
spelling of a word wins, only the first 300,000 rows, out-of-vocabulary items skipped and
counted), so figures can be compared with published ones; the analogy search runs batched on
the tiled engine instead of one query at a time.

Word-pair files (SimLex-999, WordSim-353 as gensim ships them) hold ``word1<TAB>word2<TAB>
score`` lines, ``#`` starting a comment. Analogy files are word2vec's ``questions-words.txt``:
``: section`` headers, then ``a b c d`` lines meaning a is to b as c is to d.

>>> pairs = read_word_pairs("simlex999.txt")                      # doctest: +SKIP
>>> evaluate_word_pairs(table, pairs).spearman                   # doctest: +SKIP
0.37
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embsurgeon.errors import FormatError
from embsurgeon.linalg import row_cosines, unit_rows
from embsurgeon.similarity.correlation import pearson, spearman
from embsurgeon.similarity.knn import (
    DEFAULT_DEVICE,
    DEFAULT_MEMORY_BUDGET,
    Device,
    search,
)
from embsurgeon.table import EmbeddingTable

#: Only the first rows take part, as in gensim (vocabularies are usually sorted by frequency).
DEFAULT_RESTRICT_VOCAB = 300_000
#: Candidates fetched per analogy; as in gensim, the first that is not a question word counts.
_ANALOGY_CANDIDATES = 5


@dataclass(frozen=True)
class WordPairs:
    """A word-pair similarity file: ``pairs[i]`` is (word1, word2, human score)."""

    path: str
    pairs: tuple[tuple[str, str, float], ...]
    skipped_lines: tuple[int, ...]  # 1-based numbers of lines that are not pairs


@dataclass(frozen=True)
class Analogies:
    """An analogy file: section name -> questions (a, b, c, expected)."""

    path: str
    sections: Mapping[str, tuple[tuple[str, str, str, str], ...]]
    skipped_lines: tuple[int, ...]


@dataclass(frozen=True)
class WordPairScore:
    file: str
    spearman: float | None  # None when fewer than two pairs are in the vocabulary
    pearson: float | None
    pairs: int  # pairs scored
    oov: int  # pairs skipped because a word is not in the (restricted) vocabulary

    @property
    def oov_percent(self) -> float:
        total = self.pairs + self.oov
        return 100.0 * self.oov / total if total else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "oov_percent": self.oov_percent}


@dataclass(frozen=True)
class SectionScore:
    section: str
    correct: int
    total: int

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.total if self.total else None


@dataclass(frozen=True)
class AnalogyScore:
    file: str
    correct: int
    total: int  # questions whose four words are all in the vocabulary
    oov: int
    sections: tuple[SectionScore, ...]

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.total if self.total else None

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "accuracy": self.accuracy, "correct": self.correct,
                "total": self.total, "oov": self.oov,
                "sections": [{**asdict(s), "accuracy": s.accuracy} for s in self.sections]}


def _lines(path: Path, encoding: str) -> list[str]:
    try:
        return path.read_text(encoding=encoding).splitlines()
    except UnicodeDecodeError as exc:
        raise FormatError(f"{path}: not {encoding} text (byte {exc.start}); "
                          "pass the right encoding") from exc


def read_word_pairs(path: str | Path, *, encoding: str = "utf-8") -> WordPairs:
    """Read a word-pair similarity file (tab-separated, or whitespace when a line has no tab).

    Lines that are not exactly two words and a number (headers, say) are skipped and counted.
    """
    path = Path(path)
    pairs: list[tuple[str, str, float]] = []
    skipped: list[int] = []
    for number, line in enumerate(_lines(path, encoding), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t") if "\t" in line else line.split()
        try:
            first, second, score = (f.strip() for f in fields)
            pairs.append((first, second, float(score)))
        except ValueError:
            skipped.append(number)
    if not pairs:
        raise FormatError(f"{path}: no word pairs found; expected 'word1<TAB>word2<TAB>score' "
                          "lines")
    return WordPairs(str(path), tuple(pairs), tuple(skipped))


def read_analogies(path: str | Path, *, encoding: str = "utf-8") -> Analogies:
    """Read a ``questions-words.txt``-style analogy file."""
    path = Path(path)
    sections: dict[str, list[tuple[str, str, str, str]]] = {}
    current: list[tuple[str, str, str, str]] | None = None
    skipped: list[int] = []
    for number, line in enumerate(_lines(path, encoding), 1):
        if line.startswith(": "):
            current = sections.setdefault(line[2:].strip(), [])
            continue
        words = line.split()
        if len(words) != 4:
            if line.strip():
                skipped.append(number)
            continue
        if current is None:
            raise FormatError(f"{path}, line {number}: a question before any ': section' "
                              "header")
        current.append((words[0], words[1], words[2], words[3]))
    if not any(sections.values()):
        raise FormatError(f"{path}: no analogy questions found; expected ': section' headers "
                          "and 'a b c d' lines")
    return Analogies(str(path), {k: tuple(v) for k, v in sections.items()}, tuple(skipped))


def _lookup(table: EmbeddingTable, restrict_vocab: int, case_insensitive: bool) -> dict[str, int]:
    """Word -> row over the first ``restrict_vocab`` rows; with case folding the first
    spelling of a word wins (gensim upper-cases, and so do we)."""
    lookup: dict[str, int] = {}
    for row, token in enumerate(table.tokens[:restrict_vocab]):
        lookup.setdefault(token.upper() if case_insensitive else token, row)
    return lookup


def evaluate_word_pairs(table: EmbeddingTable, pairs: WordPairs, *,
                        case_insensitive: bool = True,
                        restrict_vocab: int = DEFAULT_RESTRICT_VOCAB) -> WordPairScore:
    """Spearman (and Pearson) correlation of cosine similarities with the human scores.

    >>> evaluate_word_pairs(table, read_word_pairs("wordsim353.tsv")).spearman  # doctest: +SKIP
    0.65
    """
    lookup = _lookup(table, restrict_vocab, case_insensitive)
    fold = str.upper if case_insensitive else str
    left, right, gold = [], [], []
    oov = 0
    for first, second, score in pairs.pairs:
        a, b = lookup.get(fold(first)), lookup.get(fold(second))
        if a is None or b is None:
            oov += 1
            continue
        left.append(a)
        right.append(b)
        gold.append(score)
    model = row_cosines(table.vectors[left], table.vectors[right])  # (P,)
    rho, r = spearman(gold, model), pearson(gold, model)
    return WordPairScore(pairs.path, None if np.isnan(rho) else rho,
                         None if np.isnan(r) else r, len(gold), oov)


def evaluate_analogies(table: EmbeddingTable, analogies: Analogies, *,
                       case_insensitive: bool = True,
                       restrict_vocab: int = DEFAULT_RESTRICT_VOCAB,
                       device: Device | str = DEFAULT_DEVICE,
                       memory_budget: int = DEFAULT_MEMORY_BUDGET) -> AnalogyScore:
    """Analogy accuracy by 3CosAdd: the answer to a:b :: c:? is the row nearest (cosine) to
    ``b - a + c`` (unit vectors) other than a, b and c.

    >>> evaluate_analogies(table, read_analogies("questions-words.txt")).accuracy  # doctest: +SKIP
    0.74
    """
    lookup = _lookup(table, restrict_vocab, case_insensitive)
    fold = str.upper if case_insensitive else str
    asked: list[tuple[int, list[str]]] = []  # (section number, folded words a b c expected)
    rows: list[list[int]] = []
    oov = 0
    names = list(analogies.sections)
    for s, name in enumerate(names):
        for a, b, c, expected in analogies.sections[name]:
            words = [fold(w) for w in (a, b, c, expected)]
            found = [lookup.get(w) for w in words]
            if any(f is None for f in found):
                oov += 1
                continue
            rows.append([int(f) for f in found[:3]])  # type: ignore[arg-type]
            asked.append((s, words))
    correct = [0] * len(names)
    total = [0] * len(names)
    if rows:
        abc = np.asarray(rows, dtype=np.int64)  # (P, 3)
        database = table.vectors[:restrict_vocab]
        unit = {i: unit_rows(table.vectors[abc[:, i]]) for i in range(3)}  # (P, D) each
        queries = (unit[1] + unit[2] - unit[0]).astype(np.float32)  # (P, D)
        hits = search(queries, database, _ANALOGY_CANDIDATES, exclude=abc, device=device,
                      memory_budget=memory_budget)
        tokens = table.tokens
        for (s, words), candidates in zip(asked, hits.ids.tolist(), strict=True):
            ignore = set(words[:3])
            predicted = None
            for row in candidates:
                predicted = fold(tokens[row])
                if predicted not in ignore:
                    break
            total[s] += 1
            correct[s] += predicted == words[3]
    sections = tuple(SectionScore(name, correct[i], total[i]) for i, name in enumerate(names))
    return AnalogyScore(analogies.path, sum(correct), sum(total), oov, sections)


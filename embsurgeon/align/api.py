"""``align()``: map a table onto a target vocabulary, with a report and per-row provenance.

The pipeline, in order: match target tokens to source rows (:mod:`embsurgeon.align.match`);
build the rows no source row covers with the ``init`` chain (:mod:`embsurgeon.align.init`),
each method taking the rows the one before it left; rescale those rows' norms onto the copied
rows' norms; optionally map, reduce and normalize the whole matrix
(:mod:`embsurgeon.align.transform`); zero the padding row and record its index; append zero
placeholder rows up to a multiple of ``pad_to_multiple_of``.

>>> import numpy as np
>>> from embsurgeon.table import EmbeddingTable
>>> src = EmbeddingTable(["the", "cat", "cats"], np.eye(3, dtype=np.float32))
>>> result = align(src, ["[PAD]", "the", "Cat", "dog"], init="mean")
>>> result.report.methods
{'exact': 1, 'case-fold': 1, 'mean': 1, 'padding': 1}
>>> result.table.padding_idx
0
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from embsurgeon.align.forms import Surface, is_placeholder, surface
from embsurgeon.align.init import (
    DEFAULT_K,
    DEFAULT_TEMPERATURE,
    DEFAULT_WEIGHTING,
    InitContext,
    InitMethod,
    Weighting,
    initialize,
)
from embsurgeon.align.match import (
    DEFAULT_MATCH,
    Matching,
    MatchLevel,
    match_tokens,
    parse_levels,
)
from embsurgeon.align.norms import DEFAULT_NORM_MATCH, NormMatch, match_norms
from embsurgeon.align.postprocess import Transforms, apply_transforms
from embsurgeon.align.targets import Target, load_target, source_vocabulary, table_vocabulary
from embsurgeon.align.transform import LinearMap, Projection
from embsurgeon.errors import AlignmentError
from embsurgeon.linalg import row_norms
from embsurgeon.table import PADDING_IDX, SOURCE_DTYPE, EmbeddingTable, placeholder_token
from embsurgeon.vocab import SpecialRole, Vocabulary

#: ``--init auto``: measure candidate chains on the user's own matrix and keep the best.
AUTO = "auto"
#: The default chain: compose from subword pieces, and the mean for whatever is left.
DEFAULT_INIT: tuple[InitMethod, ...] = (InitMethod.SUBWORD, InitMethod.MEAN)
DEFAULT_SEED = 0

#: Provenance methods of rows that are not copied and not initialized.
PADDING = "padding"  # the padding row, always zero
PLACEHOLDER = "placeholder"  # zero rows: id gaps of the target, and pad_to_multiple_of rows
UNFILLED = "unfilled"  # no method of the chain could build the row; left zero
#: Provenance methods whose rows hold a source row unchanged (before whole-matrix transforms).
COPIED_METHODS: frozenset[str] = frozenset(level.value for level in MatchLevel)
# Methods that do not read a token's surface, so control tokens (`[unused3]`) may use them.
_SURFACE_FREE = frozenset({InitMethod.ZERO, InitMethod.MEAN, InitMethod.NORMAL, InitMethod.MVN})
# Methods that build every row they are given: nothing after them in a chain runs.
TOTAL_METHODS = _SURFACE_FREE


@dataclass(frozen=True)
class RowProvenance:
    """How one output row was made: one line of ``OUT.provenance.jsonl``."""

    row: int
    token: str
    method: str
    sources: tuple[str, ...] = ()
    weights: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"row": self.row, "token": self.token, "method": self.method,
                "sources": list(self.sources), "weights": [round(w, 6) for w in self.weights]}


@dataclass(frozen=True)
class AlignmentReport:
    """What ``align`` did: counts per method and every setting that shaped the result."""

    target: str
    source_family: str
    target_family: str
    source_rows: int
    rows: int
    dim: int
    methods: Mapping[str, int]  # rows per provenance method, in pipeline order
    match: tuple[str, ...]
    init: tuple[str, ...]
    seed: int
    norm_match: str
    padding_idx: int | None
    details: Mapping[str, Any] = field(default_factory=dict)  # transforms, validation

    @property
    def copied(self) -> int:
        return sum(n for m, n in self.methods.items() if m in COPIED_METHODS)

    @property
    def initialized(self) -> int:
        return sum(n for m, n in self.methods.items() if m in {i.value for i in InitMethod})

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target, "source_family": self.source_family,
            "target_family": self.target_family, "source_rows": self.source_rows,
            "rows": self.rows, "dim": self.dim, "copied": self.copied,
            "initialized": self.initialized, "methods": dict(self.methods),
            "match": list(self.match), "init": list(self.init), "seed": self.seed,
            "norm_match": self.norm_match, PADDING_IDX: self.padding_idx, **self.details,
        }

    def summary(self) -> str:
        """One line: how many rows were copied, matched canonically and initialized, and how.

        >>> AlignmentReport("t", "word", "wordpiece", 9, 4, 2, {"exact": 2, "canonical": 1,
        ...                 "mean": 1}, ("exact",), ("mean",), 0, "none", None).summary()
        '4 rows: 3 copied (2 exact, 1 canonical), 1 initialized (1 mean)'
        """
        copied = [(m, n) for m, n in self.methods.items() if m in COPIED_METHODS]
        built = [(m, n) for m, n in self.methods.items() if m in {i.value for i in InitMethod}]
        other = [(m, n) for m, n in self.methods.items()
                 if m not in COPIED_METHODS and m not in {i.value for i in InitMethod}]

        def parts(items: list[tuple[str, int]]) -> str:
            return ", ".join(f"{n} {m}" for m, n in items)

        line = f"{self.rows} rows: {self.copied} copied"
        if copied:
            line += f" ({parts(copied)})"
        line += f", {self.initialized} initialized"
        if built:
            line += f" ({parts(built)})"
        if other:
            line += f", {parts(other)}"
        return line


@dataclass(frozen=True)
class Alignment:
    """The aligned table, its report and the provenance of every row."""

    table: EmbeddingTable
    report: AlignmentReport
    provenance: tuple[RowProvenance, ...]
    projection: Projection | None = None  # a PCA fitted here, to save and reuse (--pca)
    linear_map: LinearMap | None = None  # the map learned onto map_to's space


def parse_init(spec: str | Sequence[str | InitMethod]) -> tuple[InitMethod, ...] | str:
    """``"subword,knn,mean"`` -> the chain; ``"auto"`` stays ``"auto"``.

    >>> parse_init("subword, mean")
    (<InitMethod.SUBWORD: 'subword'>, <InitMethod.MEAN: 'mean'>)
    """
    items = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    items = [s for s in items if s != ""]
    if items == [AUTO]:
        return AUTO
    if not items:
        raise AlignmentError("empty --init chain; name at least one method, or 'auto'")
    if AUTO in items:
        raise AlignmentError(f"--init auto chooses a whole chain itself; give it alone, not with "
                             f"{', '.join(s for s in map(str, items) if s != AUTO)}")
    chain: list[InitMethod] = []
    for item in items:
        try:
            method = InitMethod(item)
        except ValueError:
            choices = ", ".join([m.value for m in InitMethod] + [AUTO])
            raise AlignmentError(f"unknown init method {item!r}; choose from {choices} "
                                 "(comma-separated for a chain)") from None
        if method in chain:
            raise AlignmentError(f"init method {method.value!r} appears twice in the chain")
        chain.append(method)
    for i, method in enumerate(chain[:-1]):
        if method in TOTAL_METHODS:
            raise AlignmentError(
                f"init method {method.value!r} builds every row, so "
                f"{', '.join(m.value for m in chain[i + 1:])} after it would never run; "
                "put it last")
    return tuple(chain)


@dataclass(frozen=True)
class AlignmentPlan:
    """Everything fixed before any row is built; shared with self-validation.

    ``aux`` is the auxiliary table re-keyed by target token; ``aux_to_source`` maps the target
    tokens it shares with the source (the copied ones) to their source rows: knn/omp anchors.
    """

    source: EmbeddingTable
    source_vocab: Vocabulary
    target: Vocabulary
    matching: Matching
    aux: EmbeddingTable | None  # re-keyed by target token
    aux_to_source: Mapping[str, int] | None
    k: int
    temperature: float
    weighting: Weighting
    fasttext_path: str | None


def plan_alignment(
    table: EmbeddingTable,
    target: Target,
    *,
    source_vocab: Vocabulary | None = None,
    match: Sequence[MatchLevel | str] | str = DEFAULT_MATCH,
    overrides: Mapping[str, str] | None = None,
    aux: EmbeddingTable | None = None,
    k: int = DEFAULT_K,
    temperature: float = DEFAULT_TEMPERATURE,
    weighting: Weighting | str = DEFAULT_WEIGHTING,
    fasttext_path: str | None = None,
) -> AlignmentPlan:
    """Resolve the vocabularies and match the tokens: everything before rows are built.

    >>> import numpy as np
    >>> from embsurgeon.table import EmbeddingTable
    >>> plan = plan_alignment(EmbeddingTable(["a", "b"], np.eye(2)), ["b", "c"])
    >>> plan.matching.source_rows.tolist()
    [1, -1]
    """
    if len(table) == 0:
        raise AlignmentError("the source table has no rows")
    target_vocab = load_target(target)
    src_vocab = source_vocab or source_vocabulary(table)
    if len(src_vocab) != len(table):
        raise AlignmentError(
            f"the source vocabulary has {len(src_vocab)} tokens but the table {len(table)} "
            "rows; pass the tokenizer that belongs to the table")
    levels = parse_levels(match)
    matching = match_tokens(src_vocab, target_vocab, levels=levels, overrides=overrides)
    if matching.matched == 0:
        raise AlignmentError(
            f"no target token matches a source token (target {target_vocab.source or 'list'}: "
            f"{len(target_vocab)} {target_vocab.family.value} tokens, source: {len(table)} "
            f"{src_vocab.family.value} tokens, levels {', '.join(lv.value for lv in levels)}); "
            "check --target, allow more --match levels, or pass --map TARGET=SOURCE")
    aux_table, aux_to_source = (None, None) if aux is None else _aux_in_target_space(
        aux, target_vocab, matching, table, levels)
    return AlignmentPlan(table, src_vocab, target_vocab, matching, aux_table, aux_to_source, k,
                 temperature, Weighting(weighting), fasttext_path)


def _aux_in_target_space(aux: EmbeddingTable, target: Vocabulary, matching: Matching,
                         source: EmbeddingTable, levels: Sequence[MatchLevel],
                         ) -> tuple[EmbeddingTable, dict[str, int]]:
    """The auxiliary table keyed by *target* tokens, and target token -> source row for the
    shared (copied) tokens: knn/omp find neighbours among those and combine their source rows.
    """
    aux_match = match_tokens(table_vocabulary(aux), target, levels=levels)
    if aux_match.matched == 0:
        raise AlignmentError(
            f"the auxiliary table ({aux.metadata.get('source', f'{len(aux)} rows')}) covers "
            "none of the target tokens; it must share a vocabulary with the target")
    rows = np.flatnonzero(aux_match.source_rows >= 0)
    tokens = [target.tokens[t] for t in rows]
    aux_table = EmbeddingTable(tokens, aux.vectors[aux_match.source_rows[rows]],
                               {"source": aux.metadata.get("source", "aux")})
    shared = {target.tokens[t]: int(matching.source_rows[t]) for t in rows
              if matching.source_rows[t] >= 0}
    if not shared:
        raise AlignmentError(
            "the auxiliary table shares no token with both the source and the target, so knn "
            "and omp have no anchors; use an auxiliary table trained on a vocabulary overlapping "
            "both")
    return aux_table, shared


def _context(plan: AlignmentPlan, source: EmbeddingTable, source_vocab: Vocabulary,
             reference_rows: np.ndarray, aux_to_source: Mapping[str, int] | None,
             seed: int) -> InitContext:
    return InitContext(
        source=source, reference_rows=reference_rows, source_vocab=source_vocab,
        aux=plan.aux, aux_to_source=aux_to_source, seed=seed, k=plan.k,
        temperature=plan.temperature, weighting=plan.weighting,
        fasttext_path=plan.fasttext_path)


@dataclass(frozen=True)
class ChainResult:
    """Rows built by an init chain, for the target rows asked for."""

    vectors: np.ndarray  # (M, D) float32
    methods: tuple[str, ...]  # per row: the method that built it, or UNFILLED
    sources: tuple[tuple[str, ...], ...]
    weights: tuple[tuple[float, ...], ...]


def run_chain(chain: Sequence[InitMethod], tokens: Sequence[str],
              forms: Sequence[Surface | None], context: InitContext) -> ChainResult:
    """Build rows for ``tokens``, each method taking the rows the one before it left.

    Control tokens (no surface) only go to methods that do not read surfaces.
    """
    m = len(tokens)
    out = np.zeros((m, context.source.dim), dtype=np.float32)  # (M, D)
    methods: list[str] = [UNFILLED] * m
    sources: list[tuple[str, ...]] = [()] * m
    weights: list[tuple[float, ...]] = [()] * m
    todo = np.arange(m)
    for method in chain:
        if todo.size == 0:
            break
        eligible = todo if method in _SURFACE_FREE else np.array(
            [i for i in todo.tolist() if forms[i] is not None], dtype=np.int64)
        if eligible.size == 0:
            continue
        picked = eligible.tolist()
        result = initialize(method, [tokens[i] for i in picked],
                            [forms[i] or Surface(tokens[i], True) for i in picked], context)
        for j, i in enumerate(picked):
            if result.filled[j]:
                out[i] = result.vectors[j]
                methods[i] = method.value
                sources[i] = tuple(result.sources[j])
                weights[i] = tuple(float(w) for w in result.weights[j])
        done = set(eligible[result.filled].tolist())
        todo = np.array([i for i in todo if i not in done], dtype=np.int64)
    return ChainResult(out, tuple(methods), tuple(sources), tuple(weights))


def align(
    table: EmbeddingTable,
    target: Target,
    *,
    source_vocab: Vocabulary | None = None,
    init: str | Sequence[str | InitMethod] = DEFAULT_INIT,
    match: Sequence[MatchLevel | str] | str = DEFAULT_MATCH,
    overrides: Mapping[str, str] | None = None,
    aux: EmbeddingTable | None = None,
    k: int = DEFAULT_K,
    temperature: float = DEFAULT_TEMPERATURE,
    weighting: Weighting | str = DEFAULT_WEIGHTING,
    fasttext_path: str | None = None,
    norm_match: NormMatch | str = DEFAULT_NORM_MATCH,
    seed: int = DEFAULT_SEED,
    validate: bool = False,
    validate_fraction: float | None = None,
    transforms: Transforms | None = None,
    pad_to_multiple_of: int | None = None,
) -> Alignment:
    """Map ``table`` onto ``target`` (a tokenizer, word list, table...) in target id order.

    ``init`` is a chain of :class:`InitMethod` names (``"subword,knn,mean"``) or ``"auto"``
    (the chain that rebuilds held-out shared rows best, see :mod:`embsurgeon.align.validate`).
    ``transforms`` (:class:`embsurgeon.align.postprocess.Transforms`: learned map, PCA,
    all-but-the-top, normalization) run on the whole matrix after initialization.

    >>> import numpy as np
    >>> from embsurgeon.table import EmbeddingTable
    >>> glove = EmbeddingTable(["the", "cat", "sat"], np.eye(3, dtype=np.float32))
    >>> out = align(glove, ["Ġthe", "Ġcat", "Ġdog"], init="zero")
    >>> out.report.summary()
    '3 rows: 2 copied (2 canonical), 1 initialized (1 zero)'
    """
    from embsurgeon.align import validate as validation

    if pad_to_multiple_of is not None and pad_to_multiple_of < 1:
        raise AlignmentError(f"pad_to_multiple_of must be at least 1, got {pad_to_multiple_of}")
    plan = plan_alignment(table, target, source_vocab=source_vocab, match=match,
                          overrides=overrides, aux=aux, k=k, temperature=temperature,
                          weighting=weighting, fasttext_path=fasttext_path)
    norm = NormMatch(norm_match)
    parsed = parse_init(init)
    details: dict[str, Any] = {}
    chain: tuple[InitMethod, ...]
    if isinstance(parsed, str):  # AUTO
        measured = validation.validate_plan(plan, validation.candidate_chains(plan.aux is not None),
                                            norm_match=norm, seed=seed, fraction=validate_fraction)
        details["validation"] = measured.to_dict()
        # candidate_chains always offers chains ending in mean/mvn, so best is never None.
        chain = measured.best or DEFAULT_INIT
    else:
        chain = parsed
        if validate:
            measured = validation.validate_plan(plan, validation.requested_chains(chain),
                                                norm_match=norm, seed=seed,
                                                fraction=validate_fraction)
            details["validation"] = measured.to_dict()

    target_vocab, matching = plan.target, plan.matching
    rows = len(target_vocab)
    vectors = np.zeros((rows, table.dim), dtype=np.float32)  # (T, D)
    copied = np.flatnonzero(matching.source_rows >= 0)
    vectors[copied] = table.vectors[matching.source_rows[copied]]
    methods: list[str] = [""] * rows
    sources: list[tuple[str, ...]] = [()] * rows
    weights: list[tuple[float, ...]] = [()] * rows
    for t in copied:
        level = matching.levels[t]
        methods[t] = level.value if level is not None else UNFILLED
        sources[t] = (table.tokens[matching.source_rows[t]],)
        weights[t] = (1.0,)

    pad_row = _padding_row(target_vocab)
    # Ids the tokenizer never produces (gaps, named <embsurgeon:row:N>) stay zero placeholders.
    unused = {t for t in np.flatnonzero(matching.source_rows < 0).tolist()
              if is_placeholder(target_vocab.tokens[t])}
    for t in unused:
        methods[t] = PLACEHOLDER
    missing = np.array([t for t in np.flatnonzero(matching.source_rows < 0)
                        if t != pad_row and t not in unused], dtype=np.int64)
    # Rows with NaN or inf (kept by --allow-nonfinite) are copied as they are, but give no
    # moments or norms to the new rows: one of them would turn every new row into NaN.
    finite = finite_rows(vectors, copied)
    if finite.size < copied.size:
        details["nonfinite_copied_rows"] = int(copied.size - finite.size)
    if missing.size:
        if finite.size == 0:
            first = target_vocab.tokens[int(copied[0])]
            raise AlignmentError(
                f"every copied source row has NaN or infinite values (the first: {first!r}), so "
                "there is nothing to initialize new rows from; repair the source file, or read "
                "it without --allow-nonfinite to see the first bad line")
        reference = np.unique(matching.source_rows[finite])
        context = _context(plan, table, plan.source_vocab, reference, plan.aux_to_source, seed)
        tokens = [target_vocab.tokens[t] for t in missing]
        built = run_chain(chain, tokens, [surface(tok, target_vocab) for tok in tokens],
                          context)
        new = built.vectors
        initialized = np.array([mth != UNFILLED for mth in built.methods])
        if norm is not NormMatch.NONE and initialized.any():
            ref_norms = row_norms(vectors, finite)
            new = new.copy()
            new[initialized] = match_norms(new[initialized], ref_norms, method=norm)
        vectors[missing] = new
        for j, t in enumerate(missing):
            methods[t], sources[t], weights[t] = (built.methods[j], built.sources[j],
                                                  built.weights[j])

    meta: dict[str, str] = {key: table.metadata[key] for key in (SOURCE_DTYPE, "source")
                            if key in table.metadata}
    meta["target"] = target_vocab.source or "list"
    transformed = None
    if transforms is not None and not transforms.empty:
        live = np.asarray(vectors.any(axis=1), dtype=bool)  # (T,) rows to fit on
        if pad_row is not None:
            live[pad_row] = False
        transformed = apply_transforms(transforms, vectors, target_vocab, matching, live)
        vectors = transformed.vectors
        details["transforms"] = dict(transformed.details)
    if pad_row is not None:
        vectors[pad_row] = 0.0
        methods[pad_row], sources[pad_row], weights[pad_row] = PADDING, (), ()
        meta[PADDING_IDX] = str(pad_row)
    tokens_out = list(target_vocab.tokens)
    if pad_to_multiple_of is not None:
        extra = -rows % pad_to_multiple_of
        if extra:
            vectors = np.concatenate([vectors, np.zeros((extra, vectors.shape[1]),
                                                        dtype=vectors.dtype)])
            tokens_out += [placeholder_token(rows + i) for i in range(extra)]
            methods += [PLACEHOLDER] * extra
            sources += [()] * extra
            weights += [()] * extra
    # Built in float32; handed back in the source's dtype (float16 in, float16 out).
    aligned = EmbeddingTable(tokens_out, vectors.astype(table.vectors.dtype, copy=False), meta)

    counts: dict[str, int] = {}
    for name in _method_order(chain):
        n = methods.count(name)
        if n:
            counts[name] = n
    report = AlignmentReport(
        target=target_vocab.source or "list", source_family=plan.source_vocab.family.value,
        target_family=target_vocab.family.value, source_rows=len(table), rows=len(aligned),
        dim=aligned.dim, methods=counts, match=tuple(lv.value for lv in parse_levels(match)),
        init=tuple(m.value for m in chain), seed=seed, norm_match=norm.value,
        padding_idx=aligned.padding_idx, details=details)
    provenance = tuple(RowProvenance(i, tok, methods[i], sources[i], weights[i])
                       for i, tok in enumerate(tokens_out))
    return Alignment(aligned, report, provenance,
                     projection=transformed.projection if transformed else None,
                     linear_map=transformed.linear_map if transformed else None)


_FINITE_CHUNK = 16384  # rows per block


def finite_rows(matrix: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The ids in ``rows`` whose rows of ``matrix`` hold only finite values, in order.

    >>> finite_rows(np.array([[1.0], [np.nan], [2.0]]), np.array([2, 1, 0])).tolist()
    [2, 0]
    """
    keep = np.empty(len(rows), dtype=bool)  # (R,)
    for start in range(0, len(rows), _FINITE_CHUNK):
        block = matrix[rows[start:start + _FINITE_CHUNK]]  # (B, D), never a copy of the whole
        keep[start:start + len(block)] = np.isfinite(block).all(axis=1)
    return rows[keep]


def _method_order(chain: Sequence[InitMethod]) -> list[str]:
    """Match levels in the order tried, then the chain in its order, then the rest."""
    return [lv.value for lv in MatchLevel] + [m.value for m in chain] + [
        UNFILLED, PADDING, PLACEHOLDER]


def _padding_row(vocab: Vocabulary) -> int | None:
    token = vocab.special.get(SpecialRole.PAD)
    if token is None:
        return None
    # GPT-2 style vocabularies name <|endoftext|> as pad too; it is a real eos row, not padding.
    others = [r for r, t in vocab.special.items() if t == token and r is not SpecialRole.PAD]
    if others:
        return None
    return vocab.tokens.index(token)

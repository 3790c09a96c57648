"""The command line: parse, call the library, print. No logic of its own lives here.

Errors raised on purpose (``EmbsurgeonError``) become one line on stderr and exit 1; usage
errors exit 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from embsurgeon.errors import EmbsurgeonError
from embsurgeon.io.formats import (
    BY_NAME,
    DecodeErrors,
    DType,
    FormatName,
    ReadOptions,
    WriteOptions,
)

# Constants and Enums only: these modules import numpy, never torch, so --help stays fast.
from embsurgeon.similarity.backends import DEFAULT_BACKEND, Backend
from embsurgeon.similarity.check import (
    DEFAULT_ANCHORS,
    DEFAULT_QUICK_ANCHORS,
    DEFAULT_QUICK_SAMPLE,
    DEFAULT_SAMPLE,
    DEFAULT_SEED,
    DEFAULT_TOP_CHANGED,
)
from embsurgeon.similarity.csls import DEFAULT_CSLS
from embsurgeon.similarity.knn import (
    DEFAULT_DEVICE,
    DEFAULT_K,
    DEFAULT_MEMORY_BUDGET,
    DEFAULT_METRIC,
    DEFAULT_PRECISION,
    Device,
    Metric,
    Precision,
)
from embsurgeon.similarity.neighbors import DEFAULT_SEED as DEFAULT_RANDOM_SEED
from embsurgeon.stats import DEFAULT_SAMPLE_TOKENS

_FORMAT_CHOICE = click.Choice([f.value for f in FormatName])
# The formats the registry can write, in FormatName's order like --from.
_WRITE_CHOICE = click.Choice([f.value for f in FormatName if BY_NAME[f].write is not None])


class _Group(click.Group):
    """Turns library errors into one-line messages unless ``--debug`` was given."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (EmbsurgeonError, OSError) as exc:
            if ctx.params.get("debug"):
                raise
            message = str(exc) if isinstance(exc, EmbsurgeonError) else _os_message(exc)
            raise click.ClickException(message) from exc


def _os_message(exc: OSError) -> str:
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{exc.strerror or exc}"


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="embsurgeon")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or summaries on stderr.")
@click.pass_context
def cli(ctx: click.Context, debug: bool, quiet: bool) -> None:
    """Convert, align and check embedding matrices (word vectors and model checkpoints)."""
    ctx.obj = {"debug": debug, "quiet": quiet}


def _read_options(ctx: click.Context, **kwargs: Any) -> ReadOptions:
    return ReadOptions(progress=not ctx.obj["quiet"], **kwargs)


def read_options(f: Any) -> Any:
    """The reader options shared by every command that reads a table."""
    decorators = [
        click.option("--from", "from_", type=_FORMAT_CHOICE,
                     help="Input format, when the suffix and contents do not tell."),
        click.option("--tensor", metavar="NAME",
                     help="Checkpoint tensor to read, overriding embedding detection."),
        click.option("--encoding", default=ReadOptions.encoding, show_default=True,
                     help="Text encoding of word-vector files (e.g. gb18030)."),
        click.option("--decode-errors", type=click.Choice([e.value for e in DecodeErrors]),
                     default=ReadOptions.decode_errors.value, show_default=True,
                     help="Undecodable bytes: stop with an error, or replace them with U+FFFD."),
        click.option("--allow-nonfinite", is_flag=True,
                     help="Accept NaN/Inf values instead of stopping at the first one."),
        click.option("--allow-pickle", is_flag=True,
                     help="Allow gensim pickles (.kv/.model). Loading a pickle can run code: "
                          "only for files you trust."),
    ]
    for decorator in reversed(decorators):
        f = decorator(f)
    return f


def _options_from(ctx: click.Context, params: dict[str, Any], **extra: Any) -> ReadOptions:
    return _read_options(
        ctx,
        tensor=params["tensor"],
        encoding=params["encoding"],
        decode_errors=DecodeErrors(params["decode_errors"]),
        allow_nonfinite=params["allow_nonfinite"],
        allow_pickle=params["allow_pickle"],
        **extra,
    )


def _read(ctx: click.Context, src: Path, params: dict[str, Any], **extra: Any) -> Any:
    from embsurgeon.io.formats import read_table

    return read_table(src, params["from_"], _options_from(ctx, params, **extra))


def _say(ctx: click.Context, message: str) -> None:
    if not ctx.obj["quiet"]:
        click.echo(message, err=True)


@cli.command()
@click.argument("src", type=click.Path(path_type=Path))
@read_options
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--sample", type=click.IntRange(min=0), default=DEFAULT_SAMPLE_TOKENS,
              show_default=True, help="How many tokens to show.")
@click.pass_context
def inspect(ctx: click.Context, src: Path, as_json: bool, sample: int, **params: Any) -> None:
    """Show what SRC holds: format, shape, dtype, norms, sample tokens."""
    from embsurgeon.stats import summarize

    summary = summarize(_read(ctx, src, params), sample=sample)
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=2, ensure_ascii=False))
        return
    rows = [
        ("source", summary.source),
        ("format", summary.format),
        ("shape", f"{summary.rows} x {summary.dim}"),
        ("dtype", summary.dtype if summary.source_dtype == summary.dtype
         else f"{summary.source_dtype} (held as {summary.dtype})"),
    ]
    if summary.tensor:
        rows.append(("tensor", summary.tensor))
    if summary.padding_idx is not None:
        rows.append(("padding_idx", str(summary.padding_idx)))
    if summary.norms:
        n = summary.norms
        rows.append(("norms", f"min {n.min:.4g}  mean {n.mean:.4g}  median {n.median:.4g}  "
                              f"max {n.max:.4g}"))
    rows.append(("zero rows", str(summary.zero_rows)))
    rows.append(("non-finite rows", str(summary.nonfinite_rows)))
    rows.append(("duplicates dropped", str(summary.duplicates)))
    for key in ("vocabulary", "padding_rows", "decode_replaced"):
        if key in summary.metadata:
            rows.append((key.replace("_", " "), summary.metadata[key]))
    rows.append(("sample", " ".join(summary.sample)))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        click.echo(f"{key:<{width}}  {value}")


def _read_keep_file(path: Path) -> frozenset[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise click.ClickException(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    return frozenset(line.rstrip("\r") for line in text.split("\n") if line.strip())


def _check_init(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from embsurgeon.align.api import parse_init

    try:
        parse_init(value)
    except EmbsurgeonError as exc:
        raise click.BadParameter(str(exc), ctx, param) from exc
    return value


def _check_match(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from embsurgeon.align.match import parse_levels

    try:
        parse_levels(value)
    except EmbsurgeonError as exc:
        raise click.BadParameter(str(exc), ctx, param) from exc
    return value


def _check_override(ctx: click.Context, param: click.Parameter,
                    value: tuple[str, ...]) -> dict[str, str]:
    from embsurgeon.align.match import parse_override

    try:
        return dict(parse_override(v) for v in value)
    except EmbsurgeonError as exc:
        raise click.BadParameter(str(exc), ctx, param) from exc


class _AlignmentOption(click.Option):
    """An option of ``convert`` that only means something when aligning (--target/--map-to)."""


def alignment_options(f: Any) -> Any:
    """The options of ``convert`` that align onto a target vocabulary (``--target``)."""
    # Light modules (numpy only), so --help stays fast; defaults are the library's own.
    from embsurgeon.align.api import AUTO, DEFAULT_INIT, DEFAULT_SEED
    from embsurgeon.align.init import (
        DEFAULT_K,
        DEFAULT_TEMPERATURE,
        DEFAULT_WEIGHTING,
        InitMethod,
        Weighting,
    )
    from embsurgeon.align.match import DEFAULT_MATCH, MATCH_LEVELS
    from embsurgeon.align.norms import DEFAULT_NORM_MATCH, NormMatch
    from embsurgeon.align.transform import (
        DEFAULT_MAP_METHOD,
        DEFAULT_NORMALIZATION,
        MapMethod,
        Normalization,
    )

    def option(*names: str, **attrs: Any) -> Any:
        return click.option(*names, cls=_AlignmentOption, **attrs)

    init_choices = ", ".join(m.value for m in InitMethod)
    existing = click.Path(exists=True, path_type=Path)
    decorators = [
        option("--target", type=existing, metavar="VOCAB",
               help="Align onto this vocabulary: a tokenizer (directory, tokenizer.json, "
                    "vocab.txt, SentencePiece .model), a word list, a 'token count' "
                    "file, or another embedding table. Rows follow its id order."),
        option("--source-tokenizer", type=existing, metavar="PATH",
               help="The tokenizer that belongs to SRC, when SRC is not a model "
                    "directory holding one (otherwise the family is guessed)."),
        option("--init", "init", default=",".join(m.value for m in DEFAULT_INIT),
               show_default=True, callback=_check_init,
               metavar="CHAIN", help="How to build target rows the source lacks, tried "
               f"in order: comma-separated from {init_choices}, or '{AUTO}' (the chain "
               "that best rebuilds held-out shared rows of SRC)."),
        option("--aux", type=existing, metavar="TABLE",
               help="Auxiliary table covering source and target tokens, for knn/omp."),
        option("--k", "k", type=click.IntRange(min=1), default=DEFAULT_K,
               show_default=True, help="Neighbours (knn) or atoms (omp) per new row."),
        option("--temperature", type=click.FloatRange(min=0, min_open=True),
               default=DEFAULT_TEMPERATURE, show_default=True,
               help="knn weighting temperature."),
        option("--weighting", type=click.Choice([w.value for w in Weighting]),
               default=DEFAULT_WEIGHTING.value, show_default=True,
               help="knn neighbour weights."),
        option("--match", "match", default=",".join(lv.value for lv in DEFAULT_MATCH),
               show_default=True, callback=_check_match, metavar="LEVELS",
               help="Match levels allowed, comma-separated, from "
                    f"{', '.join(lv.value for lv in MATCH_LEVELS)}."),
        option("--map", "overrides", multiple=True, metavar="TARGET=SOURCE",
               callback=_check_override,
               help="Force target token TARGET to copy source row SOURCE (repeatable)."),
        option("--map-file", type=existing, metavar="FILE",
               help="File of TARGET=SOURCE (or tab-separated) overrides, one a line."),
        option("--norm-match", type=click.Choice([n.value for n in NormMatch]),
               default=DEFAULT_NORM_MATCH.value, show_default=True,
               help="Rescale initialized rows onto the norms of copied rows."),
        option("--seed", type=int, default=DEFAULT_SEED, show_default=True,
               help="Seed for sampling (normal, mvn, validation)."),
        option("--validate", is_flag=True,
               help="Hide a sample of shared tokens, rebuild them with each method of "
                    "--init, and report mean cosine and norm error."),
        option("--report", "report_file", type=click.Path(path_type=Path),
               metavar="FILE", help="Also write the alignment report as JSON here."),
        option("--pad-to-multiple-of", type=click.IntRange(min=1), metavar="N",
               help="Append zero placeholder rows up to a multiple of N rows."),
        option("--map-to", type=existing, metavar="MODEL",
               help="Learn a linear map from the copied rows onto MODEL's own embedding "
                    "rows for the same tokens and apply it to every row (output in "
                    "MODEL's space; the target defaults to MODEL's vocabulary)."),
        option("--map-method", type=click.Choice([m.value for m in MapMethod]),
               default=DEFAULT_MAP_METHOD.value, show_default=True,
               help="The --map-to map: orthogonal Procrustes or least squares."),
        option("--remove-top", type=click.IntRange(min=0), metavar="N",
               help="All-but-the-top: remove the mean and the top N principal "
                    "directions (N ~ dim/100)."),
        option("--dim", type=click.IntRange(min=1), metavar="N",
               help="Reduce to N dimensions with PCA; the fitted PCA is saved as "
                    "OUT.pca.safetensors for reuse with --pca."),
        option("--whiten", is_flag=True,
               help="Scale the PCA components to unit variance."),
        option("--pca", "pca_file", type=existing, metavar="FILE",
               help="Apply a PCA saved by an earlier run instead of fitting one."),
        option("--normalize", type=click.Choice([n.value for n in Normalization]),
               default=DEFAULT_NORMALIZATION.value, show_default=True,
               help="Row normalization, applied last."),
        option("--no-stream", is_flag=True,
               help="Read every source row, not only those the target can use."),
    ]
    for decorator in reversed(decorators):
        f = decorator(f)
    return f


@cli.command()
@click.argument("src", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@read_options
@click.option("--to", "to", type=_WRITE_CHOICE,
              help="Output format, when the suffix does not tell (default by suffix: "
                   ".safetensors, .pt, .vec/.txt word2vec text, .bin word2vec binary).")
@click.option("--dtype", type=click.Choice([d.value for d in DType]),
              help="Output dtype for state dicts (default: the source dtype).")
@click.option("--limit", type=click.IntRange(min=1), metavar="N", help="Keep the first N rows.")
@click.option("--keep", "keep_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="File of tokens to keep, one a line; other rows are dropped while reading.")
@click.option("-f", "--force", is_flag=True, help="Overwrite existing output files.")
@alignment_options
@click.option("--check", "run_check", is_flag=True,
              help="After writing, show neighbour lists and the overlap summary between the "
                   "table read and the table written.")
@click.pass_context
def convert(ctx: click.Context, src: Path, out: Path, to: str | None, dtype: str | None,
            limit: int | None, keep_file: Path | None, force: bool, run_check: bool,
            **params: Any) -> None:
    """Convert SRC (any supported format) to OUT (format from --to or the suffix).

    With --target, the rows are aligned onto that vocabulary: matched tokens are copied, the
    others built by the --init chain; a report and OUT.provenance.jsonl say how each row was
    made. The alignment options below need --target (or --map-to).
    """
    from embsurgeon.io.atomic import check_writable
    from embsurgeon.io.formats import output_format, write_table

    aligning = params["target"] is not None or params["map_to"] is not None
    if not aligning:
        _refuse_alignment_options(ctx)
    fmt = output_format(out, to)  # fail on a bad output before a long read
    check_writable([out], force=force)
    keep = _read_keep_file(keep_file) if keep_file else None
    if aligning:
        table = _convert_aligned(ctx, src, out, fmt.name.value, dtype, limit, keep, force,
                                 params)
    else:
        table = _read(ctx, src, params, limit=limit, keep=keep)
        written = write_table(table, out, fmt.name, WriteOptions(
            dtype=DType(dtype) if dtype else None, force=force, progress=not ctx.obj["quiet"]))
        _say(ctx, f"wrote {len(table)} x {table.dim} ({fmt.name.value}) to "
                  + ", ".join(str(p) for p in written))
    if run_check:
        _convert_check(table, out, fmt)


def _refuse_alignment_options(ctx: click.Context) -> None:
    """Alignment options without --target/--map-to would be ignored: say so instead."""
    given = [p.opts[0] for p in ctx.command.params
             if isinstance(p, _AlignmentOption) and p.name is not None
             and ctx.get_parameter_source(p.name) is not ParameterSource.DEFAULT]
    if given:
        names = given[0] if len(given) == 1 else f"{', '.join(given[:-1])} and {given[-1]}"
        verbs = "applies" if len(given) == 1 else "apply"
        raise click.UsageError(f"{names} only {verbs} when aligning: add --target VOCAB (or "
                               "--map-to MODEL), or leave them out", ctx)


def _convert_aligned(ctx: click.Context, src: Path, out: Path, to: str, dtype: str | None,
                     limit: int | None, keep: frozenset[str] | None, force: bool,
                     params: dict[str, Any]) -> Any:
    """``convert --target``: the library's align_file, then the summary lines; returns the
    table read (for --check)."""
    from embsurgeon.align.files import align_file
    from embsurgeon.align.match import read_overrides
    from embsurgeon.align.postprocess import Transforms, load_projection

    overrides = dict(read_overrides(params["map_file"])) if params["map_file"] else {}
    overrides.update(params["overrides"])
    transforms = Transforms(
        map_method=params["map_method"], remove_top=params["remove_top"], dim=params["dim"],
        whiten=params["whiten"], normalize=params["normalize"], seed=params["seed"],
        pca=load_projection(params["pca_file"]) if params["pca_file"] else None)
    done = align_file(
        src, out, params["target"],
        read=_options_from(ctx, params, limit=limit, keep=keep),
        write=WriteOptions(dtype=DType(dtype) if dtype else None, force=force,
                           progress=not ctx.obj["quiet"]),
        from_=params["from_"], to=to, source_tokenizer=params["source_tokenizer"],
        aux=params["aux"], map_to=params["map_to"], transforms=transforms,
        stream=not params["no_stream"], report_file=params["report_file"],
        init=params["init"], match=params["match"], overrides=overrides, k=params["k"],
        temperature=params["temperature"], weighting=params["weighting"],
        norm_match=params["norm_match"], seed=params["seed"], validate=params["validate"],
        pad_to_multiple_of=params["pad_to_multiple_of"])
    report = done.alignment.report.to_dict()
    mapped = report.get("transforms", {}).get("map_to")
    if mapped:
        _say(ctx, f"map-to {mapped['method']}: {mapped['anchors']} anchors, held-out cosine "
                  f"{mapped['heldout_cosine']}")
    for chain in (report.get("validation") or {}).get("chains", ()):
        error = chain["norm_error"] if chain["norm_error"] is not None else "-"
        _say(ctx, f"validate {chain['chain']:<28} cosine {chain['mean_cosine']:.3f}  "
                  f"coverage {chain['coverage']:.2f}  norm error {error}")
    table = done.alignment.table
    _say(ctx, f"aligned {done.alignment.report.summary()}")
    _say(ctx, f"wrote {len(table)} x {table.dim} to " + ", ".join(map(str, done.written)))
    return done.source


@cli.command()
@click.argument("table_path", metavar="TABLE", type=click.Path(path_type=Path))
@click.argument("model", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@read_options
@click.option("--into", "into", metavar="NAME",
              help="Checkpoint tensor to replace, overriding embedding detection.")
@click.option("--dtype", type=click.Choice([d.value for d in DType]),
              help="Stored dtype (default: the checkpoint's own).")
@click.option("--tokenizer", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Directory whose tokenizer files replace the model's (new vocabulary).")
@click.option("-f", "--force", is_flag=True, help="Overwrite OUT if it exists.")
@click.pass_context
def transplant(ctx: click.Context, table_path: Path, model: Path, out: Path, into: str | None,
               dtype: str | None, tokenizer: Path | None, force: bool, **params: Any) -> None:
    """Write TABLE into a copy of the Hugging Face checkpoint MODEL, as directory OUT.

    TABLE's rows must follow the model tokenizer's ids (align first with
    `convert SRC TABLE --target MODEL`); a different row count resizes the model.
    """
    from embsurgeon.surgery import transplant as run_transplant

    table = _read(ctx, table_path, params)
    report = run_transplant(table, model, out, tensor=into, dtype=dtype, tokenizer=tokenizer,
                            force=force)
    head = f", head {report.head}" if report.head else ""
    _say(ctx, f"wrote {report.rows} x {report.dim} ({report.dtype}) into {report.tensor}{head}; "
              f"rewrote {', '.join(report.rewritten)}; model in {out}")


# -- similarity ---------------------------------------------------------------------------------

def search_options(*, precision: bool) -> Any:
    """Options shared by the commands that run nearest-neighbour searches."""
    decorators = [
        click.option("--device", type=click.Choice([d.value for d in Device]),
                     default=DEFAULT_DEVICE.value, show_default=True,
                     help="Where to search; auto uses CUDA when torch sees a device."),
        click.option("--memory-budget", "memory_mb", type=click.IntRange(min=1),
                     default=DEFAULT_MEMORY_BUDGET // 2**20, show_default=True, metavar="MB",
                     help="Working memory for score tiles, in MiB (besides the tables)."),
    ]
    if precision:
        decorators.insert(1, click.option(
            "--precision", type=click.Choice([p.value for p in Precision]),
            default=DEFAULT_PRECISION.value, show_default=True,
            help="Matmul precision; float16/bfloat16 only on CUDA."))

    def apply(f: Any) -> Any:
        for decorator in reversed(decorators):
            f = decorator(f)
        return f

    return apply


def _print_neighbors(neighbors: Any, *, indent: str = "",
                     composed: dict[str, tuple[str, ...]] | None = None) -> None:
    for i, query in enumerate(neighbors.queries):
        pieces = (composed or {}).get(query) if neighbors.query_ids[i] < 0 else None
        click.echo(f"{indent}{query}" + (f"  (composed: {' + '.join(pieces)})" if pieces
                                         else ""))
        width = max((len(t) for t in neighbors.tokens[i]), default=0)
        for rank, (token, score) in enumerate(zip(neighbors.tokens[i], neighbors.scores[i],
                                                  strict=True), 1):
            click.echo(f"{indent}  {rank:>3}  {token:<{width}}  {score:.4f}")


@cli.command()
@click.argument("src", type=click.Path(path_type=Path))
@click.argument("tokens", nargs=-1)
@read_options
@click.option("-k", "k", type=click.IntRange(min=1), default=DEFAULT_K, show_default=True,
              help="Neighbours per query.")
@click.option("--random", "random_n", type=click.IntRange(min=1), metavar="N",
              help="Also query N random tokens.")
@click.option("--seed", type=int, default=DEFAULT_RANDOM_SEED, show_default=True,
              help="Seed for --random.")
@click.option("--metric", type=click.Choice([m.value for m in Metric]),
              default=DEFAULT_METRIC.value, show_default=True,
              help="Score: cosine similarity or raw dot product.")
@click.option("--backend", type=click.Choice([b.value for b in Backend]),
              default=DEFAULT_BACKEND.value, show_default=True,
              help="Search engine; faiss needs the 'faiss' extra.")
@click.option("--include-self", is_flag=True, help="Let a token be its own first neighbour.")
@click.option("--against", type=click.Path(path_type=Path), metavar="TABLE",
              help="Search the rows of TABLE (same dimension) instead of SRC's own rows "
                   "(cosine or CSLS on the torch backend; --metric, --backend and "
                   "--include-self do not apply).")
@click.option("--csls/--no-csls", default=DEFAULT_CSLS, show_default=True,
              help="With --against: rank by CSLS, which damps hub rows, or by plain cosine.")
@click.option("--compose/--no-compose", default=True, show_default=True,
              help="Build tokens SRC lacks from its subword pieces (or known words).")
@click.option("--source-tokenizer", type=click.Path(exists=True, path_type=Path),
              metavar="PATH", help="SRC's tokenizer, for --compose (a directory SRC is found "
                                   "by itself).")
@search_options(precision=True)
@click.option("--json", "as_json", is_flag=True, help="Print the neighbours as JSON.")
@click.pass_context
def neighbors(ctx: click.Context, src: Path, tokens: tuple[str, ...], k: int,
              random_n: int | None, seed: int, metric: str, backend: str, include_self: bool,
              against: Path | None, csls: bool, compose: bool, source_tokenizer: Path | None,
              device: str, precision: str, memory_mb: int, as_json: bool,
              **params: Any) -> None:
    """Show the nearest neighbours of TOKEN... in SRC (exact search, GPU when available).

    A token SRC lacks is composed from its subword pieces when it can be (--no-compose
    turns that off); otherwise the command stops with the closest spellings SRC has.
    """
    from embsurgeon.similarity.csls import cross_neighbors
    from embsurgeon.similarity.neighbors import SubwordComposer, nearest_neighbors, random_rows
    from embsurgeon.vocab import find_tokenizer_file

    if not tokens and not random_n:
        raise click.UsageError("give TOKEN arguments, --random N, or both")
    given = [name for name in ("metric", "backend", "include_self", "csls")
             if ctx.get_parameter_source(name) is not ParameterSource.DEFAULT]
    if against is None and "csls" in given:
        raise click.UsageError("--csls/--no-csls compare two spaces; give the other with "
                               "--against", ctx)
    ignored = [f"--{name.replace('_', '-')}" for name in given if name != "csls"]
    if against is not None and ignored:
        raise click.UsageError(f"--against ranks by cosine or CSLS on the torch backend; "
                               f"drop {', '.join(ignored)}", ctx)
    table = _read(ctx, src, params)
    queries: list[str | int] = list(tokens)
    if random_n:
        queries.extend(random_rows(table, random_n, seed))
    budget = memory_mb * 2**20
    composer = None
    if compose and any(t not in table.index for t in tokens):
        tokenizer = source_tokenizer
        if tokenizer is None and src.is_dir() and find_tokenizer_file(src) is not None:
            tokenizer = src
        composer = SubwordComposer(table, None if tokenizer is None else str(tokenizer))
    if against is not None:
        result = cross_neighbors(table, _read(ctx, against, params), queries, k, csls=csls,
                                 device=device, precision=precision, memory_budget=budget,
                                 compose=composer)
    else:
        result = nearest_neighbors(table, queries, k, metric=metric, device=device,
                                   precision=precision, backend=backend,
                                   include_self=include_self, memory_budget=budget,
                                   compose=composer)
    pieces = composer.pieces if composer is not None else {}
    if as_json:
        entries = result.to_dict()
        for entry in entries:
            if entry["query"] in pieces:
                entry["composed_from"] = list(pieces[entry["query"]])
        click.echo(json.dumps(entries, indent=2, ensure_ascii=False))
    else:
        _print_neighbors(result, composed=pieces)


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def _summary_line(summary: Any) -> str:
    if not summary.count:
        return "n/a (every sampled row is constant or zero)"
    return (f"mean {_fmt(summary.mean)}  median {_fmt(summary.median)}  "
            f"p10 {_fmt(summary.p10)}  min {_fmt(summary.min)}  ({summary.count} tokens)")


def _print_report(report: Any, before: str, after: str, *, changed: bool = True) -> None:
    n = report.norms
    rows: list[tuple[str, str]] = [
        ("before", f"{before}: {report.before_rows} x {report.before_dim}"),
        ("after", f"{after}: {report.after_rows} x {report.after_dim}"),
        ("shared tokens", f"{report.common_tokens} ({len(report.overlaps)} checked, "
                          f"{report.anchors} anchors)"),
        (f"overlap@{report.k}", _summary_line(report.overlap)
         + f"  chance {report.chance_overlap:.3f}"
         + ("" if report.requested_k is None else
            f"  (k reduced from {report.requested_k}: {report.common_tokens} shared tokens)")),
        ("anchor spearman", _summary_line(report.anchor_spearman)),
    ]
    for label, stats, count in (("copied norms", n.copied, n.copied_rows),
                                ("initialized norms", n.initialized, n.initialized_rows)):
        rows.append((label, "no rows" if stats is None else
                     f"mean {stats.mean:.4g}  median {stats.median:.4g}  min {stats.min:.4g}  "
                     f"max {stats.max:.4g}  ({count} rows)"))
    rows.append(("norm ratio", f"{_fmt(n.ratio)} initialized/copied "
                               f"(rows classified by {n.origin.value})"))
    for b, a in report.similarity:
        rows.append((f"similarity {Path(b.file).name}",
                     f"spearman before {_fmt(b.spearman)}  after {_fmt(a.spearman)}  "
                     f"(pairs {b.pairs} / {a.pairs}, oov {b.oov} / {a.oov})"))
    for b, a in report.analogies:
        rows.append((f"analogies {Path(b.file).name}",
                     f"accuracy before {_fmt(b.accuracy)}  after {_fmt(a.accuracy)}  "
                     f"(questions {b.total} / {a.total})"))
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        click.echo(f"{key:<{width}}  {value}")
    if changed and report.most_changed:
        click.echo("\nmost changed (overlap, spearman): before -> after neighbours")
        for c in report.most_changed:
            click.echo(f"  {c.token}  ({c.overlap:.2f}, {_fmt(c.spearman, '.2f')})")
            click.echo(f"      before: {' '.join(c.before)}")
            click.echo(f"      after:  {' '.join(c.after)}")
    if report.initialized_examples:
        click.echo("\ninitialized rows and their neighbours in AFTER")
        for e in report.initialized_examples:
            click.echo(f"  {e.token} ({e.method}): {' '.join(e.neighbors)}")


def _provenance_for(after_path: Path, table: Any) -> Any:
    from embsurgeon.io.state_dict import provenance_path
    from embsurgeon.similarity.check import read_provenance

    sidecar = provenance_path(after_path)
    return read_provenance(sidecar, table) if sidecar.is_file() else None


@cli.command()
@click.argument("before", type=click.Path(path_type=Path))
@click.argument("after", type=click.Path(path_type=Path))
@read_options
@click.option("-k", "k", type=click.IntRange(min=1), default=DEFAULT_K, show_default=True,
              help="Neighbourhood size for overlap@k; at most half the other shared tokens, "
                   "longer lists would agree by chance.")
@click.option("--sample", type=click.IntRange(min=0), default=DEFAULT_SAMPLE, show_default=True,
              help="Shared tokens to check (0: all).")
@click.option("--anchors", type=click.IntRange(min=2), default=DEFAULT_ANCHORS,
              show_default=True, help="Anchor tokens for the similarity-order (Spearman) check.")
@click.option("--top", "top_changed", type=click.IntRange(min=0), default=DEFAULT_TOP_CHANGED,
              show_default=True, help="How many of the most changed tokens to list.")
@click.option("--seed", type=int, default=DEFAULT_SEED, show_default=True, help="Sampling seed.")
@click.option("--similarity", "similarity_files", multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Word-pair file (SimLex-999, WordSim-353): Spearman before and after.")
@click.option("--analogies", "analogy_files", multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Analogy file (word2vec questions-words.txt): accuracy before and after.")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE.png",
              help="Draw norm histograms and the overlap distribution (needs matplotlib).")
@search_options(precision=False)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def check(ctx: click.Context, before: Path, after: Path, k: int, sample: int, anchors: int,
          top_changed: int, seed: int, similarity_files: tuple[Path, ...],
          analogy_files: tuple[Path, ...], plot: Path | None, device: str, memory_mb: int,
          as_json: bool, **params: Any) -> None:
    """Compare the neighbourhoods of BEFORE and AFTER: did the conversion keep the space sane?

    The tables may differ in size and dimension. AFTER's provenance sidecar
    (AFTER.provenance.jsonl), when present, tells copied rows from initialized ones.
    """
    from embsurgeon.similarity.check import check_tables

    old = _read(ctx, before, params)
    new = _read(ctx, after, params)
    report = check_tables(old, new, k=k, sample=sample, anchors=anchors,
                          top_changed=top_changed, seed=seed,
                          provenance=_provenance_for(after, new),
                          similarity_files=similarity_files, analogy_files=analogy_files,
                          device=device, memory_budget=memory_mb * 2**20)
    if plot is not None:
        from embsurgeon.similarity.plot import save_check_plot

        _say(ctx, f"wrote {save_check_plot(report, plot)}")
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        _print_report(report, str(before), str(after))


def _convert_check(table: Any, out: Path, fmt: Any) -> None:
    """``convert --check``: re-read what was written and compare it with what was read."""
    from embsurgeon.io.formats import read_table
    from embsurgeon.similarity.check import check_tables
    from embsurgeon.similarity.neighbors import nearest_neighbors, random_rows

    written = read_table(out, fmt.name)
    report = check_tables(table, written, sample=DEFAULT_QUICK_SAMPLE,
                          anchors=DEFAULT_QUICK_ANCHORS, top_changed=0, reduce_k=True,
                          provenance=_provenance_for(out, written))
    shown = [written.tokens[r] for r in random_rows(written, 3)
             if written.tokens[r] in table.index]
    if shown:
        click.echo("neighbours before -> after")
        for label, t in (("read", table), ("written", written)):
            click.echo(f"[{label}]")
            _print_neighbors(nearest_neighbors(t, shown, 5), indent="  ")
    _print_report(report, "read", str(out), changed=False)


def main() -> None:
    """Console entry point."""
    cli(prog_name="embsurgeon")


if __name__ == "__main__":  # pragma: no cover
    main()

"""The command line: parse, call the library, print. No logic of its own lives here.

Errors raised on purpose (``EmbsurgeonError``) become one line on stderr and exit 1; usage
errors exit 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from embsurgeon.errors import EmbsurgeonError
from embsurgeon.io.formats import DecodeErrors, DType, FormatName, ReadOptions, WriteOptions

_FORMAT_CHOICE = click.Choice([f.value for f in FormatName])
_WRITE_CHOICE = click.Choice([f.value for f in FormatName if f.value not in
                              ("hf", "fasttext-bin", "gensim")])


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
@click.option("--sample", default=10, show_default=True, help="How many tokens to show.")
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
@click.pass_context
def convert(ctx: click.Context, src: Path, out: Path, to: str | None, dtype: str | None,
            limit: int | None, keep_file: Path | None, force: bool, **params: Any) -> None:
    """Convert SRC (any supported format) to OUT (format from --to or the suffix)."""
    from embsurgeon.io.atomic import check_writable
    from embsurgeon.io.formats import output_format, write_table

    fmt = output_format(out, to)  # fail on a bad output before a long read
    check_writable([out], force=force)
    keep = _read_keep_file(keep_file) if keep_file else None
    table = _read(ctx, src, params, limit=limit, keep=keep)
    written = write_table(table, out, fmt.name, WriteOptions(
        dtype=DType(dtype) if dtype else None, force=force, progress=not ctx.obj["quiet"]))
    _say(ctx, f"wrote {len(table)} x {table.dim} ({fmt.name.value}) to "
              + ", ".join(str(p) for p in written))


@cli.command()
@click.argument("table_path", metavar="TABLE", type=click.Path(path_type=Path))
@click.argument("model", type=click.Path(exists=True, path_type=Path))
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


def main() -> None:
    """Console entry point."""
    cli(prog_name="embsurgeon")


if __name__ == "__main__":  # pragma: no cover
    main()

"""Write docs/cli.md from the commands' own help, so the reference cannot drift from the code.

    python docs/make_cli_reference.py          # rewrite docs/cli.md
    (tests/test_docs.py fails when the committed file differs from what this prints)
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from embsurgeon.cli import cli  # noqa: E402  (after the path tweak, for running from a checkout)

WIDTH = 100
INTRO = """# Command reference

Generated from the commands' `--help` by `docs/make_cli_reference.py`; run it after changing an
option (a test checks this file is current). Common behaviour: errors are one line and exit 1,
usage errors exit 2, `--debug` (before the command) shows tracebacks, `-q` silences progress
and summaries; outputs are written atomically and never overwritten without `--force`.
"""


def _help(command: click.Command, name: str, parent: click.Context | None) -> str:
    ctx = click.Context(command, info_name=name, parent=parent, terminal_width=WIDTH,
                        max_content_width=WIDTH, help_option_names=["-h", "--help"])
    return command.get_help(ctx)


def render() -> str:
    root = click.Context(cli, info_name="embsurgeon", terminal_width=WIDTH,
                         max_content_width=WIDTH)
    parts = [INTRO, "## embsurgeon\n", "```text", _help(cli, "embsurgeon", None), "```\n"]
    for name in sorted(cli.commands):  # type: ignore[attr-defined]
        parts += [f"## embsurgeon {name}\n", "```text",
                  _help(cli.commands[name], name, root), "```\n"]  # type: ignore[attr-defined]
    return "\n".join(parts)


if __name__ == "__main__":
    (ROOT / "docs" / "cli.md").write_text(render(), encoding="utf-8")

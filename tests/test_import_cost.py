"""`import embsurgeon` and `embsurgeon --help` must not import the heavy libraries."""

import subprocess
import sys

HEAVY = ("torch", "gensim", "transformers", "sklearn", "safetensors", "tokenizers", "faiss")


def test_cli_help_imports_nothing_heavy():
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from embsurgeon.cli import cli\n"
        "for args in (['--help'], ['convert', '--help'], ['inspect', '--help']):\n"
        "    assert CliRunner().invoke(cli, args).exit_code == 0\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""

"""`import embsurgeon` and `embsurgeon --help` must not import the heavy libraries."""

import subprocess
import sys

HEAVY = ("torch", "gensim", "transformers", "sklearn", "safetensors", "tokenizers", "faiss",
         "matplotlib", "scipy")
COMMANDS = ([], ["convert"], ["inspect"], ["neighbors"], ["check"], ["transplant"])


def test_cli_help_imports_nothing_heavy():
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from embsurgeon.cli import cli\n"
        f"for args in {COMMANDS!r}:\n"
        "    result = CliRunner().invoke(cli, [*args, '--help'])\n"
        "    assert result.exit_code == 0 and 'Usage:' in result.output, (args, result.output)\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""

"""Documentation that must stay true to the code."""

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _load_reference_module():
    spec = importlib.util.spec_from_file_location("make_cli_reference",
                                                  ROOT / "docs" / "make_cli_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_is_current():
    expected = _load_reference_module().render()
    current = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert current == expected, "docs/cli.md is stale: run python docs/make_cli_reference.py"


def test_readme_links_exist():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for link in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (ROOT / link).is_file(), link


def test_readme_commands_exist():
    from embsurgeon.cli import cli

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    used = set(re.findall(r"^embsurgeon (\w+)", readme, re.M))
    assert used <= set(cli.commands), used - set(cli.commands)

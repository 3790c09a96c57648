"""The CLI shell: error handling, exit codes, --debug, --force, python -m."""

import re
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from embsurgeon import write_table
from embsurgeon.cli import cli
from embsurgeon.table import EmbeddingTable


@pytest.fixture
def emb(tmp_path):
    path = tmp_path / "emb.safetensors"
    table = EmbeddingTable(["a", "b", "c"], np.eye(3, dtype=np.float32), {"padding_idx": "0"})
    write_table(table, path)
    return path


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_inspect_prints_shape_and_norms(emb):
    result = run("inspect", emb)
    assert result.exit_code == 0, result.output
    assert "3 x 3" in result.output
    assert re.search(r"^padding_idx\s+0$", result.output, re.M)
    assert re.search(r"^norms\s+min 1 ", result.output, re.M)


def test_inspect_json(emb):
    import json

    result = run("inspect", emb, "--json")
    data = json.loads(result.output)
    assert data["rows"] == 3 and data["dim"] == 3 and data["format"] == "safetensors"


def test_convert_between_state_dict_formats(emb, tmp_path):
    out = tmp_path / "out.pt"
    result = run("convert", emb, out, "--dtype", "float16")
    assert result.exit_code == 0, result.output
    assert "wrote 3 x 3 (pt)" in result.output
    back = run("inspect", out, "--json")
    assert '"source_dtype": "float16"' in back.output


def test_user_error_is_one_line_exit_1(tmp_path):
    result = run("inspect", tmp_path / "missing.vec")
    assert result.exit_code == 1
    assert result.output.strip().count("\n") == 0
    assert "missing.vec" in result.output and "Traceback" not in result.output


def test_debug_shows_the_exception(tmp_path):
    result = run("--debug", "inspect", tmp_path / "missing.vec")
    assert result.exit_code == 1
    assert result.exception is not None


def test_refuses_to_overwrite_without_force(emb, tmp_path):
    out = tmp_path / "out.safetensors"
    assert run("convert", emb, out).exit_code == 0
    again = run("convert", emb, out)
    assert again.exit_code == 1
    assert "already exists; pass --force" in again.output
    assert run("convert", emb, out, "--force").exit_code == 0


def test_unknown_output_suffix(emb, tmp_path):
    result = run("convert", emb, tmp_path / "out.xyz")
    assert result.exit_code == 1
    assert "pass --to NAME" in result.output
    assert not (tmp_path / "out.xyz").exists()


def test_usage_error_exits_2(emb):
    assert run("convert", emb).exit_code == 2
    assert run("inspect", emb, "--from", "nonsense").exit_code == 2


def test_keep_and_limit(emb, tmp_path):
    keep = tmp_path / "keep.txt"
    keep.write_text("c\na\nzzz\n")
    out = tmp_path / "kept.safetensors"
    assert run("convert", emb, out, "--keep", keep).exit_code == 0
    assert (tmp_path / "kept.vocab.txt").read_text() == "a\nc\n"
    out2 = tmp_path / "first.safetensors"
    assert run("convert", emb, out2, "--limit", "2").exit_code == 0
    assert (tmp_path / "first.vocab.txt").read_text() == "a\nb\n"


def test_unwritable_output_directory(emb, tmp_path):
    result = run("convert", emb, tmp_path / "no" / "such" / "out.safetensors")
    assert result.exit_code == 1
    assert "does not exist; create it first" in result.output


def test_python_dash_m():
    out = subprocess.run([sys.executable, "-m", "embsurgeon", "--help"], capture_output=True,
                         text=True, check=True)
    assert "convert" in out.stdout and "inspect" in out.stdout


def test_inspect_sample_count(emb):
    assert run("inspect", emb, "--sample", "2").output.splitlines()[-1].split() == [
        "sample", "a", "b"]
    result = run("inspect", emb, "--sample", "-5")
    assert result.exit_code == 2 and "-5 is not in the range x>=0" in result.output


@pytest.mark.parametrize(("args", "named"), [
    (["--dim", "2", "--normalize", "l2", "--no-stream"], "--dim, --normalize and --no-stream"),
    (["--seed", "0"], "--seed only applies"),  # given, even though it equals the default
    (["--report", "r.json"], "--report only applies"),
    (["--init", "mean", "--validate", "--pad-to-multiple-of", "8"],
     "--init, --validate and --pad-to-multiple-of"),
])
def test_convert_refuses_alignment_options_without_a_target(emb, tmp_path, args, named):
    out = tmp_path / "out.vec"
    result = run("convert", emb, out, *args)
    assert result.exit_code == 2, result.output
    assert named in result.output
    assert "when aligning: add --target VOCAB (or --map-to MODEL), or leave them out" in (
        result.output)
    assert not out.exists()


def test_convert_output_formats_are_the_writable_ones(emb, tmp_path):
    from embsurgeon.io.formats import FORMATS

    writable = {f.name.value for f in FORMATS if f.write is not None}
    help_text = run("convert", "--help").output
    listed = re.search(r"--to \[([^\]]+)\]", help_text)
    assert listed is not None and set(listed.group(1).split("|")) == writable
    result = run("convert", emb, tmp_path / "x", "--to", "gensim")
    assert result.exit_code == 2 and "'gensim' is not one of" in result.output

import json

import numpy as np
import pytest
from click.testing import CliRunner

from embsurgeon import write_table
from embsurgeon.cli import cli
from embsurgeon.table import EmbeddingTable

RNG = np.random.default_rng(4)
TOKENS = ["king", "queen", "man", "woman", "北京", "上海", "##ing", "apple", "banana", "cherry"]


@pytest.fixture
def tables(tmp_path):
    base = RNG.standard_normal((10, 8)).astype(np.float32)
    before = tmp_path / "before.safetensors"
    write_table(EmbeddingTable(TOKENS, base), before)
    changed = base.copy()
    changed[7:] = RNG.standard_normal((3, 8))
    after = tmp_path / "after.safetensors"
    write_table(EmbeddingTable([*TOKENS, "grape"],
                               np.vstack([changed, RNG.standard_normal((1, 8))]).astype(
                                   np.float32)), after)
    return before, after


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_neighbors_text_and_json(tables):
    before, _ = tables
    result = invoke("neighbors", before, "king", "北京", "-k", "3", "--device", "cpu")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "king" and lines[4] == "北京" and len(lines) == 8
    assert lines[1].split()[0] == "1" and "king" not in lines[1:4]
    data = json.loads(invoke("neighbors", before, "king", "--json", "-k", "2").output)
    assert data[0]["query"] == "king" and len(data[0]["neighbors"]) == 2


def test_neighbors_random_and_include_self(tables):
    before, _ = tables
    data = json.loads(invoke("neighbors", before, "--random", "3", "--seed", "1", "--json",
                             "--include-self", "-k", "1").output)
    assert len(data) == 3 and all(d["neighbors"][0]["token"] == d["query"] for d in data)


def test_neighbors_unknown_token_is_one_line_exit_1(tables):
    before, _ = tables
    result = invoke("neighbors", before, "Queen", "--no-compose")
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: token not in the vocabulary of {before}: 'Queen' (close spellings: 'queen')"]


def test_neighbors_usage_errors_exit_2(tables):
    before, _ = tables
    result = invoke("neighbors", before)
    assert result.exit_code == 2 and "give TOKEN arguments, --random N, or both" in result.output
    result = invoke("neighbors", before, "king", "--csls")
    assert result.exit_code == 2 and "give the other with --against" in result.output


def test_neighbors_against_another_table(tables):
    before, after = tables
    result = invoke("neighbors", before, "king", "--against", after, "--csls", "--json", "-k",
                    "1")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)[0]["neighbors"][0]["token"] == "king"


def test_neighbors_faiss_backend(tables):
    pytest.importorskip("faiss")
    before, _ = tables
    torch_out = invoke("neighbors", before, "man", "--json")
    faiss_out = invoke("neighbors", before, "man", "--json", "--backend", "faiss")
    ids = [[n["row"] for n in json.loads(r.output)[0]["neighbors"]]
           for r in (torch_out, faiss_out)]
    assert ids[0] == ids[1]


def test_check_text_json_and_plot(tables, tmp_path):
    before, after = tables
    result = invoke("check", before, after, "-k", "3", "--anchors", "4", "--top", "2")
    assert result.exit_code == 0, result.output
    assert "overlap@3" in result.output and "anchor spearman" in result.output
    assert "initialized norms" in result.output and "most changed" in result.output
    assert "grape (initialized)" in result.output
    data = json.loads(invoke("check", before, after, "-k", "3", "--json").output)
    assert data["common_tokens"] == 10 and data["norms"]["initialized_rows"] == 4
    assert data["norms"]["origin"] == "equal-vectors"
    pytest.importorskip("matplotlib")
    plot = tmp_path / "check.png"
    result = invoke("check", before, after, "--plot", plot)
    assert result.exit_code == 0 and plot.read_bytes()[:4] == b"\x89PNG"


def test_check_reads_the_provenance_sidecar(tables):
    before, after = tables
    sidecar = after.with_name("after.provenance.jsonl")
    sidecar.write_text("".join(
        json.dumps({"row": i, "token": t, "method": "exact" if i < 5 else "mean",
                    "sources": [], "weights": []}) + "\n"
        for i, t in enumerate([*TOKENS, "grape"])))
    data = json.loads(invoke("check", before, after, "--json").output)
    assert data["norms"]["origin"] == "provenance"
    assert (data["norms"]["copied_rows"], data["norms"]["initialized_rows"]) == (5, 6)
    sidecar.write_text('{"row": 0, "token": "nope", "method": "exact"}\n')
    result = invoke("check", before, after)
    assert result.exit_code == 1 and "row 0 is 'nope' in the provenance" in result.output


def test_check_with_similarity_files(tables, gensim_data):
    before, after = tables
    result = invoke("check", before, after, "--similarity", gensim_data / "wordsim353.tsv",
                    "--analogies", gensim_data / "questions-words.txt", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["similarity"][0]["before"]["pairs"] == 2  # king-queen, man-woman
    assert data["analogies"][0]["before"]["total"] == 2  # man woman king queen, and back


def test_convert_check(tables, tmp_path):
    before, _ = tables
    out = tmp_path / "half.safetensors"
    result = invoke("convert", before, out, "--dtype", "float16", "--check")
    assert result.exit_code == 0, result.output
    assert "neighbours before -> after" in result.output and "[written]" in result.output
    assert "overlap@" in result.output and "mean 1.000" in result.output


def test_similarity_help_imports_nothing_heavy():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from embsurgeon.cli import cli\n"
        "for args in (['neighbors', '--help'], ['check', '--help']):\n"
        "    assert CliRunner().invoke(cli, args).exit_code == 0\n"
        "print(','.join(m for m in ('torch', 'gensim', 'faiss', 'matplotlib', 'scipy')"
        " if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == ""


def test_half_precision_on_the_cpu_is_a_one_line_error(tables):
    before, _ = tables
    result = invoke("neighbors", before, "king", "--device", "cpu", "--precision", "float16")
    assert result.exit_code == 1
    assert result.output.strip() == ("Error: precision float16 needs a CUDA device; on the "
                                     "CPU the search runs in float32")


def test_convert_check_after_an_alignment(tables, tmp_path):
    before, _ = tables
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("king\nqueen\nman\nwoman\napple\nnewword\n")
    out = tmp_path / "aligned.safetensors"
    result = invoke("convert", before, out, "--target", vocab, "--check")
    assert result.exit_code == 0, result.output
    assert "rows classified by provenance" in result.output
    assert "newword (" in result.output  # an initialized row and its neighbours


def test_neighbors_compose_missing_tokens_from_subwords(minilm_dir):
    # The real all-MiniLM-L6-v2 checkpoint: WordPiece pieces from its own tokenizer.
    result = invoke("neighbors", minilm_dir, "king", "北京", "unbelievablyx", "-k", "3",
                    "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    data = {d["query"]: d for d in json.loads(result.output)}
    assert data["king"]["neighbors"][0]["token"] == "kings"
    assert data["北京"]["composed_from"] == ["北", "京"] and data["北京"]["row"] is None
    assert data["unbelievablyx"]["composed_from"][:2] == ["un", "##bel"]
    result = invoke("neighbors", minilm_dir, "北京", "--no-compose")
    assert result.exit_code == 1 and "'北京' (close spellings: '京', '北', " in result.output

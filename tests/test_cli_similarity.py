import json
import re

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
    result = invoke("check", before, after, "-k", "3", "--plot", plot)
    assert result.exit_code == 0 and plot.read_bytes()[:4] == b"\x89PNG"


def test_check_reads_the_provenance_sidecar(tables):
    before, after = tables
    sidecar = after.with_name("after.provenance.jsonl")
    sidecar.write_text("".join(
        json.dumps({"row": i, "token": t, "method": "exact" if i < 5 else "mean",
                    "sources": [], "weights": []}) + "\n"
        for i, t in enumerate([*TOKENS, "grape"])))
    data = json.loads(invoke("check", before, after, "-k", "3", "--json").output)
    assert data["norms"]["origin"] == "provenance"
    assert (data["norms"]["copied_rows"], data["norms"]["initialized_rows"]) == (5, 6)
    sidecar.write_text('{"row": 0, "token": "nope", "method": "exact"}\n')
    result = invoke("check", before, after)
    assert result.exit_code == 1 and "row 0 is 'nope' in the provenance" in result.output


def test_check_with_similarity_files(tables, gensim_data):
    before, after = tables
    result = invoke("check", before, after, "--similarity", gensim_data / "wordsim353.tsv",
                    "--analogies", gensim_data / "questions-words.txt", "--json", "-k", "3")
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


def test_neighbors_against_ranks_by_the_library_default(tables):
    from embsurgeon import read_table
    from embsurgeon.similarity.csls import DEFAULT_CSLS, cross_neighbors

    before, after = tables
    src, other = read_table(before), read_table(after)
    library_default = cross_neighbors(src, other, ["king", "man"], 4, device="cpu")
    shown = {}
    for flags in ((), ("--csls",), ("--no-csls",)):
        result = invoke("neighbors", before, "king", "man", "--against", after, "-k", "4",
                        "--json", "--device", "cpu", *flags)
        assert result.exit_code == 0, result.output
        shown[flags] = np.array([[n["score"] for n in entry["neighbors"]]
                                 for entry in json.loads(result.output)])
    assert np.allclose(shown[()], library_default.scores, atol=1e-6)
    assert np.allclose(shown[("--csls",) if DEFAULT_CSLS else ("--no-csls",)], shown[()])
    assert not np.allclose(shown[("--csls",)], shown[("--no-csls",)])  # the flag matters


@pytest.mark.parametrize(("args", "named"), [
    (["--metric", "dot"], "drop --metric"),
    (["--metric", "cosine"], "drop --metric"),  # given, though it is the default
    (["--backend", "faiss", "--include-self"], "drop --backend, --include-self"),
])
def test_neighbors_against_refuses_options_it_cannot_apply(tables, args, named):
    before, after = tables
    result = invoke("neighbors", before, "king", "--against", after, *args)
    assert result.exit_code == 2, result.output
    assert f"--against ranks by cosine or CSLS on the torch backend; {named}" in result.output


def test_neighbors_no_csls_needs_against(tables):
    before, _ = tables
    result = invoke("neighbors", before, "king", "--no-csls")
    assert result.exit_code == 2
    assert "--csls/--no-csls compare two spaces; give the other with --against" in result.output


def test_check_refuses_a_k_the_shared_tokens_cannot_support(tables):
    # 10 shared tokens: overlap@10 would compare each token's 9 others with themselves
    before, after = tables
    result = invoke("check", before, after)
    assert result.exit_code == 1
    assert result.output.strip() == (
        "Error: the tables share 10 tokens, too few for overlap@10: neighbour lists that long "
        "among 9 other tokens agree by chance; use k 4 or less (-k 4), or compare tables that "
        "share more tokens")
    result = invoke("check", before, after, "-k", "4")
    assert result.exit_code == 0 and re.search(r"^overlap@4 .*  chance 0\.444$", result.output,
                                               re.M)


def test_convert_check_on_a_small_table_says_k_was_reduced(tables, tmp_path):
    before, _ = tables
    result = invoke("convert", before, tmp_path / "copy.safetensors", "--check")
    assert result.exit_code == 0, result.output
    assert re.search(r"^overlap@4 .*  chance 0\.444  \(k reduced from 10: 10 shared tokens\)$",
                     result.output, re.M)


def test_cli_defaults_are_the_library_constants():
    from embsurgeon.similarity import check, csls, knn, neighbors
    from embsurgeon.stats import DEFAULT_SAMPLE_TOKENS

    def default(command, name):
        (param,) = [p for p in cli.commands[command].params if p.name == name]
        return param.default

    assert default("inspect", "sample") == DEFAULT_SAMPLE_TOKENS
    assert default("neighbors", "seed") == neighbors.DEFAULT_SEED
    assert default("neighbors", "csls") is csls.DEFAULT_CSLS
    assert default("neighbors", "precision") == knn.DEFAULT_PRECISION.value
    assert default("neighbors", "metric") == knn.DEFAULT_METRIC.value
    assert default("neighbors", "device") == default("check", "device") == (
        knn.DEFAULT_DEVICE.value)
    assert default("check", "seed") == check.DEFAULT_SEED
    assert (default("check", "sample"), default("check", "anchors")) == (
        check.DEFAULT_SAMPLE, check.DEFAULT_ANCHORS)

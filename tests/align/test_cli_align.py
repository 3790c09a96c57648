"""`embsurgeon convert SRC OUT --target VOCAB ...` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from embsurgeon.cli import cli
from embsurgeon.io.formats import write_table
from embsurgeon.table import EmbeddingTable


def run(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def src(tmp_path):
    rng = np.random.default_rng(0)
    words = ["the", "café", "paris", "coffee", "cat", "playing", "北京", "中国", "北", "京",
             "[PAD]", "[UNK]"] + [f"w{i}" for i in range(60)]
    path = tmp_path / "src.safetensors"
    write_table(EmbeddingTable(words, rng.standard_normal((len(words), 12)).astype(np.float32)),
                path)
    return path


def test_minilm_onto_a_sentencepiece_model(minilm_dir, trained, tmp_path):
    out = tmp_path / "out.safetensors"
    report = tmp_path / "report.json"
    result = run("convert", minilm_dir, out, "--target", trained["spm"], "--report", report,
                 "--pad-to-multiple-of", "64")
    assert result.exit_code == 0, result.output
    assert "copied (" in result.output and "initialized (" in result.output
    weight = load_file(out)["weight"]
    assert weight.shape == (448, 384)
    data = json.loads(report.read_text(encoding="utf-8"))
    assert data["source_family"] == "wordpiece" and data["target_family"] == "sentencepiece"
    assert data["methods"]["placeholder"] == 48
    sidecar = json.loads((tmp_path / "out.report.json").read_text(encoding="utf-8"))
    assert sidecar["alignment"]["methods"] == data["methods"]
    lines = (tmp_path / "out.provenance.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines]
    assert [r["row"] for r in rows] == list(range(448))
    assert set(rows[0]) == {"row", "token", "method", "sources", "weights"}
    vocab = (tmp_path / "out.vocab.txt").read_text(encoding="utf-8").splitlines()
    assert [r["token"] for r in rows] == vocab
    cafe = next(r for r in rows if r["token"] == "▁café")
    assert cafe["method"] == "canonical" and cafe["sources"] == ["cafe"]


def test_output_loads_into_nn_embedding_with_padding_idx(src, trained, tmp_path):
    out = tmp_path / "out.pt"
    result = run("convert", src, out, "--target", trained["wordpiece"], "--init", "subword,mean")
    assert result.exit_code == 0, result.output
    sidecar = json.loads((tmp_path / "out.report.json").read_text(encoding="utf-8"))
    pad = sidecar["padding_idx"]
    assert pad == 0 and "padding_idx=0" in sidecar["load_with"]
    weight = torch.load(out, weights_only=True)["weight"]
    emb = torch.nn.Embedding.from_pretrained(weight, padding_idx=pad)
    assert emb(torch.tensor([pad])).abs().sum() == 0
    assert emb.weight.shape[1] == 12


def test_validate_and_auto_print_scores(minilm_dir, trained, tmp_path):
    result = run("convert", minilm_dir, tmp_path / "a.safetensors", "--target",
                 trained["byte-bpe"], "--init", "auto", "--seed", "1")
    assert result.exit_code == 0, result.output
    assert "validate subword-weighted,mean" in result.output
    data = json.loads((tmp_path / "a.report.json").read_text(encoding="utf-8"))
    assert data["alignment"]["init"] == data["alignment"]["validation"]["best"].split(",")


def test_overrides_and_match_levels(src, tmp_path):
    words = tmp_path / "words.txt"
    words.write_text("The\ncat\ndog\n", encoding="utf-8")
    mapping = tmp_path / "map.txt"
    mapping.write_text("dog=cat\n", encoding="utf-8")
    out = tmp_path / "o.safetensors"
    result = run("convert", src, out, "--target", words, "--match", "exact", "--init", "zero",
                 "--map-file", mapping, "--map", "The=the")
    assert result.exit_code == 0, result.output
    rows = [json.loads(x) for x in (tmp_path / "o.provenance.jsonl").read_text().splitlines()]
    assert [r["method"] for r in rows] == ["override", "exact", "override"]


@pytest.mark.parametrize(("args", "words"), [
    (["--init", "mean,fancy"], "unknown init method 'fancy'"),
    (["--match", "fuzzy"], "unknown match level 'fuzzy'"),
    (["--map", "nothing"], "is not TARGET=SOURCE"),
    (["--norm-match", "big"], "'big' is not one of"),
])
def test_usage_errors(src, trained, tmp_path, args, words):
    result = run("convert", src, tmp_path / "x.safetensors", "--target", trained["words"], *args)
    assert result.exit_code == 2
    assert words in result.output


def test_alignment_errors_are_one_line(src, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    result = run("convert", src, tmp_path / "x.safetensors", "--target", empty)
    assert result.exit_code == 1 and "the target vocabulary is empty" in result.output
    foreign = tmp_path / "foreign.txt"
    foreign.write_text("zebra\nlion\n", encoding="utf-8")
    result = run("convert", src, tmp_path / "x.safetensors", "--target", foreign)
    assert result.exit_code == 1
    assert "no target token matches a source token" in result.output
    assert "Traceback" not in result.output


def test_aux_table(src, tmp_path):
    rng = np.random.default_rng(4)
    aux = tmp_path / "aux.safetensors"
    write_table(EmbeddingTable(["the", "cat", "coffee", "dog"],
                               rng.standard_normal((4, 7)).astype(np.float32)), aux)
    words = tmp_path / "words.txt"
    words.write_text("the\ncat\ncoffee\ndog\nzebra\n", encoding="utf-8")
    result = run("convert", src, tmp_path / "o.safetensors", "--target", words, "--init",
                 "knn,mean", "--aux", aux, "--k", "2")
    assert result.exit_code == 0, result.output
    assert "(1 knn, 1 mean)" in result.output


def test_existing_sidecar_needs_force(src, trained, tmp_path):
    out = tmp_path / "o.safetensors"
    (tmp_path / "o.provenance.jsonl").write_text("old\n", encoding="utf-8")
    result = run("convert", src, out, "--target", trained["words"])
    assert result.exit_code == 1 and "already exists; pass --force" in result.output
    assert not out.exists()
    assert run("convert", src, out, "--target", trained["words"], "--force").exit_code == 0
    assert (tmp_path / "o.provenance.jsonl").read_text().startswith('{"row": 0')


def test_without_target_convert_is_unchanged(src, tmp_path):
    result = run("convert", src, tmp_path / "plain.safetensors")
    assert result.exit_code == 0 and "aligned" not in result.output
    assert not (tmp_path / "plain.provenance.jsonl").exists()


def _glove(path, words, dim=6, seed=0):
    rng = np.random.default_rng(seed)
    with open(path, "w", encoding="utf-8") as handle:
        for word in words:
            handle.write(word + " " + " ".join(f"{v:.5f}" for v in rng.standard_normal(dim))
                         + "\n")
    return path


def _outputs(out):
    """Every byte an aligned output consists of, except the report's streaming entries."""
    stem = out.with_suffix("")
    report = json.loads(stem.with_name(stem.name + ".report.json").read_text(encoding="utf-8"))
    report["alignment"].pop("source_rows")
    report["alignment"].pop("streamed", None)
    files = {name: stem.with_name(stem.name + name).read_bytes()
             for name in (".vocab.txt", ".provenance.jsonl")}
    return load_file(out)["weight"].numpy().tobytes(), files, report


@pytest.mark.parametrize("init", ["mean", "mvn", "subword,mean", "normal"])
def test_streaming_keeps_role_and_override_rows(tmp_path, init):
    # `</s>` stands in for the target's [SEP] by role, `filler7` is an override's source: a
    # predicate dropping either changes the copied rows and so every moment-based row.
    words = ["the", "</s>", "cat", "sun", "flower", "Straße"] + [f"filler{i}" for i in range(300)]
    src = _glove(tmp_path / "vectors.txt", words, dim=8)
    target = tmp_path / "target.txt"
    target.write_text("[PAD]\n[SEP]\nthe\ncat\nsunflower\nzebra\nstrasse\nmoon\n",
                      encoding="utf-8")
    outs = []
    for name, extra in (("a", []), ("b", ["--no-stream"])):
        (tmp_path / name).mkdir()
        out = tmp_path / name / "out.safetensors"  # the same file name: reports name it
        result = run("convert", src, out, "--from", "glove", "--target", target, "--init", init,
                     "--map", "zebra=filler7", *extra)
        assert result.exit_code == 0, result.output
        outs.append(_outputs(out))
    assert outs[0] == outs[1]
    rows = [json.loads(x) for x in outs[0][1][".provenance.jsonl"].decode().splitlines()]
    assert rows[1]["method"] == "special" and rows[1]["sources"] == ["</s>"]
    assert rows[5]["method"] == "override" and rows[5]["sources"] == ["filler7"]
    assert rows[6]["method"] == "case-fold" and rows[6]["sources"] == ["Straße"]
    streamed = json.loads((tmp_path / "a" / "out.report.json").read_text())["alignment"][
        "streamed"]
    assert streamed["rows_kept"] < 10


def test_streaming_keeps_only_usable_rows_and_changes_nothing(tmp_path):
    words = ["the", "cat", "北京", "北", "京", "sun", "flower", "Paris"] + [
        f"filler{i}" for i in range(500)]
    src = _glove(tmp_path / "vectors.txt", words)
    target = tmp_path / "target.txt"
    target.write_text("the\n北京\n中国\nsunflower\nparis\n[PAD]\n", encoding="utf-8")
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    assert run("convert", src, a, "--from", "glove", "--target", target).exit_code == 0
    assert run("convert", src, b, "--from", "glove", "--target", target,
               "--no-stream").exit_code == 0
    ra = json.loads((tmp_path / "a.report.json").read_text())["alignment"]
    rb = json.loads((tmp_path / "b.report.json").read_text())["alignment"]
    assert ra["streamed"]["rows_kept"] < 10 and rb["source_rows"] == len(words)
    assert ra["methods"] == rb["methods"]
    np.testing.assert_array_equal(load_file(a)["weight"].numpy(), load_file(b)["weight"].numpy())
    pa = (tmp_path / "a.provenance.jsonl").read_text(encoding="utf-8")
    assert pa == (tmp_path / "b.provenance.jsonl").read_text(encoding="utf-8")
    rows = [json.loads(x) for x in pa.splitlines()]
    assert rows[3]["method"] == "subword" and rows[3]["sources"] == ["sun", "flower"]
    assert rows[4]["method"] == "case-fold" and rows[4]["sources"] == ["Paris"]


def test_text_output_gets_its_provenance_too(tmp_path):
    src = _glove(tmp_path / "vectors.txt", ["the", "cat", "dog"])
    target = tmp_path / "target.txt"
    target.write_text("cat\nthe\nzebra\n", encoding="utf-8")
    out = tmp_path / "out.vec"
    result = run("convert", src, out, "--from", "glove", "--target", target, "--init", "mean")
    assert result.exit_code == 0, result.output
    rows = [json.loads(x) for x in (tmp_path / "out.provenance.jsonl").read_text().splitlines()]
    assert [r["method"] for r in rows] == ["exact", "exact", "mean"]
    assert out.read_text(encoding="utf-8").splitlines()[0] == "3 6"


def test_fasttext_bin_source_composes_from_ngrams(gensim_data, tmp_path):
    target = tmp_path / "target.txt"
    target.write_text("the\nhousekeeping\n", encoding="utf-8")
    out = tmp_path / "ft.safetensors"
    result = run("convert", gensim_data / "lee_fasttext.bin", out, "--target", target)
    assert result.exit_code == 0, result.output
    rows = [json.loads(x) for x in (tmp_path / "ft.provenance.jsonl").read_text().splitlines()]
    assert rows[0]["method"] == "exact"
    assert rows[1]["method"] == "subword" and "<ho" in rows[1]["sources"]
    from gensim.models.fasttext import load_facebook_vectors

    expected = load_facebook_vectors(str(gensim_data / "lee_fasttext.bin"))["housekeeping"]
    got = load_file(out)["weight"][1].numpy()
    cos = float(got @ expected / np.linalg.norm(got) / np.linalg.norm(expected))
    assert cos > 0.999  # the direction is gensim's; norm matching may rescale the length


def test_allow_nonfinite_with_a_target(tmp_path):
    src = tmp_path / "vectors.txt"
    src.write_text("the 1 0\ncat nan 1\nsun 0 3\nflower inf 0\n", encoding="utf-8")
    out = tmp_path / "out.safetensors"
    result = run("convert", src, out, "--from", "glove", "--target", _words(tmp_path),
                 "--allow-nonfinite", "--init", "mean")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out.report.json").read_text())["alignment"]
    assert report["nonfinite_copied_rows"] == 2
    weight = load_file(out)["weight"].numpy()
    assert np.isfinite(weight[[0, 2, 4]]).all() and not np.isfinite(weight[1]).all()


def _words(tmp_path):
    target = tmp_path / "target.txt"
    target.write_text("the\ncat\nsun\nflower\nmoon\n", encoding="utf-8")
    return target


@pytest.mark.parametrize("report", ["out.safetensors", "out.provenance.jsonl",
                                    "out.report.json", "out.vocab.txt"])
def test_report_may_not_be_an_output(tmp_path, report):
    src = _glove(tmp_path / "vectors.txt", ["the", "cat"])
    result = CliRunner().invoke(cli, ["convert", str(src), str(tmp_path / "out.safetensors"),
                                      "--from", "glove", "--target", str(_words(tmp_path)),
                                      "--report", str(tmp_path / report)])
    assert result.exit_code == 1
    assert f"--report {tmp_path / report} is " in result.output
    assert "give the report another name" in result.output
    assert not (tmp_path / "out.safetensors").exists()


def test_unwritable_report_leaves_nothing_behind(tmp_path):
    src = _glove(tmp_path / "vectors.txt", ["the", "cat"])
    result = CliRunner().invoke(cli, ["convert", str(src), str(tmp_path / "p1.safetensors"),
                                      "--from", "glove", "--target", str(_words(tmp_path)),
                                      "--report", "/proc/embsurgeon-p1.json"])
    assert result.exit_code == 1 and "cannot write /proc/embsurgeon-p1.json" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["target.txt", "vectors.txt"]

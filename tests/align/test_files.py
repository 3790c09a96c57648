"""align_file: the library pipeline behind `convert --target`."""

import json

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from embsurgeon import read_table
from embsurgeon.align.api import align
from embsurgeon.align.files import align_file
from embsurgeon.align.match import keep_predicate
from embsurgeon.align.postprocess import Transforms
from embsurgeon.align.targets import load_target
from embsurgeon.errors import AlignmentError, OutputError
from embsurgeon.io.formats import WriteOptions
from embsurgeon.table import EmbeddingTable


@pytest.fixture
def glove(tmp_path):
    rng = np.random.default_rng(0)
    words = ["the", "cat", "sat", "on", "mat", "dog", "sun", "flower", "car", "tree"]
    path = tmp_path / "glove.txt"
    path.write_text("".join(w + " " + " ".join(f"{x:.6f}" for x in rng.standard_normal(4)) + "\n"
                            for w in words))
    return path


def test_streams_aligns_and_writes_every_sidecar(glove, tmp_path):
    target = ["[PAD]", "the", "cat", "sunflower", "zebra"]
    out = tmp_path / "out.safetensors"
    done = align_file(glove, out, target, init="subword,mean", report_file=tmp_path / "r.json")
    assert done.streamed and done.rows_read < 10  # only rows usable for the target were kept
    names = sorted(p.name for p in done.written)
    assert names == ["out.provenance.jsonl", "out.report.json", "out.safetensors",
                     "out.vocab.txt", "r.json"]
    table = read_table(out)
    assert table.tokens == tuple(target)
    np.testing.assert_array_equal(table["the"], read_table(glove)["the"])
    lines = (tmp_path / "out.provenance.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines]
    assert [r["method"] for r in rows][3] == "subword"
    assert rows[3]["sources"] == ["sun", "flower"]
    assert json.loads((tmp_path / "r.json").read_text())["streamed"]["rows_kept"] == \
        done.rows_read


def test_streaming_changes_nothing(glove, tmp_path):
    target = ["the", "cat", "sunflower", "zebra"]
    a = align_file(glove, tmp_path / "a.safetensors", target)
    b = align_file(glove, tmp_path / "b.safetensors", target, stream=False)
    assert not b.streamed and b.rows_read == 10
    np.testing.assert_array_equal(a.alignment.table.vectors, b.alignment.table.vectors)


def test_text_output_gets_provenance_beside_it(glove, tmp_path):
    done = align_file(glove, tmp_path / "out.vec", ["the", "cat"])
    assert (tmp_path / "out.provenance.jsonl") in done.written


def test_needs_a_target(glove, tmp_path):
    with pytest.raises(AlignmentError, match="needs a target vocabulary"):
        align_file(glove, tmp_path / "out.safetensors")


def test_refuses_existing_sidecar_before_reading(glove, tmp_path):
    (tmp_path / "out.provenance.jsonl").write_text("")
    with pytest.raises(OutputError, match="already exists"):
        align_file(glove, tmp_path / "out.safetensors", ["the"])
    assert not (tmp_path / "out.safetensors").exists()


_WORDS = st.sampled_from(["the", "The", "cat", "cats", "sun", "flower", "sunflower", "café",
                          "cafe", "Café", "北", "京", "北京", "Straße", "strasse", "new", "york",
                          "</s>", "<s>", "[SEP]", "[CLS]", "<unk>", "[PAD]", "ab", "z"])


@settings(max_examples=60, deadline=None)
@example(["</s>", "the"], ["the", "[SEP]"], "mean")  # a stand-in by role
@example(["ne", "wy", "ork", "the"], ["new york", "the"], "subword,mvn")  # a piece across " "
@given(st.lists(_WORDS, min_size=1, max_size=14, unique=True),
       st.lists(_WORDS | st.just("new york"), min_size=1, max_size=8, unique=True),
       st.sampled_from(["mean", "subword,mvn", "subword-weighted,normal"]))
def test_streaming_predicate_never_changes_the_alignment(source, target, init):
    """The docs' claim: aligning only the rows keep_predicate keeps gives the same output."""
    rng = np.random.default_rng(len(source))
    table = EmbeddingTable(source, rng.standard_normal((len(source), 4)).astype(np.float32))
    vocab = load_target(target)
    keep = keep_predicate(vocab)
    kept = table.take([i for i, token in enumerate(table.tokens) if keep(token)])
    try:
        full = align(table, vocab, init=init)
    except AlignmentError:  # no token matches: streaming must fail too
        with pytest.raises(AlignmentError):
            align(kept, vocab, init=init)
        return
    streamed = align(kept, vocab, init=init)
    np.testing.assert_array_equal(full.table.vectors, streamed.table.vectors)
    assert full.provenance == streamed.provenance


def test_streaming_that_keeps_no_row_says_so(glove, tmp_path):
    with pytest.raises(AlignmentError, match=r"glove\.txt: no row matches a token of the target"):
        align_file(glove, tmp_path / "out.safetensors", ["xyzzy", "qqq"])
    assert list(tmp_path.iterdir()) == [glove]


_UNWRITABLE = "/proc/embsurgeon-test-report.json"  # no one may create files in /proc, not root


def test_a_failed_report_leaves_no_partial_output(glove, tmp_path):
    with pytest.raises(OutputError, match=f"cannot write {_UNWRITABLE}"):
        align_file(glove, tmp_path / "out.safetensors", ["the", "cat"],
                   report_file=_UNWRITABLE)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["glove.txt"]


def test_a_failed_forced_run_puts_the_replaced_files_back(glove, tmp_path):
    out = tmp_path / "out.vec"
    first = align_file(glove, out, ["the", "cat"])
    stray = tmp_path / "out.vocab.txt"  # not ours: a .vec has no vocabulary sidecar
    stray.write_text("keep me\n", encoding="utf-8")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(OutputError):
        align_file(glove, out, ["the", "sun", "cat"], report_file=_UNWRITABLE,
                   write=WriteOptions(force=True))
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    again = align_file(glove, out, ["the", "sun"], write=WriteOptions(force=True))
    assert sorted(again.written) == sorted(first.written)
    assert stray.read_text(encoding="utf-8") == "keep me\n"
    assert read_table(out).tokens == ("the", "sun")


@pytest.mark.parametrize("name", ["out.safetensors", "out.vocab.txt", "out.report.json",
                                  "out.provenance.jsonl", "out.pca.safetensors"])
def test_report_may_not_be_the_output_or_a_sidecar(glove, tmp_path, name):
    with pytest.raises(OutputError, match=rf"--report .*{name} is (the output itself|a file "
                                          r"written beside .*out.safetensors); give the report"):
        align_file(glove, tmp_path / "out.safetensors", ["the", "cat"],
                   report_file=tmp_path / "x" / ".." / name,
                   transforms=Transforms(dim=2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["glove.txt"]

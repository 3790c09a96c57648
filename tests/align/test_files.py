"""align_file: the library pipeline behind `convert --target`."""

import json

import numpy as np
import pytest

from embsurgeon import read_table
from embsurgeon.align.files import align_file
from embsurgeon.errors import AlignmentError, OutputError


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

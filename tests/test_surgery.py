"""Model surgery: the operated checkpoint loads in transformers with the new rows."""

import json

import numpy as np
import pytest
import torch

from embsurgeon import read_table
from embsurgeon.errors import AlignmentError, OutputError, VocabularyError
from embsurgeon.surgery import REPORT, transplant
from embsurgeon.table import EmbeddingTable


def shifted(table: EmbeddingTable, rows: int | None = None, seed: int = 0) -> EmbeddingTable:
    """The table's tokens with new, recognisable vectors."""
    rng = np.random.default_rng(seed)
    n = rows or len(table)
    tokens = list(table.tokens[:n]) + [f"<new{i}>" for i in range(max(0, n - len(table)))]
    return EmbeddingTable(tokens, rng.standard_normal((n, table.dim)).astype(np.float32))


def auto_model(path, causal=False):
    from transformers import AutoModel, AutoModelForCausalLM

    cls = AutoModelForCausalLM if causal else AutoModel
    return cls.from_pretrained(path)


@pytest.mark.parametrize("name", ["tiny-bert", "tiny-bert-sharded", "tiny-bert-classifier",
                                  "tiny-bert-bin"])
def test_replaces_the_embedding_and_loads(fixtures_dir, tmp_path, name):
    model = fixtures_dir / name
    new = shifted(read_table(model))
    out = tmp_path / "operated"
    report = transplant(new, model, out)
    back = read_table(out)
    np.testing.assert_allclose(back.vectors, new.vectors, rtol=0, atol=0)
    assert back.tokens == read_table(model).tokens
    weight = auto_model(out).get_input_embeddings().weight.detach().numpy()
    np.testing.assert_array_equal(weight, new.vectors)
    assert json.loads((out / REPORT).read_text())["tensor"] == report.tensor


def test_only_the_embedding_shard_is_rewritten(fixtures_dir, tmp_path):
    model = fixtures_dir / "tiny-bert-sharded"
    out = tmp_path / "operated"
    report = transplant(shifted(read_table(model)), model, out)
    assert len(report.rewritten) == 1
    for shard in model.glob("*.safetensors"):
        same = (out / shard.name).read_bytes() == shard.read_bytes()
        assert same == (shard.name not in report.rewritten)


def test_bf16_stays_bf16_and_tied_head_follows(fixtures_dir, tmp_path):
    model = fixtures_dir / "tiny-llama-bf16"
    out = tmp_path / "operated"
    new = shifted(read_table(model))
    report = transplant(new, model, out)
    assert report.dtype == "bfloat16"
    assert read_table(out).source_dtype == "bfloat16"
    loaded = auto_model(out, causal=True)
    expected = torch.from_numpy(new.vectors).to(torch.bfloat16)
    torch.testing.assert_close(loaded.get_input_embeddings().weight.detach(), expected)


def test_untied_head_is_resized_with_mean_rows(fixtures_dir, tmp_path):
    model = fixtures_dir / "tiny-llama"
    table = read_table(model)
    new = shifted(table, rows=len(table) + 5)
    out = tmp_path / "bigger"
    report = transplant(new, model, out)
    assert report.rows == len(table) + 5 and report.head == "lm_head.weight"
    assert json.loads((out / "config.json").read_text())["vocab_size"] == len(table) + 5
    loaded = auto_model(out, causal=True)
    head = loaded.get_output_embeddings().weight.detach()
    original = auto_model(model, causal=True).get_output_embeddings().weight.detach()
    torch.testing.assert_close(head[: len(table)], original)
    torch.testing.assert_close(head[-1], original.mean(dim=0))


def test_tied_gpt2_head_follows(fixtures_dir, tmp_path):
    model = fixtures_dir / "tiny-gpt2"
    new = shifted(read_table(model))
    transplant(new, model, tmp_path / "operated")
    loaded = auto_model(tmp_path / "operated", causal=True)
    np.testing.assert_array_equal(loaded.get_output_embeddings().weight.detach().numpy(),
                                  new.vectors)


def test_wrong_dimension(fixtures_dir, tmp_path):
    model = fixtures_dir / "tiny-bert"
    table = read_table(model)
    bad = EmbeddingTable(table.tokens, np.zeros((len(table), table.dim + 1), np.float32))
    with pytest.raises(AlignmentError, match=r"dimension .* map it first"):
        transplant(bad, model, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_vocabulary_must_be_in_model_order(fixtures_dir, tmp_path):
    model = fixtures_dir / "tiny-bert"
    table = read_table(model)
    swapped = table.take([1, 0, *range(2, len(table))])
    with pytest.raises(VocabularyError, match=r"row 0 of the table is .* align the table"):
        transplant(swapped, model, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_overwrite_and_to_write_into_the_model(fixtures_dir, tmp_path):
    model = fixtures_dir / "tiny-bert"
    new = shifted(read_table(model))
    (tmp_path / "out").mkdir()
    with pytest.raises(OutputError, match="already exists; pass --force"):
        transplant(new, model, tmp_path / "out")
    with pytest.raises(OutputError, match="new directory"):
        transplant(new, model, model, force=True)
    transplant(new, model, tmp_path / "out", force=True)
    assert (tmp_path / "out" / REPORT).is_file()


def test_cli_transplant(fixtures_dir, tmp_path):
    from click.testing import CliRunner

    from embsurgeon import write_table
    from embsurgeon.cli import cli

    model = fixtures_dir / "tiny-bert"
    write_table(shifted(read_table(model)), tmp_path / "new.safetensors")
    args = ["transplant", str(tmp_path / "new.safetensors"), str(model), str(tmp_path / "m")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "into embeddings.word_embeddings.weight" in result.output
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 1
    assert "already exists" in again.output

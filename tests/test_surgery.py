"""Model surgery: the operated checkpoint loads in transformers with the new rows."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from embsurgeon import read_table
from embsurgeon.errors import AlignmentError, FormatError, OutputError, VocabularyError
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


def test_resized_masked_lm_keeps_every_vocabulary_tensor_in_step(fixtures_dir, tmp_path):
    from transformers import AutoModelForMaskedLM

    model = fixtures_dir / "tiny-bert-mlm"
    table = read_table(model)
    new = shifted(table, rows=len(table) + 5)
    out = tmp_path / "bigger"
    report = transplant(new, model, out)
    assert report.resized == ["cls.predictions.bias"]
    original = AutoModelForMaskedLM.from_pretrained(model)
    loaded = AutoModelForMaskedLM.from_pretrained(out)  # no size mismatch
    bias = loaded.cls.predictions.bias.detach()
    assert bias.shape == (len(table) + 5,)
    torch.testing.assert_close(bias[: len(table)], original.cls.predictions.bias.detach())
    assert not bias[len(table):].any()
    np.testing.assert_array_equal(loaded.get_output_embeddings().weight.detach().numpy(),
                                  new.vectors)
    ids = torch.tensor([[2, len(table) + 4, 3]])
    assert loaded(input_ids=ids).logits.shape == (1, 3, len(table) + 5)


def test_vocabulary_tensors_follow_a_shrink_and_a_growth():
    from embsurgeon.surgery import VocabAxis, _follow

    old = np.arange(12, dtype=np.float32).reshape(4, 3)  # (V0, D)
    grown = torch.ones(6, 3)
    bias = torch.tensor([1.0, 2.0, 3.0, 4.0])
    torch.testing.assert_close(_follow(bias, VocabAxis.BIAS, old, grown, 6),
                               torch.tensor([1.0, 2.0, 3.0, 4.0, 0.0, 0.0]))
    torch.testing.assert_close(_follow(bias, VocabAxis.BIAS, old, grown[:2], 2),
                               torch.tensor([1.0, 2.0]))
    row = bias[None]  # final_logits_bias (1, V)
    assert _follow(row, VocabAxis.BIAS_ROW, old, grown, 6).tolist() == [[1, 2, 3, 4, 0, 0]]
    assert _follow(row, VocabAxis.BIAS_ROW, old, grown[:3], 3).tolist() == [[1, 2, 3]]
    assert _follow(bias, VocabAxis.BIAS, old, torch.ones(4, 3), 4) is None
    tied = torch.from_numpy(old.copy())
    torch.testing.assert_close(_follow(tied, VocabAxis.ROWS, old, grown, 6), grown)
    untied = torch.from_numpy(old + 1)
    shrunk = _follow(untied, VocabAxis.ROWS, old, grown[:2], 2)
    torch.testing.assert_close(shrunk, untied[:2])
    mean_rows = _follow(untied, VocabAxis.ROWS, old, grown, 6)
    torch.testing.assert_close(mean_rows[4], untied.mean(dim=0))


def test_uninterpretable_vocabulary_axis_is_refused(fixtures_dir, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    model = tmp_path / "odd"
    shutil.copytree(fixtures_dir / "tiny-bert-mlm", model)
    state = load_file(model / "model.safetensors")
    rows = state["bert.embeddings.word_embeddings.weight"].shape[0]
    state["odd.projection"] = torch.zeros(3, rows)
    save_file(state, model / "model.safetensors", metadata={"format": "pt"})
    table = read_table(model)
    with pytest.raises(FormatError, match=rf"cannot resize odd.projection 3x{rows}: a "
                                          r"vocabulary-sized axis .* keep \d+ rows, or resize "
                                          r"with transformers' resize_token_embeddings first"):
        transplant(shifted(table, rows=rows + 2), model, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    transplant(shifted(table), model, tmp_path / "out")  # same size: nothing to resize


def test_tied_copy_stored_in_the_same_shard_gets_the_new_rows(fixtures_dir, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    model = tmp_path / "tied-llama"
    shutil.copytree(fixtures_dir / "tiny-llama-bf16", model)
    state = load_file(model / "model.safetensors")
    state["lm_head.weight"] = state["model.embed_tokens.weight"].clone()  # a stored tied copy
    save_file(state, model / "model.safetensors", metadata={"format": "pt"})
    new = shifted(read_table(model))
    report = transplant(new, model, tmp_path / "operated")
    assert "lm_head.weight" in report.resized
    written = load_file(tmp_path / "operated" / "model.safetensors")
    expected = torch.from_numpy(new.vectors).to(torch.bfloat16)
    torch.testing.assert_close(written["model.embed_tokens.weight"], expected)
    torch.testing.assert_close(written["lm_head.weight"], expected)


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
    transplant(new, model, tmp_path / "out")
    with pytest.raises(OutputError, match="already exists; pass --force"):
        transplant(new, model, tmp_path / "out")
    with pytest.raises(OutputError, match="new directory"):
        transplant(new, model, model, force=True)
    with pytest.raises(OutputError, match="new directory"):
        transplant(new, model, model / "inside", force=True)
    again = shifted(read_table(model), seed=1)
    transplant(again, model, tmp_path / "out", force=True)  # an earlier output: replaced
    np.testing.assert_array_equal(read_table(tmp_path / "out").vectors, again.vectors)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_force_never_deletes_the_model_or_a_foreign_directory(fixtures_dir, tmp_path):
    import shutil

    models = tmp_path / "models"
    model = models / "bert"
    shutil.copytree(fixtures_dir / "tiny-bert", model)
    (models / "neighbour.txt").write_text("keep me")
    new = shifted(read_table(model))
    for out in (models, tmp_path):
        with pytest.raises(OutputError, match=r"contains the model .*bert; replacing it would "
                                              r"delete the model: choose a new directory"):
            transplant(new, model, out, force=True)
    assert (models / "neighbour.txt").read_text() == "keep me"
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.jpg").write_bytes(b"meow")
    (tmp_path / "file.txt").write_text("x")
    for out in (foreign, tmp_path / "file.txt"):
        with pytest.raises(OutputError, match=r"is not the output of an earlier transplant "
                                              r"\(no embsurgeon_surgery.json in it\); --force "
                                              r"replaces only those"):
            transplant(new, model, out, force=True)
    assert (foreign / "cat.jpg").read_bytes() == b"meow"
    assert (tmp_path / "file.txt").read_text() == "x"


def test_model_must_be_a_directory(fixtures_dir, tmp_path):
    model = fixtures_dir / "tiny-bert"
    new = shifted(read_table(model))
    with pytest.raises(FormatError, match=r"model.safetensors: not a directory; transplant "
                                          r"needs the model directory .*, e\.g\. .*tiny-bert"):
        transplant(new, model / "model.safetensors", tmp_path / "out")
    with pytest.raises(FormatError, match=r"nope: not a directory"):
        transplant(new, tmp_path / "nope", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_output_has_the_usual_permissions(fixtures_dir, tmp_path):
    import os
    import stat

    model = fixtures_dir / "tiny-bert"
    old = os.umask(0o022)
    try:
        transplant(shifted(read_table(model)), model, tmp_path / "out")
    finally:
        os.umask(old)
    out = tmp_path / "out"
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    assert stat.S_IMODE((out / "model.safetensors").stat().st_mode) == 0o644
    assert stat.S_IMODE((out / REPORT).stat().st_mode) == 0o644


def test_shorter_table_needs_the_tokenizer(fixtures_dir, tmp_path):
    model = fixtures_dir / "tiny-bert"
    table = read_table(model)
    short = shifted(table, rows=len(table) - 3)
    with pytest.raises(VocabularyError, match=rf"the table has {len(table) - 3} rows but the "
                                              rf"tokenizer of .* has {len(table)} tokens; pass "
                                              r"--tokenizer DIR"):
        transplant(short, model, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("force", [False, True])
def test_output_appearing_while_writing_is_not_clobbered(fixtures_dir, tmp_path, monkeypatch,
                                                         force):
    import embsurgeon.surgery as surgery

    model = fixtures_dir / "tiny-bert"
    out = tmp_path / "out"
    copy_rest = surgery._copy_rest

    def racing(*args, **kwargs):
        copy_rest(*args, **kwargs)
        out.mkdir()
        (out / "theirs").write_text("theirs")

    monkeypatch.setattr(surgery, "_copy_rest", racing)
    message = ("is not the output of an earlier transplant" if force
               else "out appeared while writing; pass --force")
    with pytest.raises(OutputError, match=message):
        transplant(shifted(read_table(model)), model, out, force=force)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert [p.name for p in out.iterdir()] == ["theirs"]


def test_failed_final_rename_keeps_the_earlier_output(fixtures_dir, tmp_path, monkeypatch):
    import os

    import embsurgeon.surgery as surgery

    model = fixtures_dir / "tiny-bert"
    out = tmp_path / "out"
    first = shifted(read_table(model))
    transplant(first, model, out)
    real_replace = os.replace

    def failing(src, dst):
        if Path(dst) == out and Path(src).parent == tmp_path:  # the staged output only
            raise OSError(28, "No space left on device", str(src))
        real_replace(src, dst)

    monkeypatch.setattr(surgery.os, "replace", failing)
    with pytest.raises(OSError, match="No space left"):
        transplant(shifted(read_table(model), seed=3), model, out, force=True)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    np.testing.assert_array_equal(read_table(out).vectors, first.vectors)


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


def test_cli_transplant_refuses_a_weights_file_as_model(fixtures_dir, tmp_path):
    from click.testing import CliRunner

    from embsurgeon import write_table
    from embsurgeon.cli import cli

    model = fixtures_dir / "tiny-bert"
    write_table(shifted(read_table(model)), tmp_path / "new.safetensors")
    args = ["transplant", str(tmp_path / "new.safetensors"), str(model / "model.safetensors"),
            str(tmp_path / "m")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert "is a file" in result.output
    assert not (tmp_path / "m").exists()

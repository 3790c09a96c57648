import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from embsurgeon import read_table
from embsurgeon.cli import cli
from embsurgeon.errors import DtypeError, FormatError, TensorNotFoundError, VocabularyError
from embsurgeon.io import hf
from embsurgeon.io.formats import FORMATS, ReadOptions, detect_format, write_table
from embsurgeon.io.hf import Checkpoint, WeightKind, find_embedding, sniff_hf
from embsurgeon.io.state_dict import sniff_pt, sniff_safetensors
from embsurgeon.table import EmbeddingTable, placeholder_token

# fixture -> (tensor name, padding rows past the tokenizer)
ARCHITECTURES = {
    "tiny-bert": ("embeddings.word_embeddings.weight", 0),
    "tiny-bert-classifier": ("bert.embeddings.word_embeddings.weight", 0),
    "tiny-bert-mlm": ("bert.embeddings.word_embeddings.weight", 0),
    "tiny-bert-sharded": ("embeddings.word_embeddings.weight", 0),
    "tiny-bert-fp16": ("embeddings.word_embeddings.weight", 0),
    "tiny-bert-bin": ("embeddings.word_embeddings.weight", 0),
    "tiny-roberta": ("roberta.embeddings.word_embeddings.weight", 0),
    "tiny-distilbert": ("distilbert.embeddings.word_embeddings.weight", 0),
    "tiny-albert": ("albert.embeddings.word_embeddings.weight", 0),
    "tiny-xlnet": ("transformer.word_embedding.weight", 0),
    "tiny-gpt2": ("transformer.wte.weight", 0),
    "tiny-llama": ("model.embed_tokens.weight", 0),
    "tiny-llama-bf16": ("model.embed_tokens.weight", 0),
    "tiny-llama-bin-sharded": ("model.embed_tokens.weight", 0),
    "tiny-qwen2": ("model.embed_tokens.weight", 24),
    "tiny-t5": ("shared.weight", 4),
}


def _model_embedding(directory: Path) -> np.ndarray:
    import transformers

    config = json.loads((directory / "config.json").read_text())
    model_class = getattr(transformers, config["architectures"][0])
    model = model_class.from_pretrained(str(directory))
    return model.get_input_embeddings().weight.detach().float().numpy()


def _tokenizer_vocab(directory: Path) -> list[str]:
    """The tokenizer's own vocabulary in id order, from the library that reads it."""
    if (directory / "tokenizer.json").is_file():
        from transformers import AutoTokenizer

        vocab = AutoTokenizer.from_pretrained(str(directory)).get_vocab()
        return sorted(vocab, key=vocab.__getitem__)
    if (directory / "spiece.model").is_file():
        import sentencepiece as spm

        sp = spm.SentencePieceProcessor(model_file=str(directory / "spiece.model"))
        return [sp.IdToPiece(i) for i in range(sp.GetPieceSize())]
    return (directory / "vocab.txt").read_text(encoding="utf-8").splitlines()


@pytest.fixture
def copy_of(fixtures_dir, tmp_path):
    def copy(name: str) -> Path:
        return Path(shutil.copytree(fixtures_dir / name, tmp_path / name))
    return copy


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_reads_the_input_embedding_of_each_architecture(fixtures_dir, name):
    directory = fixtures_dir / name
    tensor, padding = ARCHITECTURES[name]
    table = read_table(directory)
    assert table.metadata["tensor"] == tensor
    assert table.metadata["format"] == "hf"
    np.testing.assert_array_equal(table.vectors.astype(np.float32), _model_embedding(directory))
    vocab = _tokenizer_vocab(directory)
    assert list(table.tokens[:len(vocab)]) == vocab
    assert len(table) == len(vocab) + padding
    assert table.tokens[len(vocab):] == tuple(
        placeholder_token(i) for i in range(len(vocab), len(table)))
    assert table.metadata.get("padding_rows", "0") == str(padding)


def test_metadata_of_a_checkpoint(fixtures_dir):
    table = read_table(fixtures_dir / "tiny-roberta")
    assert table.padding_idx == 1  # config pad_token_id
    assert table.metadata["model_type"] == "roberta"
    assert table.metadata["shard"] == "model.safetensors"
    assert table.metadata["vocabulary"] == "tokenizer.json"
    assert table.metadata["tokenizer_family"] == "byte-bpe"
    assert table.source_dtype == "float32"
    gpt2 = read_table(fixtures_dir / "tiny-gpt2")
    assert gpt2.padding_idx is None  # GPT-2 has no pad token


def test_half_precision_keeps_its_dtype(fixtures_dir):
    fp16 = read_table(fixtures_dir / "tiny-bert-fp16")
    assert fp16.vectors.dtype == np.float16 and fp16.source_dtype == "float16"
    bf16 = read_table(fixtures_dir / "tiny-llama-bf16")
    assert bf16.vectors.dtype == np.float32 and bf16.source_dtype == "bfloat16"
    with safe_open(fixtures_dir / "tiny-llama-bf16" / "model.safetensors", "pt") as f:
        expected = f.get_tensor("model.embed_tokens.weight").float().numpy()
    np.testing.assert_array_equal(bf16.vectors, expected)


def test_untied_llama_does_not_take_the_lm_head(fixtures_dir):
    table = read_table(fixtures_dir / "tiny-llama")
    head = load_file(fixtures_dir / "tiny-llama" / "model.safetensors")["lm_head.weight"]
    assert head.shape == table.vectors.shape
    assert not np.array_equal(table.vectors, head.numpy())


@pytest.mark.slow
def test_real_minilm_checkpoint(minilm_dir):
    table = read_table(minilm_dir)
    assert table.vectors.shape == (30522, 384)
    assert list(table.tokens) == (minilm_dir / "vocab.txt").read_text("utf-8").splitlines()
    with safe_open(minilm_dir / "model.safetensors", "numpy") as f:
        expected = f.get_tensor("embeddings.word_embeddings.weight")
    np.testing.assert_array_equal(table.vectors, expected)
    assert table.padding_idx == 0


# -- reading only what is needed -----------------------------------------------------------

def _spy_safetensors(monkeypatch) -> list[str]:
    """Names of the safetensors files whose header or data the reader touches."""
    opened: list[str] = []
    header, read = hf.safetensors_header, hf.read_safetensors_tensor

    def spy_header(path):
        opened.append(Path(path).name)
        return header(path)

    def spy_read(file, *args):
        opened.append(Path(file).name)
        return read(file, *args)

    monkeypatch.setattr(hf, "safetensors_header", spy_header)
    monkeypatch.setattr(hf, "read_safetensors_tensor", spy_read)
    return opened


def test_sharded_safetensors_opens_only_the_embedding_shard(copy_of, monkeypatch):
    directory = copy_of("tiny-bert-sharded")
    index = json.loads((directory / "model.safetensors.index.json").read_text())
    shard = index["weight_map"]["embeddings.word_embeddings.weight"]
    others = set(index["weight_map"].values()) - {shard}
    assert others  # the fixture really is sharded
    for other in others:  # a reader that touched them would now fail
        (directory / other).unlink()
    opened = _spy_safetensors(monkeypatch)
    table = read_table(directory)
    assert set(opened) == {shard}
    assert table.metadata["shard"] == shard


def test_sharded_bin_loads_only_the_embedding_shard(copy_of, monkeypatch):
    directory = copy_of("tiny-llama-bin-sharded")
    index = json.loads((directory / "pytorch_model.bin.index.json").read_text())
    shard = index["weight_map"]["model.embed_tokens.weight"]
    loaded: list[str] = []
    real = torch.load

    def spy(f, *args, **kwargs):
        loaded.append(Path(f).name)
        assert kwargs["weights_only"] is True
        return real(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    table = read_table(directory)
    assert loaded == [shard]
    assert table.metadata["shard"] == shard


def test_reads_from_any_file_of_the_checkpoint(fixtures_dir):
    whole = read_table(fixtures_dir / "tiny-bert-sharded")
    for file in ("model.safetensors.index.json", "config.json"):
        table = read_table(fixtures_dir / "tiny-bert-sharded" / file)
        np.testing.assert_array_equal(table.vectors, whole.vectors)
        assert table.tokens == whole.tokens
    single = read_table(fixtures_dir / "tiny-bert" / "model.safetensors")
    assert single.metadata["format"] == "hf"
    assert read_table(fixtures_dir / "tiny-bert-bin" / "pytorch_model.bin").tokens == \
        read_table(fixtures_dir / "tiny-bert-bin").tokens


def test_legacy_torch_pickle_format(copy_of):
    directory = copy_of("tiny-bert-bin")
    state = torch.load(directory / "pytorch_model.bin", weights_only=True)
    torch.save(state, directory / "pytorch_model.bin", _use_new_zipfile_serialization=False)
    table = read_table(directory)
    np.testing.assert_array_equal(table.vectors,
                                  state["embeddings.word_embeddings.weight"].numpy())


# -- choosing the tensor -----------------------------------------------------------------

def test_tensor_override(fixtures_dir):
    table = read_table(fixtures_dir / "tiny-llama", tensor="lm_head.weight")
    head = load_file(fixtures_dir / "tiny-llama" / "model.safetensors")["lm_head.weight"]
    np.testing.assert_array_equal(table.vectors, head.numpy())
    assert table.metadata["tensor"] == "lm_head.weight"


def test_tensor_override_unknown_name_lists_candidates(fixtures_dir):
    with pytest.raises(TensorNotFoundError,
                       match=r"no tensor 'nope'; 2-D tensors: .*model\.embed_tokens\.weight "
                             r"320x32.*pass one of them to --tensor"):
        read_table(fixtures_dir / "tiny-llama", tensor="nope")


def test_tensor_override_must_be_2d(fixtures_dir):
    with pytest.raises(TensorNotFoundError, match=r"has shape 32; an embedding is 2-D"):
        read_table(fixtures_dir / "tiny-llama", tensor="model.norm.weight")


def _checkpoint(tmp_path: Path, tensors: dict[str, tuple[int, ...]],
                config: dict | None = None) -> Path:
    directory = tmp_path / "ckpt"
    directory.mkdir()
    save_file({k: torch.zeros(s) for k, s in tensors.items()}, directory / "model.safetensors")
    if config is not None:
        (directory / "config.json").write_text(json.dumps(config))
    return directory


def test_ambiguous_embedding(tmp_path):
    directory = _checkpoint(tmp_path, {"a.embed_tokens.weight": (10, 4),
                                       "b.embed_tokens.weight": (12, 4)})
    with pytest.raises(TensorNotFoundError,
                       match=r"several tensors could be the input embedding "
                             r"\(a\.embed_tokens\.weight 10x4, b\.embed_tokens\.weight 12x4\); "
                             r"pass --tensor NAME"):
        read_table(directory)
    assert len(read_table(directory, tensor="b.embed_tokens.weight")) == 12


def test_checkpoint_without_embedding(tmp_path):
    directory = _checkpoint(tmp_path, {"encoder.dense.weight": (4, 3), "encoder.dense.bias": (4,)},
                            {"model_type": "bert"})
    with pytest.raises(TensorNotFoundError,
                       match=r"no input-embedding tensor found \(model_type bert\); "
                             r"2-D tensors: encoder\.dense\.weight 4x3; pass --tensor NAME"):
        read_table(directory)


def test_tied_head_used_only_when_tied(tmp_path):
    directory = _checkpoint(tmp_path, {"lm_head.weight": (6, 4), "norm.weight": (4,)},
                            {"model_type": "llama"})
    assert read_table(directory).metadata["tensor"] == "lm_head.weight"
    (directory / "config.json").write_text(json.dumps({"model_type": "llama",
                                                       "tie_word_embeddings": False}))
    with pytest.raises(TensorNotFoundError, match="no input-embedding tensor found"):
        read_table(directory)


@pytest.mark.parametrize(("model_type", "names", "expected"), [
    ("t5", ["shared.weight", "encoder.embed_tokens.weight", "decoder.embed_tokens.weight",
            "lm_head.weight"], "shared.weight"),
    ("t5", ["encoder.embed_tokens.weight", "encoder.block.0.layer.0.SelfAttention.q.weight"],
     "encoder.embed_tokens.weight"),  # T5EncoderModel saved without 'shared'
    ("bart", ["model.shared.weight", "model.encoder.embed_tokens.weight",
              "model.decoder.embed_tokens.weight"], "model.shared.weight"),
    ("opt", ["model.decoder.embed_tokens.weight", "model.decoder.embed_positions.weight",
             "lm_head.weight"], "model.decoder.embed_tokens.weight"),
    ("gpt_neox", ["gpt_neox.embed_in.weight", "embed_out.weight"], "gpt_neox.embed_in.weight"),
    ("bloom", ["transformer.word_embeddings.weight", "lm_head.weight"],
     "transformer.word_embeddings.weight"),
    ("xlm-roberta", ["roberta.embeddings.word_embeddings.weight",
                     "roberta.embeddings.position_embeddings.weight"],
     "roberta.embeddings.word_embeddings.weight"),
    ("electra", ["electra.embeddings.word_embeddings.weight",
                 "generator_lm_head.weight"], "electra.embeddings.word_embeddings.weight"),
    ("model2vec", ["embeddings"], "embeddings"),
    ("qwen2", ["model.embed_tokens.weight", "lm_head.weight"], "model.embed_tokens.weight"),
    ("", ["model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight"],
     "model.encoder.embed_tokens.weight"),  # unknown type: the encoder's side
])
def test_embedding_names_by_architecture(model_type, names, expected):
    config = {"model_type": model_type} if model_type else {}
    ckpt = Checkpoint(Path("m"), WeightKind.SAFETENSORS, dict.fromkeys(names, Path("m/x")),
                      shapes=dict.fromkeys(names, (8, 4)), config=config)
    assert find_embedding(ckpt) == expected


def test_multimodal_text_config():
    names = ["model.language_model.embed_tokens.weight", "model.vision_tower.patch.weight"]
    ckpt = Checkpoint(Path("m"), WeightKind.SAFETENSORS, dict.fromkeys(names, Path("m/x")),
                      shapes=dict.fromkeys(names, (8, 4)),
                      config={"model_type": "llava", "text_config": {"model_type": "llama"}})
    assert ckpt.model_types == ("llava", "llama")
    assert find_embedding(ckpt) == "model.language_model.embed_tokens.weight"


# -- vocabulary ----------------------------------------------------------------------------

def test_without_tokenizer_rows_are_numbered(tmp_path):
    directory = _checkpoint(tmp_path, {"model.embed_tokens.weight": (5, 4)},
                            {"model_type": "llama"})
    table = read_table(directory)
    assert table.tokens == tuple(placeholder_token(i) for i in range(5))
    assert table.metadata["vocabulary"] == "missing (rows named by number)"
    result = CliRunner().invoke(cli, ["inspect", str(directory)])
    assert result.exit_code == 0, result.output
    assert "missing (rows named by number)" in result.output


def test_fewer_rows_than_tokens(copy_of):
    directory = copy_of("tiny-bert")
    save_file({"embeddings.word_embeddings.weight": torch.zeros(10, 4)},
              directory / "model.safetensors")
    with pytest.raises(VocabularyError,
                       match=r"tokenizer has 183 tokens but tensor "
                             r"'embeddings\.word_embeddings\.weight' has only 10 rows"):
        read_table(directory)


# -- bad input -----------------------------------------------------------------------------

def test_directory_without_weights(tmp_path):
    with pytest.raises(FormatError, match=r"no model weights found \(looked for "
                                          r"model\.safetensors, .*pytorch_model\.bin"):
        read_table(tmp_path)


def test_truncated_safetensors(copy_of):
    directory = copy_of("tiny-bert")
    file = directory / "model.safetensors"
    whole = file.read_bytes()
    file.write_bytes(whole[:-100])
    with pytest.raises(FormatError, match=r"model\.safetensors: not a valid safetensors file "
                                          r"\(the header describes \d+ bytes, the file has "
                                          r"\d+\); it may be truncated or corrupt"):
        read_table(directory)
    # A header that promises more than the file holds for the embedding itself.
    header_size = int.from_bytes(whole[:8], "little")
    header = json.loads(whole[8:8 + header_size])
    entry = header["embeddings.word_embeddings.weight"]
    entry["data_offsets"][1] += 4
    text = json.dumps(header).encode()
    file.write_bytes(len(text).to_bytes(8, "little") + text + whole[8 + header_size:])
    with pytest.raises(FormatError, match=r"model\.safetensors: not a valid safetensors file "
                                          r"\(tensor 'embeddings\.word_embeddings\.weight' "
                                          r"needs bytes \d+ to \d+, .* the file has \d+ bytes\); "
                                          r"it may be truncated or corrupt: download it again"):
        read_table(directory)


def test_integer_tensor_is_not_an_embedding(tmp_path):
    directory = tmp_path / "ints"
    directory.mkdir()
    save_file({"embed_tokens.weight": torch.zeros(3, 2, dtype=torch.int64),
               "norm.weight": torch.zeros(2)}, directory / "model.safetensors")
    with pytest.raises(DtypeError, match=r"tensor 'embed_tokens\.weight': dtype I64; an "
                                         r"embedding is a float tensor"):
        read_table(directory)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_dtypes_read_exactly(tmp_path, dtype):
    directory = tmp_path / "d"
    directory.mkdir()
    weight = torch.randn(1000, 7, generator=torch.Generator().manual_seed(0)).to(dtype)
    save_file({"model.embed_tokens.weight": weight, "lm_head.weight": weight[:, :3].contiguous()},
              directory / "model.safetensors")
    table = read_table(directory)
    assert table.source_dtype == str(dtype).removeprefix("torch.")
    np.testing.assert_array_equal(table.vectors, weight.float().numpy().astype(
        table.vectors.dtype))


def test_corrupt_safetensors_header(copy_of):
    directory = copy_of("tiny-bert")
    file = directory / "model.safetensors"
    file.write_bytes(b"\xff" * 8 + file.read_bytes()[8:])
    with pytest.raises(FormatError, match=r"not a valid safetensors file \(unreadable header\)"):
        read_table(directory)


def test_index_naming_a_missing_shard(copy_of):
    directory = copy_of("tiny-bert-sharded")
    index = json.loads((directory / "model.safetensors.index.json").read_text())
    shard = index["weight_map"]["embeddings.word_embeddings.weight"]
    (directory / shard).unlink()
    with pytest.raises(FormatError, match=rf"names shard {shard} for "
                                          r"'embeddings\.word_embeddings\.weight', but .* does "
                                          r"not exist; download the missing shard"):
        read_table(directory)


def test_index_with_bad_shard_name(copy_of):
    directory = copy_of("tiny-bert-sharded")
    file = directory / "model.safetensors.index.json"
    index = json.loads(file.read_text())
    index["weight_map"]["embeddings.word_embeddings.weight"] = "../elsewhere.safetensors"
    file.write_text(json.dumps(index))
    with pytest.raises(FormatError, match=r"invalid shard name '\.\./elsewhere"):
        read_table(directory)
    file.write_text("{}")
    with pytest.raises(FormatError, match=r"no 'weight_map' naming the shard"):
        read_table(directory)


class _Exploit:
    """Unpickling this would create a marker file: the attack weights_only stops."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


@pytest.mark.parametrize("layout", ["zip", "raw-pickle"])
def test_pickle_that_runs_code_is_refused(tmp_path, layout):
    directory = tmp_path / "evil"
    directory.mkdir()
    marker = tmp_path / "pwned"
    payload = {"embeddings.word_embeddings.weight": torch.zeros(3, 2),
               "embeddings.position_embeddings.weight": torch.zeros(4, 2), "x": _Exploit(marker)}
    file = directory / "pytorch_model.bin"
    if layout == "zip":
        torch.save(payload, file)
    else:
        file.write_bytes(pickle.dumps(payload, protocol=2))
    assert detect_format(file).name.value == "hf"
    with pytest.raises(FormatError, match=r"refused to load .*never code"):
        read_table(directory)
    assert not marker.exists()


def test_invalid_config_json(copy_of):
    directory = copy_of("tiny-bert")
    (directory / "config.json").write_text('{"model_type": "bert",')
    with pytest.raises(FormatError, match=r"config\.json: not valid JSON .*fix or remove it"):
        read_table(directory)
    (directory / "config.json").write_text("[1, 2]")
    with pytest.raises(FormatError, match=r"config\.json: expected a JSON object, got list"):
        read_table(directory)


def test_bin_that_is_not_a_state_dict(tmp_path):
    directory = tmp_path / "odd"
    directory.mkdir()
    torch.save([torch.zeros(2, 2), torch.zeros(2, 2)], directory / "pytorch_model.bin")
    with pytest.raises(FormatError, match=r"holds a list, not a state dict"):
        read_table(directory)


# -- sniffing ------------------------------------------------------------------------------

def test_sniffers_never_both_claim_a_file(fixtures_dir, tmp_path):
    table = EmbeddingTable(["a", "b"], np.eye(2, dtype=np.float32))
    ours = [write_table(table, tmp_path / name)[0] for name in ("a.safetensors", "b.pt")]
    theirs = [fixtures_dir / "tiny-bert" / "model.safetensors",
              fixtures_dir / "tiny-bert-bin" / "pytorch_model.bin",
              fixtures_dir / "tiny-bert-sharded" / "model.safetensors.index.json",
              fixtures_dir / "tiny-llama-bin-sharded" / "pytorch_model-00001-of-00003.bin"]
    for path in ours + theirs:
        head = path.read_bytes()[:4096]
        claims = [sniff_hf(path, head), sniff_safetensors(path, head), sniff_pt(path, head)]
        assert sum(claims) == 1, (path, claims)
        assert claims[0] == (path in theirs)
        expected = "hf" if path in theirs else path.suffix.lstrip(".")
        assert detect_format(path).name.value == expected
    assert FORMATS[0].name.value == "hf"


# -- CLI -----------------------------------------------------------------------------------

def test_cli_inspect_checkpoint(fixtures_dir):
    result = CliRunner().invoke(cli, ["inspect", str(fixtures_dir / "tiny-qwen2")])
    assert result.exit_code == 0, result.output
    assert "344 x 32" in result.output
    assert "model.embed_tokens.weight" in result.output
    assert "padding rows" in result.output and "24" in result.output


def test_cli_convert_checkpoint_to_nn_embedding(fixtures_dir, tmp_path):
    out = tmp_path / "bert.safetensors"
    result = CliRunner().invoke(cli, ["-q", "convert", str(fixtures_dir / "tiny-bert"),
                                      str(out)])
    assert result.exit_code == 0, result.output
    weight = load_file(out)["weight"]
    emb = torch.nn.Embedding.from_pretrained(weight, padding_idx=0)
    expected = _model_embedding(fixtures_dir / "tiny-bert")
    torch.testing.assert_close(emb(torch.tensor([3])), torch.from_numpy(expected[[3]]))
    tokens = (tmp_path / "bert.vocab.txt").read_text("utf-8").splitlines()
    assert tokens == _tokenizer_vocab(fixtures_dir / "tiny-bert")
    report = json.loads((tmp_path / "bert.report.json").read_text())
    assert report["padding_idx"] == 0
    assert report["metadata"]["tensor"] == "embeddings.word_embeddings.weight"


def test_cli_convert_bf16_in_bf16_out(fixtures_dir, tmp_path):
    out = tmp_path / "llama.safetensors"
    result = CliRunner().invoke(cli, ["-q", "convert", str(fixtures_dir / "tiny-llama-bf16"),
                                      str(out)])
    assert result.exit_code == 0, result.output
    weight = load_file(out)["weight"]
    source = load_file(fixtures_dir / "tiny-llama-bf16" / "model.safetensors")
    assert weight.dtype == torch.bfloat16
    torch.testing.assert_close(weight, source["model.embed_tokens.weight"], rtol=0, atol=0)


def test_cli_tensor_option_and_error(fixtures_dir, tmp_path):
    runner = CliRunner()
    out = tmp_path / "head.safetensors"
    ok = runner.invoke(cli, ["-q", "convert", str(fixtures_dir / "tiny-llama"), str(out),
                             "--tensor", "lm_head.weight"])
    assert ok.exit_code == 0, ok.output
    bad = runner.invoke(cli, ["inspect", str(fixtures_dir / "tiny-llama"), "--tensor", "x"])
    assert bad.exit_code == 1
    assert "no tensor 'x'" in bad.output and "Traceback" not in bad.output


def test_module_keeps_heavy_imports_lazy():
    assert "torch" not in hf.__dict__ and "transformers" not in hf.__dict__


@pytest.mark.parametrize("name", ["tiny-qwen2", "tiny-llama-bf16", "tiny-llama-bin-sharded"])
def test_limit_reads_only_the_first_rows(fixtures_dir, name):
    whole = read_table(fixtures_dir / name)
    for limit in (5, len(whole) - 3, len(whole) + 10):
        head = read_table(fixtures_dir / name, limit=limit)
        n = min(limit, len(whole))
        assert head.tokens == whole.tokens[:n]
        np.testing.assert_array_equal(head.vectors, whole.vectors[:n])
        assert head.source_dtype == whole.source_dtype
        placeholders = sum(t.startswith("<embsurgeon:row:") for t in head.tokens)
        assert head.metadata.get("padding_rows", "0") == str(placeholders)


def test_limit_after_keep(fixtures_dir):
    whole = read_table(fixtures_dir / "tiny-bert")
    wanted = {whole.tokens[-1], whole.tokens[-2], whole.tokens[-3]}
    table = read_table(fixtures_dir / "tiny-bert", keep=frozenset(wanted), limit=2)
    assert table.tokens == whole.tokens[-3:-1]  # the filter saw every row before the limit


def test_missing_path_and_unclear_directory(tmp_path):
    with pytest.raises(FormatError, match=r"absent: no such file or directory"):
        hf.read_hf(tmp_path / "absent", ReadOptions())
    for name in ("a.safetensors", "b.safetensors"):
        save_file({"x.weight": torch.zeros(2, 2)}, tmp_path / name)
    with pytest.raises(FormatError, match=r"several weight files \(a\.safetensors, "
                                          r"b\.safetensors\) and none called model\.safetensors"):
        read_table(tmp_path)


def test_lone_nonstandard_safetensors_file(tmp_path):
    save_file({"model.embed_tokens.weight": torch.ones(3, 2), "lm_head.weight": torch.ones(3, 2)},
              tmp_path / "consolidated.safetensors")
    assert read_table(tmp_path).metadata["shard"] == "consolidated.safetensors"


def test_damaged_index(copy_of):
    directory = copy_of("tiny-bert-sharded")
    (directory / "model.safetensors.index.json").write_text('{"weight_map": {')
    with pytest.raises(FormatError, match=r"index\.json: not valid JSON; the shard index is "
                                          r"damaged"):
        read_table(directory)


@pytest.mark.parametrize(("name", "index_name", "tensor"), [
    ("tiny-bert-sharded", "model.safetensors.index.json", "embeddings.word_embeddings.weight"),
    ("tiny-llama-bin-sharded", "pytorch_model.bin.index.json", "model.embed_tokens.weight"),
])
def test_index_and_shard_disagree(copy_of, name, index_name, tensor):
    directory = copy_of(name)
    file = directory / index_name
    index = json.loads(file.read_text())
    right = index["weight_map"][tensor]
    index["weight_map"][tensor] = next(s for s in index["weight_map"].values() if s != right)
    file.write_text(json.dumps(index))
    with pytest.raises(TensorNotFoundError, match=rf"no tensor '{tensor}', although .*says it "
                                                  r"is there; the index and the shard do not "
                                                  r"belong together"):
        read_table(directory)


def test_candidate_listing_is_bounded(tmp_path):
    directory = _checkpoint(tmp_path, {f"layer{i}.proj.weight": (i + 2, 3) for i in range(15)})
    with pytest.raises(TensorNotFoundError,
                       match=r"2-D tensors: layer14\.proj\.weight 16x3, .* and 3 more; "):
        read_table(directory)
    only_1d = tmp_path / "flat"
    only_1d.mkdir()
    save_file({"a.bias": torch.zeros(3), "b.bias": torch.zeros(2)},
              only_1d / "model.safetensors")
    with pytest.raises(TensorNotFoundError, match=r"it holds no 2-D tensor; pass --tensor NAME"):
        read_table(only_1d)


def test_read_stops_at_a_short_file(tmp_path):
    import io

    from embsurgeon.io import safetensors_file

    array = np.empty((4, 2), dtype=np.float32)
    with pytest.raises(FormatError, match=r"ended early, after 8 of 32 bytes of a tensor"):
        safetensors_file._read_exactly(io.BytesIO(b"\0" * 8), array, tmp_path / "x.safetensors")

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from embsurgeon import read_table, write_table
from embsurgeon.errors import (
    DtypeError,
    FormatError,
    OutputError,
    TensorNotFoundError,
    VocabularyError,
)
from embsurgeon.table import EmbeddingTable


@pytest.fixture
def table() -> EmbeddingTable:
    rng = np.random.default_rng(0)
    return EmbeddingTable(["[PAD]", "hello", "wörld", "北京", " spaced "],
                          rng.standard_normal((5, 8)).astype(np.float32),
                          {"padding_idx": "0"})


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_round_trip(tmp_path, table, suffix):
    out = tmp_path / f"emb{suffix}"
    written = write_table(table, out)
    assert [p.name for p in written] == [out.name, "emb.vocab.txt", "emb.report.json"]
    back = read_table(out)
    assert back.tokens == table.tokens
    np.testing.assert_array_equal(back.vectors, table.vectors)
    assert back.padding_idx == 0
    report = json.loads((tmp_path / "emb.report.json").read_text())
    assert report["rows"] == 5 and report["padding_idx"] == 0


def test_loads_into_nn_embedding_and_compiled_module(tmp_path, table):
    out = tmp_path / "emb.safetensors"
    write_table(table, out)
    state = load_file(out)
    assert list(state) == ["weight"]
    emb = torch.nn.Embedding.from_pretrained(state["weight"], padding_idx=0)
    fresh = torch.nn.Embedding(5, 8)
    fresh.load_state_dict(state)
    ids = torch.tensor([[1, 3]])
    torch.testing.assert_close(emb(ids), fresh(ids))
    compiled = torch.compile(emb, backend="eager")
    torch.testing.assert_close(compiled(ids), torch.from_numpy(table.vectors[[1, 3]])[None])


def test_pt_loads_with_weights_only(tmp_path, table):
    out = tmp_path / "emb.pt"
    write_table(table, out)
    state = torch.load(out, weights_only=True)
    torch.nn.Embedding(5, 8).load_state_dict(state)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_dtype_kept_and_restored(tmp_path, table, dtype):
    out = tmp_path / "emb.safetensors"
    write_table(table, out, dtype=dtype)
    assert load_file(out)["weight"].dtype == getattr(torch, dtype)
    back = read_table(out)
    assert back.source_dtype == dtype
    again = tmp_path / "again.safetensors"
    write_table(back, again)  # no dtype given: bf16 in, bf16 out
    assert load_file(again)["weight"].dtype == getattr(torch, dtype)


def test_refuses_to_overwrite(tmp_path, table):
    out = tmp_path / "emb.safetensors"
    write_table(table, out)
    before = out.read_bytes()
    with pytest.raises(OutputError, match="already exists; pass --force"):
        write_table(table, out)
    assert out.read_bytes() == before
    write_table(table, out, force=True)


def test_no_partial_output_on_failure(tmp_path):
    bad = EmbeddingTable(["a\nb"], np.zeros((1, 2), np.float32))
    with pytest.raises(VocabularyError, match="line break"):
        write_table(bad, tmp_path / "emb.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_float16_overflow_names_row(tmp_path):
    big = EmbeddingTable(["a", "b"], np.array([[1, 2], [1e6, 0]], np.float32))
    with pytest.raises(DtypeError, match=r"row 1 overflows float16"):
        write_table(big, tmp_path / "emb.safetensors", dtype="float16")
    assert list(tmp_path.iterdir()) == []


def test_missing_vocabulary_gets_numbered_rows(tmp_path):
    from safetensors.torch import save_file

    save_file({"weight": torch.zeros(3, 2)}, tmp_path / "bare.safetensors")
    t = read_table(tmp_path / "bare.safetensors")
    assert t.tokens[2] == "<embsurgeon:row:2>"
    assert "missing" in t.metadata["vocabulary"]


def test_vocab_sidecar_mismatch(tmp_path, table):
    out = tmp_path / "emb.safetensors"
    write_table(table, out)
    (tmp_path / "emb.vocab.txt").write_text("a\nb\n")
    with pytest.raises(VocabularyError, match=r"2 tokens but .* has 5 rows"):
        read_table(out)


def test_corrupt_pt_is_refused(tmp_path):
    out = tmp_path / "emb.pt"
    out.write_bytes(b"PK\x03\x04" + b"\0" * 64)
    with pytest.raises(FormatError, match=r"emb\.pt"):
        read_table(out, "pt")


@pytest.mark.parametrize("zipped", [True, False])
def test_pickle_with_code_is_never_run(tmp_path, zipped):
    import pickle

    class Evil:
        def __reduce__(self):
            return (exec, (f"open({str(tmp_path / 'pwned')!r}, 'w').write('pwned')",))

    out = tmp_path / "evil.pt"
    torch.save({"weight": torch.zeros(2, 2), "x": Evil()}, out, pickle_module=pickle,
               _use_new_zipfile_serialization=zipped)
    with pytest.raises(FormatError, match=r"evil\.pt: refused to load .*never code"):
        read_table(out, "pt")
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_same_table_same_bytes(tmp_path, table, dtype):
    many = table.with_metadata(**{f"key{i}": str(i) for i in range(20)})
    write_table(many, tmp_path / "a.safetensors", dtype=dtype)
    write_table(many, tmp_path / "b.safetensors", dtype=dtype)
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()


def test_same_bytes_across_processes_and_no_torch_for_bfloat16(tmp_path):
    import subprocess
    import sys

    script = (
        "import sys, numpy as np\n"
        "from embsurgeon import write_table\n"
        "from embsurgeon.table import EmbeddingTable\n"
        "t = EmbeddingTable(['a', 'b'], np.array([[1, 2.5], [3, 1e-3]], np.float32),\n"
        "                   {f'k{i}': str(i) for i in range(30)})\n"
        "write_table(t, sys.argv[1], dtype='bfloat16')\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    outputs = []
    for seed in ("1", "2"):
        out = tmp_path / f"s{seed}.safetensors"
        env = {**__import__("os").environ, "PYTHONHASHSEED": seed}
        subprocess.run([sys.executable, "-c", script, str(out)], check=True, env=env)
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
    assert load_file(tmp_path / "s1.safetensors")["weight"].dtype == torch.bfloat16


def test_legacy_pt_reads(tmp_path, table):
    out = tmp_path / "old.pt"
    torch.save({"weight": torch.from_numpy(table.vectors)}, out,
               _use_new_zipfile_serialization=False)
    back = read_table(out, "pt")
    np.testing.assert_array_equal(back.vectors, table.vectors)


def test_bare_tensor_pt_reads_as_weight(tmp_path, table):
    out = tmp_path / "bare.pt"
    torch.save(torch.from_numpy(table.vectors).to(torch.bfloat16), out)
    back = read_table(out)
    assert back.source_dtype == "bfloat16" and back.vectors.shape == (5, 8)


def test_pt_without_the_tensor_names_what_it_has(tmp_path):
    out = tmp_path / "two.pt"
    torch.save({"a": torch.zeros(2, 2), "b": torch.zeros(2, 2)}, out)
    with pytest.raises(TensorNotFoundError, match=r"no tensor 'weight' \(has a, b\); pass "
                                                  r"--tensor NAME"):
        read_table(out, "pt")
    assert read_table(out, "pt", tensor="b").vectors.shape == (2, 2)
    st = tmp_path / "w.safetensors"
    write_table(EmbeddingTable(["x"], np.zeros((1, 2), np.float32)), st)
    with pytest.raises(TensorNotFoundError, match=r"no tensor 'c' \(has weight\)"):
        read_table(st, tensor="c")

"""Our safetensors writer: safetensors itself reads it; the bytes depend only on the input."""

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.numpy import load_file as load_numpy
from safetensors.torch import load_file

from embsurgeon.errors import DtypeError, FormatError, TensorNotFoundError
from embsurgeon.io.safetensors_file import (
    StoredTensor,
    read_safetensors_tensor,
    safetensors_header,
    write_safetensors_file,
)
from embsurgeon.io.tensors import bfloat16_bits


def matrix(rows=7, dim=5, seed=0):
    return np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_safetensors_reads_our_file(tmp_path, dtype):
    data = matrix().astype(dtype)
    path = tmp_path / "w.safetensors"
    meta = {"z": "last", "a": "first", "token": "北京"}
    write_safetensors_file(path, {"weight": StoredTensor.of(data), "bias": StoredTensor.of(
        data[0].copy())}, meta)
    np.testing.assert_array_equal(load_numpy(path)["weight"], data)
    with safe_open(str(path), framework="pt") as handle:
        assert handle.metadata() == meta
        assert sorted(handle.keys()) == ["bias", "weight"]
        torch.testing.assert_close(handle.get_tensor("bias"), torch.from_numpy(data[0]))
    vectors, name, rows = read_safetensors_tensor(path, "weight", "w", None)
    assert name == dtype and rows == 7
    np.testing.assert_array_equal(vectors, data)


def test_header_is_sorted_compact_and_padded_to_8(tmp_path):
    path = tmp_path / "w.safetensors"
    write_safetensors_file(path, {"weight": StoredTensor.of(matrix())}, {"b": "2", "a": "1"})
    raw = path.read_bytes()
    size = int.from_bytes(raw[:8], "little")
    assert size % 8 == 0
    text = raw[8:8 + size].decode()
    assert text == text.rstrip() + " " * (len(text) - len(text.rstrip()))
    header = json.loads(text)
    assert list(header) == sorted(header)
    assert list(header["__metadata__"]) == ["a", "b"]
    assert ", " not in text and ": " not in text
    assert len(raw) == 8 + size + 7 * 5 * 4
    assert safetensors_header(path) == header


def test_bfloat16_matches_torch_rounding(tmp_path):
    rng = np.random.default_rng(1)
    data = (rng.standard_normal((300, 33)) * 10.0 ** rng.integers(-30, 30, (300, 33)))
    data = data.astype(np.float32)
    # Exact ties both ways, subnormals, signed zeros, infinities, NaN.
    data[0, :8] = [1 + 2**-8, 1 + 3 * 2**-8, -(1 + 2**-8), 1e-40, -0.0, np.inf, -np.inf, np.nan]
    bits = bfloat16_bits(data)
    expected = torch.from_numpy(data).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    finite = ~np.isnan(data)
    np.testing.assert_array_equal(bits[finite], expected[finite])
    path = tmp_path / "w.safetensors"
    write_safetensors_file(path, {"weight": StoredTensor(bits, "BF16")})
    back = load_file(path)["weight"]
    assert back.dtype == torch.bfloat16
    assert torch.isnan(back[0, 7])  # NaN stays NaN
    torch.testing.assert_close(back[finite], torch.from_numpy(data).to(torch.bfloat16)[finite],
                               rtol=0, atol=0)


def test_bfloat16_overflow_names_the_row():
    data = np.ones((3, 2), np.float32)
    data[2, 1] = 3.4e38  # finite in float32, rounds past bfloat16's largest value
    with pytest.raises(DtypeError, match=r"row 2 overflows bfloat16 \(largest \|value\| 3.4e\+38"):
        bfloat16_bits(data)


def test_refuses_dtypes_it_cannot_store(tmp_path):
    with pytest.raises(DtypeError, match=r"cannot store a int32 array"):
        StoredTensor.of(np.zeros((2, 2), np.int32))
    with pytest.raises(DtypeError, match=r"tensor 'w': float32 data cannot be stored as BF16"):
        write_safetensors_file(tmp_path / "x", {"w": StoredTensor(matrix(), "BF16")})
    with pytest.raises(DtypeError, match=r"tensor 'w': unsupported safetensors dtype I8"):
        write_safetensors_file(tmp_path / "x", {"w": StoredTensor(matrix(), "I8")})


def test_reader_errors(tmp_path):
    path = tmp_path / "w.safetensors"
    write_safetensors_file(path, {"weight": StoredTensor.of(matrix()),
                                  "bias": StoredTensor.of(matrix()[0].copy())})
    with pytest.raises(TensorNotFoundError, match=r"no tensor 'nope', although the index"):
        read_safetensors_tensor(path, "nope", "w", None)
    with pytest.raises(TensorNotFoundError, match=r"has shape 5; an embedding is 2-D .* "
                                                  r"pass --tensor NAME"):
        read_safetensors_tensor(path, "bias", "bias", None)
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(FormatError, match=r"the header describes \d+ bytes, the file has"):
        read_safetensors_tensor(cut, "weight", "w", None)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x05" + b"\0" * 20)
    with pytest.raises(FormatError, match=r"unreadable header"):
        read_safetensors_tensor(junk, "weight", "w", None)

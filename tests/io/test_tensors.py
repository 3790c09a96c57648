"""Moving matrices between numpy and torch: dtypes kept, overflow refused with the row named."""

import numpy as np
import pytest
import torch

from embsurgeon.errors import DtypeError
from embsurgeon.io.tensors import (
    bfloat16_bits,
    dtype_name,
    numpy_cast,
    numpy_to_tensor,
    resolve_dtype,
    tensor_to_numpy,
)


def test_tensor_to_numpy_keeps_the_dtype_name():
    bf16 = torch.ones(2, 3, dtype=torch.bfloat16)
    array, name = tensor_to_numpy(bf16, what="t")
    assert name == "bfloat16" and array.dtype == np.float32
    array, name = tensor_to_numpy(torch.ones(2, 3, dtype=torch.float16), what="t")
    assert name == "float16" and array.dtype == np.float16
    assert dtype_name(bf16) == "bfloat16"


def test_tensor_to_numpy_refuses_integers():
    with pytest.raises(DtypeError, match=r"ids: tensor has dtype torch.int64; expected a float"):
        tensor_to_numpy(torch.zeros(2, 2, dtype=torch.int64), what="ids")


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_numpy_to_tensor_round_trips(dtype):
    array = np.array([[1.0, -2.5], [0.0, 3.0]], np.float32)
    tensor = numpy_to_tensor(array, dtype)
    assert tensor.dtype == getattr(torch, dtype) and tensor.is_contiguous()
    np.testing.assert_array_equal(tensor.float().numpy(), array)


def test_numpy_to_tensor_refuses_unknown_dtypes():
    for bad in ("int8", "float8", "nonsense"):
        with pytest.raises(DtypeError, match=rf"unsupported dtype '{bad}'; use float32, float16 "
                                             r"or bfloat16"):
            numpy_to_tensor(np.zeros((1, 1), np.float32), bad)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_numpy_to_tensor_overflow_names_the_row(dtype):
    array = np.zeros((4, 2), np.float32)
    array[3, 0] = 1e6 if dtype == "float16" else 3.4e38
    array[1, 1] = np.inf  # already infinite: not an overflow
    with pytest.raises(DtypeError, match=rf"row 3 overflows {dtype} \(largest \|value\| .*\); "
                                         r"write float32 or normalize the rows first"):
        numpy_to_tensor(array, dtype)


def test_numpy_cast():
    array = np.array([[1.0, 70000.0], [2.0, np.inf]], np.float64)
    assert numpy_cast(array[:, :1], "float16").dtype == np.float16
    assert numpy_cast(array, "float32").flags.c_contiguous
    with pytest.raises(DtypeError, match=r"row 0 overflows float16 \(largest \|value\| 7e\+04\)"):
        numpy_cast(array, "float16")
    with pytest.raises(DtypeError, match=r"numpy cannot hold 'bfloat16'; use float32 or float16"):
        numpy_cast(array, "bfloat16")


def test_bfloat16_bits_in_chunks_match_torch(monkeypatch):
    import embsurgeon.io.tensors as tensors

    monkeypatch.setattr(tensors, "_BF16_CHUNK_ROWS_BYTES", 64)  # many chunks of 2 rows
    array = np.random.default_rng(3).standard_normal((9, 8)).astype(np.float32)
    expected = torch.from_numpy(array).to(torch.bfloat16).view(torch.int16).numpy()
    np.testing.assert_array_equal(bfloat16_bits(array), expected.view(np.uint16))
    array[7, 2] = -3.4e38
    with pytest.raises(DtypeError, match=r"row 7 overflows bfloat16"):
        bfloat16_bits(array)


def test_resolve_dtype():
    assert resolve_dtype("float16", "bfloat16") == "float16"
    assert resolve_dtype(None, "bfloat16") == "bfloat16"
    assert resolve_dtype(None, "float16") == "float16"
    assert resolve_dtype(None, "float64") == "float32"
    assert resolve_dtype(None, "float8_e4m3fn") == "float32"

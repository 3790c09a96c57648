"""Moving matrices between torch and numpy without losing the source dtype.

numpy has no bfloat16, so bf16 tensors become float32 arrays and the name ``bfloat16`` is
kept in the table metadata; writers turn it back into bf16.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from embsurgeon.errors import DtypeError

if TYPE_CHECKING:
    import torch

_NUMPY_SAFE = {"float16", "float32", "float64"}


def dtype_name(tensor: torch.Tensor) -> str:
    """``torch.bfloat16`` -> ``"bfloat16"``."""
    return str(tensor.dtype).removeprefix("torch.")


def tensor_to_numpy(tensor: torch.Tensor, *, what: str) -> tuple[np.ndarray, str]:
    """A float numpy copy of ``tensor`` and the name of its original dtype."""
    import torch

    if not tensor.is_floating_point():
        raise DtypeError(f"{what}: tensor has dtype {tensor.dtype}; expected a float tensor")
    name = dtype_name(tensor)
    if name not in _NUMPY_SAFE:
        tensor = tensor.to(torch.float32)
    return tensor.detach().cpu().numpy(), name


def numpy_to_tensor(array: np.ndarray, dtype: str) -> torch.Tensor:
    """A contiguous torch tensor of ``array`` in ``dtype`` (float32, float16 or bfloat16)."""
    import torch

    target: Any = getattr(torch, dtype, None)
    if not isinstance(target, torch.dtype) or not target.is_floating_point:
        raise DtypeError(f"unsupported dtype {dtype!r}; use float32, float16 or bfloat16")
    source = torch.from_numpy(np.ascontiguousarray(array))
    out = source.to(target)
    if target in (torch.float16, torch.bfloat16):
        overflow = torch.isfinite(source) & ~torch.isfinite(out)
        if bool(overflow.any()):
            row = int(overflow.any(dim=1).nonzero()[0, 0])
            raise _overflow(row, dtype, float(source.abs().max()))
    return out.contiguous()


def numpy_cast(array: np.ndarray, dtype: str) -> np.ndarray:
    """``array`` as a contiguous float32 or float16 numpy array, refusing overflowing values.

    Writers use this instead of torch where numpy can hold the dtype: it spares a convert the
    cost of importing torch.

    >>> numpy_cast(np.ones((1, 2)), "float16").dtype
    dtype('float16')
    """
    if dtype not in ("float32", "float16"):
        raise DtypeError(f"numpy cannot hold {dtype!r}; use float32 or float16")
    with np.errstate(over="ignore"):  # overflow is detected below, with the row named
        out = np.ascontiguousarray(array, dtype=dtype)
    if out.dtype != array.dtype:
        overflow = np.isfinite(array) & ~np.isfinite(out)
        if overflow.any():
            row = int(np.flatnonzero(overflow.any(axis=1))[0])
            raise _overflow(row, dtype, float(np.abs(array[np.isfinite(array)]).max()))
    return out


_BF16_CHUNK_ROWS_BYTES = 32 << 20
_BF16_QUIET_NAN = np.uint16(0x7FC0)  # what torch (c10's round_to_nearest_even) gives every NaN


def bfloat16_bits(array: np.ndarray) -> np.ndarray:
    """The bfloat16 bit patterns (``uint16``) of a 2-D float array, as torch would round it.

    Round to nearest, ties to even, on the float32 bit pattern; NaN stays NaN; a finite value
    that rounds past bfloat16's range is refused with its row named, as float16 is. Works in
    chunks of rows so the float32 and uint32 temporaries stay small.

    >>> bfloat16_bits(np.array([[1.0, -2.0, 1.00390625]], np.float32)).tolist()
    [[16256, 49152, 16256]]
    """
    rows = array.shape[0]
    out = np.empty(array.shape, dtype=np.uint16)  # (V, D)
    step = max(1, _BF16_CHUNK_ROWS_BYTES // max(1, 4 * int(np.prod(array.shape[1:]))))
    for start in range(0, rows, step):
        part = np.ascontiguousarray(array[start:start + step], dtype=np.float32)
        bits = part.view(np.uint32)
        # Adding 0x7FFF plus the lowest kept bit rounds half to even; NaNs are set apart
        # first since their large bit patterns would carry into the sign.
        nan = np.isnan(part)
        rounded = (bits + (np.uint32(0x7FFF) + ((bits >> 16) & np.uint32(1)))) >> 16
        chunk = rounded.astype(np.uint16)
        chunk[nan] = _BF16_QUIET_NAN
        overflow = np.isfinite(part) & ((chunk & np.uint16(0x7F80)) == np.uint16(0x7F80))
        if overflow.any():
            row = start + int(np.flatnonzero(overflow.reshape(len(part), -1).any(axis=1))[0])
            finite = array[np.isfinite(array)]
            raise _overflow(row, "bfloat16", float(np.abs(finite).max()))
        out[start:start + len(part)] = chunk
    return out


def _overflow(row: int, dtype: str, largest: float) -> DtypeError:
    return DtypeError(
        f"row {row} overflows {dtype} (largest |value| {largest:.4g}); "
        "write float32 or normalize the rows first"
    )


def resolve_dtype(requested: str | None, source: str) -> str:
    """The dtype to write: the one asked for, else the source's when it is a float we can write."""
    if requested is not None:
        return requested
    return source if source in ("float32", "float16", "bfloat16") else "float32"

"""The safetensors file layout, read and written without torch.

An 8-byte little-endian header size, a JSON header (name -> dtype, shape, data offsets), then
the raw bytes. We write it ourselves so that the same table gives the same bytes every time
(safetensors' own writer orders ``__metadata__`` keys by hash) and bfloat16 needs no torch.

Reading one tensor straight into a numpy array with ``readinto`` costs the array
alone; ``safe_open(...).get_tensor`` maps the file and copies, twice the tensor at peak, and
imports torch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embsurgeon.errors import DtypeError, FormatError, TensorNotFoundError


def safetensors_header(path: Path) -> dict[str, Any] | None:
    """The JSON header of a safetensors file, or None if ``path`` is not one (no torch needed)."""
    try:
        with open(path, "rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                return None
            size = int.from_bytes(prefix, "little")
            if size <= 0 or size > 100_000_000 or size > path.stat().st_size - 8:
                return None
            header = json.loads(handle.read(size))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return header if isinstance(header, dict) else None


def tensor_shape(entry: Any) -> tuple[int, ...]:
    shape = entry.get("shape") if isinstance(entry, dict) else None
    return tuple(int(x) for x in shape) if isinstance(shape, list) else ()


def check_2d(what: str, shape: tuple[int, ...]) -> None:
    if len(shape) != 2:
        raise TensorNotFoundError(
            f"{what} has shape {'x'.join(map(str, shape)) or 'scalar'}; an embedding is 2-D "
            "(rows x dim): pass --tensor NAME"
        )


# safetensors dtype -> (little-endian numpy dtype of the stored bytes, our dtype name).
_SAFETENSORS_DTYPES = {"F16": ("<f2", "float16"), "F32": ("<f4", "float32"),
                       "F64": ("<f8", "float64"), "BF16": ("<u2", "bfloat16")}
NUMPY_NATIVE = ("float16", "float32", "float64")
_BF16_CHUNK_BYTES = 32 << 20


def read_safetensors_tensor(file: Path, name: str, what: str,
                      limit: int | None) -> tuple[np.ndarray, str, int]:
    """One tensor of a safetensors file, read straight into a new numpy array.

    ``safe_open(...).get_tensor`` goes through a memory map, so the mapped pages and the copy
    both count against resident memory (twice the tensor at peak); one ``readinto`` at the
    tensor's offset needs the array alone. bfloat16 widens to float32 in chunks, no torch.
    """
    with open(file, "rb") as handle:
        prefix = handle.read(8)
        header = safetensors_header(file)
        if header is None or len(prefix) < 8:
            raise FormatError(
                f"{file}: not a valid safetensors file (unreadable header); the file may be "
                "truncated or corrupt: download it again"
            )
        entry = header.get(name)
        if not isinstance(entry, dict):
            raise TensorNotFoundError(
                f"{file}: no tensor {name!r}, although the index says it is there; the "
                "index and the shard do not belong together"
            )
        shape = tensor_shape(entry)
        check_2d(what, shape)
        if entry.get("dtype") not in _SAFETENSORS_DTYPES:
            raise DtypeError(
                f"{what}: dtype {entry.get('dtype')}; an embedding is a float tensor "
                "(F16, BF16, F32 or F64): pass --tensor NAME"
            )
        _check_covered(file, header, int.from_bytes(prefix, "little"))
        stored, dtype = _SAFETENSORS_DTYPES[entry["dtype"]]
        offsets = entry.get("data_offsets")
        begin, end = offsets if isinstance(offsets, list) and len(offsets) == 2 else (0, -1)
        rows, dim = shape
        nbytes = rows * dim * np.dtype(stored).itemsize
        start = 8 + int.from_bytes(prefix, "little") + int(begin)
        size = file.stat().st_size
        if int(end) - int(begin) != nbytes or start + nbytes > size:
            raise FormatError(
                f"{file}: not a valid safetensors file (tensor {name!r} needs bytes {start} to "
                f"{start + nbytes}, the header says {begin} to {end} and the file has {size} "
                "bytes); it may be truncated or corrupt: download it again"
            )
        handle.seek(start)
        wanted = rows if limit is None else min(rows, limit)
        if dtype != "bfloat16":
            vectors = np.empty((wanted, dim), dtype=stored)  # (N, D)
            _read_exactly(handle, vectors, file)
            return vectors, dtype, rows
        vectors = np.empty((wanted, dim), dtype=np.float32)  # (N, D)
        step = max(1, _BF16_CHUNK_BYTES // max(1, 2 * dim))
        chunk = np.empty((min(step, wanted), dim), dtype=stored)
        for row in range(0, wanted, step):
            part = chunk[:min(step, wanted - row)]
            _read_exactly(handle, part, file)
            # bfloat16 is the top half of a float32: widen by a 16-bit shift, in place.
            wide = vectors[row:row + len(part)].view(np.uint32)
            wide[...] = part
            wide <<= 16
        return vectors, dtype, rows


def _check_covered(file: Path, header: Mapping[str, Any], header_size: int) -> None:
    """Like safetensors itself, refuse a file whose data does not end where the header says."""
    ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"
            and isinstance(entry, dict) and isinstance(entry.get("data_offsets"), list)]
    expected = 8 + header_size + max(ends, default=0)
    size = file.stat().st_size
    if size != expected:
        raise FormatError(
            f"{file}: not a valid safetensors file (the header describes {expected} bytes, "
            f"the file has {size}); it may be truncated or corrupt: download it again"
        )


def _read_exactly(handle: Any, array: np.ndarray, file: Path) -> None:
    view = array.reshape(-1).view(np.uint8).data  # the array's own bytes, no copy
    done = 0
    while done < len(view):
        got = handle.readinto(view[done:])
        if not got:
            raise FormatError(f"{file}: ended early, after {done} of {len(view)} bytes of a "
                              "tensor; the file is truncated: download it again")
        done += got


# -- writing ---------------------------------------------------------------------------------

# numpy dtype of the stored bytes -> safetensors dtype name (bfloat16 travels as uint16 bits).
_STORED_NAMES = {"float16": "F16", "float32": "F32", "float64": "F64"}


@dataclass(frozen=True)
class StoredTensor:
    """A tensor as it goes into the file: its bytes and the safetensors dtype naming them."""

    data: np.ndarray  # float16/32/64, or uint16 bfloat16 bit patterns
    dtype: str  # "F16", "F32", "F64" or "BF16"

    @classmethod
    def of(cls, array: np.ndarray) -> StoredTensor:
        """A float16/32/64 numpy array, stored as itself."""
        name = _STORED_NAMES.get(array.dtype.name)
        if name is None:
            raise DtypeError(f"cannot store a {array.dtype} array; give float16, float32 or "
                             "float64 (bfloat16 as StoredTensor(bits, 'BF16'))")
        return cls(array, name)


def write_safetensors_file(path: Path, tensors: Mapping[str, StoredTensor],
                           metadata: Mapping[str, str] | None = None) -> None:
    """Write a safetensors file whose bytes depend only on the arguments.

    The header is compact JSON with sorted keys, padded with spaces to a multiple of 8 bytes
    (as safetensors does, so the data is aligned); tensors follow in name order, little-endian.

    >>> write_safetensors_file(Path("w.safetensors"),                   # doctest: +SKIP
    ...                        {"weight": StoredTensor.of(np.eye(2, dtype=np.float32))})
    """
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    ordered = sorted(tensors.items())
    for name, tensor in ordered:
        if tensor.dtype not in _SAFETENSORS_DTYPES:
            raise DtypeError(f"tensor {name!r}: unsupported safetensors dtype {tensor.dtype}")
        stored = np.dtype(_SAFETENSORS_DTYPES[tensor.dtype][0])
        if tensor.data.dtype.itemsize != stored.itemsize or tensor.data.dtype.kind not in "fu":
            raise DtypeError(f"tensor {name!r}: {tensor.data.dtype} data cannot be stored as "
                             f"{tensor.dtype}")
        size = tensor.data.size * stored.itemsize
        header[name] = {"dtype": tensor.dtype, "shape": list(tensor.data.shape),
                        "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    encoded = text.encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)
    with open(path, "wb") as handle:
        handle.write(len(encoded).to_bytes(8, "little"))
        handle.write(encoded)
        for _, tensor in ordered:
            data = tensor.data
            little = data.dtype.newbyteorder("<")
            handle.write(np.ascontiguousarray(data, dtype=little).reshape(-1).view(np.uint8).data)

"""Paddle's combined tensor stream (``inference.pdiparams``), read and written without Paddle.

``save_combine`` writes the tensors one after the other, with no names (the names live in
the program, ``inference.json`` / ``inference.pdmodel``; Paddle saves the parameters in
sorted-name order). Per tensor (Paddle's ``SerializeToStream`` / ``TensorToStream``,
little-endian):

* ``uint32`` version (0), ``uint64`` LoD level count, then per level ``uint64`` byte size + data;
* ``uint32`` version (0), ``int32`` size of a ``VarType.TensorDesc`` protobuf message, the message
  (field 1: data type enum; field 2: the dims, ``int64``, packed or not);
* the raw data, C order, ``prod(dims) * itemsize`` bytes.

The few protobuf fields are parsed by hand: no pickle, no protobuf dependency.
"""
from __future__ import annotations

import struct
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..errors import WeightsError

#: Paddle ``VarType.Type`` -> numpy dtype (the tensor types a parameter file can hold)
DTYPES: dict[int, np.dtype] = {
    0: np.dtype(np.bool_), 1: np.dtype("<i2"), 2: np.dtype("<i4"), 3: np.dtype("<i8"),
    4: np.dtype("<f2"), 5: np.dtype("<f4"), 6: np.dtype("<f8"), 20: np.dtype(np.uint8),
    21: np.dtype(np.int8), 23: np.dtype("<c8"), 24: np.dtype("<c16"),
}
BF16 = 22  # no numpy dtype: widened to float32 on read
_CODES = {dtype: code for code, dtype in DTYPES.items()}
_MAX_DESC = 1 << 16  # a TensorDesc is a type and a few dims: anything bigger is not a tensor stream


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """A protobuf base-128 varint at ``pos``: (value, next position); ValueError when truncated."""
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def parse_tensor_desc(message: bytes) -> tuple[int, list[int]]:
    """``VarType.TensorDesc`` -> (data type code, dims)."""
    dtype: int | None = None
    dims: list[int] = []
    pos = 0
    while pos < len(message):
        key, pos = read_varint(message, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = read_varint(message, pos)
            if field == 1:
                dtype = value
            elif field == 2:
                dims.append(_signed(value))
        elif wire == 2:
            length, pos = read_varint(message, pos)
            end = pos + length
            if field == 2:  # packed dims
                while pos < end:
                    value, pos = read_varint(message, pos)
                    dims.append(_signed(value))
            pos = end
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
    if dtype is None:
        raise ValueError("TensorDesc without a data type")
    return dtype, dims


def _read_exact(handle: BinaryIO, size: int, what: str) -> bytes:
    data = handle.read(size)
    if len(data) != size:
        raise ValueError(f"file ends inside {what}")
    return data


def _read_one(handle: BinaryIO) -> np.ndarray:
    (version,) = struct.unpack("<I", _read_exact(handle, 4, "a tensor header"))
    if version != 0:
        raise ValueError(f"tensor version {version} (Paddle writes 0)")
    (levels,) = struct.unpack("<Q", _read_exact(handle, 8, "the LoD header"))
    if levels > 16:
        raise ValueError(f"{levels} LoD levels")
    for _ in range(levels):  # sequence offsets: parameters have none, skip them if present
        (size,) = struct.unpack("<Q", _read_exact(handle, 8, "the LoD header"))
        _read_exact(handle, size, "LoD data")
    (version,) = struct.unpack("<I", _read_exact(handle, 4, "a tensor header"))
    if version != 0:
        raise ValueError(f"tensor version {version} (Paddle writes 0)")
    (desc_size,) = struct.unpack("<i", _read_exact(handle, 4, "a tensor header"))
    if not 0 <= desc_size <= _MAX_DESC:
        raise ValueError(f"tensor description of {desc_size} bytes")
    code, dims = parse_tensor_desc(_read_exact(handle, desc_size, "a tensor description"))
    if any(d < 0 for d in dims):
        raise ValueError(f"negative dimension in {dims}")
    count = int(np.prod(dims, dtype=np.int64)) if dims else 1
    if code == BF16:
        raw = np.frombuffer(_read_exact(handle, count * 2, "tensor data"), dtype="<u2")
        return (raw.astype(np.uint32) << 16).view(np.float32).reshape(tuple(dims))  # bfloat16 is float32's top half
    if code not in DTYPES:
        raise ValueError(f"unsupported tensor data type {code}")
    dtype = DTYPES[code]
    array = np.empty(count, dtype=dtype)  # read straight into a writable array (torch takes it as is)
    if handle.readinto(memoryview(array.view(np.uint8))) != array.nbytes:
        raise ValueError("file ends inside tensor data")
    return array.reshape(tuple(dims)).astype(dtype.newbyteorder("="), copy=False)


def read_tensor_stream(path: str | Path) -> list[np.ndarray]:
    """Every tensor of a ``save_combine`` file, in file order."""
    path = Path(path)
    tensors: list[np.ndarray] = []
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            while handle.tell() < size:
                tensors.append(_read_one(handle))
    except ValueError as exc:
        raise WeightsError(f"{path}: not a Paddle parameter file (tensor {len(tensors)}: {exc})") from None
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read ({exc})") from None
    return tensors


def _encode_varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def write_tensor_stream(path: str | Path, tensors: Iterable[np.ndarray]) -> None:
    """Write tensors as Paddle's ``save_combine`` does (dims unpacked, as Paddle's proto2 message encodes them)."""
    with open(path, "wb") as handle:
        for tensor in tensors:
            array = np.asarray(tensor, order="C")  # (ascontiguousarray makes 0-d arrays 1-d)
            code = _CODES.get(array.dtype.newbyteorder("<")) if array.dtype.byteorder != "|" else _CODES.get(array.dtype)
            if code is None:
                raise ValueError(f"cannot write dtype {array.dtype}")
            desc = b"\x08" + _encode_varint(code) + b"".join(b"\x10" + _encode_varint(d) for d in array.shape)
            handle.write(struct.pack("<IQIi", 0, 0, 0, len(desc)))
            handle.write(desc)
            handle.write(array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes())

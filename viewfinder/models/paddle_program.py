"""The parameter list of an exported Paddle program, read without Paddle.

A PaddleX inference folder holds the program as ``inference.json`` (Paddle >= 3, PIR, JSON)
or ``inference.pdmodel`` (older Paddle, a ``ProgramDesc`` protobuf). What we need from it:
the persistable parameters (name, shape, dtype), which ``inference.pdiparams`` stores in
sorted-name order without names, the ops' types, and a few op attributes (the detector's
NMS settings live in its ``multiclass_nms3`` op). The protobuf is walked by hand (a handful
of fields), so no Paddle or protobuf schema is needed.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import WeightsError
from ..io.paddle_params import read_varint

JSON_FILE = "inference.json"
PDMODEL_FILE = "inference.pdmodel"

# ProgramDesc's VarType.Type values: a saved parameter is a dense tensor; feed/fetch lists are not
_LOD_TENSOR = 7
_PIR_DTYPES = {"f16": "float16", "f32": "float32", "f64": "float64", "bf16": "bfloat16", "i8": "int8",
               "ui8": "uint8", "i16": "int16", "i32": "int32", "i64": "int64", "bool": "bool"}
_DTYPE_NAMES = {0: "bool", 1: "int16", 2: "int32", 3: "int64", 4: "float16", 5: "float32", 6: "float64",
                20: "uint8", 21: "int8", 22: "bfloat16"}


@dataclass(frozen=True)
class ProgramParam:
    """One persistable parameter of the program."""

    name: str
    shape: tuple[int, ...]
    dtype: str


@dataclass
class PaddleProgram:
    """What viewfinder reads from an exported program."""

    path: Path
    #: the persistable parameters in ``inference.pdiparams`` order (sorted by name)
    params: list[ProgramParam]
    #: op types in program order (``conv2d``, ``batch_norm_``, ``multiclass_nms3`` ...)
    op_types: list[str] = field(default_factory=list)
    #: op type -> the attributes of its first op
    op_attrs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def attrs(self, op_type: str) -> dict[str, Any]:
        return self.op_attrs.get(op_type, {})


def read_program(folder: str | Path) -> PaddleProgram:
    """The program of a PaddleX inference folder: ``inference.json`` if present, else ``inference.pdmodel``."""
    folder = Path(folder)
    if (folder / JSON_FILE).is_file():
        return read_pir_json(folder / JSON_FILE)
    if (folder / PDMODEL_FILE).is_file():
        return read_pdmodel(folder / PDMODEL_FILE)
    raise WeightsError(f"{folder}: no {JSON_FILE} or {PDMODEL_FILE} (the exported program)")


# --- PIR JSON (Paddle >= 3) ------------------------------------------------------------------

def _attr_value(attr: Any) -> Any:
    """A PIR attribute ``{"#": "0.a_f32", "D": 0.5}`` (arrays nest) -> its Python value."""
    if isinstance(attr, dict) and "D" in attr:
        value = attr["D"]
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            return [_attr_value(v) for v in value]
        return value
    return attr


def _pir_ops(node: Any) -> list[dict[str, Any]]:
    """Every op of every block of every region, in order (control-flow ops nest regions)."""
    ops: list[dict[str, Any]] = []
    for region in node.get("regions", []):
        for block in region.get("blocks", []):
            for op in block.get("ops", []):
                ops.append(op)
                ops.extend(_pir_ops(op))
    return ops


def read_pir_json(path: Path) -> PaddleProgram:
    try:
        program = json.loads(path.read_text(encoding="utf-8"))
        if program["base_code"]["magic"] != "pir":
            raise ValueError("not a PIR program")
        ops = _pir_ops(program["program"])
        params: list[ProgramParam] = []
        op_types: list[str] = []
        op_attrs: dict[str, dict[str, Any]] = {}
        for op in ops:
            kind = op.get("#", "")
            if kind == "p":  # builtin.parameter: attributes [.., .., .., name], output type [dtype, dims, ...]
                dtype, dims = op["O"]["TT"]["D"][:2]
                kind_name = str(dtype.get("#", "")).removeprefix("0.t_")
                params.append(ProgramParam(str(op["A"][3]), tuple(int(d) for d in dims),
                                           _PIR_DTYPES.get(kind_name, kind_name)))
                continue
            name = kind.split(".", 1)[-1]
            op_types.append(name)
            if name not in op_attrs and isinstance(op.get("A"), list):
                op_attrs[name] = {a["N"]: _attr_value(a.get("AT")) for a in op["A"] if isinstance(a, dict) and "N" in a}
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise WeightsError(f"{path}: not a Paddle PIR program ({type(exc).__name__}: {exc})") from None
    _check_unique(path, params)
    return PaddleProgram(path, sorted(params, key=lambda p: p.name), op_types, op_attrs)


# --- ProgramDesc protobuf (Paddle < 3) -------------------------------------------------------

def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """A protobuf message's (field number, value) pairs: varints as int, length-delimited as bytes."""
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        key, pos = read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = read_varint(data, pos)
            out.append((number, value))
        elif wire == 2:
            length, pos = read_varint(data, pos)
            out.append((number, data[pos:pos + length]))
            pos += length
        elif wire == 5:
            out.append((number, struct.unpack_from("<I", data, pos)[0]))
            pos += 4
        elif wire == 1:
            out.append((number, struct.unpack_from("<Q", data, pos)[0]))
            pos += 8
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
    if pos != len(data):
        raise ValueError("truncated protobuf message")
    return out


def _first(fields: list[tuple[int, Any]], number: int, default: Any = None) -> Any:
    return next((value for n, value in fields if n == number), default)


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _tensor_desc(data: bytes) -> tuple[str, tuple[int, ...]]:
    fields = _fields(data)
    dims: list[int] = []
    for number, value in fields:
        if number == 2:
            if isinstance(value, bytes):  # packed
                pos = 0
                while pos < len(value):
                    dim, pos = read_varint(value, pos)
                    dims.append(_signed(dim))
            else:
                dims.append(_signed(value))
    return _DTYPE_NAMES.get(int(_first(fields, 1, -1)), "unknown"), tuple(dims)


def _op_attr(fields: list[tuple[int, Any]]) -> tuple[str, Any]:
    # OpDesc.Attr: name 1, type 2, i 3, f 4, s 5, b 10, l 13, float64 16 (scalars are all we read)
    name = bytes(_first(fields, 1, b"")).decode("utf-8", "replace")
    for number, value in fields:
        if number in (3, 13):  # int32 / int64: negatives are sign-extended 64-bit varints
            return name, _signed(value)
        if number == 4:
            return name, struct.unpack("<f", struct.pack("<I", value))[0]
        if number == 5:
            return name, bytes(value).decode("utf-8", "replace")
        if number == 10:
            return name, bool(value)
        if number == 16:
            return name, struct.unpack("<d", struct.pack("<Q", value))[0]
    return name, None


def read_pdmodel(path: Path) -> PaddleProgram:
    params: list[ProgramParam] = []
    op_types: list[str] = []
    op_attrs: dict[str, dict[str, Any]] = {}
    try:
        for number, block in _fields(path.read_bytes()):
            if number != 1:  # ProgramDesc.blocks
                continue
            for field_number, value in _fields(bytes(block)):
                if field_number == 3:  # BlockDesc.vars
                    var = _fields(bytes(value))
                    var_type = _fields(bytes(_first(var, 2, b"")))
                    if not _first(var, 3, 0) or _first(var_type, 1) != _LOD_TENSOR:
                        continue  # not persistable, or a feed/fetch list
                    lod_tensor = _first(var_type, 3)
                    if lod_tensor is None:
                        continue
                    dtype, dims = _tensor_desc(bytes(_first(_fields(bytes(lod_tensor)), 1, b"")))
                    params.append(ProgramParam(bytes(_first(var, 1, b"")).decode("utf-8"), dims, dtype))
                elif field_number == 4:  # BlockDesc.ops
                    op = _fields(bytes(value))
                    op_type = bytes(_first(op, 3, b"")).decode("utf-8", "replace")
                    if op_type in ("feed", "fetch"):
                        continue
                    op_types.append(op_type)
                    if op_type not in op_attrs:
                        op_attrs[op_type] = dict(_op_attr(_fields(bytes(a))) for n, a in op if n == 4)
    except (ValueError, IndexError, struct.error, UnicodeDecodeError) as exc:
        raise WeightsError(f"{path}: not a Paddle ProgramDesc ({exc})") from None
    if not params and not op_types:
        raise WeightsError(f"{path}: not a Paddle ProgramDesc (no variables, no ops)")
    _check_unique(path, params)
    return PaddleProgram(path, sorted(params, key=lambda p: p.name), op_types, op_attrs)


def _check_unique(path: Path, params: list[ProgramParam]) -> None:
    names = [p.name for p in params]
    if len(set(names)) != len(names):
        raise WeightsError(f"{path}: a parameter name appears twice")

"""A small reader of TensorFlow ``GraphDef`` files (frozen graphs), without TensorFlow.

The protobuf wire format is decoded by hand for the few messages a frozen inference graph
uses (field numbers from TensorFlow's ``graph.proto``, ``node_def.proto``, ``attr_value.proto``,
``tensor.proto``, ``tensor_shape.proto``, ``types.proto``)::

    GraphDef          1 node (repeated NodeDef); 2 library, 3 version, 4 versions: skipped
    NodeDef           1 name, 2 op, 3 input (repeated), 4 device, 5 attr (map<string, AttrValue>)
    AttrValue         1 list, 2 s, 3 i, 4 f, 5 b, 6 type, 7 shape, 8 tensor, 9 placeholder
    AttrValue.List    2 s, 3 i, 4 f, 5 b, 6 type, 7 shape, 8 tensor (repeated)
    TensorProto       1 dtype, 2 tensor_shape, 4 tensor_content, 5 float_val, 6 double_val,
                      7 int_val, 8 string_val, 10 int64_val, 11 bool_val, 13 half_val
    TensorShapeProto  2 dim (Dim: 1 size, 2 name), 3 unknown_rank

Nothing else is interpreted; unknown fields are skipped as the wire format allows. No
dependency beyond numpy (the protobuf runtime is not needed).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

__all__ = ["GraphDefError", "NodeDef", "TensorValue", "node_map", "parse_graph_def",
           "read_graph_def"]


class GraphDefError(ValueError):
    """Bytes that are not a GraphDef this reader understands."""


# TensorFlow DataType enum -> numpy dtype (the types a frozen detection graph holds)
_DTYPES: dict[int, np.dtype] = {
    1: np.dtype(np.float32), 2: np.dtype(np.float64), 3: np.dtype(np.int32),
    4: np.dtype(np.uint8), 5: np.dtype(np.int16), 6: np.dtype(np.int8),
    9: np.dtype(np.int64), 10: np.dtype(np.bool_), 19: np.dtype(np.float16),
    17: np.dtype(np.uint16), 22: np.dtype(np.uint32), 23: np.dtype(np.uint64),
}
_STRING = 7
DTYPE_NAMES = {1: "float32", 2: "float64", 3: "int32", 4: "uint8", 5: "int16", 6: "int8",
               7: "string", 9: "int64", 10: "bool", 17: "uint16", 19: "float16",
               22: "uint32", 23: "uint64"}


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise GraphDefError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 70:
            raise GraphDefError("varint longer than 10 bytes")


def _signed64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _fields(buf: bytes) -> Iterator[tuple[int, int, object]]:
    """``(field number, wire type, value)`` of every field of one message: value is an int
    (varint), bytes (length-delimited, fixed32, fixed64)."""
    pos, end = 0, len(buf)
    while pos < end:
        tag, pos = _varint(buf, pos)
        num, wt = tag >> 3, tag & 7
        if wt == 0:
            val, pos = _varint(buf, pos)
        elif wt == 2:
            n, pos = _varint(buf, pos)
            if pos + n > end:
                raise GraphDefError(f"field {num}: length {n} runs past the message end")
            val, pos = buf[pos:pos + n], pos + n
        elif wt == 5:
            val, pos = buf[pos:pos + 4], pos + 4
        elif wt == 1:
            val, pos = buf[pos:pos + 8], pos + 8
        else:
            raise GraphDefError(f"field {num}: unsupported wire type {wt}")
        if pos > end:
            raise GraphDefError(f"field {num}: truncated")
        yield num, wt, val


def _packed_varints(wt: int, val) -> list[int]:
    if wt == 0:
        return [val]
    out, pos = [], 0
    while pos < len(val):
        v, pos = _varint(val, pos)
        out.append(v)
    return out


def _packed_fixed(wt: int, val, fmt: str) -> list:
    size = struct.calcsize(fmt)
    if wt != 2:  # one unpacked element
        return [struct.unpack("<" + fmt, val)[0]]
    return list(struct.unpack(f"<{len(val) // size}{fmt}", val))


def _shape(buf: bytes) -> tuple[int, ...] | None:
    dims, unknown = [], False
    for num, _, val in _fields(buf):
        if num == 2:
            size = 0  # proto3 default
            for n2, _, v2 in _fields(val):
                if n2 == 1:
                    size = _signed64(v2)
            dims.append(size)
        elif num == 3:
            unknown = bool(val)
    return None if unknown else tuple(dims)


@dataclass(frozen=True)
class TensorValue:
    """A constant tensor: ``dtype`` (TensorFlow's enum), ``shape``, and ``array`` (numpy; for
    strings a list of bytes)."""

    dtype: int
    shape: tuple[int, ...]
    array: object


def _tensor(buf: bytes) -> TensorValue:
    dtype, shape, content = 0, (), None
    vals: dict[int, list] = {}
    for num, wt, val in _fields(buf):
        if num == 1:
            dtype = val
        elif num == 2:
            shape = _shape(val) or ()
        elif num == 4:
            content = val
        elif num == 5:
            vals.setdefault(num, []).extend(_packed_fixed(wt, val, "f"))
        elif num == 6:
            vals.setdefault(num, []).extend(_packed_fixed(wt, val, "d"))
        elif num in (7, 10, 11, 13):
            vals.setdefault(num, []).extend(_signed64(v) for v in _packed_varints(wt, val))
        elif num == 8:
            vals.setdefault(num, []).append(bytes(val))
    if dtype == _STRING:
        return TensorValue(dtype, shape, vals.get(8, []))
    if dtype not in _DTYPES:
        raise GraphDefError(f"tensor of unsupported dtype {DTYPE_NAMES.get(dtype, dtype)}")
    np_dtype = _DTYPES[dtype]
    count = int(np.prod(shape)) if shape else 1
    if content is not None:
        arr = np.frombuffer(content, dtype=np_dtype.newbyteorder("<")).astype(np_dtype)
    else:
        flat = next((vals[k] for k in (5, 6, 7, 10, 11, 13) if k in vals), [])
        if dtype == 19:  # half_val holds the float16 bit patterns
            arr = np.array(flat, dtype=np.uint16).view(np.float16)
        else:
            arr = np.array(flat, dtype=np_dtype)
        if arr.size == 1 and count != 1:  # a splat: one value for the whole shape
            arr = np.full(count, arr[0], dtype=np_dtype)
        elif arr.size == 0:
            arr = np.zeros(count, dtype=np_dtype)
    if arr.size != count:
        raise GraphDefError(f"tensor has {arr.size} values for shape {shape}")
    return TensorValue(dtype, shape, arr.reshape(shape))


def _list(buf: bytes) -> list:
    out: list = []
    for num, wt, val in _fields(buf):
        if num == 2:
            out.append(bytes(val))
        elif num in (3, 6):
            out.extend(_signed64(v) for v in _packed_varints(wt, val))
        elif num == 4:
            out.extend(_packed_fixed(wt, val, "f"))
        elif num == 5:
            out.extend(bool(v) for v in _packed_varints(wt, val))
        elif num == 7:
            out.append(_shape(val))
        elif num == 8:
            out.append(_tensor(val))
    return out


#: AttrValue's fields (tensorflow/core/framework/attr_value.proto) by number: how to decode each
_ATTR_FIELDS = {
    1: _list,  # list
    2: bytes,  # s
    3: _signed64,  # i
    4: lambda val: struct.unpack("<f", val)[0],  # f
    5: bool,  # b
    6: int,  # type (a DataType enum)
    7: _shape,  # shape
    8: _tensor,  # tensor
    9: lambda val: bytes(val).decode(),  # placeholder
}


def _attr_value(buf: bytes):
    value = None
    for num, _wt, val in _fields(buf):
        if num in _ATTR_FIELDS:
            value = _ATTR_FIELDS[num](val)
    return value


@dataclass
class NodeDef:
    """One graph node: ``attr`` values are bytes (``s``), int (``i``, ``type``), float, bool,
    a shape tuple (None: unknown rank), a :class:`TensorValue`, or a list of those."""

    name: str
    op: str
    inputs: list[str] = field(default_factory=list)
    attr: dict[str, object] = field(default_factory=dict)

    @property
    def data_inputs(self) -> list[str]:
        """Inputs that carry data (control inputs ``^name`` left out)."""
        return [i for i in self.inputs if not i.startswith("^")]


def _node(buf: bytes) -> NodeDef:
    node = NodeDef("", "")
    for num, _, val in _fields(buf):
        if num == 1:
            node.name = bytes(val).decode()
        elif num == 2:
            node.op = bytes(val).decode()
        elif num == 3:
            node.inputs.append(bytes(val).decode())
        elif num == 5:
            key, value = "", None
            for n2, _, v2 in _fields(val):
                if n2 == 1:
                    key = bytes(v2).decode()
                elif n2 == 2:
                    value = _attr_value(v2)
            node.attr[key] = value
    return node


def parse_graph_def(data: bytes) -> list[NodeDef]:
    """The nodes of a serialized ``GraphDef``, in file order."""
    buf = memoryview(data).tobytes() if not isinstance(data, bytes) else data
    nodes = []
    try:
        for num, wt, val in _fields(buf):
            if num == 1:
                if wt != 2:
                    raise GraphDefError("GraphDef.node is not a message")
                nodes.append(_node(val))
    except (struct.error, UnicodeDecodeError, IndexError) as exc:
        raise GraphDefError(f"not a GraphDef ({type(exc).__name__}: {exc})") from exc
    if not nodes:
        raise GraphDefError("no nodes: not a GraphDef, or an empty one")
    return nodes


def read_graph_def(path) -> list[NodeDef]:
    with open(path, "rb") as f:
        return parse_graph_def(f.read())


def node_map(nodes: list[NodeDef]) -> dict[str, NodeDef]:
    return {n.name: n for n in nodes}


# -- writing (tests build small graphs with it) -----------------------------------------------


def _enc_varint(v: int) -> bytes:
    if v < 0:
        v += 1 << 64
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _enc_field(num: int, payload: bytes | int) -> bytes:
    if isinstance(payload, int):
        return _enc_varint(num << 3) + _enc_varint(payload)
    return _enc_varint(num << 3 | 2) + _enc_varint(len(payload)) + payload


def _enc_shape(shape) -> bytes:
    return b"".join(_enc_field(2, _enc_field(1, int(d))) for d in shape)


def encode_tensor(array: np.ndarray) -> bytes:
    """A ``TensorProto`` holding ``array`` (float32, int32 or int64) as ``tensor_content``."""
    array = np.asarray(array)  # (ascontiguousarray would make a scalar 1-d)
    codes = {np.dtype(np.float32): 1, np.dtype(np.int32): 3, np.dtype(np.int64): 9,
             np.dtype(np.uint8): 4}
    if array.dtype not in codes:
        raise GraphDefError(f"cannot encode dtype {array.dtype}")
    return (_enc_field(1, codes[array.dtype]) + _enc_field(2, _enc_shape(array.shape))
            + _enc_field(4, array.astype(array.dtype.newbyteorder("<")).tobytes()))


def _enc_attr(value) -> bytes:
    if isinstance(value, bool):
        return _enc_field(5, int(value))
    if isinstance(value, int):
        return _enc_field(3, value)
    if isinstance(value, float):
        return _enc_varint(4 << 3 | 5) + struct.pack("<f", value)
    if isinstance(value, (bytes, str)):
        return _enc_field(2, value.encode() if isinstance(value, str) else value)
    if isinstance(value, TensorValue):
        value = np.asarray(value.array)
    if isinstance(value, np.ndarray):
        return _enc_field(8, encode_tensor(value))
    if isinstance(value, (list, tuple)):  # a list of ints
        packed = b"".join(_enc_varint(int(v)) for v in value)
        return _enc_field(1, _enc_field(3, packed))
    raise GraphDefError(f"cannot encode attr value {value!r}")


def encode_graph_def(nodes: list[NodeDef]) -> bytes:
    """Serialize ``nodes`` as a ``GraphDef`` (attr values: bool, int, float, str/bytes, an int
    list, or a numpy array / :class:`TensorValue` as a tensor; ``dtype``/``T`` attrs given as
    ints are written as ``i`` values, which this reader reads back the same). For tests: small
    graphs, not a general writer."""
    out = bytearray()
    for n in nodes:
        body = _enc_field(1, n.name.encode()) + _enc_field(2, n.op.encode())
        for i in n.inputs:
            body += _enc_field(3, i.encode())
        for k, v in n.attr.items():
            body += _enc_field(5, _enc_field(1, k.encode()) + _enc_field(2, _enc_attr(v)))
        out += _enc_field(1, body)
    return bytes(out)

"""Read an ONNX file's opset without the ``onnx`` package (not installed on a Jetson by default).

An ONNX file is a protobuf ``ModelProto``; ``opset_import`` is field 8, a repeated
``OperatorSetIdProto`` (field 1 domain, field 2 version). This walks the top-level fields and
seeks past the large ones (the graph, field 7), so it reads a few hundred bytes of a 170 MB
file. Device-side: stdlib only.
"""
import os
from typing import BinaryIO, Dict, Iterator, List, Tuple, Union

from inception_deploy.pipeline.errors import UserError

_OPSET_IMPORT = 8


def _varint(f: BinaryIO) -> int:
    shift = result = 0
    while True:
        b = f.read(1)
        if not b:
            raise EOFError
        result |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            return result
        shift += 7


def _varint_bytes(data: bytes, pos: int) -> Tuple[int, int]:
    shift = result = 0
    while True:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _operator_set(data: bytes) -> Tuple[str, int]:
    domain, version, pos = "", 0, 0
    while pos < len(data):
        key, pos = _varint_bytes(data, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint_bytes(data, pos)
            if field == 2:
                version = value
        elif wire == 2:
            length, pos = _varint_bytes(data, pos)
            if field == 1:
                domain = data[pos:pos + length].decode("utf-8", "replace")
            pos += length
        else:
            raise ValueError("unexpected wire type %d in OperatorSetIdProto" % wire)
    return domain, version


def opsets(path: str) -> Dict[str, int]:
    """``{domain: version}`` of an ONNX file (``""`` is the default ``ai.onnx`` domain)."""
    if not os.path.isfile(path):
        raise UserError("ONNX file not found: %s" % path)
    found: Dict[str, int] = {}
    size = os.path.getsize(path)
    try:
        with open(path, "rb") as f:
            while f.tell() < size:
                key = _varint(f)
                field, wire = key >> 3, key & 7
                if wire == 0:
                    _varint(f)
                elif wire == 1:
                    f.seek(8, os.SEEK_CUR)
                elif wire == 5:
                    f.seek(4, os.SEEK_CUR)
                elif wire == 2:
                    length = _varint(f)
                    if field == _OPSET_IMPORT:
                        domain, version = _operator_set(f.read(length))
                        found[domain] = version
                    else:
                        f.seek(length, os.SEEK_CUR)
                else:
                    raise ValueError("wire type %d" % wire)
    except (EOFError, ValueError, IndexError) as e:
        raise UserError("%s is not a readable ONNX model (%s)" % (path, e or "truncated")) from None
    if not found:
        raise UserError("%s has no opset_import: not an ONNX model?" % path)
    return found


def default_opset(path: str) -> int:
    """The ``ai.onnx`` opset version, the one TensorRT's ONNX parser is limited by."""
    found = opsets(path)
    return found.get("", found.get("ai.onnx", 0))


# -- graph inputs and outputs (name, element type, shape), read the same way -------------------------
_GRAPH = 7                                 # ModelProto.graph
_INITIALIZER, _INPUT, _OUTPUT = 5, 11, 12  # GraphProto fields
_TENSOR_NAME = 8                           # TensorProto.name
ELEM_TYPES = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 10: "float16", 11: "float64",
              16: "bfloat16"}


class TensorInfo(object):
    """A graph input or output: its name, element type and shape (ints, or the dim_param names)."""

    def __init__(self, name: str, dtype: str, shape: List[Union[int, str, None]]) -> None:
        self.name, self.dtype, self.shape = name, dtype, shape

    def __repr__(self) -> str:
        return "TensorInfo(%r, %r, %r)" % (self.name, self.dtype, self.shape)


def _fields(data: bytes) -> Iterator[Tuple[int, int, Union[int, bytes]]]:
    """(field, wire type, value) of an in-memory message; length-delimited values as bytes."""
    pos = 0
    while pos < len(data):
        key, pos = _varint_bytes(data, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint_bytes(data, pos)
            yield field, wire, value
        elif wire == 2:
            length, pos = _varint_bytes(data, pos)
            yield field, wire, data[pos:pos + length]
            pos += length
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise ValueError("unexpected wire type %d" % wire)


def _streamed_fields(f: BinaryIO, end: int) -> Iterator[Tuple[int, int, int, int]]:
    """(field, wire type, value or length, offset of the value) up to ``end``, seeking past every
    length-delimited value the caller does not read."""
    while f.tell() < end:
        key = _varint(f)
        field, wire = key >> 3, key & 7
        if wire == 0:
            yield field, wire, _varint(f), f.tell()
        elif wire == 2:
            length = _varint(f)
            start = f.tell()
            yield field, wire, length, start
            f.seek(start + length)
        elif wire in (1, 5):
            f.seek(8 if wire == 1 else 4, os.SEEK_CUR)
        else:
            raise ValueError("wire type %d" % wire)


def _value_info(data: bytes) -> TensorInfo:
    """ValueInfoProto: name (1), type (2) -> TypeProto.tensor_type (1) -> elem_type (1), shape (2) -> dim (1)."""
    name, dtype, shape = "", "?", []  # type: str, str, List[Union[int, str, None]]
    for field, _, value in _fields(data):
        if field == 1 and isinstance(value, bytes):
            name = value.decode("utf-8", "replace")
        elif field == 2 and isinstance(value, bytes):
            for tf, _, tensor in _fields(value):
                if tf != 1 or not isinstance(tensor, bytes):
                    continue
                for ef, _, ev in _fields(tensor):
                    if ef == 1 and isinstance(ev, int):
                        dtype = ELEM_TYPES.get(ev, "type %d" % ev)
                    elif ef == 2 and isinstance(ev, bytes):
                        shape = [_dimension(d) for df, _, d in _fields(ev) if df == 1 and isinstance(d, bytes)]
    return TensorInfo(name, dtype, shape)


def _dimension(data: bytes) -> Union[int, str, None]:
    for field, _, value in _fields(data):
        if field == 1 and isinstance(value, int):
            return value
        if field == 2 and isinstance(value, bytes):
            return value.decode("utf-8", "replace")
    return None


def graph_io(path: str) -> Tuple[List[TensorInfo], List[TensorInfo]]:
    """(inputs, outputs) of an ONNX file's graph, initializers left out of the inputs.

    Reads the small records and seeks past node lists and weights, so a 170 MB model costs a
    few milliseconds; a file that is not a readable ONNX model is a one-line UserError.
    """
    if not os.path.isfile(path):
        raise UserError("ONNX file not found: %s" % path)
    inputs, outputs, initializers = [], [], set()
    try:
        with open(path, "rb") as f:
            size = os.path.getsize(path)
            graph = [(length, start) for field, wire, length, start in _streamed_fields(f, size)
                     if field == _GRAPH and wire == 2]
            if not graph:
                raise ValueError("no graph")
            length, start = graph[-1]
            f.seek(start)
            for field, wire, value, offset in _streamed_fields(f, start + length):
                if wire != 2 or field not in (_INITIALIZER, _INPUT, _OUTPUT):
                    continue
                if field == _INITIALIZER:
                    initializers.add(_tensor_name(f, offset, value))
                    continue
                here = f.tell()
                info = _value_info(f.read(value))
                f.seek(here)
                (inputs if field == _INPUT else outputs).append(info)
    except (EOFError, ValueError, IndexError, UnicodeDecodeError) as e:
        raise UserError("%s is not a readable ONNX model (truncated or corrupt: %s); re-export it"
                        % (path, str(e) or type(e).__name__)) from None
    return [i for i in inputs if i.name not in initializers], outputs


def _tensor_name(f: BinaryIO, start: int, length: int) -> str:
    here = f.tell()
    f.seek(start)
    name = ""
    for field, wire, value, offset in _streamed_fields(f, start + length):
        if field == _TENSOR_NAME and wire == 2:
            f.seek(offset)
            name = f.read(value).decode("utf-8", "replace")
            break
    f.seek(here)
    return name

"""Read an ONNX file's opset without the ``onnx`` package (not installed on a Jetson by default).

An ONNX file is a protobuf ``ModelProto``; ``opset_import`` is field 8, a repeated
``OperatorSetIdProto`` (field 1 domain, field 2 version). This walks the top-level fields and
seeks past the large ones (the graph, field 7), so it reads a few hundred bytes of a 170 MB
file. Device-side: stdlib only.
"""
import os
from typing import BinaryIO, Dict, Tuple

from pipeline.errors import UserError

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

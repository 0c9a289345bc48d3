"""Read the target files on Python 3.8 (JetPack 5's system Python has no ``tomllib``).

``tomllib`` (3.11+) or ``tomli`` when importable; otherwise a reader for the small TOML subset the
target files use: ``# comments``, ``[table]`` headers one level deep, and ``key = value`` with
basic strings, integers, floats, booleans and one-line arrays of those. A test checks that this
reader and ``tomllib`` give identical results for every shipped target file.
"""
import importlib
import re
from typing import Any, Dict, List, Tuple

_KEY = re.compile(r"^([A-Za-z0-9_-]+)\s*=\s*(.+)$")
_TABLE = re.compile(r"^\[([A-Za-z0-9_-]+)\]$")


class TomlError(ValueError):
    pass


def loads(text: str) -> Dict[str, Any]:
    for name in ("tomllib", "tomli"):  # 3.11+ stdlib, or its backport when installed
        try:
            return importlib.import_module(name).loads(text)
        except ImportError:
            continue
    return loads_subset(text)


def loads_subset(text: str) -> Dict[str, Any]:
    root: Dict[str, Any] = {}
    table = root
    for number, raw in enumerate(text.splitlines(), 1):
        line = _strip_comment(raw).strip()
        if not line:
            continue
        m = _TABLE.match(line)
        if m:
            if m.group(1) in root:
                raise TomlError("line %d: table [%s] defined twice" % (number, m.group(1)))
            table = root[m.group(1)] = {}
            continue
        m = _KEY.match(line)
        if not m:
            raise TomlError("line %d: expected 'key = value' or '[table]', got %r" % (number, raw))
        key, value_text = m.group(1), m.group(2).strip()
        if key in table:
            raise TomlError("line %d: key %r defined twice" % (number, key))
        value, rest = _value(value_text, number)
        if rest.strip():
            raise TomlError("line %d: unexpected text after the value: %r" % (number, rest))
        table[key] = value
    return root


def _strip_comment(line: str) -> str:
    in_string = False
    for i, ch in enumerate(line):
        if ch == '"' and (i == 0 or line[i - 1] != "\\"):
            in_string = not in_string
        elif ch == "#" and not in_string:
            return line[:i]
    return line


def _value(text: str, number: int) -> Tuple[Any, str]:
    text = text.lstrip()
    if text.startswith('"'):
        m = re.match(r'"((?:[^"\\]|\\.)*)"', text)
        if not m:
            raise TomlError("line %d: unterminated string" % number)
        return m.group(1).encode("utf-8").decode("unicode_escape"), text[m.end():]
    if text.startswith("["):
        items: List[Any] = []
        rest = text[1:].lstrip()
        while not rest.startswith("]"):
            item, rest = _value(rest, number)
            items.append(item)
            rest = rest.lstrip()
            if rest.startswith(","):
                rest = rest[1:].lstrip()
            elif not rest.startswith("]"):
                raise TomlError("line %d: expected ',' or ']' in an array" % number)
        return items, rest[1:]
    m = re.match(r"(true|false)\b", text)
    if m:
        return m.group(1) == "true", text[m.end():]
    m = re.match(r"[+-]?(\d[\d_]*)(\.\d+)?([eE][+-]?\d+)?", text)
    if m and m.group(0):
        number_text = m.group(0).replace("_", "")
        is_float = m.group(2) is not None or m.group(3) is not None
        return (float(number_text) if is_float else int(number_text)), text[m.end():]
    raise TomlError("line %d: unsupported value %r (this reader takes strings, numbers, booleans, arrays)"
                    % (number, text))

"""Reading a JSON file a user hands over (metadata, bundles, boxes, recipes, reports): every way it can be broken
ends as one :class:`~edgehmr.errors.InputError` line, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

from edgehmr.errors import InputError

# Deeper nesting than any file edgehmr writes or reads; Python's parser would recurse until RecursionError and the
# C++ runtime refuses the same depth (targets/cpp/src/metadata.cpp).
MAX_DEPTH = 64


def _depth(text: str) -> int:
    """Deepest bracket nesting, outside strings (a scan, so no input can exhaust the stack)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            escaped, in_string = (False, True) if escaped else (ch == "\\", ch != '"')
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def parse_json(text: str, where: str, allow_nan: bool = True):
    """``text`` parsed; InputError naming ``where`` when it is not JSON or nests deeper than :data:`MAX_DEPTH`."""
    if _depth(text) > MAX_DEPTH:
        raise InputError(f"{where} nests deeper than {MAX_DEPTH} levels; it is not a file edgehmr reads.")
    try:
        return json.loads(text) if allow_nan else json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as e:  # JSONDecodeError is a ValueError
        raise InputError(f"{where} is not valid JSON ({str(e)[:160]}).") from None


def read_json_object(path: str | Path, what: str, advice: str, allow_nan: bool = True) -> dict:
    """The JSON object in ``path``; InputError ("<path> is not <what> (...); <advice>") for a file that cannot be
    read, is not JSON, or holds something other than an object."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read {what} {path} ({e}); {advice}") from None
    try:
        data = parse_json(text, str(path), allow_nan)
    except InputError as e:
        raise InputError(f"{e} {advice[:1].upper()}{advice[1:]}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path} is not {what}: it holds a JSON {type(data).__name__}, not an object; {advice}")
    return data

"""Generators of hostile input for the property-based tests (hypothesis): junk JSON, junk bytes, damaged images and
mutated metadata. Shared by tests/test_hostile_inputs.py (Python) and tests/test_cpp_runtime.py (the C++ app)."""

from __future__ import annotations

import copy
import struct
import zlib

import cv2
import numpy as np
from hypothesis import strategies as st

# Any JSON value, numbers included that JSON itself cannot hold (NaN, Infinity: Python's json writes them).
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)

# Box coordinates as an app might pass them: ordinary pixels, far outside, huge, tiny, infinite, NaN.
coordinates = st.one_of(st.floats(-2000, 2000), st.floats(allow_nan=True, allow_infinity=True),
                        st.sampled_from([0.0, -1e9, 1e9, 1e300, -1e300, 1e5]))
boxes = st.lists(coordinates, min_size=4, max_size=4)


def leaf_paths(value, path=()) -> list[tuple]:
    """Every path into a JSON value (dict keys, list indices), containers included."""
    out = [path] if path else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += leaf_paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += leaf_paths(v, (*path, i))
    return out


def mutate(meta: dict, path: tuple, replacement, delete: bool) -> dict:
    """A copy of ``meta`` with the value at ``path`` deleted or replaced."""
    out = copy.deepcopy(meta)
    parent = out
    for step in path[:-1]:
        parent = parent[step]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = replacement
    return out


@st.composite
def metadata_mutations(draw, meta: dict, skip=("environment", "spec", "files_sha256")) -> dict:
    """``meta`` with one to three fields deleted or replaced by junk (the hashes stay, so the model files pass)."""
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in leaf_paths(meta) if p[0] not in skip]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        meta = mutate(meta, path, draw(json_values), draw(st.booleans()))
    return meta


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims ``width x height`` RGB pixels and holds almost none: a decoder that trusts the header
    allocates width*height*3 bytes before it finds out."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + _png_chunk(b"IEND", b""))


def encoded(rgb: np.ndarray, ext: str) -> bytes:
    ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


@st.composite
def damaged_images(draw, sources: dict[str, bytes]) -> bytes:
    """A real PNG or JPEG cut short, with bytes overwritten, or junk behind an image signature."""
    data = bytearray(sources[draw(st.sampled_from(sorted(sources)))])
    kind = draw(st.sampled_from(["truncate", "flip", "junk"]))
    if kind == "truncate":
        return bytes(data[:draw(st.integers(0, len(data) - 1))])
    if kind == "flip":
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return bytes(data)
    return bytes(data[:draw(st.sampled_from([3, 8, 16, 40]))]) + draw(st.binary(max_size=200))

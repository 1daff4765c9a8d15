"""The per-image inputs a user or an app hands to edgehmr, checked where they enter: images and person boxes.

The CLI (calibration and reference folders, videos), the :class:`~edgehmr.predictor.Predictor` and the C++ runtime
(``targets/cpp/src/image.cpp``, ``preprocess.cpp``) apply the same rules, so an input is refused or accepted alike
everywhere, with one line that says what is wrong:

- **images**: a decodable file (a truncated JPEG is refused; corrupt scan data is decoded as OpenCV does), at most
  :data:`MAX_IMAGE_PIXELS`, checked from the file header before any pixel is allocated; arrays are ``[H, W, 3]``
  uint8.
- **boxes**: four finite numbers ``x1, y1, x2, y2`` in image pixels with ``x2 > x1`` and ``y2 > y1`` that overlap
  the image. A box may reach past the frame edge (a person partly out of view); beyond :data:`BOX_MARGIN` image
  sizes it is clipped, so the crop's size (and the anti-alias blur it sets) stays bounded by the image's: no box
  can make preprocessing allocate or compute more than a box covering that enlarged frame.
- **boxes files** (``boxes.json``): a JSON object from image name (or video frame index) to one box or a list of
  boxes; JSON's non-standard ``NaN``/``Infinity`` and keys that name no input are refused.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from edgehmr.errors import InputError
from edgehmr.jsonfile import parse_json

# 100 megapixels (a 12000 x 8300 photo): bounds the decoded image (300 MB) and the float copies the crop makes.
MAX_IMAGE_PIXELS = 100_000_000
# A box is clipped to the image grown by this many image widths (heights) on each side.
BOX_MARGIN = 1.0


def _too_large(width: int, height: int, what: str) -> InputError:
    return InputError(f"{what} is {width}x{height} pixels, more than edgehmr reads ({MAX_IMAGE_PIXELS // 1_000_000} "
                      f"megapixels); downscale it first.")


def check_image(image: object, what: str = "image") -> np.ndarray:
    """An RGB uint8 array ``[H, W, 3]`` of at most :data:`MAX_IMAGE_PIXELS`, else InputError."""
    if not isinstance(image, np.ndarray):
        raise InputError(f"{what}: expected an RGB uint8 array [H, W, 3], got {type(image).__name__} (did an image "
                         f"fail to load?).")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or 0 in image.shape:
        raise InputError(f"{what}: expected an RGB uint8 array [H, W, 3], got {image.dtype} {list(image.shape)}.")
    if image.shape[0] * image.shape[1] > MAX_IMAGE_PIXELS:
        raise _too_large(image.shape[1], image.shape[0], what)
    return image


def _header_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from the file header without decoding pixels; None where Pillow cannot identify it (then
    OpenCV decides whether it is an image)."""
    from PIL import Image, UnidentifiedImageError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's own decompression-bomb warning: the limit here is ours
        try:
            with Image.open(path) as im:
                return im.size
        except Image.DecompressionBombError:  # Pillow's hard limit, twice its warning size: above ours too
            raise InputError(f"{path} is larger than edgehmr reads ({MAX_IMAGE_PIXELS // 1_000_000} megapixels); "
                             f"downscale it first.") from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
            return None


def read_image_rgb(path: str | Path) -> np.ndarray:
    """Decode an image file to RGB uint8 ``[H, W, 3]``; InputError when it is missing, too large or undecodable
    (OpenCV refuses a truncated JPEG; grey, palette, 16-bit and CMYK files are converted to 8-bit RGB)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"image not found: {path}")
    size = _header_size(path)
    if size is not None and size[0] * size[1] > MAX_IMAGE_PIXELS:
        raise _too_large(*size, str(path))
    data = np.fromfile(str(path), dtype=np.uint8)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if bgr is None:
        raise InputError(f"cannot decode {path}: not an image OpenCV can read, or truncated.")
    return check_image(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), str(path))


def check_box(box: object, width: int, height: int) -> np.ndarray:
    """A person box as float64 ``[4]`` xyxy, clipped to the image grown by :data:`BOX_MARGIN` on each side;
    InputError for anything else."""
    try:
        values = np.asarray(box, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InputError(f"a box is 4 finite numbers x1,y1,x2,y2 in image pixels (got {box!r:.80}).") from None
    if values.size != 4 or not np.all(np.isfinite(values)):
        shown = f"{values[:6].tolist()}"[:-1] + (", ...]" if values.size > 6 else "]")
        raise InputError(f"a box is 4 finite numbers x1,y1,x2,y2 in image pixels (got {shown}).")
    x1, y1, x2, y2 = values
    if x2 <= x1 or y2 <= y1:
        raise InputError(f"box {values.tolist()} is empty: x2 must exceed x1 and y2 exceed y1.")
    if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
        raise InputError(f"box {values.tolist()} lies outside the {width}x{height} image.")
    mx, my = BOX_MARGIN * width, BOX_MARGIN * height
    return np.array([max(x1, -mx), max(y1, -my), min(x2, width + mx), min(y2, height + my)])


def _box_values(value: object) -> list[float] | None:
    """``value`` as 4 finite floats, or None when it is not that."""
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
        return None
    return [float(v) for v in value]


def parse_boxes(text: str, source: str, names: Iterable[str], keys_are: str) -> dict[str, list[list[float]]]:
    """A boxes file's text -> ``{name: [[x1, y1, x2, y2], ...]}``. ``names``: the inputs it may name (image file
    names, or video frame indices as strings), which ``keys_are`` describes for the error line. Geometry against
    the image is checked per image by :func:`check_box`."""
    raw = parse_json(text, f"boxes file {source}", allow_nan=False)
    if not isinstance(raw, dict):
        raise InputError(f"boxes file {source} must be a JSON object from image name to [x1, y1, x2, y2] boxes, not "
                         f"a {type(raw).__name__}.")
    known = set(names)
    unknown = sorted(k for k in raw if k not in known)
    if unknown:
        shown = ", ".join(repr(k)[:60] for k in unknown[:3])
        raise InputError(f"boxes file {source} names {len(unknown)} input(s) that do not exist ({shown}); its keys "
                         f"are {keys_are}.")
    boxes: dict[str, list[list[float]]] = {}
    for name, value in raw.items():
        single = _box_values(value)
        entries = [single] if single is not None else (
            [_box_values(v) for v in value] if isinstance(value, list) and value else [None])
        if any(b is None for b in entries):
            raise InputError(f"boxes file {source}: the entry for {name!r:.60} is not a box [x1, y1, x2, y2] of "
                             f"finite numbers or a non-empty list of them.")
        boxes[name] = entries
    return boxes


def read_boxes(path: str | Path, names: Iterable[str], keys_are: str) -> dict[str, list[list[float]]]:
    """:func:`parse_boxes` of a file."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read boxes file {path}: {e}") from None
    return parse_boxes(text, str(path), names, keys_are)

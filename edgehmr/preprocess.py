"""Person-crop preprocessing: the one path used by reference bundles, calibration and validation.

Two published crop rules, both producing a ``[3, 256, 192]`` ImageNet-normalised RGB crop:

- ``hmr2`` (4D-Humans ``ViTDetDataset``): box -> square crop of side ``max(h, 4w/3)`` centred on the box, optional
  anti-alias blur (edge pixels repeated, as skimage does), warp to 256x256 with the pixel-edge convention, keep
  columns 32..223. Warping straight to 256x192 with the centre at (96, 128) gives the same pixels. A blurred image
  is warped in float64, which OpenCV does with 1/32 px fixed-point positions, as the original does.
- ``vitpose-udp`` (mmpose ``TopDownAffine(use_udp=True)``): box expanded to aspect 3:4, padded by 1.25, unbiased
  (UDP) warp whose ROI edges map to pixel centres 0 and 191/255.

Every parameter is recorded in ``metadata.json`` so an app can reproduce the crop exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INPUT_HW = (256, 192)


@dataclass(frozen=True)
class CropRule:
    name: str
    padding: float  # box enlargement before the crop
    udp: bool  # unbiased data processing warp (ViTPose) vs pixel-edge warp (HMR2.0)
    antialias: bool  # blur the image when the crop downsamples by more than 2.2x (HMR2.0)
    input_hw: tuple[int, int] = INPUT_HW
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def to_json(self) -> dict:
        d = asdict(self)
        d["layout"] = "NCHW RGB float32, (pixel/255 - mean)/std"
        d["box_format"] = "xyxy image pixels"
        return d


HMR2_CROP = CropRule(name="hmr2", padding=1.0, udp=False, antialias=True)
VITPOSE_CROP = CropRule(name="vitpose-udp", padding=1.25, udp=True, antialias=False)


@dataclass(frozen=True)
class Crop:
    """One prepared crop and the geometry needed to map outputs back to the image."""

    image: np.ndarray  # [3, 256, 192] float32
    center: np.ndarray  # [2] box centre (x, y), image px
    size: np.ndarray  # [2] (w, h) of the image region the crop covers, image px
    image_size: np.ndarray  # [2] (W, H)


def crop_region(box_xyxy, rule: CropRule) -> tuple[np.ndarray, np.ndarray]:
    """Box -> (centre, (w, h) of the region mapped onto the model input)."""
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    w, h = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
    center = np.array([(x1 + x2) / 2.0, (y1 + y2) / 2.0])
    aspect = rule.input_hw[1] / rule.input_hw[0]  # w/h = 0.75
    if rule.udp:  # mmpose _box2cs: grow the short side to the 3:4 aspect, then pad
        w, h = (w, w / aspect) if w > aspect * h else (h * aspect, h)
        return center, np.array([w, h]) * rule.padding
    # HMR2.0: square of side max(h, 4w/3); the model sees its central 3:4 part.
    side = max(h, w / aspect) * rule.padding
    return center, np.array([side * aspect, side])


def crop_affine(center: np.ndarray, size: np.ndarray, rule: CropRule) -> np.ndarray:
    """2x3 affine from image pixels to model-input pixels."""
    out_h, out_w = rule.input_hw
    if rule.udp:
        sx, sy = (out_w - 1) / size[0], (out_h - 1) / size[1]
        dst_c = ((out_w - 1) / 2.0, (out_h - 1) / 2.0)
    else:
        sx = sy = out_h / size[1]
        dst_c = (out_w / 2.0, out_h / 2.0)
    return np.array([[sx, 0.0, dst_c[0] - sx * center[0]], [0.0, sy, dst_c[1] - sy * center[1]]])


def prepare_crop(image_rgb: np.ndarray, box_xyxy, rule: CropRule) -> Crop:
    """RGB uint8 image ``[H, W, 3]`` and a person box -> normalised model input ``[3, 256, 192]``."""
    center, size = crop_region(box_xyxy, rule)
    out_h, out_w = rule.input_hw
    affine = crop_affine(center, size, rule)
    d = size[1] / out_h / 2.0
    if rule.antialias and d > 1.1:
        # reason: HMR2.0 blurs the whole image with sigma (d-1)/2 when d = side/256/2 > 1.1, with skimage's
        # gaussian: scipy.ndimage, mode 'nearest', i.e. the edge pixel is repeated (BORDER_REPLICATE; OpenCV's
        # default REFLECT_101 differed by up to 16 grey levels in crops touching the image border). OpenCV's
        # kernel reaches round(8*sigma+1)|1 taps where scipy's reaches 2*int(4*sigma+0.5)+1: the extra tail weighs
        # under exp(-8), at most 0.02 grey levels.
        blurred = cv2.GaussianBlur(image_rgb.astype(np.float32), (0, 0), sigmaX=(d - 1) / 2.0,
                                   borderType=cv2.BORDER_REPLICATE)
        # reason: skimage returns float64, and OpenCV warps float64 images the classic way: source positions
        # rounded to 1/32 px (fixed point), bilinear weights from that grid - unlike its float32/uint8 warps, which
        # interpolate at the exact position. The two differ by up to 2.3 grey levels on a textured photo, so the
        # blurred crop is warped in float64 as well.
        warped = cv2.warpAffine(blurred.astype(np.float64), affine, (out_w, out_h), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0).astype(np.float32)
    else:
        # reason: both originals warp the uint8 image where nothing is blurred (HMR2.0 without the anti-alias
        # blur, ViTPose always), so their crop is rounded to whole grey levels (with OpenCV 5, exactly the rounded
        # float32 warp). The crop stays float here: that rounding is at most 0.5 grey level (0.009 after
        # normalisation, under the 0.02 parity tolerance), and reproducing it bit for bit would also need the
        # originals' float32 box geometry - rounding alone turns their ~1e-5 px geometric differences into whole
        # grey-level flips, a larger worst case.
        warped = cv2.warpAffine(image_rgb.astype(np.float32), affine, (out_w, out_h), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    mean = np.asarray(rule.mean, np.float32) * 255.0
    std = np.asarray(rule.std, np.float32) * 255.0
    chw = ((warped - mean) / std).transpose(2, 0, 1)
    return Crop(np.ascontiguousarray(chw, dtype=np.float32), center, size,
                np.array([image_rgb.shape[1], image_rgb.shape[0]], dtype=np.float64))


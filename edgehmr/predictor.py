"""``Predictor``: what a Python app (on a Jetson, a PC) calls around an exported artifact.

Image + person boxes (or a whole frame for SAT-HMR) in, decoded results out: the same steps, read from the same
``metadata.json``, as the C++ runtime in ``targets/cpp`` (whose tests compare against this class):

- HMR2.0 family: crop per box (``preprocessing``), the network, then the camera in the full image (CLIFF / the
  4D-Humans demo; ``postprocessing.camera``), and 2D keypoints when the artifact has SMPL baked in (``joints``).
- ViTPose: crop per box, heatmaps, DARK-UDP decoding to image pixels.
- SAT-HMR: the frame on the artifact's canvas, stage 1, the host's token selection and bucket, stage 2, and the
  people above a confidence threshold.

Boxes are batched to the artifact's static batch size (the last batch is padded with copies and the padding is
dropped).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgehmr.artifact import read_metadata
from edgehmr.errors import InputError
from edgehmr.inputs import check_box, check_image
from edgehmr.models.geometry import cam_crop_to_full
from edgehmr.models.keypoints import decode_heatmaps
from edgehmr.models.sat_hmr import CANVAS, FOCAL_PX
from edgehmr.preprocess import CropRule, prepare_crop
from edgehmr.tasks import FRAMES, KEYPOINTS, artifact_task

SAT_CONFIDENCE = 0.3  # people kept from SAT-HMR's 50 queries: confidence > this (its demo's conf_thresh; no NMS)


@dataclass
class Person:
    box: np.ndarray  # [4] xyxy image px (the input box; SAT-HMR: the predicted box)
    outputs: dict[str, np.ndarray]  # the network's outputs for this person, batch axis dropped
    translation: np.ndarray | None = None  # [3] m, camera of the full image (HMR2.0 family, SAT-HMR)
    focal_length_px: float | None = None  # that camera's focal length
    keypoints: np.ndarray | None = None  # [K, 3] (x, y, confidence) image px: ViTPose, or projected SMPL joints


@dataclass
class Prediction:
    people: list[Person]
    timings_ms: dict[str, float] = field(default_factory=dict)  # preprocess, infer, decode
    details: dict = field(default_factory=dict)  # SAT-HMR: bucket, demoted cells


def project_full(points: np.ndarray, translation: np.ndarray, focal: float, width: int, height: int) -> np.ndarray:
    """Body-frame points ``[J, 3]`` + full-image translation -> pixels, principal point at the image centre."""
    p = points.astype(np.float64) + translation
    z = np.where(np.abs(p[:, 2:3]) < 1e-9, 1e-9, p[:, 2:3])
    return focal * p[:, :2] / z + np.array([width / 2.0, height / 2.0])


class Predictor:
    def __init__(self, artifact_dir: str | Path, threads: int | None = None, confidence: float = SAT_CONFIDENCE,
                 verify: bool = True):
        """``confidence``: SAT-HMR only, the threshold on its queries' person confidence. ``verify``: check the
        files against the sha256 hashes metadata.json records (a modified or mixed-up artifact is refused)."""
        self.artifact_dir = Path(artifact_dir)
        self.confidence = confidence
        self.meta = read_metadata(self.artifact_dir, verify=verify)
        self.task = artifact_task(self.meta)
        if self.task.input == FRAMES:
            from edgehmr.sat.frame import Canvas
            from edgehmr.sat.runner import SatPipeline

            self.pipeline = SatPipeline(self.artifact_dir, threads, verify=verify)
            canvas = self.meta["canvas"]
            self.canvas = Canvas(canvas["width"], canvas["height"])
            return
        from edgehmr.targets.base import open_artifact_runner

        self.runner = open_artifact_runner(self.artifact_dir, self.meta, threads=threads)
        pre = self.meta["preprocessing"]
        self.rule = CropRule(pre["name"], pre["padding"], pre["udp"], pre["antialias"], tuple(pre["input_hw"]),
                             tuple(pre["mean"]), tuple(pre["std"]))
        self.input_name = self.meta["inputs"][0]["name"]
        self.batch = int(self.meta["inputs"][0]["shape"][0])

    def __call__(self, image_rgb: np.ndarray, boxes=None) -> Prediction:
        """``image_rgb``: ``[H, W, 3]`` uint8. ``boxes``: person boxes xyxy in image pixels (not for SAT-HMR)."""
        check_image(image_rgb)
        if self.task.input == FRAMES:
            if boxes is not None:
                raise InputError("SAT-HMR finds the people itself: pass the whole frame, no boxes.")
            return self._frame(image_rgb)
        if boxes is None or len(boxes) == 0:
            raise InputError("give at least one person box (x1,y1,x2,y2 in image pixels).")
        return self._crops(image_rgb, boxes)

    def preprocess(self, image_rgb: np.ndarray, box) -> np.ndarray:
        """The network input ``[3, 256, 192]`` for one box (what ``edgehmr-run --dump-input`` writes)."""
        height, width = check_image(image_rgb).shape[:2]
        return prepare_crop(image_rgb, check_box(box, width, height), self.rule).image

    def _crops(self, image_rgb: np.ndarray, boxes) -> Prediction:
        height, width = image_rgb.shape[:2]
        timings = dict.fromkeys(("preprocess", "infer", "decode"), 0.0)
        boxes = [check_box(b, width, height) for b in boxes]
        people: list[Person] = []
        for start in range(0, len(boxes), self.batch):
            chunk = boxes[start:start + self.batch]
            t = time.perf_counter()
            crops = [prepare_crop(image_rgb, b, self.rule) for b in chunk]
            images = np.stack([c.image for c in crops] + [crops[-1].image] * (self.batch - len(crops)))
            t1 = time.perf_counter()
            out = self.runner.run(self.runner.default_entry, {self.input_name: images})
            t2 = time.perf_counter()
            people += self._decode(out, chunk, crops, width, height)
            t3 = time.perf_counter()
            for key, dt in zip(timings, (t1 - t, t2 - t1, t3 - t2)):
                timings[key] += dt * 1e3
        return Prediction(people, timings)

    def _decode(self, out: dict, boxes: list, crops: list, width: int, height: int) -> list[Person]:
        n = len(boxes)
        per = [{k: v[i] for k, v in out.items()} for i in range(n)]
        if self.task.output == KEYPOINTS:
            centers = np.stack([c.center for c in crops])
            scales = np.stack([c.size for c in crops]) / 200.0  # mmpose's box scale unit
            keypoints = decode_heatmaps(out["heatmaps"][:n], centers, scales)
            return [Person(b, o, keypoints=k) for b, o, k in zip(boxes, per, keypoints)]
        camera = self.meta["postprocessing"]["camera"]
        focal = camera["focal_length_px"] / camera["crop_size_px"] * max(width, height)
        centers = np.stack([c.center for c in crops])
        sides = np.array([c.size[1] for c in crops])  # the square crop's side (the model sees its 3:4 middle)
        translation = cam_crop_to_full(out["pred_cam"][:n], centers, sides, np.tile([width, height], (n, 1)),
                                       camera["focal_length_px"], camera["crop_size_px"])
        people = []
        for b, o, t in zip(boxes, per, translation):
            keypoints = None
            if "joints" in o:
                xy = project_full(o["joints"], t, focal, width, height)
                keypoints = np.concatenate((xy, np.ones((len(xy), 1))), axis=1)
            people.append(Person(b, o, t, focal, keypoints))
        return people

    def _frame(self, image_rgb: np.ndarray) -> Prediction:
        from edgehmr.sat.frame import prepare_frame

        t = time.perf_counter()
        frame = prepare_frame(image_rgb, self.canvas)
        t1 = time.perf_counter()
        result = self.pipeline.run(frame.image[None])
        t2 = time.perf_counter()
        out = {k: v[0] for k, v in result.outputs.items()}
        people = []
        # boxes are (cx, cy, w, h) over the 1288 reference canvas; the camera has SAT-HMR's fixed 60 degree field
        # of view there, its principal point at the centre of the resized (unpadded) frame
        for q in np.flatnonzero(out["confidence"] > self.confidence):
            cx, cy, w, h = out["boxes"][q].astype(np.float64) * CANVAS / frame.scale
            people.append(Person(np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]),
                                 {k: v[q] for k, v in out.items()}, out["transl"][q].astype(np.float64),
                                 FOCAL_PX / frame.scale))
        t3 = time.perf_counter()
        return Prediction(people, {"preprocess": (t1 - t) * 1e3, "infer": (t2 - t1) * 1e3,
                                   "decode": (t3 - t2) * 1e3},
                          {"bucket": result.bucket, "demoted": result.demoted})

"""Hostile and broken input: every parser refuses junk with the library's input error (the CLI: one line, exit 2),
nothing crashes, hangs, allocates without bound or is left half-written.

Property-based (hypothesis, derandomised so CI sees the same cases every run) over boxes, boxes files, canvases,
bucket tables, checkpoints, images and metadata; plus the cases found by hand. The C++ app gets the same generated
images, boxes and metadata in tests/test_cpp_runtime.py (they share its build).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from edgehmr.artifact import read_metadata, remove_abandoned, staged_dir
from edgehmr.cli import main
from edgehmr.errors import EdgeHMRError, InputError, SpecError
from edgehmr.inputs import BOX_MARGIN, check_box, check_image, parse_boxes, read_image_rgb
from edgehmr.models._checkpoint import read_checkpoint
from edgehmr.predictor import Predictor
from edgehmr.preprocess import HMR2_CROP, prepare_crop
from hostile import boxes, damaged_images, encoded, json_values, metadata_mutations, png_header_only

MODEL = "test-hmr2"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(code: int, err: str, needle: str = "") -> None:
    """Exit 2 and exactly one 'error:' line (containing ``needle``), no traceback."""
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert code == 2 and len(lines) == 1 and needle in lines[0], err[-2000:]
    assert "Traceback" not in err


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


# --- person boxes -------------------------------------------------------------------------------------------------

@settings(max_examples=300)
@given(box=boxes, width=st.integers(1, 5000), height=st.integers(1, 5000))
def test_any_box_is_refused_or_bounded(box, width, height):
    try:
        x1, y1, x2, y2 = check_box(box, width, height)
    except InputError:
        return
    assert np.all(np.isfinite([x1, y1, x2, y2])) and x2 > x1 and y2 > y1
    assert -BOX_MARGIN * width <= x1 < width and 0 < x2 <= (1 + BOX_MARGIN) * width
    assert -BOX_MARGIN * height <= y1 < height and 0 < y2 <= (1 + BOX_MARGIN) * height


@pytest.mark.parametrize("box", [(0, 0, 1e9, 1e9), (0, 0, 1e5, 1e5), (-1e300, -1e300, 1e300, 1e300)])
def test_huge_box_is_clipped_before_any_allocation(box, astronaut):
    """0,0,1e9,1e9 made OpenCV's blur throw bad_alloc; the box is now the image grown by one image size per side."""
    crop = prepare_crop(astronaut, check_box(box, 512, 512), HMR2_CROP)
    clipped = [max(box[0], -512), max(box[1], -512), min(box[2], 1024), min(box[3], 1024)]
    np.testing.assert_array_equal(crop.image, prepare_crop(astronaut, clipped, HMR2_CROP).image)


@pytest.mark.parametrize("box, needle", [((0, 0, float("inf"), 5), "finite"), ((float("nan"), 0, 5, 5), "finite"),
                                         ((600, 0, 700, 5), "outside"), ((5, 5, 5, 9), "empty"),
                                         ((1, 2, 3), "4 finite numbers"), ("0,0,5,5", "4 finite numbers")])
def test_predictor_refuses_bad_boxes(artifact, astronaut, box, needle):
    with pytest.raises(InputError, match=needle):
        Predictor(artifact(MODEL))(astronaut, [box])


def test_predictor_refuses_what_is_not_an_image(artifact, tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"not an image")
    with pytest.raises(InputError, match="cannot decode"):
        read_image_rgb(tmp_path / "x.jpg")  # was: None, which the Predictor met as AttributeError
    predictor = Predictor(artifact(MODEL))
    for junk in (None, "photo.jpg", np.zeros((4, 4), np.uint8), np.zeros((4, 4, 3), np.float32),
                 np.zeros((0, 4, 3), np.uint8)):
        with pytest.raises(InputError, match="RGB uint8"):
            predictor(junk, [[0, 0, 2, 2]])


# --- boxes files ---------------------------------------------------------------------------------------------------

NAMES = ("a.jpg", "b.png")


@settings(max_examples=300)
@given(value=json_values | st.dictionaries(st.sampled_from(NAMES), json_values | boxes, max_size=2))
def test_any_boxes_json_is_parsed_or_refused(value):
    try:
        parsed = parse_boxes(json.dumps(value), "boxes.json", NAMES, "the images")
    except InputError:
        return
    assert set(parsed) <= set(NAMES)
    for entries in parsed.values():
        assert entries and all(len(b) == 4 and all(np.isfinite(b)) for b in entries)


@settings(max_examples=200)
@given(text=st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_any_text_as_boxes_json_is_parsed_or_refused(text):
    try:
        parse_boxes(text, "boxes.json", NAMES, "the images")
    except InputError:
        pass


@pytest.mark.parametrize("content, needle", [
    ('{"a.jpg": [0, 0, Infinity, 5]}', "not valid JSON"),
    ('{"a.jpg": 5}', "is not a box"),
    ('{"a.jpg": ["0", "0", "5", "5"]}', "is not a box"),
    ('{"nobody.jpg": [0, 0, 5, 5]}', "do not exist ('nobody.jpg')"),
    ('{"a.jpg": [600, 600, 700, 700]}', "outside the 512x512 image"),
    ('{"a.jpg": [[0, 0, 5, 5], [9, 9, 1, 1]]}', "is empty"),
    ('[[0, 0, 5, 5]]', "must be a JSON object"),
])
def test_reference_refuses_bad_boxes_files(capsys, tmp_path, astronaut, content, needle):
    """Calibration and reference folders share the Predictor's box rules (a box outside the image gave black
    calibration crops; an unknown key was ignored and the whole frame used)."""
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.jpg"), astronaut[:, :, ::-1])
    (folder / "boxes.json").write_text(content)
    code, _, err = run(capsys, "reference", "-m", MODEL, "-i", str(folder), "-o", str(tmp_path / "ref"))
    one_error_line(code, err, needle)
    assert not (tmp_path / "ref").exists()


# --- canvases and bucket tables --------------------------------------------------------------------------------------

@settings(max_examples=200)
@given(text=st.text(max_size=30) | st.from_regex(r"-?\d{1,6}[xX]-?\d{1,6}", fullmatch=True))
def test_any_canvas_text_is_parsed_or_refused(text):
    from edgehmr.sat.frame import Canvas

    try:
        canvas = Canvas.parse(text)
    except SpecError:
        return
    assert canvas.width % 56 == 0 and canvas.height % 56 == 0


@settings(max_examples=200)
@given(text=st.text(max_size=40) | st.from_regex(r"(-?\d{1,7}x-?\d{1,7},?){0,4}", fullmatch=True))
def test_any_bucket_list_is_parsed_or_refused(text):
    from edgehmr.sat.tables import parse_buckets

    try:
        table = parse_buckets(text, (8, 12))
    except SpecError:
        return
    assert max(b.other for b in table.buckets) >= 8 * 12


# --- checkpoints ----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def checkpoint_bytes(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pth"
    torch.save({"state_dict": {"w": torch.zeros(4, 3), "b": torch.ones(2)}}, path)
    return path.read_bytes()


@settings(max_examples=150)
@given(data=st.data(), suffix=st.sampled_from([".pth", ".ckpt", ".safetensors"]))
def test_any_checkpoint_bytes_load_or_are_refused(checkpoint_bytes, data, suffix):
    prefix = data.draw(st.sampled_from([b"", b"PK\x03\x04", b"\x80\x02", b"\x80\x04\x95", checkpoint_bytes[:64]]))
    blob = data.draw(st.one_of(st.binary(max_size=400).map(lambda b: prefix + b),
                               st.integers(0, len(checkpoint_bytes) - 1).map(lambda n: checkpoint_bytes[:n])))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"weights{suffix}"
        path.write_bytes(blob)
        try:
            state = read_checkpoint(path)
        except InputError:
            return
        assert all(isinstance(v, torch.Tensor) for v in state.values())


def test_empty_and_random_checkpoints_get_the_right_advice(capsys, tmp_path):
    (tmp_path / "empty.pth").write_bytes(b"")
    code, _, err = run(capsys, "convert", "-m", MODEL, "-c", str(tmp_path / "empty.pth"), "-o", str(tmp_path / "o"))
    one_error_line(code, err, "is empty (0 bytes)")  # was: IndexError traceback
    (tmp_path / "random.pth").write_bytes(np.random.default_rng(0).bytes(4096))
    code, _, err = run(capsys, "convert", "-m", MODEL, "-c", str(tmp_path / "random.pth"), "-o", str(tmp_path / "o"))
    one_error_line(code, err, "is not a PyTorch checkpoint")
    assert "--trust-checkpoint" not in err  # was: "contains pickled Python objects ... re-run with --trust-checkpoint"
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_integer_weights_are_refused(capsys, tmp_path, loaded_models):
    from safetensors.torch import save_file

    state = {k: (v.to(torch.int32) if v.is_floating_point() else v).contiguous()
             for k, v in loaded_models(MODEL).module.state_dict().items()}
    save_file(state, tmp_path / "int.safetensors")
    code, _, err = run(capsys, "convert", "-m", MODEL, "-c", str(tmp_path / "int.safetensors"), "-o",
                       str(tmp_path / "o"))
    one_error_line(code, err, "not floating point")  # was: converted without a word
    assert "floating-point weights" in err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


# --- images ---------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def image_files(astronaut) -> dict[str, bytes]:
    small = cv2.resize(astronaut, (96, 64))
    return {"png": encoded(small, ".png"), "jpg": encoded(small, ".jpg")}


@settings(max_examples=200)
@given(data=st.data())
def test_any_image_bytes_decode_or_are_refused(image_files, data):
    blob = data.draw(damaged_images(image_files) | st.binary(max_size=300))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "frame.jpg"
        path.write_bytes(blob)
        try:
            image = read_image_rgb(path)
        except InputError:
            return
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


def test_truncated_jpeg_and_oversized_images_are_refused(tmp_path, astronaut, monkeypatch):
    jpeg = encoded(astronaut, ".jpg")
    (tmp_path / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    with pytest.raises(InputError, match="cannot decode"):
        read_image_rgb(tmp_path / "cut.jpg")

    def no_decoding(*args):  # refused from the header: the decoder (and its gigabyte allocation) is never reached
        raise AssertionError("an oversized image was decoded")

    monkeypatch.setattr(cv2, "imdecode", no_decoding)
    for width, height, needle in ((12000, 9000, "12000x9000 pixels, more than"), (20000, 20000, "larger than")):
        (tmp_path / "huge.png").write_bytes(png_header_only(width, height))
        with pytest.raises(InputError, match=needle):
            read_image_rgb(tmp_path / "huge.png")
    with pytest.raises(InputError, match="more than edgehmr reads"):
        check_image(np.broadcast_to(np.uint8(0), (10001, 10000, 3)))  # an app's array: the same bound


def test_cmyk_jpeg_decodes(tmp_path, astronaut):
    from PIL import Image

    Image.fromarray(astronaut).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    image = read_image_rgb(tmp_path / "cmyk.jpg")
    assert image.shape == (512, 512, 3) and np.abs(image.astype(int) - astronaut).mean() < 8


# --- metadata and model files ---------------------------------------------------------------------------------------

def _copy(src: Path, dst: Path, meta: dict | None = None) -> Path:
    shutil.copytree(src, dst, copy_function=os.link)
    if meta is not None:
        (dst / "metadata.json").unlink()
        (dst / "metadata.json").write_text(json.dumps(meta))
    return dst


@settings(max_examples=60)
@given(data=st.data())
def test_any_metadata_damage_is_refused_or_harmless(artifact, astronaut, data):
    """One to three fields deleted or replaced by junk: the Predictor refuses (InputError and friends) or
    predicts; never a KeyError, TypeError or a runtime's own exception (the C++ twin: test_cpp_runtime.py)."""
    src = artifact(MODEL)
    meta = data.draw(metadata_mutations(json.loads((src / "metadata.json").read_text())))
    with tempfile.TemporaryDirectory() as folder:
        art = _copy(src, Path(folder) / "art", meta)
        try:
            Predictor(art)(astronaut, [[100, 20, 400, 500]])
        except EdgeHMRError:
            pass


@pytest.mark.parametrize("field", ["inputs", "preprocessing", "postprocessing", "model"])
def test_validate_refuses_metadata_missing_a_key(capsys, tmp_path, artifact, bundle, field):
    meta = json.loads((artifact(MODEL) / "metadata.json").read_text())
    del meta[field]
    art = _copy(artifact(MODEL), tmp_path / "art", meta)
    code, _, err = run(capsys, "validate", str(art), "--reference", str(bundle(MODEL)))
    one_error_line(code, err, "re-run 'edgehmr convert'")  # was: KeyError traceback


def test_model_file_that_is_not_a_model_is_refused(capsys, tmp_path, artifact, bundle):
    import hashlib

    meta = json.loads((artifact(MODEL) / "metadata.json").read_text())
    junk = b"\x08\x07 this is not a protobuf" * 50
    meta["files_sha256"]["model.onnx"] = hashlib.sha256(junk).hexdigest()  # consistent hashes: only the load fails
    art = _copy(artifact(MODEL), tmp_path / "art", meta)
    (art / "model.onnx").unlink()
    (art / "model.onnx").write_bytes(junk)
    with pytest.raises(InputError, match="cannot be loaded by onnx"):
        Predictor(art)
    code, _, err = run(capsys, "validate", str(art), "--reference", str(bundle(MODEL)))
    one_error_line(code, err, "cannot be loaded")  # was: InvalidProtobuf traceback
    renamed = json.loads((artifact(MODEL) / "metadata.json").read_text())
    renamed["parts"]["model"]["output_names"][-1] = "not_an_output"  # pred_cam_t: no reader needs it by name
    with pytest.raises(InputError, match="has no output 'not_an_output'"):
        Predictor(_copy(artifact(MODEL), tmp_path / "renamed", renamed))


# --- nothing left behind --------------------------------------------------------------------------------------------

def test_staging_folder_of_a_killed_conversion_is_removed_by_the_next(tmp_path):
    """SIGKILL gives no chance to clean up: the next write beside it removes the dead writer's staging folder and
    keeps a live one's (a conversion into the same folder running now)."""
    final = tmp_path / "art"
    code = (f"import time; from pathlib import Path; from edgehmr.artifact import staged_dir\n"
            f"with staged_dir(Path({str(final)!r})) as s:\n"
            f"    (s / 'model.bin').write_bytes(b'x'); print(s, flush=True); time.sleep(60)\n")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    stage = Path(child.stdout.readline().strip())
    assert stage.is_dir() and stage.name.startswith(".art.partial-")
    live = tmp_path / f".art.partial-{os.getpid()}-live"
    live.mkdir()
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert stage.is_dir()  # what SIGKILL leaves
    with staged_dir(final) as s:
        (s / "metadata.json").write_text("{}")
    assert not stage.exists() and live.is_dir() and (final / "metadata.json").is_file()
    assert remove_abandoned(final) == []


def test_artifact_files_are_verified_by_validate_and_profile(capsys, tmp_path, artifact, bundle):
    art = _copy(artifact(MODEL), tmp_path / "art")
    data = (art / "model.onnx").read_bytes()
    (art / "model.onnx").unlink()
    (art / "model.onnx").write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    code, _, err = run(capsys, "validate", str(art), "--reference", str(bundle(MODEL)))
    one_error_line(code, err, "does not match metadata.json")
    code, _, err = run(capsys, "profile", str(art), "--runs", "1", "--warmup", "0")
    one_error_line(code, err, "does not match metadata.json")
    with pytest.raises(InputError, match="inside the artifact folder"):
        meta = json.loads((artifact(MODEL) / "metadata.json").read_text())
        meta["parts"]["model"]["file"] = "../../etc/passwd"
        read_metadata(_copy(artifact(MODEL), tmp_path / "escape", meta))


# --- SMPL model files and output folders ------------------------------------------------------------------------------

SMPL_KEYS = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")


@settings(max_examples=150)
@given(blob=st.binary(max_size=300) | st.dictionaries(st.sampled_from(SMPL_KEYS), json_values).map(
    lambda d: pickle.dumps(d, protocol=2)) | json_values.map(pickle.dumps))
def test_any_smpl_file_loads_or_is_refused(blob):
    from edgehmr.models.smpl import load_smpl_data

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "SMPL_NEUTRAL.pkl"
        path.write_bytes(blob)
        with pytest.raises(InputError):  # none of these is a whole SMPL model
            load_smpl_data(path)


def test_smpl_arrays_that_would_index_out_of_range_are_refused(tmp_path):
    from edgehmr.models.smpl import load_smpl_data, synthetic_smpl_data

    for key, index, value, needle in (("kintree_table", (0, 5), 7, "parents must precede"),
                                      ("f", (0, 0), 6890, "face indices"), ("weights", (0, 0), np.nan, "NaN")):
        arrays = synthetic_smpl_data().as_dict()
        arrays[key] = arrays[key].copy()
        arrays[key][index] = value
        np.savez(tmp_path / "smpl.npz", **arrays)
        with pytest.raises(InputError, match=needle):
            load_smpl_data(tmp_path / "smpl.npz")


def test_output_folder_that_is_a_file_is_one_line(capsys, tmp_path):
    (tmp_path / "taken").write_text("a file")
    code, _, err = run(capsys, "convert", "-m", MODEL, "-o", str(tmp_path / "taken"))
    one_error_line(code, err, "a file is in the way")  # was: "[Errno 17] File exists"


# --- any JSON file ------------------------------------------------------------------------------------------------

DEEP = '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}"


def test_deeply_nested_json_is_one_line_everywhere(tmp_path, artifact):
    """Python's parser recursed into RecursionError (a traceback); the C++ app crashed (test_cpp_runtime.py)."""
    from edgehmr.calibration.recipes import load_recipe_file
    from edgehmr.reference import load_bundle

    art = _copy(artifact(MODEL), tmp_path / "art")
    (art / "metadata.json").unlink()
    (art / "metadata.json").write_text(DEEP)
    (tmp_path / "bundle").mkdir()
    (tmp_path / "bundle" / "bundle.json").write_text(DEEP)
    (tmp_path / "recipe.json").write_text(DEEP)
    for read in (lambda: read_metadata(art), lambda: load_bundle(tmp_path / "bundle"),
                 lambda: load_recipe_file(str(tmp_path / "recipe.json")),
                 lambda: parse_boxes(DEEP, "boxes.json", NAMES, "the images")):
        with pytest.raises(InputError, match="nests deeper than 64 levels"):
            read()


@settings(max_examples=150)
@given(text=st.text(max_size=300) | json_values.map(json.dumps))
def test_any_text_as_metadata_is_refused(tmp_path_factory, text):
    folder = Path(tempfile.mkdtemp(dir=tmp_path_factory.getbasetemp()))
    (folder / "metadata.json").write_text(text)
    with pytest.raises(InputError):
        read_metadata(folder)

"""SAT-HMR against the ORIGINAL implementation (ChiSu001/SAT-HMR, golden case tests/data/parity/sat-hmr-644):
the published-size model with the case's recipe weights, loaded strictly from the published flat layout.

Checked: the preprocessing (resize geometry of several frame sizes and the network input), the scale map and the
token selection, the decoder memory and its positions row by row (matched by level and cell, since token order
may differ), every head, the bucketed stage-2 path the artifacts export, and (slow) the ONNX Runtime and OpenVINO
fp32 artifacts end to end.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgehmr.bucketing import classify, pack_into, Bucket
from edgehmr.models import load_model
from edgehmr.models.sat_hmr import POS_GRID
from edgehmr.models.sat_reference import from_host, reference_memory
from edgehmr.sat.frame import Canvas, fit_resize, prepare_frame, reference_resize
from parity_helpers import assert_close, load_case

CASE = load_case("sat-hmr-644")
TOL = CASE.tolerances
CANVAS = Canvas(672, 448)  # the case's preprocessing canvas, inside the published 1288 model
HEAD_OUTPUTS = ("global_orient", "body_pose", "betas", "transl", "boxes", "confidence")


def test_resize_geometry_matches_the_original_for_every_listed_frame():
    for long_side, frames in ((int(k), v) for k, v in CASE.meta["resize_geometry"].items() if k != "note"):
        for f in frames:
            w, h = f["frame_wh"]
            assert reference_resize(w, h, long_side) == (*f["resized_wh"], f["resize_rate"]), f
            canvas = Canvas.for_aspect(w, h, long_side)
            assert [canvas.width, canvas.height] == f["canvas_wh"], f
            assert fit_resize(w, h, canvas)[:2] == tuple(f["resized_wh"]), f  # the canvas adds no resize of its own


def test_preprocessing_reproduces_the_original_network_input():
    frame = prepare_frame(CASE.inputs["image_rgb_uint8"], CANVAS)
    assert tuple(frame.resized_hw) == tuple(CASE.inputs["resized_hw"])
    assert_close("image", frame.image[None], CASE.inputs["image"], TOL["image (edgehmr own preprocessing vs stored)"])


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    path = CASE.checkpoint(tmp_path_factory.mktemp("sat-parity") / "sat_644.pth", wrapper=None)
    loaded = load_model("sat-hmr", checkpoint=path)
    path.unlink()  # ~0.9 GB
    return loaded


@pytest.fixture(scope="module")
def model(loaded):
    return loaded.module


@pytest.fixture(scope="module")
def run(model):
    """Our model on the stored network input: stage 1, the host rule, the memory and every head."""
    image = torch.from_numpy(CASE.inputs["image"])
    with torch.no_grad():
        scale_map, tokens, cls = model.stage1(image)
        selection = classify(scale_map[0, 0].numpy(), scale_map[0, 1].numpy())
        memory, memory_pos = reference_memory(model, image, tokens, cls,
                                              from_host(selection.small, selection.low_res, selection.background))
        states, _ = model.decoder_states(memory, memory_pos, None)
        pose_6d = model.pose_6d(states)
        heads = dict(zip(HEAD_OUTPUTS, model.decode(memory, memory_pos, None)))
    return dict(image=image, scale_map=scale_map, tokens=tokens, cls=cls, selection=selection, memory=memory[0],
                memory_pos=memory_pos[0], pose_6d=pose_6d, heads={k: v.numpy() for k, v in heads.items()})


def test_scale_map_and_token_selection(run):
    assert_close("scale_map", run["scale_map"], CASE.outputs["scale_map"], TOL["scale_map"])
    sel = run["selection"]
    for ours, name in ((sel.small, "select_high_res"), (sel.low_res, "select_low_res"),
                       (sel.background, "select_background")):
        assert np.array_equal(ours, CASE.outputs[name][0]), name
    assert sel.memory_tokens == CASE.meta["selection"]["memory"]


def _memory_rows(selection) -> list[tuple[int, int, int]]:
    """(level, row, col) of each of our memory rows: the 4 high-res tokens of every small cell (level 0 on the
    14-px grid), low-res cells (level 1), background blocks (level 2)."""
    rows = []
    for cell_y, cell_x in zip(*np.nonzero(selection.small)):
        rows += [(0, 2 * cell_y + dy, 2 * cell_x + dx) for dy in (0, 1) for dx in (0, 1)]
    rows += [(1, y, x) for y, x in zip(*np.nonzero(selection.low_res))]
    rows += [(2, y, x) for y, x in zip(*np.nonzero(selection.background))]
    return rows


def test_memory_and_positions_match_row_by_row(run):
    golden_rows = {(int(level), int(y), int(x)): i for i, (level, (y, x)) in
                   enumerate(zip(CASE.outputs["memory_level"][0], CASE.outputs["memory_cell_yx"][0]))}
    ours = _memory_rows(run["selection"])
    assert sorted(ours) == sorted(golden_rows) and all(r[1] < POS_GRID for r in ours)
    order = [golden_rows[r] for r in ours]
    assert_close("memory", run["memory"], CASE.outputs["memory"][0][order], TOL["memory"])
    assert_close("memory_pos_embed", run["memory_pos"], CASE.outputs["memory_pos_embed"][0][order],
                 TOL["memory_pos_embed"])


def _rodrigues(rotvec: np.ndarray) -> np.ndarray:
    """Axis-angle ``[N, 3]`` -> rotation matrices ``[N, 3, 3]`` (float64)."""
    angle = np.linalg.norm(rotvec, axis=-1, keepdims=True)
    axis = rotvec / np.maximum(angle, 1e-12)
    k = np.zeros((len(rotvec), 3, 3))
    k[:, 0, 1], k[:, 0, 2], k[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
    k -= k.transpose(0, 2, 1)
    s, c = np.sin(angle)[..., None], np.cos(angle)[..., None]
    return np.eye(3) + s * k + (1 - c) * k @ k


def test_every_head_matches(run):
    heads = run["heads"]
    assert_close("pose_6d", run["pose_6d"], CASE.outputs["pose_6d"], TOL["pose_6d"])
    rotmats = np.concatenate([heads["global_orient"], heads["body_pose"]], axis=2)
    assert_close("rotmats", rotmats, CASE.outputs["rotmats"], TOL["rotmats"])
    # The original's axis-angle pose, back to matrices by an independent conversion (axis-angle near pi is
    # ill-conditioned the other way round).
    from_axis_angle = _rodrigues(CASE.outputs["pose_axis_angle"].reshape(-1, 3).astype(np.float64))
    assert_close("pose_axis_angle", rotmats.reshape(-1, 3, 3), from_axis_angle, TOL["rotmats"])
    for name in ("betas", "transl", "boxes", "confidence"):
        assert_close(name, heads[name], CASE.outputs[name], TOL[name])


def test_bucketed_stage2_matches_the_original(model, run):
    """What the artifacts export: stage 2 on fixed-size buffers with padding, masked."""
    sel = run["selection"]
    packed = pack_into(sel, Bucket.of(sel.hr_cells + 3, sel.other_tokens + 30), CANVAS.grid)
    feeds = {k: torch.from_numpy(v) for k, v in packed.feeds().items()}
    with torch.no_grad():
        out = model.stage2(run["image"], run["tokens"], run["cls"], feeds["hr_cells"], feeds["hr_mask"],
                           feeds["other_index"], feeds["other_mask"])
    out = dict(zip(HEAD_OUTPUTS, (t.numpy() for t in out)))
    rotmats = np.concatenate([out["global_orient"], out["body_pose"]], axis=2)
    assert_close("rotmats", rotmats, CASE.outputs["rotmats"], TOL["rotmats"])
    for name in ("betas", "transl", "boxes", "confidence"):
        assert_close(name, out[name], CASE.outputs[name], TOL[name])


# Published-size conversions (~130 s for ONNX Runtime, ~75 s more for OpenVINO): the slow tier. The default tier
# checks the same bucketed stage-2 path in torch against the original above, and the tiny model's artifacts
# against torch per bucket (test_sat_pipeline).
@pytest.mark.slow
@pytest.mark.parametrize("target", ["onnx", "openvino"])
def test_bucketed_fp32_artifact_matches_the_original(loaded, run, target, tmp_path):
    """The whole artifact path: stage 1, the host's selection and bucket, stage 2 on the target's runtime. Two
    buckets, the frame fitting the smaller with padding."""
    from edgehmr.sat.convert import convert_sat
    from edgehmr.sat.runner import SatPipeline
    from edgehmr.spec import resolve_spec

    sel = run["selection"]
    buckets = f"{sel.hr_cells + 3}x{sel.other_tokens + 26},{sel.hr_cells + 7}x{CANVAS.grid[0] * CANVAS.grid[1]}"
    spec = resolve_spec("sat-hmr", target, "fp32", out_dir=str(tmp_path), canvas=str(CANVAS), buckets=buckets)
    result = SatPipeline(convert_sat(spec, loaded)).run(CASE.inputs["image"])
    assert result.bucket == f"b{sel.hr_cells + 3}x{sel.other_tokens + 26}" and result.demoted == 0
    assert_close("scale_map", result.scale_map[None], CASE.outputs["scale_map"], TOL["scale_map"])
    assert np.array_equal(result.selection.small, CASE.outputs["select_high_res"][0])
    out = result.outputs
    rotmats = np.concatenate([out["global_orient"], out["body_pose"]], axis=2)
    assert_close("rotmats", rotmats, CASE.outputs["rotmats"], TOL["rotmats"])
    for name in ("betas", "transl", "boxes", "confidence"):
        assert_close(name, out[name], CASE.outputs[name], TOL[name])

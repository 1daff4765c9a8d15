"""SAT-HMR stage 1: published parameter layout, the export-clean low-res patch embedding against the reference
formulation, constants refreshed on load, ONNX parity, and the hand-off to the host bucketing."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from edgehmr.bucketing import Bucket, BucketTable, classify, pack
from edgehmr.models.sat_hmr import DIM, SatStage1, init_sat_stage1, low_res_positions


def _stage1(seed: int = 0) -> SatStage1:
    torch.manual_seed(seed)
    model = SatStage1().eval()
    init_sat_stage1(model)
    return model


def test_parameters_use_the_published_names_and_shapes():
    state = _stage1().state_dict()
    assert state["encoder_pos_embeds"].shape == (92, 92, DIM)
    assert state["encoder_patch_proj.1.weight"].shape == (DIM, 3, 14, 14)
    assert state["encoder_cr_token"].shape == (1, DIM)
    assert state["encoder.additional_blocks.2.ls2.gamma"].shape == (DIM,)
    assert state["encoder.additional_blocks.0.attn.qkv.weight"].shape == (3 * DIM, DIM)
    assert [state[f"scale_head.layers.{i}.weight"].shape[0] for i in range(4)] == [DIM, DIM, DIM, 2]
    assert "low_res_pos" not in state  # derived constant, not a checkpoint entry


def test_low_res_embedding_equals_the_per_patch_bilinear_reference():
    """The reference resizes each 28-px patch to 14 px (bilinear, align_corners=False) before a 14-px conv."""
    model = _stage1()
    image = torch.randn(1, 3, 112, 168)
    conv = model.encoder_patch_proj[1]
    patches = image.unfold(2, 28, 28).unfold(3, 28, 28)  # [1, 3, 4, 6, 28, 28]
    gh, gw = patches.shape[2:4]
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, 3, 28, 28)
    resized = F.interpolate(patches, size=(14, 14), mode="bilinear", align_corners=False)
    reference = conv(resized).reshape(gh * gw, DIM)
    ours = conv(F.avg_pool2d(image, 2)).flatten(2).transpose(1, 2)[0]
    assert torch.allclose(ours, reference, atol=1e-5)


def test_position_constants_follow_loaded_weights():
    model, other = _stage1(0), _stage1(1)
    model.load_state_dict(other.state_dict())
    assert torch.equal(model.low_res_pos, low_res_positions(other.encoder_pos_embeds.detach()))


def test_stage1_onnx_matches_torch_and_feeds_the_bucketing(tmp_path):
    import onnxruntime as ort

    model = _stage1()
    image = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        scale_map, tokens, cls = model(image)
    assert scale_map.shape == (1, 2, 8, 8) and tokens.shape == (1, 64, DIM) and cls.shape == (1, DIM)
    path = tmp_path / "stage1.onnx"
    with torch.no_grad():
        torch.onnx.export(model, (image,), dynamo=True, input_names=["image"],
                          output_names=["scale_map", "low_res_tokens", "cls"]).save(str(path))
    got = ort.InferenceSession(str(path)).run(None, {"image": image.numpy()})
    for want, have in zip((scale_map, tokens, cls), got):
        assert np.linalg.norm(have - want.numpy()) / np.linalg.norm(want.numpy()) < 1e-4
    selection = classify(got[0][0, 0], got[0][0, 1])
    table = BucketTable((Bucket.of(8, 64),), (8, 8))
    packed = pack(selection, table)
    assert packed.memory_mask.shape == (4 * 8 + 64,)
    assert (packed.memory_mask == 0).sum() == selection.memory_tokens - 3 * packed.demoted  # demoted: 4 -> 1


def test_bucketed_stage2_encoder_equals_the_dynamic_reference_for_the_same_tokens():
    from edgehmr.models.sat_hmr import SatEncoder, init_sat_stage1, reference_encode

    torch.manual_seed(0)
    model = SatEncoder().eval()
    init_sat_stage1(model)
    image = torch.randn(1, 3, 224, 224)
    rng = np.random.default_rng(0)
    conf = rng.uniform(0, 0.2, (8, 8)).astype(np.float32)
    scale = np.ones((8, 8), np.float32)
    conf[0:2, 0:2], scale[0:2, 0:2] = 0.9, 0.1  # a small person: 4 high-res cells
    conf[4:8, 4:6], scale[4:8, 4:6] = 0.8, 0.9  # a large person: 8 low-res cells
    selection = classify(conf, scale)
    packed = pack(selection, BucketTable((Bucket.of(8, 64),), (8, 8)))
    with torch.no_grad():
        _, tokens, cls = model(image)
        got = model.encode(image, tokens, cls, torch.from_numpy(packed.hr_cells)[None],
                           torch.from_numpy(packed.other_index)[None], torch.from_numpy(packed.memory_mask)[None])
        want = reference_encode(model, image, tokens, cls, torch.from_numpy(selection.small),
                                torch.from_numpy(selection.low_res), torch.from_numpy(selection.background))
    real = torch.from_numpy(packed.memory_mask == 0)
    assert got.shape[1] == packed.bucket.memory > want.shape[1] == selection.memory_tokens
    assert (got[0, real] - want[0]).abs().max() < 1e-4

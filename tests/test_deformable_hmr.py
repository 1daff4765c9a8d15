"""DeformableHMR: the JBU upsampler and the deformable attention against independent slow references, the
registry and checkpoint layout, and conversion/validation per target."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import torch.nn.functional as F

from edgehmr.errors import CheckpointMismatchError
from edgehmr.models import get_model_info, load_model, model_cost
from edgehmr.models._checkpoint import load_strict
from edgehmr.models.deformable_attention import MSDeformAttn, init_msdeform_attn
from edgehmr.models.jbu import BicubicX2, JBUStack
from edgehmr.validate import validate

MODEL = "deformable-hmr-vit-s"
TINY = "test-deformable-hmr"  # the registered tiny DeformableHMR (JBU x2): conversions run on it by default
SIZES = [TINY, pytest.param(MODEL, marks=pytest.mark.slow)]


# ---- JBU: FeatUp's formulation (Unfold + einsum, adaptive average pooling, explicit adaptive conv) ----------------

def featup_jbu_stage(stage, source: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
    """FeatUp's JBULearnedRange.forward with its AdaptiveConv written as the C++ extension's loops (vectorised
    over channels and pixels, looping over the 7x7 taps of the unfolded patch)."""
    gb, _, gh, gw = guidance.shape
    radius, diameter = 3, 7
    proj = stage.range_proj(guidance)
    padded = F.pad(proj, [radius] * 4, mode="reflect")
    queries = torch.nn.Unfold(diameter)(padded).reshape(gb, proj.shape[1], diameter * diameter, gh, gw)
    queries = queries.permute(0, 1, 3, 4, 2)
    temp = stage.range_temp.exp().clamp_min(1e-4).clamp_max(1e4)
    range_kernel = F.softmax(temp * torch.einsum("bchwp,bchw->bphw", queries, proj), dim=1)
    dist = torch.linspace(-1, 1, diameter)  # float32, as FeatUp builds it whatever the model's dtype
    x, y = torch.meshgrid(dist, dist, indexing="ij")
    dist_sq = (x.square() + y.square()).to(guidance.dtype)
    spatial = torch.exp(-dist_sq / (2 * stage.sigma_spatial**2)).reshape(1, diameter**2, 1, 1)
    kernel = range_kernel * spatial
    kernel = kernel / kernel.sum(1, keepdim=True).clamp(1e-7)
    kernel = kernel + 0.1 * stage.fixup_proj(torch.cat([kernel, guidance], dim=1))
    kernel = kernel.permute(0, 2, 3, 1).reshape(gb, gh, gw, diameter, diameter)
    hr = torch.nn.Upsample((gh, gw), mode="bicubic", align_corners=False)(source)
    hr = F.pad(hr, [radius] * 4, mode="reflect")
    out = torch.zeros(source.shape[0], source.shape[1], gh, gw, dtype=source.dtype)
    for i in range(diameter):
        for j in range(diameter):
            out += hr[:, :, i:i + gh, j:j + gw] * kernel[:, None, :, :, i, j]
    return out


def featup_jbu_stack(stack: JBUStack, source: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    x = source
    for k in range(1, stack.stages + 1):
        guidance = F.adaptive_avg_pool2d(image, (2 * x.shape[-2], 2 * x.shape[-1]))
        x = featup_jbu_stage(getattr(stack, f"up{k}"), x, guidance)
    return stack.fixup_proj(x) * 0.1 + x


@pytest.mark.parametrize("factor", [2, 4])
def test_jbu_matches_featup_formulation(factor):
    torch.manual_seed(0)
    stack = JBUStack(dim=8, factor=factor).eval()
    with torch.no_grad():  # away from the init values, so temperature and sigma matter
        for k in range(1, stack.stages + 1):
            getattr(stack, f"up{k}").range_temp.fill_(0.7)
            getattr(stack, f"up{k}").sigma_spatial.fill_(0.6 + 0.2 * k)
    source = torch.randn(2, 8, 6, 5, dtype=torch.float64)
    image = torch.randn(2, 3, 6 * 2 * factor, 5 * 2 * factor, dtype=torch.float64)
    stack = stack.double()
    with torch.no_grad():
        ours, ref = stack(source, image), featup_jbu_stack(stack, source, image)
    assert ours.shape == (2, 8, 6 * factor, 5 * factor)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    assert (ours - F.interpolate(source, scale_factor=factor, mode="bicubic")).abs().max() > 1e-3  # not a plain resize


@pytest.mark.parametrize("shape", [(2, 3, 6, 5), (1, 4, 16, 12), (1, 2, 1, 3)])
def test_bicubic_x2_equals_interpolate(shape):
    x = torch.randn(*shape, dtype=torch.float64)
    ref = F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)
    torch.testing.assert_close(BicubicX2().double()(x), ref, rtol=1e-12, atol=1e-12)


# ---- deformable attention: a dense bilinear-weight matrix per level instead of any sampling op ----------------------

def dense_msdeform_attn(attn: MSDeformAttn, query, refs, value, shapes):
    """Same sampling points -> a dense [queries*points, h*w] tent-weight matrix per level and head (zeros outside
    the map, align_corners=False pixel centres), multiplied with the values."""
    batch, num_q, _ = query.shape
    heads, levels, points = attn.heads, attn.levels, attn.points
    head_dim = attn.dim // heads
    v = attn.value_proj(value).reshape(batch, -1, heads, head_dim)
    offsets = attn.sampling_offsets(query).reshape(batch, num_q, heads, levels, points, 2)
    weights = torch.softmax(attn.attention_weights(query).reshape(batch, num_q, heads, levels * points), -1)
    weights = weights.reshape(batch, num_q, heads, levels, points)
    out = torch.zeros(batch, num_q, heads, head_dim, dtype=query.dtype)
    start = 0
    for lvl, (h, w) in enumerate(shapes):
        loc = refs[:, :, None, lvl, None, :] + offsets[:, :, :, lvl] / torch.tensor([w, h], dtype=query.dtype)
        px = loc[..., 0] * w - 0.5  # [B, Lq, heads, P]
        py = loc[..., 1] * h - 0.5
        xs = torch.arange(w, dtype=query.dtype)
        ys = torch.arange(h, dtype=query.dtype)
        wx = torch.relu(1 - (px[..., None] - xs).abs())  # [B, Lq, heads, P, w]
        wy = torch.relu(1 - (py[..., None] - ys).abs())  # [B, Lq, heads, P, h]
        dense = (wy[..., :, None] * wx[..., None, :]).reshape(batch, num_q, heads, points, h * w)
        dense = (dense * weights[:, :, :, lvl, :, None]).sum(3)  # [B, Lq, heads, h*w]
        v_l = v[:, start:start + h * w]  # [B, h*w, heads, d]
        out += torch.einsum("bqms,bsmd->bqmd", dense, v_l)
        start += h * w
    return attn.output_proj(out.reshape(batch, num_q, heads * head_dim))


@pytest.mark.parametrize("sampler", ["grid_sample", "gather"])
def test_deformable_attention_matches_dense_reference(sampler):
    torch.manual_seed(0)
    shapes = ((5, 7), (3, 4))
    attn = MSDeformAttn(dim=16, levels=2, heads=2, points=3, sampler=sampler)
    init_msdeform_attn(attn, std=0.5)  # large offsets: some points land outside the maps (zero padding)
    attn = attn.double().eval()
    query = torch.randn(2, 6, 16, dtype=torch.float64)
    refs = torch.rand(2, 6, 2, 2, dtype=torch.float64)
    value = torch.randn(2, sum(h * w for h, w in shapes), 16, dtype=torch.float64)
    with torch.no_grad():
        ours = attn(query, refs, value, shapes)
        ref = dense_msdeform_attn(attn, query, refs, value, shapes)
        loc = refs[:, :, None, 0, None, :] + attn.sampling_offsets(query).reshape(2, 6, 2, 2, 3, 2)[:, :, :, 0] / 7
    assert ((loc < 0) | (loc > 1)).any(), "the case must exercise zero padding"
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)


# ---- registry, cost, checkpoint layout -----------------------------------------------------------------------------

def test_registry_sizes_and_factor_costs():
    for size in "sblh":
        for suffix in ("-x1", "-x2", "", "-x8"):
            assert get_model_info(f"deformable-hmr-vit-{size}{suffix}").family == "hmr2"
    macs = [model_cost(f"{MODEL}{s}")[1] for s in ("-x1", "-x2", "", "-x8")]
    assert macs == sorted(macs) and macs[3] > 2 * macs[0]
    params_h, _ = model_cost("deformable-hmr-vit-h")
    assert params_h > model_cost("hmr2-vit-h")[0] * 0.9  # ViT-H dominates


def test_checkpoint_layout_loads_strictly_and_mismatch_is_clear(tmp_path):
    state = load_model(MODEL, seed=3).module.state_dict()
    hmr2_backbone = {k for k in load_model("hmr2-vit-s").module.state_dict() if k.startswith("backbone.")}
    assert {k for k in state if k.startswith("backbone.")} == hmr2_backbone  # an HMR2.0 / ViTPose ViT as is
    assert {"head.upsamplers.0.up1.range_proj.0.weight", "head.upsamplers.1.up2.sigma_spatial",
            "head.upsamplers.0.fixup_proj.1.weight", "head.input_proj.1.1.weight", "head.query_embed.weight",
            "head.layers.5.cross_attn.sampling_offsets.weight", "head.layers.0.self_attn.in_proj_weight",
            "head.decpose.weight", "head.init_body_pose"} <= set(state)
    path = tmp_path / "deformable.ckpt"
    torch.save({"state_dict": state | {"discriminator.fc.weight": torch.zeros(1)}}, path)
    loaded = load_model(MODEL, path)
    assert loaded.weights_sha256 == load_model(MODEL, seed=3).weights_sha256
    info = get_model_info(f"{MODEL}-x8")  # an x4 file lacks the third JBU stage
    with pytest.raises(CheckpointMismatchError, match="up3"):
        load_strict(info.build(), info.filter_checkpoint(state), str(path), info.name)


def test_samplers_agree_on_the_whole_model():
    model = load_model(TINY).module
    x = torch.randn(1, 3, 256, 192)
    with torch.no_grad():
        a = model(x)
        model.head.set_sampler("gather")
        b = model(x)
        model.head.set_sampler("grid_sample")
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v, rtol=1e-5, atol=1e-5)


# ---- conversion per target ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def converted(loaded_models, bundle, tmp_path_factory):
    """(target, precision, sampler) -> artifact folder, converted once per module and deleted after it."""
    from edgehmr.convert import convert
    from edgehmr.spec import resolve_spec

    root = tmp_path_factory.mktemp("deformable")
    cache = {}

    def get(target: str, precision: str, sampler: str | None = None, model: str = TINY):
        key = (target, precision, sampler, model)
        if key not in cache:
            calib = "synthetic" if precision == "int8" and target != "executorch" else None
            spec = resolve_spec(model, target, precision, out_dir=str(root / f"{target}-{sampler}"), calib=calib,
                                calib_count=8, sampler=sampler)
            cache[key] = convert(spec, loaded_models(model))
        return cache[key]

    yield get
    shutil.rmtree(root, ignore_errors=True)


# ExecuTorch lowering takes ~2 minutes even for the tiny model: the slow tier (grid_sample and the JBU's ops stay
# on portable kernels, as the assertion below checks there).
@pytest.mark.parametrize("model", SIZES)
@pytest.mark.parametrize("target", ["onnx", "openvino", pytest.param("executorch", marks=pytest.mark.slow),
                                    "tensorrt"])
def test_fp32_parity_on_every_target(converted, bundle, target, model):
    """grid_sample, reflect padding and the JBU's shifted windows run on all of them (TensorRT: its ONNX, checked
    with ONNX Runtime here; the engine is built on the device). ExecuTorch at the published size on x2 (the same
    ops, one JBU stage per level): lowering x4 takes ~3 minutes there."""
    if target == "executorch" and model == MODEL:
        model = f"{MODEL}-x2"
    path = converted(target, "fp32", model=model)
    report = validate(path, bundle(model))
    assert report.passed and max(o["rel_l2"] for o in report.outputs.values()) < 1e-5, report.outputs
    if target == "executorch":  # every linear and conv (the bicubic's included) inside XNNPACK
        portable = json.loads((path / "metadata.json").read_text())["parts"]["model"]["details"]["non_delegated"]
        assert not any(k in op for op in portable for k in ("convolution", "addmm", "linear", "bmm")), portable
        assert "aten.grid_sampler_2d" in portable


# The default tier takes one runtime per precision (the other pairs share those paths with HMR2.0's tests).
REDUCED = [pytest.param(model, target, precision, marks=[pytest.mark.slow] if slow else [],
                        id=f"{precision}-{target}-{model}")
           for model in (TINY, MODEL) for target in ("onnx", "openvino") for precision in ("fp16", "int8")
           for slow in [model == MODEL or (target, precision) in (("openvino", "fp16"), ("onnx", "int8"))]]


@pytest.mark.parametrize("model, target, precision", REDUCED)
def test_fp16_and_int8_validate_on_onnx_and_openvino(converted, bundle, target, precision, model):
    path = converted(target, precision, model=model)
    report = validate(path, bundle(model))
    assert report.passed, report.to_json()
    assert max(o["rel_l2"] for o in report.outputs.values()) > 1e-6  # really reduced precision (fp32: ~1e-8)
    if precision == "int8":
        recipe = json.loads((path / "metadata.json").read_text())["quantization"]["recipe"]
        assert recipe["name"] == "deformable-hmr-default"


@pytest.mark.slow  # ~75 s for the tiny model; Core ML's own paths are in the default tier (test_coreml_target)
@pytest.mark.parametrize("model", SIZES)
def test_coreml_program_and_simulated_fp16(converted, bundle, loaded_models, model):
    from edgehmr.converters.coreml import program_summary

    path = converted("coreml", "fp16", model=model)
    head = loaded_models(model).module.head
    summary = program_summary(path / "model.mlpackage")
    # one per decoder layer and level: grid_sample -> resample (12 at the published size)
    assert summary["ops"].get("resample", 0) == len(head.layers) * head.cfg.levels
    assert "upsample_bicubic" not in str(summary["ops"])  # the x2 bicubic is a fixed conv (Core ML has none)
    assert "float32" not in summary["compute_dtypes"]
    assert validate(path, bundle(model)).passed  # numerics simulated in torch float16 off macOS


def test_gather_sampler_exports_without_grid_sample(converted, bundle):
    import onnx

    path = converted("onnx", "fp32", "gather")
    ops = {n.op_type for n in onnx.load(str(path / "model.onnx")).graph.node}
    assert "GridSample" not in ops and "GatherElements" in ops
    assert json.loads((path / "metadata.json").read_text())["spec"]["sampler"] == "gather"
    report = validate(path, bundle(TINY))  # against the grid_sample reference
    assert report.passed and max(o["rel_l2"] for o in report.outputs.values()) < 1e-5


def test_sampler_option_is_checked():
    from edgehmr.errors import SpecError
    from edgehmr.spec import resolve_spec

    with pytest.raises(SpecError, match="applies to deformable-attention models"):
        resolve_spec("hmr2-vit-s", "onnx", sampler="gather")
    with pytest.raises(SpecError, match="exports grid_sample, gather"):
        resolve_spec(MODEL, "onnx", sampler="nearest")
    assert resolve_spec(MODEL, "onnx").sampler == "grid_sample"
    with pytest.raises(SpecError, match="cannot be converted to executorch int8: XNNPACK's partitioner"):
        resolve_spec(MODEL, "executorch", "int8")


def test_tensorrt_parse_failure_on_grid_sample_names_the_fix():
    from edgehmr.converters.tensorrt_engine import parse_failure_hint

    assert "--sampler gather" in parse_failure_hint("node 'GridSample_12' (GridSample) No importer registered")
    assert parse_failure_hint("node 'Foo' (Einsum)") == ""

"""VMamba v2 backbone: chunked scan == recurrence, published checkpoint layout loads strictly, truncation, export."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from edgehmr.errors import CheckpointMismatchError
from edgehmr.models._checkpoint import load_strict
from edgehmr.models.selective_scan import selective_scan_chunked, selective_scan_sequential
from edgehmr.models.vmamba import (SS2D, VMAMBA_SIZES, VMamba, VMambaConfig, filter_vmamba_checkpoint,
                                   init_vmamba_weights)

# Tiny v05_noz configs: same structure as the published ones, small dims and depths.
TINY = VMambaConfig(dims=(8, 16, 32, 64), depths=(1, 1, 2, 1))
TINY_DEEPER = VMambaConfig(dims=(8, 16, 32, 64), depths=(1, 1, 3, 1))  # "S" relative to TINY
IMAGE = (256, 192)


def _scan_inputs(n_state: int, length: int, dtype, seed: int = 0, k: int = 4, d: int = 3):
    """Realistic magnitudes: A = -exp(log(1..N)), dt = softplus(noise + inverse-softplus(U_log[1e-3, 0.1]))."""
    g = torch.Generator().manual_seed(seed)
    kd = k * d
    dt0 = torch.exp(torch.rand(kd, generator=g, dtype=torch.float64) * math.log(100) + math.log(1e-3))
    bias = dt0 + torch.log(-torch.expm1(-dt0))
    a = -torch.arange(1, n_state + 1, dtype=torch.float64).repeat(kd, 1)
    args = (torch.randn(1, kd, length, generator=g, dtype=torch.float64),
            0.5 * torch.randn(1, kd, length, generator=g, dtype=torch.float64), a,
            torch.randn(1, k, n_state, length, generator=g, dtype=torch.float64),
            torch.randn(1, k, n_state, length, generator=g, dtype=torch.float64),
            torch.rand(kd, generator=g, dtype=torch.float64) + 0.5, bias)
    return tuple(t.to(dtype) for t in args)


@pytest.mark.parametrize("n_state", [1, 4])
@pytest.mark.parametrize("length,chunk", [(64, 16), (300, 16), (768, 64), (1000, 64)])
def test_chunked_scan_equals_recurrence(n_state, length, chunk):
    args64 = _scan_inputs(n_state, length, torch.float64)
    ref64 = selective_scan_sequential(*args64)
    out64 = selective_scan_chunked(*args64, chunk=chunk, step=4 * chunk)  # several loop steps
    assert (out64 - ref64).abs().max().item() < 1e-9
    args32 = _scan_inputs(n_state, length, torch.float32)
    out32 = selective_scan_chunked(*args32, chunk=chunk)
    assert out32.dtype == torch.float32
    rel = (out32.double() - ref64).abs().max().item() / ref64.abs().max().item()
    assert rel < 1e-4


def test_chunked_scan_survives_strong_decay():
    """Decays far beyond float32 range inside one chunk stay finite and exact (no exp overflow, no -inf)."""
    args = list(_scan_inputs(1, 200, torch.float64))
    args[1] = 3.0 * args[1] + 20.0  # dt ~ 20 per step: a chunk of 64 decays by exp(-1280)
    ref = selective_scan_sequential(*args)
    out32 = selective_scan_chunked(*[t.float() for t in args], chunk=64)
    assert torch.isfinite(out32).all()
    assert (out32.double() - ref).abs().max().item() / ref.abs().max().item() < 1e-5


def published_vssm_shapes(cfg: VMambaConfig, num_classes: int = 1000) -> dict[str, tuple[int, ...]]:
    """Every tensor of the published channel-first v05_noz ``VSSM`` (names from the published code, written out
    independently of our modules)."""
    shapes: dict[str, tuple[int, ...]] = {}
    c0 = cfg.dims[0]
    for idx, (cin, cout) in {0: (3, c0 // 2), 5: (c0 // 2, c0)}.items():
        shapes[f"patch_embed.{idx}.weight"] = (cout, cin, 3, 3)
        shapes[f"patch_embed.{idx}.bias"] = (cout,)
    for idx, c in {2: c0 // 2, 7: c0}.items():
        shapes[f"patch_embed.{idx}.weight"] = shapes[f"patch_embed.{idx}.bias"] = (c,)
    for i, (dim, depth) in enumerate(zip(cfg.dims, cfg.depths)):
        di, r, n, hid = int(cfg.ssm_ratio * dim), math.ceil(dim / 16), cfg.d_state, int(cfg.mlp_ratio * dim)
        for j in range(depth):
            p = f"layers.{i}.blocks.{j}."
            shapes |= {p + "norm.weight": (dim,), p + "norm.bias": (dim,),
                       p + "op.in_proj.weight": (di, dim), p + "op.conv2d.weight": (di, 1, 3, 3),
                       p + "op.x_proj_weight": (4, r + 2 * n, di), p + "op.dt_projs_weight": (4, di, r),
                       p + "op.dt_projs_bias": (4, di), p + "op.A_logs": (4 * di, n), p + "op.Ds": (4 * di,),
                       p + "op.out_norm.weight": (di,), p + "op.out_norm.bias": (di,),
                       p + "op.out_proj.weight": (dim, di),
                       p + "norm2.weight": (dim,), p + "norm2.bias": (dim,),
                       p + "mlp.fc1.weight": (hid, dim), p + "mlp.fc1.bias": (hid,),
                       p + "mlp.fc2.weight": (dim, hid), p + "mlp.fc2.bias": (dim,)}
        if i < len(cfg.dims) - 1:
            nxt = cfg.dims[i + 1]
            shapes |= {f"layers.{i}.downsample.1.weight": (nxt, dim, 3, 3), f"layers.{i}.downsample.1.bias": (nxt,),
                       f"layers.{i}.downsample.3.weight": (nxt,), f"layers.{i}.downsample.3.bias": (nxt,)}
    last = cfg.dims[-1]
    shapes |= {"classifier.norm.weight": (last,), "classifier.norm.bias": (last,),
               "classifier.head.weight": (num_classes, last), "classifier.head.bias": (num_classes,)}
    return shapes


def _published_state(cfg: VMambaConfig, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(s, generator=g) for k, s in published_vssm_shapes(cfg).items()}


@pytest.mark.parametrize("num_stages", [2, 3, 4])
def test_published_layout_loads_strictly(num_stages):
    state = _published_state(TINY)
    model = VMamba(TINY, num_stages)
    load_strict(model, filter_vmamba_checkpoint(state, num_stages), "synthetic.pth", "vmamba-tiny")
    own = model.state_dict()
    assert all(torch.equal(own[k], state[k]) for k in own)


def test_published_sizes_match_published_key_layout():
    for name in ("t", "s"):
        cfg = VMAMBA_SIZES[name]
        with torch.device("meta"):
            own = VMamba(cfg, 4).state_dict()
        expected = {k: s for k, s in published_vssm_shapes(cfg).items() if not k.startswith("classifier.")}
        assert {k: tuple(v.shape) for k, v in own.items()} == expected


def test_mismatched_checkpoints_fail():
    with pytest.raises(CheckpointMismatchError):  # "S" file into a "T" model: extra blocks at stage 3
        load_strict(VMamba(TINY, 3), filter_vmamba_checkpoint(_published_state(TINY_DEEPER), 3), "s.pth", "t")
    state = filter_vmamba_checkpoint(_published_state(TINY), 3)
    del state["layers.1.blocks.0.op.A_logs"]
    with pytest.raises(CheckpointMismatchError):
        load_strict(VMamba(TINY, 3), state, "missing.pth", "t")
    state = filter_vmamba_checkpoint(_published_state(TINY), 3) | {"pos_embed": torch.zeros(1, 8, 64, 48)}
    with pytest.raises(CheckpointMismatchError):  # keys of other variants pass the filter and fail the load
        load_strict(VMamba(TINY, 3), state, "posembed.pth", "t")
    other = VMambaConfig(dims=TINY.dims, depths=TINY.depths, d_state=4)  # same keys, other shapes
    with pytest.raises(CheckpointMismatchError):
        load_strict(VMamba(TINY, 2), filter_vmamba_checkpoint(_published_state(other), 2), "n4.pth", "t")


@pytest.mark.parametrize("map_size,chunk", [((16, 12), 16), ((10, 7), 16), ((10, 7), 64)])
def test_ss2d_chunked_matches_reference_scan(map_size, chunk):
    torch.manual_seed(0)
    op = SS2D(16, d_state=1, ssm_ratio=2.0, dt_rank="auto", d_conv=3, conv_bias=False, map_size=map_size,
              scan_chunk=chunk)
    init_vmamba_weights(op)
    x = torch.randn(1, 16, *map_size)
    with torch.no_grad():
        out = op(x)
        op.scan.use_reference = True
        ref = op(x)
    assert (out - ref).abs().max().item() < 1e-4


@pytest.fixture(scope="module")
def tiny_models():
    torch.manual_seed(0)
    full = VMamba(TINY, 4, IMAGE, scan_chunk=16)
    init_vmamba_weights(full)
    full.eval()
    return full


def test_truncation_shapes_and_prefix(tiny_models):
    full = tiny_models
    x = torch.randn(1, 3, *IMAGE)
    with torch.no_grad():
        feats = []
        h = full.patch_embed(x)
        for layer in full.layers:
            h = layer.blocks(h)
            feats.append(h)
            h = layer.downsample(h)
        for n, hw in [(2, (32, 24)), (3, (16, 12)), (4, (8, 6))]:
            model = VMamba(TINY, n, IMAGE, scan_chunk=16).eval()
            load_strict(model, filter_vmamba_checkpoint(full.state_dict(), n), "full", "tiny")
            out = model(x)
            assert out.shape == (1, TINY.dims[n - 1], *hw) == (1, model.out_channels, 256 // model.out_stride,
                                                               192 // model.out_stride)
            assert (out - feats[n - 1]).abs().max().item() < 1e-5
        assert torch.equal(full(x), feats[3])


@pytest.fixture(scope="module")
def exported_s3(tmp_path_factory):
    """Tiny 3-stage model at 256x192 exported with the dynamo exporter (opset 18)."""
    torch.manual_seed(0)
    model = VMamba(TINY, 3, IMAGE, scan_chunk=16)
    init_vmamba_weights(model)
    model.eval()
    x = torch.randn(1, 3, *IMAGE)
    path = tmp_path_factory.mktemp("vmamba") / "vmamba_s3.onnx"
    with torch.no_grad():
        program = torch.onnx.export(model, (x,), dynamo=True, opset_version=18, optimize=True, verbose=False)
        program.save(str(path))
        ref = model(x).numpy()
    return path, x.numpy(), ref


def test_onnx_export_runs_in_onnxruntime(exported_s3):
    import onnx
    import onnxruntime as ort

    path, x, ref = exported_s3
    graph = onnx.load(str(path)).graph
    ops = {n.op_type for n in graph.node}
    print(f"ONNX nodes: {len(graph.node)}, op types: {sorted(ops)}")
    assert not ops & {"Loop", "Scan", "If"}  # static, loop-free graph
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    assert out.shape == ref.shape == (1, TINY.dims[2], 16, 12)
    assert np.abs(out - ref).max() < 1e-4


def test_onnx_export_runs_in_openvino(exported_s3):
    ov = pytest.importorskip("openvino")
    path, x, ref = exported_s3
    compiled = ov.Core().compile_model(ov.convert_model(str(path)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    out = compiled(x)[compiled.output(0)]
    assert np.abs(out - ref).max() < 1e-4

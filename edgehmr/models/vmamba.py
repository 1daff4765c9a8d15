"""VMamba v2 backbone (VSSM, ``v05_noz`` SS2D blocks) that exports, truncatable after 1-4 stages.

Accepted checkpoint layout: the ``model`` state dict of the published classification checkpoints
(github.com/MzeroMiko/VMamba, ``classification/models/vmamba.py`` ``VSSM``; unwrap ``["model"]`` first), e.g.::

    patch_embed.{0,5}.{weight,bias}               3x3/s2 convs (3 -> C/2 -> C)
    patch_embed.{2,7}.{weight,bias}               channel-first LayerNorms after each conv
    layers.{i}.blocks.{j}.norm.{weight,bias}      LayerNorm2d before SS2D
    layers.{i}.blocks.{j}.op.in_proj.weight       [d_inner, C]  (1x1, no bias; no z half: "noz")
    layers.{i}.blocks.{j}.op.conv2d.weight        [d_inner, 1, 3, 3] depthwise, no bias
    layers.{i}.blocks.{j}.op.x_proj_weight        [4, dt_rank + 2*d_state, d_inner]
    layers.{i}.blocks.{j}.op.dt_projs_weight      [4, d_inner, dt_rank]
    layers.{i}.blocks.{j}.op.dt_projs_bias        [4, d_inner]
    layers.{i}.blocks.{j}.op.A_logs               [4*d_inner, d_state]
    layers.{i}.blocks.{j}.op.Ds                   [4*d_inner]
    layers.{i}.blocks.{j}.op.out_norm.{weight,bias}
    layers.{i}.blocks.{j}.op.out_proj.weight      [C, d_inner]  (1x1, no bias)
    layers.{i}.blocks.{j}.norm2.{weight,bias}, .mlp.fc{1,2}.{weight,bias}   (1x1 "Linear2d", 2-D weights)
    layers.{i}.downsample.{1,3}.{weight,bias}     3x3/s2 conv + LayerNorm2d, i < 3 (feeds stage i+1)
    classifier.norm.*, classifier.head.*          dropped (ImageNet head)

``filter_vmamba_checkpoint`` drops ``classifier.*``, the stages after ``num_stages`` and the downsample that would
feed the first dropped stage; everything else goes to ``load_strict`` unchanged, so a checkpoint of another size
fails with a key/shape diff. Published facts used (repo MzeroMiko/VMamba): ``classification/configs/vssm/
vmambav2_{tiny,small}_224.yaml`` (dims 96, depths [2,2,5,2]/[2,2,15,2], SSM_D_STATE 1, SSM_RATIO 2.0, SSM_CONV 3,
SSM_CONV_BIAS false, SSM_FORWARDTYPE v05_noz, MLP_RATIO 4.0, DOWNSAMPLE v3, PATCHEMBED v2, NORM_LAYER ln2d),
``classification/config.py`` (PATCH_SIZE 4, PATCH_NORM true, MLP_ACT gelu, SSM_ACT silu, SSM_INIT v0) and
``vmamba.py``/``csms6s.py``/``csm_triton.py`` (module names, forward order, cross-scan, init). Which released file
each size loads (the release tables of the repo's ``README.md`` and ``assets/performance.md`` at 2ed52ea, release
tag ``#v2cls``):

    size      released as                                          config (MODEL.NAME)
    t         VMamba-T[s2l5]   vssm_tiny_0230_ckpt_epoch_262.pth    vmambav2_tiny_224.yaml (vssm1_tiny_0230)
    s         VMamba-S[s2l15]  vssm_small_0229_ckpt_epoch_222.pth   vmambav2_small_224.yaml (vssm1_small_0229)
    t-s1l8    VMamba-T[s1l8]   vssm1_tiny_0230s_ckpt_epoch_264.pth  vmambav2v_tiny_224.yaml (vssm1_tiny_0230s)
    s-s1l20   VMamba-S[s1l20]  vssm1_small_0229s_ckpt_epoch_240.pth vmambav2v_small_224.yaml (vssm1_small_0229s)

The VMamba README's headline "VMamba-T" row is the ``s1l8`` file (ssm_ratio 1.0, depths [2,2,8,2]); the registered
``vmamba-t`` is the ``s2l5`` one (listed in ``assets/performance.md``), and loading either file into the other
size fails the strict load. Only ``t`` and ``s`` are registered; the ``s1`` sizes are configs only.

Forward of one SS2D (channel-first throughout, ``x`` ``[B, C, H, W]``): in_proj (1x1) -> depthwise 3x3 conv ->
SiLU -> cross-scan into 4 sequences (row-major, column-major, and both reversed) -> x_proj gives per-direction
(dt [R], B [N], C [N]) -> dt_projs (no bias) -> selective scan with ``softplus(dt + dt_projs_bias)``,
``A = -exp(A_logs)``, skip ``Ds`` -> cross-merge (sum of the 4 directions mapped back) -> out_norm (LayerNorm2d)
-> out_proj. Block: ``x + op(norm(x))`` then ``x + mlp(norm2(x))`` (GELU MLP, hidden 4C). No per-stage output
norm exists in the classification model (the detection ``Backbone_VSSM`` adds ``outnorm{i}`` layers that the
classification checkpoints do not hold), so the output is the last built stage's block output, not normalised.

Export rewrites (numerically the published model): the scan is ``selective_scan_chunked`` (no loop over
timesteps); x_proj/dt_projs are broadcast matmuls instead of grouped conv1d/einsum; the cross-scan is stack of
flatten/transpose/flip with map sizes fixed at construction from ``image_size``; drop-path/dropout are inference
identities and omitted.

Golden parity (``tests/test_parity_backbones.py``, fixture ``tests/data/parity/vmamba-t``): the original
``VSSM`` at 2ed52ea (vmambav2_tiny_224, its pure-torch scan) and this model (chunked scan, T=16) on a 256x192 input
with the fixture's deterministic weights agree to 4.2e-05 max abs on every stage output (|x| up to 12).

Not verified (no published checkpoint file was opened here): that the released ``.pth`` files store the 1x1
``Linear2d`` weights 2-D (the class is an ``nn.Linear`` subclass, so its saved state dict holds 2-D weights; its
``_load_from_state_dict`` also accepts 4-D conv-shaped ones, which this loader does not reshape).
Only the ``v05_noz`` channel-first variant is built; the v0 layout (d_state 16, PatchMerging, channel-last) is not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from edgehmr.models._init import init_linear_or_norm
from edgehmr.models.selective_scan import selective_scan_chunked, selective_scan_sequential

K_DIRECTIONS = 4  # row-major, column-major, and both reversed
# Published dt initialisation (mamba_init.dt_init defaults).
DT_MIN, DT_MAX, DT_INIT_FLOOR, DT_SCALE = 1e-3, 0.1, 1e-4, 1.0

_SUPPORTED = {"forward_type": "v05_noz", "norm_layer": "ln2d", "downsample_version": "v3",
              "patchembed_version": "v2", "patch_size": 4}


@dataclass(frozen=True)
class VMambaConfig:
    dims: tuple[int, ...] = (96, 192, 384, 768)
    depths: tuple[int, ...] = (2, 2, 5, 2)
    d_state: int = 1
    ssm_ratio: float = 2.0
    mlp_ratio: float = 4.0
    dt_rank: int | str = "auto"  # "auto": ceil(C / 16)
    ssm_conv: int = 3
    ssm_conv_bias: bool = False
    forward_type: str = "v05_noz"
    norm_layer: str = "ln2d"  # channel-first LayerNorm everywhere
    downsample_version: str = "v3"
    patchembed_version: str = "v2"
    patch_size: int = 4

    @property
    def stage_channels(self) -> tuple[int, ...]:
        return tuple(self.dims)


VMAMBA_SIZES: dict[str, VMambaConfig] = {
    "t": VMambaConfig(depths=(2, 2, 5, 2)),  # VMamba-T[s2l5]: vmambav2_tiny_224, vssm_tiny_0230_ckpt_epoch_262
    "s": VMambaConfig(depths=(2, 2, 15, 2)),  # VMamba-S[s2l15]: vmambav2_small_224, vssm_small_0229_ckpt_epoch_222
    "t-s1l8": VMambaConfig(depths=(2, 2, 8, 2), ssm_ratio=1.0),  # vmambav2v_tiny_224, vssm1_tiny_0230s_..._264
    "s-s1l20": VMambaConfig(depths=(2, 2, 20, 2), ssm_ratio=1.0),  # vmambav2v_small_224, vssm1_small_0229s_..._240
}


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over channels of ``[B, C, H, W]`` (published ``LayerNorm2d``): permute, LayerNorm, permute back,
    which every target lowers to its LayerNormalization kernel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)


class Linear2d(nn.Linear):
    """A Linear applied per pixel of ``[B, C, H, W]`` as a 1x1 conv; the weight stays 2-D as in the checkpoint."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight[:, :, None, None], self.bias)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = Linear2d(dim, hidden)
        self.act = nn.GELU()  # exact erf GELU, as published
        self.fc2 = Linear2d(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def cross_scan(x: torch.Tensor) -> torch.Tensor:
    """``[B, D, H, W]`` -> ``[B, 4, D, H*W]``: row-major, column-major, and the two reversed."""
    b, d, h, w = x.shape
    rows = x.reshape(b, d, h * w)
    cols = x.transpose(2, 3).reshape(b, d, h * w)
    return torch.stack([rows, cols, rows.flip(-1), cols.flip(-1)], dim=1)


def cross_merge(ys: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Inverse mapping of ``cross_scan`` summed over directions: ``[B, 4, D, H*W]`` -> ``[B, D, H, W]``."""
    b, _, d, length = ys.shape
    rows = ys[:, 0] + ys[:, 2].flip(-1)
    cols = ys[:, 1] + ys[:, 3].flip(-1)  # index w*H + h
    y = rows + cols.reshape(b, d, w, h).transpose(2, 3).reshape(b, d, length)
    return y.reshape(b, d, h, w)


class SelectiveScan(nn.Module):
    """The scan as its own (parameter-free) module so quantization recipes can name it: its matmuls multiply
    activations by exp-decay matrices, which INT8 would round away (``...op.scan`` stays float)."""

    def __init__(self, chunk: int):
        super().__init__()
        self.chunk = chunk
        self.use_reference = False  # tests only: the timestep loop, which must never be exported

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        if self.use_reference:
            return selective_scan_sequential(*args, delta_softplus=True)
        return selective_scan_chunked(*args, delta_softplus=True, chunk=self.chunk)


class SS2D(nn.Module):
    """2-D selective scan block, ``v05_noz`` (no z gate, LayerNorm2d out_norm, no out activation)."""

    def __init__(self, d_model: int, d_state: int, ssm_ratio: float, dt_rank: int | str, d_conv: int,
                 conv_bias: bool, map_size: tuple[int, int], scan_chunk: int):
        super().__init__()
        self.d_inner = int(ssm_ratio * d_model)
        self.d_state = d_state
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.map_size = tuple(map_size)  # (H, W) of this stage, static
        self.scan = SelectiveScan(scan_chunk)
        di, k = self.d_inner, K_DIRECTIONS
        self.in_proj = Linear2d(d_model, di, bias=False)
        self.act = nn.SiLU()
        self.conv2d = nn.Conv2d(di, di, d_conv, padding=(d_conv - 1) // 2, groups=di, bias=conv_bias)
        self.x_proj_weight = nn.Parameter(torch.empty(k, self.dt_rank + 2 * d_state, di))
        self.dt_projs_weight = nn.Parameter(torch.empty(k, di, self.dt_rank))
        self.dt_projs_bias = nn.Parameter(torch.empty(k, di))
        self.A_logs = nn.Parameter(torch.empty(k * di, d_state))
        self.Ds = nn.Parameter(torch.empty(k * di))
        self.out_norm = LayerNorm2d(di)
        self.out_proj = Linear2d(di, d_model, bias=False)
        self.reset_ssm_parameters()

    @torch.no_grad()
    def reset_ssm_parameters(self) -> None:
        """Published "v0" init: x_proj as nn.Linear default, dt_projs uniform(+-rank^-0.5) with a bias whose
        softplus is log-uniform in [1e-3, 0.1], A = -(1..N) (S4D-real), D = 1."""
        di, k = self.d_inner, K_DIRECTIONS
        bound = di**-0.5  # nn.Linear's default bound (kaiming_uniform with a=sqrt(5))
        self.x_proj_weight.uniform_(-bound, bound)
        std = self.dt_rank**-0.5 * DT_SCALE
        self.dt_projs_weight.uniform_(-std, std)
        dt = torch.exp(torch.rand(k, di) * (math.log(DT_MAX) - math.log(DT_MIN)) + math.log(DT_MIN))
        dt = dt.clamp(min=DT_INIT_FLOOR)
        self.dt_projs_bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        a = torch.arange(1, self.d_state + 1, dtype=torch.float32)
        self.A_logs.copy_(torch.log(a).repeat(k * di, 1))
        self.Ds.fill_(1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.map_size
        x = self.act(self.conv2d(self.in_proj(x)))
        y = self._scan(cross_scan(x))
        return self.out_proj(self.out_norm(cross_merge(y, h, w)))

    def _scan(self, xs: torch.Tensor) -> torch.Tensor:
        """``xs`` ``[B, 4, Di, L]`` -> scanned ``[B, 4, Di, L]``."""
        b, k, di, length = xs.shape
        r, n = self.dt_rank, self.d_state
        # Per-direction projections as broadcast matmuls ([K, out, in] @ [B, K, in, L]).
        x_dbl = torch.matmul(self.x_proj_weight, xs)
        dts, bs, cs = torch.split(x_dbl, [r, n, n], dim=2)
        dts = torch.matmul(self.dt_projs_weight, dts)
        args = (xs.reshape(b, k * di, length), dts.reshape(b, k * di, length), -torch.exp(self.A_logs),
                bs, cs, self.Ds, self.dt_projs_bias.reshape(k * di))
        return self.scan(*args).reshape(b, k, di, length)


class VSSBlock(nn.Module):
    def __init__(self, dim: int, cfg: VMambaConfig, map_size: tuple[int, int], scan_chunk: int):
        super().__init__()
        self.norm = LayerNorm2d(dim)
        self.op = SS2D(dim, cfg.d_state, cfg.ssm_ratio, cfg.dt_rank, cfg.ssm_conv, cfg.ssm_conv_bias,
                       map_size, scan_chunk)
        self.norm2 = LayerNorm2d(dim)
        self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.op(self.norm(x))
        return x + self.mlp(self.norm2(x))


def _downsample(dim: int, out_dim: int) -> nn.Sequential:
    # Index layout of the published channel-first "v3" downsample: [Identity, conv, Identity, norm].
    return nn.Sequential(nn.Identity(), nn.Conv2d(dim, out_dim, 3, stride=2, padding=1), nn.Identity(),
                         LayerNorm2d(out_dim))


def _patch_embed(in_chans: int, dim: int) -> nn.Sequential:
    # Published channel-first "v2" patch embed (patch 4 = two stride-2 3x3 convs), same indices:
    # [conv, Identity, norm, Identity, GELU, conv, Identity, norm].
    return nn.Sequential(
        nn.Conv2d(in_chans, dim // 2, 3, stride=2, padding=1), nn.Identity(), LayerNorm2d(dim // 2), nn.Identity(),
        nn.GELU(), nn.Conv2d(dim // 2, dim, 3, stride=2, padding=1), nn.Identity(), LayerNorm2d(dim))


class VSSStage(nn.Module):
    """``blocks`` then ``downsample`` (the published layer layout: a stage ends with the downsample that feeds
    the next one; Identity when no next stage is built)."""

    def __init__(self, blocks: list[VSSBlock], downsample: nn.Module):
        super().__init__()
        self.blocks = nn.Sequential(*blocks)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(self.blocks(x))


def _halve(size: tuple[int, int]) -> tuple[int, int]:
    # A 3x3 stride-2 conv with padding 1 maps n -> ceil(n / 2).
    return (size[0] + 1) // 2, (size[1] + 1) // 2


def _check_supported(cfg: VMambaConfig) -> None:
    for field, value in _SUPPORTED.items():
        if getattr(cfg, field) != value:
            raise ValueError(f"VMamba: only {field}={value!r} is implemented (got {getattr(cfg, field)!r}).")


class VMamba(nn.Module):
    """Patch embed + stages 1..num_stages. ``[B, 3, H, W]`` -> ``[B, C, H/stride, W/stride]`` channel-first.

    ``image_size`` fixes every stage's map size (the scan's sequence lengths) at construction; other input sizes
    are refused. ``scan_chunk`` is the scan's chunk length T: it does not change the exported graph size, only
    work and memory; T=16 ran 1.8x faster than T=64 in ONNX Runtime on CPU (see ``selective_scan``).
    """

    def __init__(self, cfg: VMambaConfig, num_stages: int = 4, image_size: tuple[int, int] = (256, 192),
                 scan_chunk: int = 16):
        super().__init__()
        _check_supported(cfg)
        if not 1 <= num_stages <= len(cfg.depths):
            raise ValueError(f"VMamba: num_stages must be 1..{len(cfg.depths)}, got {num_stages}.")
        self.cfg = cfg
        self.num_stages = num_stages
        self.image_size = tuple(image_size)
        self.out_channels = cfg.dims[num_stages - 1]
        self.out_stride = 4 * 2 ** (num_stages - 1)
        self.patch_embed = _patch_embed(3, cfg.dims[0])
        size = _halve(_halve(self.image_size))
        self.stage_sizes: list[tuple[int, int]] = []
        stages = []
        for i in range(num_stages):
            self.stage_sizes.append(size)
            blocks = [VSSBlock(cfg.dims[i], cfg, size, scan_chunk) for _ in range(cfg.depths[i])]
            last = i == num_stages - 1
            stages.append(VSSStage(blocks, nn.Identity() if last else _downsample(cfg.dims[i], cfg.dims[i + 1])))
            size = _halve(size)
        self.layers = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != self.image_size:
            raise ValueError(f"VMamba was built for {self.image_size} inputs, got {tuple(x.shape[-2:])}.")
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        return x


def init_vmamba_weights(module: nn.Module) -> None:
    """Seeded "untrained" weights as the published ``VSSM._init_weights`` + SS2D init: Linear (incl. 1x1)
    trunc_normal(0.02) with zero bias, LayerNorm 1/0, convs PyTorch default, SS2D parameters as published."""
    for m in module.modules():
        if init_linear_or_norm(m):
            continue
        if isinstance(m, nn.Conv2d):
            m.reset_parameters()
        elif isinstance(m, SS2D):
            m.reset_ssm_parameters()


def filter_vmamba_checkpoint(state: dict[str, torch.Tensor], num_stages: int) -> dict[str, torch.Tensor]:
    """Published ``VSSM`` state dict (already unwrapped from ``["model"]``) -> ours for ``num_stages`` stages.

    Drops the ImageNet classifier, every ``layers.{i}`` with i >= num_stages and ``layers.{num_stages-1}.downsample``
    (it feeds a dropped stage). Nothing else is renamed or dropped, so a file of another size or variant still
    fails the strict load with a readable diff.
    """
    dropped_downsample = f"layers.{num_stages - 1}.downsample."
    out = {}
    for key, value in state.items():
        if key.startswith("classifier.") or key.startswith(dropped_downsample):
            continue
        parts = key.split(".")
        if parts[0] == "layers" and parts[1].isdigit() and int(parts[1]) >= num_stages:
            continue
        out[key] = value
    return out

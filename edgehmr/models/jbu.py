"""FeatUp's learned joint bilateral upsampler (JBU), written with plain tensor ops so every target can run it.

Each stage doubles the feature map under an RGB guidance image pooled to the output size:

- range kernel: a 1x1-conv projection of the guidance (3 -> 32 -> 32), the dot product of every pixel's key with
  the keys of its 7x7 neighbourhood (reflect-padded), times a learned temperature, softmax over the 49 taps;
- spatial kernel: exp(-d^2 / 2 sigma^2) over the 7x7 grid on linspace(-1, 1), sigma learned;
- their product, normalised to sum 1, plus 0.1 x a learned 1x1-conv fix-up of [kernel | guidance];
- the features, bicubic-upsampled x2 and reflect-padded, filtered by that per-pixel 7x7 kernel (the same kernel for
  every channel).

Parameter names follow FeatUp's ``JBULearnedRange`` / ``JBUStack`` (``up1``.. ``upN``, ``fixup_proj.1``).

reason: FeatUp applies the per-pixel kernel with a custom C++/CUDA op (``AdaptiveConv``) that no exporter can
lower, and its pure-PyTorch alternative (``Unfold``) materialises C x 49 x H x W. Here both the range kernel and
the filter are 49 shifted slices multiplied and summed: Pad, Slice, Mul, Add and ReduceSum only, and no tensor
larger than the output. The guidance is average-pooled with an integer kernel (the pooled sizes divide the
input), which is what ``adaptive_avg_pool2d`` computes there and exports everywhere.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

RADIUS = 3
DIAMETER = 2 * RADIUS + 1
KEY_DIM = 32
GUIDANCE_DIM = 3
TAPS = [(i, j) for i in range(DIAMETER) for j in range(DIAMETER)]  # row-major, as Unfold orders them


def shifted(padded: torch.Tensor, i: int, j: int, height: int, width: int) -> torch.Tensor:
    """The window of ``padded`` (padded by RADIUS) whose top-left is tap (i, j): neighbour (i-3, j-3) per pixel."""
    return padded[:, :, i:i + height, j:j + width]


def _cubic_weights(t: float, a: float = -0.75) -> list[float]:
    """PyTorch's cubic-convolution weights (A = -0.75) for the 4 taps around a point at fraction ``t``."""
    def near(x: float) -> float:  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x: float) -> float:  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


# Exact x2 (align_corners=False): output 2k samples input k - 0.25, output 2k+1 samples k + 0.25. On the input
# padded by 2 (edge-replicated, as PyTorch clamps at the border) those are two fixed 5-tap filters.
_BICUBIC_X2 = (_cubic_weights(0.75) + [0.0], [0.0] + _cubic_weights(0.25))


class BicubicX2(nn.Module):
    """``F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)`` as edge padding, a fixed conv per
    axis and an interleave.

    reason: Core ML (coremltools 9) and ExecuTorch's portable kernels have no bicubic upsample; Pad, Conv, Reshape
    and Transpose run everywhere and give the same numbers. The taps are (non-persistent) buffers, not tensors made
    in ``forward``: XNNPACK delegates a conv only when its weight is a parameter or buffer."""

    def __init__(self):
        super().__init__()
        taps = torch.tensor(_BICUBIC_X2)  # [2 phases, 5]
        self.register_buffer("rows", taps.reshape(2, 1, 5, 1), persistent=False)
        self.register_buffer("cols", taps.reshape(2, 1, 1, 5), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        # Channels folded into the batch: the weight stays the constant itself. Rows: [B*C, 1, H+4, W] -> [B*C, 2
        # phases, H, W] -> interleaved [B*C, 1, 2H, W]; then the same along the columns.
        x = F.pad(x.reshape(batch * channels, 1, height, width), [0, 0, 2, 2], mode="replicate")
        x = F.conv2d(x, self.rows).transpose(1, 2).reshape(batch * channels, 1, 2 * height, width)
        x = F.conv2d(F.pad(x, [2, 2, 0, 0], mode="replicate"), self.cols)  # [B*C, 2 phases, 2H, W]
        return x.permute(0, 2, 3, 1).reshape(batch, channels, 2 * height, 2 * width)


class JBULearnedRange(nn.Module):
    """One x2 stage: ``(source [B, C, h, w], guidance [B, 3, 2h, 2w]) -> [B, C, 2h, 2w]``."""

    def __init__(self):
        super().__init__()
        self.range_temp = nn.Parameter(torch.tensor(0.0))
        self.range_proj = nn.Sequential(nn.Conv2d(GUIDANCE_DIM, KEY_DIM, 1), nn.GELU(), nn.Dropout2d(0.1),
                                        nn.Conv2d(KEY_DIM, KEY_DIM, 1))
        self.fixup_proj = nn.Sequential(nn.Conv2d(GUIDANCE_DIM + DIAMETER**2, DIAMETER**2, 1), nn.GELU(),
                                        nn.Dropout2d(0.1), nn.Conv2d(DIAMETER**2, DIAMETER**2, 1))
        self.sigma_spatial = nn.Parameter(torch.tensor(1.0))
        self.bicubic = BicubicX2()
        grid = torch.linspace(-1, 1, DIAMETER)
        dist_sq = (grid[:, None] ** 2 + grid[None, :] ** 2).reshape(1, DIAMETER**2, 1, 1)
        self.register_buffer("tap_dist_sq", dist_sq, persistent=False)

    def range_kernel(self, guidance: torch.Tensor) -> torch.Tensor:
        keys = self.range_proj(guidance)
        height, width = guidance.shape[-2:]
        padded = F.pad(keys, [RADIUS] * 4, mode="reflect")
        logits = torch.cat([(shifted(padded, i, j, height, width) * keys).sum(1, keepdim=True) for i, j in TAPS], 1)
        temperature = self.range_temp.exp().clamp(1e-4, 1e4)
        return torch.softmax(temperature * logits, dim=1)

    def spatial_kernel(self) -> torch.Tensor:
        return torch.exp(-self.tap_dist_sq / (2 * self.sigma_spatial**2))

    def kernel(self, guidance: torch.Tensor) -> torch.Tensor:
        """The per-pixel 7x7 filter ``[B, 49, H, W]`` (tap-major, row-major taps)."""
        kernel = self.range_kernel(guidance) * self.spatial_kernel()
        kernel = kernel / kernel.sum(1, keepdim=True).clamp_min(1e-7)
        return kernel + 0.1 * self.fixup_proj(torch.cat((kernel, guidance), dim=1))

    def forward(self, source: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
        kernel = self.kernel(guidance)
        height, width = guidance.shape[-2:]
        if (height, width) != (2 * source.shape[-2], 2 * source.shape[-1]):
            raise ValueError(f"a JBU stage doubles the map: guidance {height}x{width} for source {source.shape}")
        upsampled = self.bicubic(source)
        padded = F.pad(upsampled, [RADIUS] * 4, mode="reflect")
        out = shifted(padded, 0, 0, height, width) * kernel[:, 0:1]
        for t, (i, j) in enumerate(TAPS[1:], start=1):
            out = out + shifted(padded, i, j, height, width) * kernel[:, t:t + 1]
        return out


class JBUStack(nn.Module):
    """``log2(factor)`` x2 stages, then FeatUp's residual 1x1 fix-up: ``[B, C, h, w] -> [B, C, h*f, w*f]``."""

    def __init__(self, dim: int, factor: int):
        super().__init__()
        if factor < 2 or factor & (factor - 1):
            raise ValueError(f"JBU upsampling factor must be a power of two >= 2, got {factor}")
        self.stages = int(math.log2(factor))
        for k in range(1, self.stages + 1):
            self.add_module(f"up{k}", JBULearnedRange())
        self.fixup_proj = nn.Sequential(nn.Dropout2d(0.2), nn.Conv2d(dim, dim, kernel_size=1))

    def forward(self, source: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
        x = source
        for k in range(1, self.stages + 1):
            x = getattr(self, f"up{k}")(x, pool_guidance(guidance, 2 * x.shape[-2], 2 * x.shape[-1]))
        return self.fixup_proj(x) * 0.1 + x


def pool_guidance(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``adaptive_avg_pool2d(image, (height, width))`` for sizes that divide the image (an integer-kernel
    average pool, which every target exports)."""
    in_h, in_w = image.shape[-2:]
    if in_h % height or in_w % width:
        raise ValueError(f"guidance {in_h}x{in_w} is not a multiple of the {height}x{width} feature map")
    kh, kw = in_h // height, in_w // width
    if kh == kw == 1:
        return image
    return F.avg_pool2d(image, kernel_size=(kh, kw), stride=(kh, kw))

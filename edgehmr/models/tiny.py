"""Tiny registered models (``test-*``): every family's own code at sizes a test converts in seconds.

As timm's test models do, they share the real classes, checkpoint layouts, pipelines and recipes with the
published variants; only widths and depths shrink (every structural feature stays: at least two blocks or layers
where a loop or a layer-0-only branch exists). They are hidden from ``edgehmr models`` unless ``--all`` and usable
by every command. Their outputs mean nothing beyond exercising the code paths.
"""

from __future__ import annotations

import torch
from torch import nn

from edgehmr.models._registry import register
from edgehmr.models.deformable_hmr import DecoderConfig, deformable_info
from edgehmr.models.groupmixformer import GroupMixConfig
from edgehmr.models.hierarchical import FAMILIES, hierarchical_hmr2_info
from edgehmr.models.hmr2 import hmr2_info
from edgehmr.models.hmr2_head import HeadConfig
from edgehmr.models.sat_hmr import SatConfig, init_sat_hmr
from edgehmr.models.sat_registry import sat_info
from edgehmr.models.swin import SwinConfig
from edgehmr.models.vit import ViTConfig
from edgehmr.models.vitpose import vitpose_info
from edgehmr.models.vmamba import VMambaConfig

TEST_VIT = ViTConfig(embed_dim=64, depth=2, num_heads=4)
TEST_HEAD = HeadConfig(dim=64, depth=2, heads=2, dim_head=32, mlp_dim=128)
TEST_DECONV_CHANNELS = 32
TEST_DECODER = DecoderConfig(dim=32, heads=2, points=2, layers=2, ffn=64, groups=8)
TEST_BACKBONES = {
    "swin": SwinConfig(embed_dim=16, depths=(1, 1, 2, 1), num_heads=(1, 2, 2, 4)),  # stage 3: shifted windows run
    "gmf": GroupMixConfig(embed_dims=(20, 40, 40, 60), depths=(1, 1, 1, 1)),
    "vmamba": VMambaConfig(dims=(8, 16, 32, 64), depths=(1, 1, 1, 1)),
}
TEST_STAGES = 3  # the truncation the hierarchical matrix's default (T-S3) uses
# LayerScale blocks, both token branches, two decoder layers (layer-0-only projections and query scaling).
TEST_SAT = SatConfig(dim=64, heads=4, blocks=4, hr_blocks=1, extra_blocks=1, dec_heads=2, dec_layers=2, ffn=96,
                     queries=8)


def init_test_sat(model: nn.Module) -> None:
    """The published init, then a scale head that spreads confidence and scale over (0, 1): seeded heads sit
    near 0.5 everywhere, so frames would all select the same token mix and hit the same bucket."""
    init_sat_hmr(model)
    last = model.scale_head.layers[-1]
    # Its own generator on the load seed (load_model seeds torch before init), so the spread does not depend on
    # how many draws the rest of the init made.
    generator = torch.Generator().manual_seed(torch.initial_seed())
    with torch.no_grad():
        last.weight.normal_(0, 3.0 / last.weight.shape[1] ** 0.5, generator=generator)



FRAGILE_LAYER = "backbone.blocks.1.mlp.fc2"


def fragile_test_hmr2_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """test-hmr2 weights (a copy of ``state``) whose :data:`FRAGILE_LAYER` cannot survive per-channel INT8 weights:
    each of its rows holds one weight 1000x the rest (so every other weight rounds to 0), on a hidden unit that is
    ~0 in float (GELU(-10)). The FP32 model is unchanged in effect; its INT8 copy loses that layer. The stand-in for
    a checkpoint the default INT8 recipe fails, for the ``--max-drift`` search's tests and benchmarks."""
    state = {k: v.clone() for k, v in state.items()}
    hidden = FRAGILE_LAYER.rsplit(".", 1)[0] + "."
    state[hidden + "fc1.weight"][0] = 0.0
    state[hidden + "fc1.bias"][0] = -10.0
    state[FRAGILE_LAYER + ".weight"] *= 30  # the block's MLP matters to the output
    state[FRAGILE_LAYER + ".weight"][:, 0] = 1000.0
    return state

register(hmr2_info("test-hmr2", "tiny HMR2.0 (ViT 64x2, head 64x2) for tests", TEST_VIT, TEST_HEAD,
                   test_only=True))
register(vitpose_info("test-vitpose", "tiny ViTPose (ViT 64x2, deconv 32) for tests", TEST_VIT,
                      TEST_DECONV_CHANNELS, test_only=True))
register(deformable_info("test-deformable-hmr", "tiny DeformableHMR (ViT 64x2, decoder 32x2, JBU x2) for tests",
                         TEST_VIT, 2, TEST_DECODER, test_only=True))
register(sat_info("test-sat-hmr", "tiny SAT-HMR (64 wide, 4+1 blocks, 2 decoder layers, 8 queries) for tests",
                  TEST_SAT, init_weights=init_test_sat, test_only=True))
for _key, _backbone in TEST_BACKBONES.items():
    _family = FAMILIES[_key]
    register(hierarchical_hmr2_info(_family, f"test-hmr2-{_key}",
                                    f"tiny {_family.title} truncated after stage {TEST_STAGES}, for tests",
                                    _backbone, TEST_STAGES, TEST_HEAD, test_only=True))

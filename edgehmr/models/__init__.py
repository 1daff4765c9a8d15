"""Model zoo: build a registered model with a checkpoint (strictly loaded) or seeded "untrained" weights."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from edgehmr.models._checkpoint import file_sha256, load_strict, read_checkpoint, weights_sha256
from edgehmr.models._registry import ModelInfo, TensorInfo, get_model_info, list_models

__all__ = ["LoadedModel", "ModelInfo", "TensorInfo", "get_model_info", "list_models", "load_model", "model_cost"]

UNTRAINED = "untrained"


@dataclass
class LoadedModel:
    info: ModelInfo
    module: nn.Module  # eval mode, float32, CPU
    weights: str  # checkpoint path, or "untrained" for seeded weights
    checkpoint_sha256: str | None
    weights_sha256: str
    seed: int | None

    def describe(self) -> dict:
        return {"model": self.info.name, "weights": self.weights, "checkpoint_sha256": self.checkpoint_sha256,
                "weights_sha256": self.weights_sha256, "seed": self.seed}


def load_model(name: str, checkpoint: str | Path | None = None, *, trust_checkpoint: bool = False,
               seed: int = 0) -> LoadedModel:
    info = get_model_info(name)
    if checkpoint is not None:
        state = read_checkpoint(checkpoint, trust=trust_checkpoint)  # fail fast before building a large model
        module = info.build()
        load_strict(module, info.filter_checkpoint(state), str(checkpoint), name)
        ckpt_hash, used_seed, weights = file_sha256(checkpoint), None, str(checkpoint)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = info.build()
            info.init_weights(module)
        ckpt_hash, used_seed, weights = None, seed, UNTRAINED
    module.eval()
    return LoadedModel(info, module, weights, ckpt_hash, weights_sha256(module), used_seed)


def model_cost(name: str) -> tuple[int, float]:
    """(parameters, GMACs per crop or frame) counted on the meta device, so even ViT-H costs no memory or time."""
    from torch.utils.flop_counter import FlopCounterMode

    info = get_model_info(name)
    with torch.device("meta"):
        module = info.build()
        params = sum(p.numel() for p in module.parameters())
        # The counter's module tracker hooks inputs that require grad; parameters passed into a submodule's
        # forward as inputs (VMamba's scan) would have none under no_grad.
        module.requires_grad_(False)
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            if info.cost_forward is not None:
                info.cost_forward(module)
            else:
                module(torch.empty(1, *info.inputs[0].shape[1:]))
    return params, counter.get_total_flops() / 2e9

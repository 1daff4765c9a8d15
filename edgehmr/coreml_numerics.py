"""What Core ML computes, in torch: the module the Core ML converter converts and the runner simulates off macOS.

- fp32 / fp16: the float module; fp16 computes in float16.
- int8-weights: a copy with per-channel symmetric INT8-rounded weights (``coremltools.optimize.torch``'s
  post-training quantizer), the recipe's kept-float scopes skipped.
- int8 (W8A8): ``coremltools.optimize.torch``'s LinearQuantizer calibrated on samples (observers only, no
  training): INT8 weights and per-tensor symmetric INT8 activations around every linear and conv outside the
  recipe's scopes. The observer state is saved with the artifact so the same graph can be rebuilt.

The converter (:mod:`edgehmr.converters.coreml`) and the runner (:mod:`edgehmr.targets.coreml`) both start here,
so the numbers validate reports off macOS come from the graph that was converted.
"""

from __future__ import annotations

import copy
import operator

import numpy as np
import torch

from edgehmr.calibration.recipes import QuantRecipe
from edgehmr.converters.capabilities import Precision
from edgehmr.errors import ConversionError
from edgehmr.vendor import vendor_quiet


def compute_precision(precision: Precision) -> str:
    return "float32" if precision == Precision.fp32 else "float16"


def scopes_to_skip(module: torch.nn.Module, recipe: QuantRecipe | None) -> list[str]:
    """Concrete linear/conv module names inside the recipe's kept-float scopes (the quantizer takes names)."""
    if recipe is None:
        return []
    return [n for n, m in module.named_modules()
            if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)) and recipe.covers(n)]


def coreml_module(module: torch.nn.Module, precision: Precision, recipe: QuantRecipe | None) -> torch.nn.Module:
    """The float32 torch module that gets converted for fp32/fp16/int8-weights: for int8-weights, a copy with
    INT8-rounded weights whose quantization parameters coremltools turns into compressed weights."""
    if precision != Precision.int8_weights:
        return module
    from coremltools.optimize.torch.quantization import PostTrainingQuantizer, PostTrainingQuantizerConfig

    config = {"global_config": {"weight_dtype": "int8", "granularity": "per_channel",
                                "quantization_scheme": "symmetric"},
              "module_name_configs": {name: None for name in scopes_to_skip(module, recipe)}}
    with vendor_quiet():
        return PostTrainingQuantizer(copy.deepcopy(module), PostTrainingQuantizerConfig.from_dict(config)).compress()


# Ops of our models that coremltools' LinearQuantizer would otherwise give INT8 activations (see _w8a8_prepared).
_W8A8_FLOAT_OPS = (operator.add, torch.add, operator.sub, torch.sub, operator.mul, torch.mul, torch.matmul,
                   torch.cat, torch.nn.GELU, torch.nn.functional.gelu, torch.flatten)


def _w8a8_prepared(module: torch.nn.Module, recipe: QuantRecipe | None, example: tuple[torch.Tensor, ...]):
    """coremltools' LinearQuantizer (symmetric INT8 weights and activations) with observers on and fake
    quantization off: forwards only calibrate. Returns (quantizer, prepared FX module)."""
    from coremltools.optimize.torch.quantization import (LinearQuantizer, LinearQuantizerConfig,
                                                         ModuleLinearQuantizerConfig)

    # milestones: observers from step 0; fake quantization and observer freeze never reached (no training).
    layer = ModuleLinearQuantizerConfig(quantization_scheme="symmetric", milestones=[0, 1_000_000, 1_000_000, 0])
    skip = {name: None for name in scopes_to_skip(module, recipe)}
    # reason: coremltools' default also puts per-tensor INT8 on residual adds, attention matmuls and GELU; on
    # hmr2-vit-s that cost 8.3 mm MPJPE. Like the other targets' recipes, only linears and convs take INT8.
    float_ops = {op: None for op in _W8A8_FLOAT_OPS}
    config = LinearQuantizerConfig(global_config=layer, module_type_configs={
        torch.nn.Linear: layer, torch.nn.Conv2d: layer, **float_ops}, module_name_configs=skip)
    quantizer = LinearQuantizer(copy.deepcopy(module), config)
    prepared = quantizer.prepare(example_inputs=example)
    quantizer.step()
    return quantizer, prepared


def calibrate_w8a8(module: torch.nn.Module, recipe: QuantRecipe | None, example: tuple[torch.Tensor, ...],
                   samples: list[tuple[np.ndarray, ...]]) -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    """Calibrated W8A8 module (reference-quantized FX graph) and its observer state (small: no weights)."""
    with vendor_quiet(), torch.no_grad():
        quantizer, prepared = _w8a8_prepared(module, recipe, example)
        for sample in samples:
            prepared(*(torch.from_numpy(np.asarray(v)) for v in sample))
        state = {k: v.clone() for k, v in prepared.state_dict().items() if "activation_post_process" in k}
        return quantizer.finalize(), state


def restore_w8a8(module: torch.nn.Module, recipe: QuantRecipe | None, example: tuple[torch.Tensor, ...],
                 state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """The same W8A8 module rebuilt from the float module and the saved observer state."""
    with vendor_quiet(), torch.no_grad():
        quantizer, prepared = _w8a8_prepared(module, recipe, example)
        missing = [k for k in state if k not in prepared.state_dict()]
        if missing:
            raise ConversionError(f"Saved INT8 observer state does not fit the model ({len(missing)} unknown keys, "
                                  f"e.g. {missing[0]}); reconvert the artifact.")
        prepared.load_state_dict(state, strict=False)
        return quantizer.finalize()


def simulation_module(module: torch.nn.Module, precision: Precision, recipe: QuantRecipe | None,
                      example: tuple[torch.Tensor, ...] = (), w8a8_state: dict | None = None) -> torch.nn.Module:
    """What Core ML computes, in torch: float16 weights and compute; INT8-rounded weights for int8-weights;
    for int8 the calibrated quantize/dequantize graph (computed in float32: CPU torch has no float16 Q/DQ)."""
    if precision == Precision.int8:
        return restore_w8a8(module, recipe, example, w8a8_state)
    converted = coreml_module(module, precision, recipe)
    if compute_precision(precision) == "float32":
        return converted
    return copy.deepcopy(converted).half()

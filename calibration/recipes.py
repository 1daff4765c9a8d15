"""Quantization recipes: which parts of a model stay in float when the rest goes to INT8.

A recipe names module scopes (dotted paths of our modules, ``fnmatch`` patterns allowed, a scope covers its
children) and op kinds (``softmax``, ``layernorm``, ``attention_matmul``: the activation x activation matmuls of
attention). Each target maps it onto its own tool: ONNX Runtime ``nodes_to_exclude`` (through the exporter's
name scopes), NNCF ``IgnoredScope`` (through the exported program's module stack).

Default recipes, and why (measured by ``bench/recipe_ablation.py`` on hmr2-vit-s: 64 synthetic calibration crops,
16 evaluation crops, MPJPE drift vs FP32; OpenVINO / ONNX Runtime):

- no exclusions 11.0 / 19.5 mm; regression heads only 10.0 / 19.8 mm.
- + the decoder's single-query linears (self-attention, feed-forward, cross-attention q/out): 2.3 / 18.8 mm.
  They see one token, so they are memory-bound matrix-vector products that INT8 does not speed up, while
  per-tensor INT8 on one token's activations moved the body most. The context projection ``to_kv`` (192 tokens,
  the decoder's MACs) stays INT8.
- + the patch-embedding conv: 2.4 / 1.7 mm. ONNX Runtime's INT8 conv on the raw image was worth ~17 mm here;
  the conv is ~1% of the MACs.
- Keeping attention matmuls (1.3 mm on ORT, no change on OpenVINO) or the whole decoder (1.1 mm) float as well
  buys little more, so they are quantized by default; ``--keep-float attention_matmul`` is one flag away.
- Softmax and LayerNorm stay float (neither runtime speeds them up in INT8).
- ViTPose: the patch embedding and the final 1x1 heatmap conv stay float (same reasoning as above; untrained
  ViTPose heatmaps are too flat to rank finer choices, see docs/targets.md).
"""

from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from torch import nn

from edgehmr.errors import InputError, SpecError
from edgehmr.jsonfile import read_json_object

OP_KINDS = ("softmax", "layernorm", "attention_matmul")


@dataclass(frozen=True)
class QuantRecipe:
    name: str
    keep_float_scopes: tuple[str, ...] = ()
    keep_float_ops: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict) -> QuantRecipe:
        """The recipe an artifact's metadata recorded (``to_json``'s output)."""
        return cls(raw["name"], tuple(raw["keep_float_scopes"]), tuple(raw["keep_float_ops"]))

    def covers(self, module_path: str) -> bool:
        """True when ``module_path`` lies inside one of the kept-float scopes."""
        parts = module_path.split(".")
        prefixes = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
        return any(fnmatch.fnmatchcase(p, scope) for scope in self.keep_float_scopes for p in prefixes)


_DECODER_LAYERS = "smpl_head.transformer.transformer.layers.*"
DEFAULT_RECIPES = {
    "hmr2": QuantRecipe("hmr2-default", (
        "backbone.patch_embed",
        "smpl_head.decpose", "smpl_head.decshape", "smpl_head.deccam",
        # The decoder's single-query linears; the context projection (.1.fn.to_kv) carries its MACs and is INT8.
        f"{_DECODER_LAYERS}.0", f"{_DECODER_LAYERS}.1.fn.to_q", f"{_DECODER_LAYERS}.1.fn.to_out", f"{_DECODER_LAYERS}.2",
    ), ("softmax", "layernorm")),
    "vitpose": QuantRecipe("vitpose-default", ("backbone.patch_embed", "keypoint_head.final_layer"),
                           ("softmax", "layernorm")),
}

# Truncated hierarchical encoders (edgehmr.models.hierarchical): the same head choices as above, the family's
# image stem in float (the patch-embedding reasoning), plus
# - VMamba: the selective scan (its matmuls multiply activations by exp-decay and 0/1 running-sum matrices);
# - GroupMixFormer: the depthwise convs (position conv, aggregators, conv relative positions): per-tensor INT8
#   activations on them gave 8.6 mm MPJPE drift on hmr2-gmf-t-s3 (OpenVINO, seeded weights), 3.7 mm kept float,
#   for ~2% of the MACs. Also the separable (depthwise 3x3 + pointwise) downsampling convs between stages
#   (``patch_embed_layers``, ~1% of the MACs): `debug drift` ranked stage 4's first (its output 1.7 relative L2
#   off); kept float, OpenVINO INT8 drift went from 28.9 to 1.5 mm MPJPE on hmr2-gmf-t-s4, 12.3 to 3.5 mm on
#   hmr2-gmf-t-s2, and from 0.74 to 0.054 heatmap relative L2 on vitpose-gmf-t-s4.
_HMR2_HEAD = tuple(s for s in DEFAULT_RECIPES["hmr2"].keep_float_scopes if not s.startswith("backbone."))
_GMF_BLOCKS = "backbone.groupmixformer_backbone.*"
_STEMS = {"swin": ("backbone.patch_embed",),
          "gmf": ("backbone.conv_stem", "backbone.patch_embed_layers", f"{_GMF_BLOCKS}.cpe",
                  f"{_GMF_BLOCKS}.att.aggregator", f"{_GMF_BLOCKS}.att.crpe"),
          "vmamba": ("backbone.patch_embed", "backbone.layers.*.blocks.*.op.scan")}
for _family, _float in _STEMS.items():
    DEFAULT_RECIPES[f"hmr2-{_family}"] = QuantRecipe(f"hmr2-{_family}-default", _float + _HMR2_HEAD,
                                                     ("softmax", "layernorm"))
    DEFAULT_RECIPES[f"vitpose-{_family}"] = QuantRecipe(f"vitpose-{_family}-default",
                                                        _float + ("keypoint_head.final_layer",), ("softmax", "layernorm"))

# DeformableHMR (edgehmr.models.deformable_hmr): the HMR2.0 reasoning carried over. The 26 queries' own linears
# (self-attention, feed-forward, the deformable attention's output projection) are memory-bound on 26 tokens, and
# INT8 on the offset/weight predictors and the reference points would move where the decoder samples; the value
# projection over every upsampled pixel (the decoder's MACs) and the level projections stay INT8. The JBU kernel
# branch (small convs on the pooled RGB guidance that decide the filter weights) stays float.
_DEFORMABLE_LAYERS = "head.layers.*"
_DEFORMABLE_FLOAT = (
    "backbone.patch_embed", "head.reference_points", f"{_DEFORMABLE_LAYERS}.self_attn",
    f"{_DEFORMABLE_LAYERS}.cross_attn.sampling_offsets", f"{_DEFORMABLE_LAYERS}.cross_attn.attention_weights",
    f"{_DEFORMABLE_LAYERS}.cross_attn.output_proj", f"{_DEFORMABLE_LAYERS}.linear1", f"{_DEFORMABLE_LAYERS}.linear2",
    "head.decpose", "head.decshape", "head.deccam")
DEFAULT_RECIPES["deformable-hmr"] = QuantRecipe("deformable-hmr-default", _DEFORMABLE_FLOAT + ("head.upsamplers",),
                                                ("softmax", "layernorm"))
DEFAULT_RECIPES["deformable-hmr-x1"] = QuantRecipe("deformable-hmr-x1-default", _DEFORMABLE_FLOAT,
                                                   ("softmax", "layernorm"))
NO_EXCLUSIONS = QuantRecipe("none")


def load_recipe_file(path: str) -> QuantRecipe:
    raw = read_json_object(path, "a quantization recipe", "see docs/targets.md for its keys.")
    unknown = set(raw) - {"name", "keep_float_scopes", "keep_float_ops"}
    if unknown:
        raise InputError(f"Recipe {path} has unknown keys {sorted(unknown)}; use keep_float_scopes, keep_float_ops.")
    lists = {k: raw.get(k, []) for k in ("keep_float_scopes", "keep_float_ops")}
    for key, value in lists.items():
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InputError(f"Recipe {path}: {key} must be a list of names.")
    name = raw.get("name", Path(path).stem)
    if not isinstance(name, str):
        raise InputError(f"Recipe {path}: name must be a string.")
    return QuantRecipe(name, tuple(lists["keep_float_scopes"]), tuple(lists["keep_float_ops"]))


def resolve_recipe(family: str, recipe: str = "default", keep_float: tuple[str, ...] = (),
                   quantize: tuple[str, ...] = ()) -> QuantRecipe:
    """``recipe`` is ``default``, ``none`` or a JSON file; ``keep_float`` adds scopes or op kinds,
    ``quantize`` removes them from the recipe."""
    if recipe == "default":
        base = DEFAULT_RECIPES[family]
    elif recipe == "none":
        base = NO_EXCLUSIONS
    else:
        base = load_recipe_file(recipe)
    ops = [o for o in base.keep_float_ops if o not in quantize] + [k for k in keep_float if k in OP_KINDS]
    scopes = [s for s in base.keep_float_scopes if s not in quantize] + [k for k in keep_float if k not in OP_KINDS]
    name = base.name if not (keep_float or quantize) else f"{base.name}+overrides"
    resolved = replace(base, name=name, keep_float_scopes=tuple(dict.fromkeys(scopes)),
                       keep_float_ops=tuple(dict.fromkeys(ops)))
    bad_ops = [o for o in resolved.keep_float_ops if o not in OP_KINDS]
    if bad_ops:
        raise SpecError(f"Unknown op kind(s) {bad_ops} in the recipe; known kinds: {', '.join(OP_KINDS)}.")
    return resolved


def check_scopes(recipe: QuantRecipe, module: nn.Module) -> None:
    """Every scope must match a module: a typo would otherwise silently quantize what it meant to protect."""
    names = [n for n, _ in module.named_modules() if n]
    for scope in recipe.keep_float_scopes:
        if not any(fnmatch.fnmatchcase(n, scope) for n in names):
            import difflib

            close = difflib.get_close_matches(scope, names, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise SpecError(f"Recipe scope '{scope}' matches no module of this model.{hint}")

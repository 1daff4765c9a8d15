"""``edgehmr debug drift`` on OpenVINO.

The OpenVINO runtime runs the artifact's IR (with the runtime settings it was validated with) and an FP32 IR
converted the same way, every op's output added as a model output. NNCF keeps the float ops' friendly names
(FakeQuantize and weight-decompression ops are inserted around them), so shared names match.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgehmr.artifact import parts
from edgehmr.drift import GraphTensor, LayerDrift, rank_errors, reference_job, tensor_errors, worst_per_layer
from edgehmr.errors import SpecError
from edgehmr.targets.openvino import compile_config

# Ops whose output carries its input's error unchanged: not exposed, looked through to the tensor behind.
# reason: the layout ops hold ~40% of the op outputs of VMamba's chunked scan (1.9 of 4.6 GB per crop); exposing
# them cost memory and ranked nothing (they add no error).
OPENVINO_PASS_THROUGH = ("FakeQuantize", "Convert", "Transpose", "Reshape", "Squeeze", "Unsqueeze")
OPENVINO_NOT_LAYERS = ("Parameter", "Constant", "Result") + OPENVINO_PASS_THROUGH
OWN_OUTPUT = "output:"  # prefix of the model's own outputs in a probe's results (no op is named so)
PROBE_GAP_FLOOR = 1e-3
# The most op-output bytes one probe pass exposes per model (the artifact's and the FP32 one run side by side);
# larger graphs are probed in several passes, each compiling both models again.
# reason: every exposed output keeps its own buffer. VMamba's chunked scan holds ~2.7 GB of non-layout op outputs
# per crop at S2 and more in deeper truncations; exposed all at once, the search on vitpose-vmamba-s-s3 was killed
# at 24 GB.
PROBE_GROUP_BYTES = 1 << 31


def _output_key(port) -> str:
    node = port.get_node()
    return node.get_friendly_name() if node.get_output_size() == 1 else f"{node.get_friendly_name()}:{port.get_index()}"


def _float_source(port, ref_names: set[str]) -> str:
    """The layer output a value comes from, looking through FakeQuantize/Convert and through ops the FP32 graph
    does not have (NNCF's smooth-quant scales, weight decompression) to the float tensor behind."""
    for _ in range(16):
        node = port.get_node()
        if node.get_type_name() in OPENVINO_PASS_THROUGH:
            port = node.input_value(0)
        elif node.get_friendly_name() not in ref_names and node.get_type_name() not in OPENVINO_NOT_LAYERS:
            varying = [node.input_value(i) for i in range(node.get_input_size())
                       if node.input_value(i).get_node().get_type_name() != "Constant"]
            if not varying:
                break
            port = varying[0]
        else:
            break
    return _output_key(port)


def openvino_tensors(model, reference, scopes: dict[str, str] | None = None) -> list[GraphTensor]:
    """Shared float op outputs; ``scopes`` (FX node name -> module path, from the reference's conversion) gives
    each its module: the frontend names an op after the FX node it came from."""
    scopes = scopes or {}
    ref_names = {op.get_friendly_name() for op in reference.get_ordered_ops()}
    tensors = []
    for op in model.get_ordered_ops():
        if op.get_type_name() in OPENVINO_NOT_LAYERS or op.get_friendly_name() not in ref_names:
            continue
        inputs = [_float_source(op.input_value(i), ref_names) for i in range(op.get_input_size())]
        for port in op.outputs():
            if port.get_element_type().is_real():
                tensors.append(GraphTensor(_output_key(port), op.get_type_name(), op.get_friendly_name(), inputs,
                                           scopes.get(op.get_friendly_name().split("/", 1)[0], "")))
    return tensors


def _openvino_probe(model, config: dict, names: set[str]):
    """A function running ``model`` with every op output named in ``names`` added as a model output (on a clone:
    ``add_outputs`` changes the model in place); compiled once. The model's own outputs come back too, under
    ``OWN_OUTPUT`` + their names. The arrays it returns are overwritten by its next call."""
    import openvino as ov

    probe = model.clone()
    own = [port.get_any_name() for port in probe.outputs]
    ports = [port for op in probe.get_ordered_ops() if op.get_type_name() not in OPENVINO_NOT_LAYERS
             for port in op.outputs() if _output_key(port) in names]
    keys = [_output_key(port) for port in ports]
    added = probe.add_outputs(ports)
    compiled = ov.Core().compile_model(probe, "CPU", config)
    request = compiled.create_infer_request()
    index = {p.get_any_name(): i for i, p in enumerate(compiled.outputs)}
    found = [(key, compiled.outputs[index[port.get_any_name()]]) for key, port in zip(keys, added)
             if port.get_any_name() in index]
    found += [(OWN_OUTPUT + name, compiled.outputs[index[name]]) for name in own if name in index]

    def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # reason: views of the request's own buffers, valid until the next call. Every op output is exposed, and
        # copying them doubled the probe's memory: VMamba's chunked scan alone holds ~4.6 GB of op outputs per
        # crop, and with two copies per model the probe of vitpose-vmamba-t-s2 was killed at 24 GB.
        result = request.infer(feeds, share_outputs=True)
        return {key: result[port] for key, port in found}

    return run


def probe_config(runtime_config: dict | None) -> dict:
    """The artifact's CPU settings for the probe, except ``SNIPPETS_MODE=DISABLE``.

    reason: with snippets disabled and op outputs added as model outputs, OpenVINO 2026.4's CPU plugin computed
    an NNCF INT8 GroupMixFormer wrongly: some exposed tensors read as zeros and the model's own output was 0.99
    (relative L2) away from the artifact's run. With snippets on, the probe's outputs are repeatable and within
    ~1e-2 of the artifact's run (the snippets discrepancy the artifact disables them for);
    :func:`probe_gap` measures that on every run and the method line reports it.
    """
    return {k: v for k, v in compile_config(runtime_config, None).items() if k != "SNIPPETS_MODE"}


def probe_gap(probed: dict[str, np.ndarray], reference: dict[str, np.ndarray],
              artifact_outputs: dict[str, np.ndarray], strict: bool = True) -> float:
    """Worst relative L2 gap between the probe's copy of the model outputs and ``artifact_outputs`` (the artifact
    run as ``validate`` runs it). A gap over half the artifact's own drift from FP32 means the per-layer numbers
    would describe another computation: refused, unless not ``strict`` (the gap is then only measured)."""
    worst = 0.0
    for name, value in artifact_outputs.items():
        got, fp32 = probed.get(OWN_OUTPUT + name), reference.get(OWN_OUTPUT + name)
        if got is None or fp32 is None:
            continue
        gap = _rel_l2(got, value)
        drift = _rel_l2(value, fp32)
        if strict and gap > max(PROBE_GAP_FLOOR, 0.5 * drift):
            raise SpecError(f"debug drift: with every intermediate output exposed, OpenVINO computes output '{name}' "
                            f"{gap:.1e} (relative L2) away from the artifact's own run (whose drift from FP32 is "
                            f"{drift:.1e}), so its per-layer numbers would not describe this artifact; use -t onnx at "
                            f"this precision to locate the drift.")
        worst = max(worst, gap)
    return worst


def _rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a.astype(np.float64) - b) / max(np.linalg.norm(b.astype(np.float64)), 1e-12))


def layer_drift(artifact_dir: Path, meta: dict, batches: list[dict[str, np.ndarray]],
                strict: bool = True) -> tuple[str, list[LayerDrift]]:
    import openvino as ov

    from edgehmr.converters.openvino import torch2openvino
    from edgehmr.targets.base import open_artifact_runner

    part = next(iter(parts(meta).values()))
    model = ov.Core().read_model(str(artifact_dir / part["file"]))
    reference, scopes = torch2openvino(reference_job(meta))
    tensors = openvino_tensors(model, reference, scopes)
    artifact = open_artifact_runner(artifact_dir, meta)
    own_runs = [artifact.run(artifact.default_entry, feeds) for feeds in batches]
    errors: list[dict[str, float]] = [{} for _ in batches]
    gap = 0.0
    groups = probe_groups(tensors, output_bytes(model), PROBE_GROUP_BYTES)
    for group in groups:
        names = {t.name for t in group}
        run = _openvino_probe(model, probe_config(part["details"].get("runtime_config")), names)
        run_reference = _openvino_probe(reference, compile_config(None, None), names)
        for feeds, own, found in zip(batches, own_runs, errors):
            got, want = run(feeds), run_reference(feeds)
            gap = max(gap, probe_gap(got, want, own, strict))
            found.update(tensor_errors(group, got, want))
        del run, run_reference, got, want  # their buffers go before the next group's are allocated
    passes = f" in {len(groups)} passes" if len(groups) > 1 else ""
    return (f"; probe outputs within {gap:.1e} of the artifact's run{passes}",
            worst_per_layer([rank_errors(tensors, found, top=len(tensors)) for found in errors]))


def output_bytes(model) -> dict[str, int]:
    """Bytes of each op output with a static shape (the probe's buffer for it when exposed)."""
    sizes = {}
    for op in model.get_ordered_ops():
        for port in op.outputs():
            if port.get_partial_shape().is_static:
                sizes[_output_key(port)] = int(np.prod(list(port.get_shape()), dtype=np.int64)) * \
                    port.get_element_type().size
    return sizes


def probe_groups(tensors: list[GraphTensor], sizes: dict[str, int], budget: int) -> list[list[GraphTensor]]:
    """``tensors`` in graph order, cut into runs whose exposed outputs hold at most ``budget`` bytes (a tensor
    larger than the budget goes alone); one group when everything fits."""
    groups: list[list[GraphTensor]] = [[]]
    held = 0
    for t in tensors:
        size = sizes.get(t.name, 0)
        if groups[-1] and held + size > budget:
            groups.append([])
            held = 0
        groups[-1].append(t)
        held += size
    return groups

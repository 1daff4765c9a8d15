"""Multi-shape artifacts: one model, several static shapes ("entries"), weights stored once, on every target.

The module under test looks like SAT-HMR's stage 2: it gathers token rows by index, appends extra rows, runs one
masked self-attention + MLP block, and pools over the real (unmasked) rows. Each target's artifact is converted
once per precision (module-scoped cache) and every entry is run against torch.
"""

from __future__ import annotations

import json
import math
import platform

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from edgehmr.converters.base import ExportJob
from edgehmr.converters.capabilities import Precision
from edgehmr.converters.convert import convert_part, part_metadata
from edgehmr.converters.shapes import dim_names, dynamic_axes, torch_dynamic_shapes
from edgehmr.converters.tensorrt_engine import can_build_here
from edgehmr.errors import ConversionError, InputError, TargetUnavailableError
from edgehmr.targets.base import RunOptions, open_part_runner

D, TOKENS = 32, 16
ENTRIES = {"b4x8": (4, 8), "b8x16": (8, 16)}  # entry -> (gathered rows n, extra rows m)
INPUTS, OUTPUTS = ["tokens", "index", "mask", "extra"], ["pooled", "sequence"]
PAD = -1e4  # additive mask of padding rows
# Targets that run here; Core ML is simulated in torch off macOS.
RUNNABLE = ["onnx", "openvino", "executorch", "tensorrt", "coreml"]


class Stage2Like(nn.Module):
    """Gather rows of ``tokens`` by ``index``, append ``extra``, one masked attention + MLP block, masked mean."""

    def __init__(self, hidden: int = 256):
        super().__init__()
        torch.manual_seed(0)
        self.norm1, self.norm2 = nn.LayerNorm(D), nn.LayerNorm(D)
        self.q, self.k, self.v, self.proj = (nn.Linear(D, D) for _ in range(4))
        # A wide MLP so weights, not graph structure, dominate the file sizes the sharing tests compare.
        self.fc1, self.fc2 = nn.Linear(D, hidden), nn.Linear(hidden, D)

    def forward(self, tokens, index, mask, extra):
        gathered = torch.gather(tokens, 1, index.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
        x = torch.cat([gathered, extra], dim=1)
        key_mask = torch.cat([mask, torch.zeros_like(extra[..., 0])], dim=1)  # extra rows are always real
        h = self.norm1(x)
        logits = self.q(h) @ self.k(h).transpose(1, 2) / math.sqrt(D) + key_mask.unsqueeze(1)
        x = x + self.proj(torch.softmax(logits, dim=-1) @ self.v(h))
        x = x + self.fc2(torch.relu(self.fc1(self.norm2(x))))
        real = (key_mask > PAD / 2).to(x.dtype).unsqueeze(-1)
        return (x * real).sum(1) / real.sum(1), x


def make_inputs(n: int, m: int, real: int | None = None, seed: int = 0):
    """Inputs with ``n`` gathered rows of which the first ``real`` are real (the rest masked padding)."""
    g = torch.Generator().manual_seed(seed)
    real = n if real is None else real
    tokens = torch.randn(1, TOKENS, D, generator=g)
    index = torch.randint(0, TOKENS, (1, n), generator=g)
    mask = torch.zeros(1, n)
    mask[:, real:] = PAD
    return tokens, index, mask, torch.randn(1, m, D, generator=g)


def pad_rows(inputs, n: int, pad_index: int):
    """The same inputs padded to ``n`` gathered rows that gather ``pad_index`` and are masked."""
    tokens, index, mask, extra = inputs
    extra_rows = n - index.shape[1]
    return (tokens, torch.cat([index, torch.full((1, extra_rows), pad_index)], dim=1),
            torch.cat([mask, torch.full((1, extra_rows), PAD)], dim=1), extra)


@pytest.fixture(scope="module")
def module():
    return Stage2Like().eval()


CALIBRATION_PER_ENTRY = 8


def make_job(module, precision=Precision.fp32) -> ExportJob:
    entries = {name: make_inputs(n, m, seed=n) for name, (n, m) in ENTRIES.items()}
    calibration = None
    if precision == Precision.int8:  # samples of every entry, some with padding rows, as bucketed inputs have
        calibration = {name: [tuple(t.numpy() for t in make_inputs(n, m, real=n - k % 3, seed=1000 + k))
                              for k in range(CALIBRATION_PER_ENTRY)] for name, (n, m) in ENTRIES.items()}
    return ExportJob(module, entries, INPUTS, OUTPUTS, precision, "stage2-like", calibration)


@pytest.fixture(scope="module")
def converted(module, tmp_path_factory):
    """(target, precision) -> (artifact folder, part metadata), converted once per module."""
    cache = {}

    def get(target: str, precision: str = "fp32"):
        if (target, precision) not in cache:
            out = tmp_path_factory.mktemp(f"{target}-{precision}")
            job = make_job(module, Precision(precision))
            result = convert_part(target, job, out)
            # Round-tripped as the caller stores it (metadata.json): runners must open the JSON form.
            cache[(target, precision)] = (out, json.loads(json.dumps(part_metadata(target, job, result))))
        return cache[(target, precision)]

    return get


def _open(converted, module, target, precision="fp32"):
    path, part = converted(target, precision)
    # Only a runtime that cannot run here (Core ML off macOS) calls for the module to simulate it.
    return open_part_runner(path, part, RunOptions(simulation=lambda: module))


def _feeds(inputs):
    return {n: t.numpy() for n, t in zip(INPUTS, inputs)}


def _scaled_error(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got - want).max() / max(float(np.abs(want).max()), 1.0))


def test_varying_axes_are_dynamic_and_axes_of_equal_sizes_share_one_symbol(module):
    job = make_job(module)
    assert dynamic_axes(job) == {"index": {1: (4, 8)}, "mask": {1: (4, 8)}, "extra": {1: (8, 16)}}
    names = dim_names(job)
    assert names[("index", 1)] == names[("mask", 1)] != names[("extra", 1)]
    shapes = torch_dynamic_shapes(job)
    assert shapes[0] is None  # tokens: the same in every entry, static
    assert shapes[1][1] is shapes[2][1] and shapes[3][1] is not shapes[1][1]


@pytest.mark.parametrize("target", RUNNABLE)
def test_fp32_every_entry_matches_torch_and_metadata_lists_its_shapes(converted, module, target):
    path, part = converted(target)
    assert part["entries"] == {"b4x8": {"tokens": [1, 16, 32], "index": [1, 4], "mask": [1, 4], "extra": [1, 8, 32]},
                               "b8x16": {"tokens": [1, 16, 32], "index": [1, 8], "mask": [1, 8],
                                         "extra": [1, 16, 32]}}
    assert part["input_dtypes"]["index"] == "int64" and part["precision"] == "fp32"
    assert (path / part["file"]).exists()
    runner = _open(converted, module, target)
    assert runner.entries == ["b4x8", "b8x16"]
    if target == "tensorrt" and not can_build_here():
        assert runner.execution.startswith("simulated FP32: the TensorRT-ready ONNX on ONNX Runtime")
    elif target == "coreml" and platform.system() != "Darwin":
        assert runner.execution.startswith("simulated in torch (float32 compute); Core ML runs predictions only")
    else:
        assert runner.execution == "runtime" and not runner.simulated
    for entry, (n, m) in ENTRIES.items():
        inputs = make_inputs(n, m, seed=100 + n)
        got = runner.run(entry, _feeds(inputs))
        with torch.no_grad():
            want = [o.numpy() for o in module(*inputs)]
        for name, ref in zip(OUTPUTS, want):
            assert got[name].shape == ref.shape and got[name].dtype == np.float32
            assert _scaled_error(got[name], ref) < 1e-4, (entry, name)


@pytest.mark.parametrize("target", RUNNABLE)
def test_padding_rows_do_not_change_the_pooled_output(converted, module, target):
    """5 real rows padded to the 8-row entry give the pooled vector of the unpadded 5 rows, whatever the padding
    rows gather."""
    runner = _open(converted, module, target)
    unpadded = make_inputs(5, 16, seed=7)
    with torch.no_grad():
        want = module(*unpadded)[0].numpy()
    for pad_index in (0, 11):
        got = runner.run("b8x16", _feeds(pad_rows(unpadded, 8, pad_index)))["pooled"]
        assert _scaled_error(got, want) < 1e-4


def _single_bytes(target: str, module, tmp_path) -> int:
    """Bytes of one single-shape export per entry, summed: what the multi-shape artifact must beat."""
    total = 0
    for entry, (n, m) in ENTRIES.items():
        inputs = make_inputs(n, m)
        job = ExportJob.single(module, inputs, INPUTS, OUTPUTS, Precision.fp32, "stage2-like")
        out = tmp_path / entry
        out.mkdir()
        if target == "onnx":
            from edgehmr.converters.onnx import torch2onnx

            total += torch2onnx(job, out / "model.onnx").stat().st_size
        elif target == "openvino":
            from edgehmr.converters.openvino import convert

            convert(job, out)
            total += sum(f.stat().st_size for f in out.iterdir())
        elif target == "executorch":
            from edgehmr.converters.executorch import lower_methods

            total += len(lower_methods({"forward": (module, inputs)}, "xnnpack", Precision.fp32, "single")[0])
        elif target == "coreml":
            from edgehmr.converters.coreml import package_bytes, torch2coreml

            torch2coreml(module, inputs, INPUTS, OUTPUTS, Precision.fp32, "single", out / "m.mlpackage")
            total += package_bytes(out / "m.mlpackage")
    return total


def _artifact_bytes(path, part) -> int:
    """The part's files: the model file (or package) and, for OpenVINO, its weights file."""
    model = path / part["file"]
    files = list(model.rglob("*")) if model.is_dir() else [model, model.with_suffix(".bin")]
    return sum(f.stat().st_size for f in files if f.is_file())


@pytest.mark.parametrize("target", ["onnx", "openvino", "executorch", "coreml"])
def test_weights_are_stored_once(converted, module, target, tmp_path):
    path, part = converted(target)
    assert _artifact_bytes(path, part) < 0.7 * _single_bytes(target, module, tmp_path)


def test_onnx_graph_has_dynamic_dims_where_entries_differ(converted):
    path, part = converted("onnx")
    graph = onnx.load(str(path / part["file"])).graph
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input}
    assert dims["tokens"] == [1, 16, 32]
    assert isinstance(dims["index"][1], str) and dims["index"] == dims["mask"]
    assert isinstance(dims["extra"][1], str) and dims["extra"][1] != dims["index"][1]
    assert [dims["index"][0], dims["extra"][0], dims["extra"][2]] == [1, 1, 32]  # batch and width stay static
    assert part["details"]["dynamic_axes"]["extra"]["1"] == {"min": 8, "max": 16, "dim": "extra_dim1"}


def test_openvino_ir_bounds_the_dynamic_dims_to_the_entries(converted):
    import openvino as ov

    path, part = converted("openvino")
    model = ov.Core().read_model(str(path / part["file"]))
    shapes = {p.get_any_name(): str(p.get_partial_shape()) for p in model.inputs}
    assert shapes == {"tokens": "[1,16,32]", "index": "[1,4..8]", "mask": "[1,4..8]", "extra": "[1,8..16,32]"}


def test_executorch_fp32_pte_serves_every_entry_from_one_method_with_bounded_dynamic_axes(converted):
    from edgehmr.targets.executorch import method_names

    path, part = converted("executorch")
    assert method_names(path / part["file"]) == {"forward"}
    assert part["details"]["entry_methods"] == {entry: "forward" for entry in ENTRIES}
    assert part["details"]["dynamic_axes"]["extra"]["1"] == {"min": 8, "max": 16, "dim": "extra_dim1"}


def test_coreml_package_has_one_function_per_entry_with_int32_indices(converted):
    from edgehmr.converters.coreml import program_summary

    path, part = converted("coreml")
    assert part["details"]["minimum_deployment_target"]["ios"] == "iOS18"
    for entry, (n, m) in ENTRIES.items():
        summary = program_summary(path / part["file"], entry)
        assert summary["functions"] == sorted(ENTRIES)
        assert summary["inputs"] == [{"name": "tokens", "shape": [1, 16, 32], "dtype": "float32"},
                                     {"name": "index", "shape": [1, n], "dtype": "int32"},
                                     {"name": "mask", "shape": [1, n], "dtype": "float32"},
                                     {"name": "extra", "shape": [1, m, 32], "dtype": "float32"}]
        assert [o["shape"] for o in summary["outputs"]] == [[1, 32], [1, n + m, 32]]


@pytest.mark.skipif(platform.system() == "Darwin", reason="on macOS the real Core ML runner opens instead")
def test_coreml_off_macos_needs_a_module_to_simulate(converted):
    path, part = converted("coreml")
    with pytest.raises(TargetUnavailableError, match="only on macOS.*simulates its numerics"):
        open_part_runner(path, part)


def test_tensorrt_onnx_is_checked_against_one_profile_per_entry(converted):
    from edgehmr.converters.tensorrt_onnx import check_tensorrt_onnx

    path, part = converted("tensorrt")
    details = part["details"]
    assert [p["entry"] for p in details["profiles"]] == list(ENTRIES)
    assert details["profiles"][0]["shapes"] == {"index": [1, 4], "mask": [1, 4], "extra": [1, 8, 32]}
    model = onnx.load(str(path / part["file"]))
    profiles = [p["shapes"] for p in details["profiles"]]
    assert check_tensorrt_onnx(model, profiles) == []
    assert "dynamic shape" in str(check_tensorrt_onnx(model)[0])  # without profiles: refused as before
    uncovered = check_tensorrt_onnx(model, [profiles[0], {"index": [1, 8], "mask": [1, 8]}])
    assert [str(p) for p in uncovered] == ["node 'extra' (input): dynamic shape not covered by optimization profile 1"]
    fixed = check_tensorrt_onnx(model, [{**profiles[0], "extra": [1, 8, 64]}])
    assert "fixed to 32" in str(fixed[0])
    # trtexec: each --profile=N directly followed by its three shape flags (min = opt = max).
    spec0, spec1 = "index:1x4,mask:1x4,extra:1x8x32", "index:1x8,mask:1x8,extra:1x16x32"
    assert (f"--profile=0 --minShapes={spec0} --optShapes={spec0} --maxShapes={spec0} "
            f"--profile=1 --minShapes={spec1} --optShapes={spec1} --maxShapes={spec1}") in details["trtexec"]
    assert "--noTF32" in details["trtexec"] and details["trtexec"] in (path / "build_engine.sh").read_text()


@pytest.mark.skipif(not can_build_here(), reason="TensorRT engines need TensorRT and an NVIDIA GPU")
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_tensorrt_engine_runs_each_entry_on_its_profile(converted, module, precision):
    from edgehmr.converters.tensorrt import build_part_engine

    path, part = converted("tensorrt", precision)
    info = part["details"]["engine"] or build_part_engine(path, part)[1]
    assert info["optimization_profiles"] == len(ENTRIES) and (path / info["file"]).is_file()
    runner = open_part_runner(path, part)
    assert runner.execution == "runtime" and not runner.simulated
    tolerance = {"fp32": 1e-4, "fp16": 2e-2, "int8": 0.15}[precision]
    for entry, (n, m) in ENTRIES.items():
        inputs = make_inputs(n, m, seed=3)
        got = runner.run(entry, _feeds(inputs))
        with torch.no_grad():
            want = module(*inputs)
        for name, ref in zip(OUTPUTS, want):
            assert _scaled_error(got[name], ref.numpy()) < tolerance, (entry, name)


@pytest.mark.parametrize("target", ["onnx", "openvino", "tensorrt", "coreml"])
def test_fp16_runs_every_entry_within_float16_tolerance(converted, module, target):
    runner = _open(converted, module, target, "fp16")
    worst = 0.0
    for entry, (n, m) in ENTRIES.items():
        inputs = make_inputs(n, m, real=n - 1, seed=5)  # one padding row: the -1e4 mask must survive float16
        got = runner.run(entry, _feeds(inputs))
        with torch.no_grad():
            want = module(*inputs)
        worst = max(worst, *(_scaled_error(got[o], w.numpy()) for o, w in zip(OUTPUTS, want)))
    assert worst < 2e-2
    path, part = converted(target, "fp16")
    if target in ("onnx", "tensorrt"):
        model = onnx.load(str(path / part["file"]))
        assert sum(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer) >= 8
        assert part["details"].get("fp16_range", {"max_abs": 0})["max_abs"] < 65504
    if target == "coreml":
        assert part["details"]["compute_precision"] == "float16"


@pytest.mark.parametrize("target", ["onnx", "openvino", "tensorrt"])
def test_int8_is_calibrated_on_every_entry_and_runs_each(converted, module, target):
    path, part = converted(target, "int8")
    details = part["details"]
    assert details["calibration_samples"] == {"b4x8": CALIBRATION_PER_ENTRY, "b8x16": CALIBRATION_PER_ENTRY}
    assert details["recipe"]["keep_float_ops"] == ["softmax", "layernorm"]
    if target == "openvino":
        assert details["fake_quantize"] >= 6  # the six linears, at least
    else:
        assert details["quantized_compute_ops"] >= 6
    runner = _open(converted, module, target, "int8")
    if target == "tensorrt" and not can_build_here():
        assert runner.execution.startswith("simulated INT8")
    worst = 0.0
    for entry, (n, m) in ENTRIES.items():
        inputs = make_inputs(n, m, real=n - 1, seed=11)
        got = runner.run(entry, _feeds(inputs))
        with torch.no_grad():
            want = module(*inputs)
        worst = max(worst, *(_scaled_error(got[o], w.numpy()) for o, w in zip(OUTPUTS, want)))
    # INT8 really ran (not the float graph), within INT8 drift (0.03-0.07 measured: per-tensor activations on a
    # random-weight toy).
    assert 1e-4 < worst < 0.15


def test_executorch_int8_quantizes_every_method_without_calibration(module, tmp_path):
    job = make_job(module, Precision.int8)
    job = ExportJob(job.module, job.entries, INPUTS, OUTPUTS, Precision.int8, "stage2-like")  # no calibration
    part = part_metadata("executorch", job, convert_part("executorch", job, tmp_path))
    assert part["details"]["linear_conv_by_method"] == {e: {"quantized": 6, "total": 6} for e in ENTRIES}
    assert part["details"]["entry_methods"] == {entry: entry for entry in ENTRIES}  # one static method per entry
    runner = open_part_runner(tmp_path, part)
    for entry, (n, m) in ENTRIES.items():
        inputs = make_inputs(n, m, seed=11)
        got = runner.run(entry, _feeds(inputs))["sequence"]
        with torch.no_grad():
            want = module(*inputs)[1].numpy()
        assert 1e-4 < _scaled_error(got, want) < 0.15


def test_int8_without_calibration_is_refused(module, tmp_path):
    job = make_job(module, Precision.int8)
    job = ExportJob(job.module, job.entries, INPUTS, OUTPUTS, Precision.int8, "stage2-like")
    with pytest.raises(ConversionError, match="needs calibration inputs per entry"):
        convert_part("onnx", job, tmp_path)


def test_runner_refuses_unknown_entries_and_shapes_of_another_entry(converted, module):
    runner = _open(converted, module, "onnx")
    with pytest.raises(InputError, match="Unknown entry 'b5x9'"):
        runner.run("b5x9", _feeds(make_inputs(4, 8)))
    with pytest.raises(InputError, match=r"Input 'index' of entry 'b4x8' has shape \[1, 8\]; the entry is fixed"):
        runner.run("b4x8", _feeds(make_inputs(8, 8)))


@pytest.mark.parametrize("target, precision, message", [
    ("executorch", "fp16", "fp16 is not supported for multi-shape artifacts yet on target 'executorch'"),
    ("onnx", "int8-weights", "int8-weights is not supported for multi-shape artifacts yet on target 'onnx'"),
    ("executorch-coreml", "fp16", "Target 'executorch-coreml' has no multi-shape export"),
])
def test_unsupported_target_or_precision_is_one_clear_error(module, tmp_path, target, precision, message):
    with pytest.raises(ConversionError, match=message):
        convert_part(target, make_job(module, Precision(precision)), tmp_path)
    assert not any(tmp_path.iterdir())  # refused before any work


def test_executorch_runner_refuses_entry_methods_that_name_no_method(converted):
    from edgehmr.targets.executorch import entry_methods

    _, part = converted("executorch")
    assert entry_methods({"entries": part["entries"], "details": {}}) == {e: e for e in ENTRIES}  # older parts
    for bad in ([], {"b4x8": 3}, {"b4x8": ""}):
        with pytest.raises(InputError, match="entry_methods must map every entry to a method name"):
            entry_methods({"entries": part["entries"], "details": {"entry_methods": bad}})

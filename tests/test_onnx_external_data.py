"""ONNX parts with large weights keep them in an external-data file beside the model (written straight from the
tensors, without a protobuf copy in memory): it is hashed like every artifact file, runs, validates, and the
precision passes that start from an external-data FP32 export leave no temporary behind."""

from __future__ import annotations

import pytest

from edgehmr.artifact import read_metadata
from edgehmr.convert import convert
from edgehmr.errors import InputError
from edgehmr.spec import resolve_spec
from edgehmr.validate import validate
from model_helpers import HMR


@pytest.mark.parametrize("target, precision", [("onnx", "fp32"), ("onnx", "int8"), ("tensorrt", "fp32")])
def test_external_data_artifact_is_hashed_and_validates(monkeypatch, tmp_path, loaded_models, bundle, target,
                                                        precision):
    monkeypatch.setattr("edgehmr.converters.onnx.EXTERNAL_DATA_BYTES", 0)  # every export is "large"
    spec = resolve_spec(HMR, target, precision, out_dir=str(tmp_path),
                        **({"calib": "synthetic", "calib_count": 8} if precision == "int8" else {}))
    path = convert(spec, loaded_models(HMR))
    files = sorted(p.name for p in path.iterdir())
    assert not any("tmp" in f for f in files), files
    hashed = read_metadata(path)["files_sha256"]
    if precision == "fp32":  # the export itself; the INT8 pass writes one file (under protobuf's limit)
        assert "model.onnx.data" in files and "model.onnx.data" in hashed
    assert validate(path, bundle(HMR)).passed
    if "model.onnx.data" in files:
        data = path / "model.onnx.data"
        raw = bytearray(data.read_bytes())
        raw[-1] ^= 0xFF
        data.write_bytes(bytes(raw))
        with pytest.raises(InputError, match="does not match metadata.json"):
            read_metadata(path)


def test_sat_hmr_parts_with_external_data_run_every_bucket(monkeypatch, tmp_path):
    """SAT-HMR's stage 2 is the part this is for (0.83 GB of weights at the published size): both stages with
    external data, every bucket validated against the dynamic reference."""
    from edgehmr.calibration.sources import synthetic_samples
    from edgehmr.sat.bundle import make_sat_bundle
    from edgehmr.sat.convert import convert_sat
    from edgehmr.sat.frame import Canvas
    from sat_helpers import TINY_NAME, loaded_tiny

    monkeypatch.setattr("edgehmr.converters.onnx.EXTERNAL_DATA_BYTES", 0)
    loaded = loaded_tiny(2)
    bundle = make_sat_bundle(loaded, list(synthetic_samples(3, seed=1)), Canvas.parse("336x224"), tmp_path / "ref")
    spec = resolve_spec(TINY_NAME, "onnx", out_dir=str(tmp_path), canvas="336x224", buckets="8x48,48x96",
                        allow_demotion=True)
    path = convert_sat(spec, loaded)
    hashed = read_metadata(path)["files_sha256"]
    assert {"stage1/model.onnx.data", "stage2/model.onnx.data"} <= set(hashed), sorted(hashed)
    report = validate(path, bundle)
    assert report.passed and all(b["max_abs"] < 1e-4 for b in report.buckets.values()), report.to_json()

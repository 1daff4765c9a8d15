"""References from the user's own code: a bundle written by docs/examples/write_reference_bundle.py from plain
arrays (here the ORIGINAL 4D-Humans outputs of the golden parity case) is accepted by validate, which says what it
compared against; mismatched or incomplete bundles are refused with one line."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from edgehmr.cli import main
from edgehmr.convert import convert
from edgehmr.errors import InputError
from edgehmr.models import load_model
from edgehmr.spec import resolve_spec
from edgehmr.validate import validate
from parity_helpers import load_case

EXAMPLE = Path(__file__).parents[1] / "docs" / "examples" / "write_reference_bundle.py"
CASE = load_case("hmr2-vit-s")
OUTPUTS = ("global_orient", "body_pose", "betas", "pred_cam", "pred_cam_t")


def _example():
    spec = importlib.util.spec_from_file_location("write_reference_bundle", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The case's recipe checkpoint converted to ONNX fp32, and an external bundle of the original's outputs."""
    root = tmp_path_factory.mktemp("external")
    checkpoint = CASE.checkpoint(root / "hmr2.ckpt", wrapper="state_dict")
    spec = resolve_spec("hmr2-vit-s", "onnx", "fp32", checkpoint=str(checkpoint), out_dir=str(root / "artifacts"))
    artifact = convert(spec, load_model("hmr2-vit-s", checkpoint))
    outputs = {name: CASE.outputs[name] for name in OUTPUTS}
    bundle = _example().write_reference_bundle(root / "original", "hmr2-vit-s", checkpoint,
                                               CASE.inputs["image_256x192"], outputs, "hmr2",
                                               code=CASE.original, device="cpu")
    return root, checkpoint, artifact, bundle


def test_external_bundle_of_the_original_outputs_validates(setup, capsys):
    root, _, artifact, bundle = setup
    report = validate(artifact, bundle)
    assert report.passed, report.to_json()
    assert report.reference.startswith("external reference: shubham-goel/4D-Humans@")
    assert set(report.outputs) == set(OUTPUTS)
    assert main(["validate", str(artifact), "--reference", str(bundle)]) == 0
    assert "compared against the external reference: shubham-goel/4D-Humans" in capsys.readouterr().out


def test_edgehmr_bundle_says_it_is_ours(setup):
    from edgehmr.calibration.sources import open_source
    from edgehmr.reference import make_bundle

    root, checkpoint, artifact, _ = setup
    ours = make_bundle(load_model("hmr2-vit-s", checkpoint), open_source("synthetic", 2), root / "ours")
    assert validate(artifact, ours).reference.startswith("edgehmr reference: edgehmr's PyTorch model")


def _altered(bundle: Path, dest: Path, meta=None, outputs=None, image=None) -> Path:
    dest.mkdir()
    data = json.loads((bundle / "bundle.json").read_text())
    (dest / "bundle.json").write_text(json.dumps(meta(data) if meta else data))
    with np.load(bundle / "inputs.npz") as i, np.load(bundle / "outputs.npz") as o:
        np.savez(dest / "inputs.npz", image=image if image is not None else i["image"])
        np.savez(dest / "outputs.npz", **(outputs(dict(o)) if outputs else dict(o)))
    return dest


@pytest.mark.parametrize("change, message", [
    (dict(meta=lambda m: m | {"model": m["model"] | {"checkpoint_sha256": "0" * 64}}), "with checkpoint 000000000000"),
    (dict(meta=lambda m: m | {"model": {"model": "hmr2-vit-s"}}), "checkpoint_sha256"),
    (dict(meta=lambda m: m | {"producer": {"kind": "mine"}}), "\"producer\" must be"),
    (dict(meta=lambda m: m | {"preprocessing": {"name": "vitpose-udp"}}), "'vitpose-udp' preprocessing"),
    (dict(outputs=lambda o: {k: v for k, v in o.items() if k != "betas"}), "lacks betas"),
    (dict(outputs=lambda o: o | {"betas": o["betas"][:, :5]}), "'betas' has shape [2, 5]"),
    (dict(outputs=lambda o: {"something": o["betas"]}), "lacks global_orient, body_pose, betas, pred_cam_t"),
    (dict(image=np.zeros((2, 3, 256, 256), np.float32)), "inputs of shape [3, 256, 256]"),
    (dict(image=np.zeros((2, 3, 256, 192), np.float64)), "float32 [N, 3, H, W]"),
])
def test_bad_external_bundles_are_refused_with_one_line(setup, tmp_path, capsys, change, message):
    _, _, artifact, bundle = setup
    bad = _altered(bundle, tmp_path / "bad", **change)
    with pytest.raises(InputError, match=None) as e:
        validate(artifact, bad)
    assert message in str(e.value)
    assert main(["validate", str(artifact), "--reference", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err


def test_external_bundle_for_seeded_weights_is_refused(setup, tmp_path):
    """An artifact converted without a checkpoint has nothing a user's code could have run."""
    root, _, _, bundle = setup
    seeded = convert(resolve_spec("hmr2-vit-s", "onnx", "fp32", out_dir=str(tmp_path)), load_model("hmr2-vit-s"))
    with pytest.raises(InputError, match="seeded weights, no checkpoint"):
        validate(seeded, bundle)


def test_example_refuses_an_existing_folder(setup):
    root, checkpoint, _, bundle = setup
    with pytest.raises(FileExistsError):
        _example().write_reference_bundle(bundle, "hmr2-vit-s", checkpoint, CASE.inputs["image_256x192"], {},
                                          "hmr2", code="x")

"""Registry-driven tests: every registered model builds, runs and exports; every (target, precision) pair of the
capability table converts and validates on the tiny models. The matrices come from the registry and the table,
so a new model or target is tested without editing this file."""

from __future__ import annotations

import pytest
import torch

from edgehmr.converters.capabilities import TARGETS
from edgehmr.errors import TargetUnavailableError
from edgehmr.models import get_model_info, list_models, load_model
from edgehmr.validate import validate
from model_helpers import HMR, POSE

TINY = [n for n in list_models(include_test=True) if get_model_info(n).test_only]
PUBLISHED = list_models()
CROP_MODELS = [n for n in TINY if get_model_info(n).crop is not None]


def _example(info, batch: int = 1) -> torch.Tensor:
    return torch.randn(batch, *info.inputs[0].shape[1:])


def _expected_shapes(info, batch: int) -> list[tuple[int, ...]]:
    return [tuple(batch if d == "B" else d for d in o.shape) for o in info.outputs]


def test_every_family_has_a_tiny_model():
    families = {get_model_info(n).family for n in PUBLISHED}
    assert families == {get_model_info(n).family for n in TINY}
    assert {"test-hmr2", "test-vitpose", "test-sat-hmr", "test-deformable-hmr"} <= set(TINY)
    assert not set(TINY) & set(PUBLISHED)  # hidden from the default listing


@pytest.mark.parametrize("name", CROP_MODELS)
def test_tiny_models_run_and_export(name):
    """Real forward at batch 2, outputs as the registry declares them, and torch.export computing the same."""
    loaded = load_model(name)
    x = _example(loaded.info, 2)
    with torch.no_grad():
        outs = loaded.module(x)
    assert [tuple(o.shape) for o in outs] == _expected_shapes(loaded.info, 2)
    program = torch.export.export(loaded.module, (x,), strict=True)
    with torch.no_grad():
        for a, b in zip(program.module()(x), outs):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", [n for n in PUBLISHED if get_model_info(n).crop is not None])
def test_published_models_build_and_run_on_the_meta_device(name):
    """Every published crop model at its real size, without memory or time: shapes only."""
    info = get_model_info(name)
    with torch.device("meta"):
        module = info.build().eval()
        with torch.no_grad():
            outs = module(_example(info, 2))
    assert [tuple(o.shape) for o in outs] == _expected_shapes(info, 2)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in PUBLISHED if get_model_info(n).crop is not None])
def test_published_models_export(name):
    info = get_model_info(name)
    with torch.device("meta"):
        module = info.build().eval()
        torch.export.export(module, (_example(info),), strict=True)


PAIRS = [(target, p.value) for target, caps in TARGETS.items() for p in caps.precisions]
# Seeded heads give flat heatmaps whose argmax INT8 moves by pixels: ViTPose INT8 does not meet the keypoint
# tolerance on seeded weights (open: accuracy-aware INT8, issue 25). It still converts and validates, and is
# reported as an expected failure rather than hidden.
KNOWN_DRIFT = {("vitpose", "int8"), ("vitpose", "int8-weights")}


@pytest.mark.parametrize("name", [HMR, POSE])
@pytest.mark.parametrize("target, precision", PAIRS)
def test_every_capability_converts_and_validates_on_the_tiny_models(name, target, precision, artifact, bundle):
    path = artifact(name, precision, target=target)
    try:
        report = validate(path, bundle(name))
    except TargetUnavailableError as e:  # runs only on the device the table names (Apple, for Core ML delegates)
        assert "only" in TARGETS[target].host and "Apple" in str(e), e
        return
    if not report.passed and (get_model_info(name).family, precision) in KNOWN_DRIFT:
        failed = [m for m, t in report.task.items() if not t["ok"]]
        pytest.xfail(f"{name} {precision} on {target}: keypoint drift over tolerance ({failed}); issue 25")
    assert report.passed, report.to_json()

"""Tasks choose the pipeline's steps: every registered model has one, artifacts record it, and metadata naming
an unknown task or family is refused with one line."""

from __future__ import annotations

import json

import pytest

from edgehmr.cli import main
from edgehmr.errors import InputError
from edgehmr.models import get_model_info, list_models
from edgehmr.tasks import CROPS, FRAMES, KEYPOINTS, MESH, TASKS, artifact_task
from model_helpers import HMR, POSE


def test_every_registered_model_has_a_task_that_matches_what_it_takes_and_returns():
    for name in list_models(include_test=True):
        info = get_model_info(name)
        assert info.task.name in TASKS
        assert (info.task.input == CROPS) == (info.crop is not None), name  # crop models carry a crop rule
        assert (info.task.output == KEYPOINTS) == ("heatmaps" in info.output_names), name


def test_artifacts_record_their_task_and_older_ones_are_read_by_family(artifact):
    meta = json.loads((artifact(HMR) / "metadata.json").read_text())
    assert meta["task"] == "crop-mesh" and artifact_task(meta).output == MESH
    del meta["task"]
    assert artifact_task(meta) is TASKS["crop-mesh"]
    assert artifact_task({"model": {"family": "sat-hmr"}}).input == FRAMES


@pytest.mark.parametrize("meta, message", [
    ({"task": "segmentation", "model": {"family": "hmr2"}}, "names task 'segmentation'"),
    ({"model": {"family": "yolo"}}, "unknown model family 'yolo'"),
    ({"model": "hmr2"}, "unknown model family None"),
])
def test_unknown_task_or_family_is_refused(meta, message):
    with pytest.raises(InputError, match=message):
        artifact_task(meta)


def test_validate_refuses_an_artifact_of_an_unknown_task(artifact, bundle, tmp_path, capsys):
    import shutil

    copy = shutil.copytree(artifact(POSE), tmp_path / "copy")
    meta = json.loads((copy / "metadata.json").read_text()) | {"task": "segmentation"}
    (copy / "metadata.json").write_text(json.dumps(meta))
    assert main(["validate", str(copy), "-r", str(bundle(POSE))]) == 2
    err = capsys.readouterr().err
    assert "names task 'segmentation'" in err and len(err.strip().splitlines()) == 1

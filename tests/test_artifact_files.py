"""Every command that opens an artifact reads only the files inside its folder, and only with the hashes
metadata.json records: validate, profile, report and the Predictor refuse a file name that leads outside (``..``,
an absolute path, a link out of the folder) or a modified file with one line and exit 2, before any runtime
opens anything. The C++ runtime refuses the same (tests/test_cpp_runtime.py, targets/cpp/tests)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edgehmr.artifact import read_metadata
from edgehmr.cli import main
from edgehmr.errors import InputError
from edgehmr.predictor import Predictor
from model_helpers import HMR


def _copy(src: Path, dst: Path) -> tuple[Path, dict]:
    shutil.copytree(src, dst)
    return dst, json.loads((dst / "metadata.json").read_text())


def _escape_by_dots(art: Path, meta: dict) -> None:
    """metadata names ../elsewhere/model.onnx, which exists and is a working model."""
    outside = art.parent / "elsewhere"
    outside.mkdir()
    shutil.copy(art / meta["parts"]["model"]["file"], outside / "model.onnx")
    meta["parts"]["model"]["file"] = "../elsewhere/model.onnx"
    meta.pop("files_sha256")  # the path alone must be refused, not only a hash mismatch


def _escape_by_absolute_path(art: Path, meta: dict) -> None:
    outside = art.parent / "elsewhere.onnx"
    shutil.copy(art / meta["parts"]["model"]["file"], outside)
    meta["parts"]["model"]["file"] = str(outside)
    meta.pop("files_sha256")


def _escape_by_link(art: Path, meta: dict) -> None:
    """The model file is a link to an identical file outside: the hashes match, the link is still refused."""
    model = art / meta["parts"]["model"]["file"]
    outside = art.parent / "same-bytes.onnx"
    shutil.move(model, outside)
    model.symlink_to(outside)


def _modified(art: Path, meta: dict) -> None:
    model = art / meta["parts"]["model"]["file"]
    model.write_bytes(model.read_bytes()[:-16])


CASES = {
    "dots": (_escape_by_dots, "must be a path inside the artifact folder"),
    "absolute": (_escape_by_absolute_path, "must be a path inside the artifact folder"),
    "link": (_escape_by_link, "leads outside the artifact folder"),
    "modified": (_modified, "does not match metadata.json"),
}


@pytest.fixture
def broken(artifact, tmp_path):
    def make(case: str) -> Path:
        art, meta = _copy(artifact(HMR), tmp_path / "runs" / "art")
        CASES[case][0](art, meta)
        (art / "metadata.json").write_text(json.dumps(meta))
        return art

    return make


def _one_line_exit_2(capsys, argv: list[str], message: str) -> None:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("case", CASES)
def test_reader_refuses(broken, case):
    with pytest.raises(InputError, match=CASES[case][1]):
        read_metadata(broken(case))


@pytest.mark.parametrize("case", CASES)
def test_predictor_refuses(broken, case):
    with pytest.raises(InputError, match=CASES[case][1]):
        Predictor(broken(case))


def test_predictor_without_hash_check_still_refuses_paths_outside(broken, artifact, tmp_path):
    with pytest.raises(InputError, match="leads outside the artifact folder"):
        Predictor(broken("link"), verify=False)
    art, meta = _copy(artifact(HMR), tmp_path / "opted-out")
    meta["files_sha256"] = {name: "0" * 64 for name in meta["files_sha256"]}
    (art / "metadata.json").write_text(json.dumps(meta))
    assert Predictor(art, verify=False).meta  # the caller opted out of hashing, not of the path check


@pytest.mark.parametrize("case", CASES)
def test_validate_profile_and_report_refuse(broken, bundle, case, capsys):
    art = broken(case)
    message = CASES[case][1]
    _one_line_exit_2(capsys, ["validate", str(art), "-r", str(bundle(HMR))], message)
    _one_line_exit_2(capsys, ["profile", str(art), "--runs", "1", "--warmup", "0"], message)
    _one_line_exit_2(capsys, ["report", str(art.parent), "-o", str(art.parent / "report")], message)
    assert not (art.parent / "report").exists()


def test_intact_copy_opens(artifact, tmp_path):
    art, _ = _copy(artifact(HMR), tmp_path / "intact")
    assert Predictor(art).meta["model"]["model"] == HMR


@pytest.mark.parametrize("change, message", [
    (lambda part: part.update(entries={}), "parts.model has no entries"),
    (lambda part: part.update(input_names="image"), "parts.model.input_names is missing or not a list"),
    (lambda part: part.pop("file"), "parts.model.file is missing or not a str"),
    (lambda part: part["entries"]["main"].update(image=[1, 3, "256", 192]), "no valid shape for input 'image'"),
])
def test_a_malformed_part_record_is_one_line(artifact, bundle, tmp_path, capsys, change, message):
    """The reader checks every part record the runners read (targets/cpp/src/metadata.cpp checks the fields it
    reads)."""
    art, meta = _copy(artifact(HMR), tmp_path / "malformed")
    change(meta["parts"]["model"])
    (art / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match=message):
        read_metadata(art)
    _one_line_exit_2(capsys, ["validate", str(art), "-r", str(bundle(HMR))], message)


def test_a_metadata_file_of_the_earlier_format_asks_for_a_reconversion(artifact, tmp_path):
    art, meta = _copy(artifact(HMR), tmp_path / "v1")
    meta["schema_version"] = 1
    (art / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="schema version 1, this edgehmr reads 2; re-run 'edgehmr convert'"):
        read_metadata(art)

"""``edgehmr bench --cluster``: a local Ray cluster of a head (build + reference) and worker nodes that each
advertise one ``device:`` resource, as a Jetson or an x86 box would when it joins. The first test passes folders
through a --share folder, the second through Ray's object store.

Each test checks where the tasks actually ran (the Ray node id every device task reports) and that every cell of
the matrix ends in one report, including when a device node dies in the middle of its task."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

from edgehmr.cli import main
from edgehmr.executors import RayCluster
from edgehmr.matrix import Settings, plan_from_flags, report_matrix, run_matrix
from edgehmr.matrix_tasks import Cell

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'edgehmr[cluster]'")
from ray.cluster_utils import Cluster  # noqa: E402

NODE = {"num_cpus": 1, "object_store_memory": 100 * 2**20}
SMALL = ["--runs", "2", "--warmup", "0", "--count", "2"]


@pytest.fixture(scope="module")
def cluster():
    # full priority for the workers (Ray's default is nice 15), or the test's other xdist worker starves them
    before = os.environ.get("RAY_worker_niceness")
    os.environ["RAY_worker_niceness"] = "0"
    c = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 2, "resources": {"build": 2, "reference": 1}, "object_store_memory": 200 * 2**20,
        "include_dashboard": False})
    nodes = {name: c.add_node(resources={f"device:{name}": 1}, **NODE) for name in ("alpha", "beta")}
    c.wait_for_nodes()
    yield c, nodes
    c.shutdown()
    if before is None:
        del os.environ["RAY_worker_niceness"]
    else:
        os.environ["RAY_worker_niceness"] = before


def test_device_tasks_run_only_on_the_node_with_their_device_and_land_in_one_report(cluster, tmp_path, capsys):
    c, nodes = cluster
    code = main(["bench", "--models", "test-hmr2", "--targets", "onnx,openvino", "--precisions", "fp32",
                 "--devices", "onnx=alpha,openvino=beta", "--cluster", c.address, "--share", str(tmp_path / "share"),
                 *SMALL, "-o", str(tmp_path)])
    assert code == 0, capsys.readouterr().err
    records = [json.loads(line) for line in (tmp_path / "cells.jsonl").read_text().splitlines()]
    assert {(r["target"], r["device"]) for r in records} == {("onnx", "alpha"), ("openvino", "beta")}
    for r in records:
        assert r["status"] == "pass", r
        assert r["ran_on"]["ray_node"] == nodes[r["device"]].node_id  # the profile ran on its device's node
    report = json.loads((tmp_path / "report.json").read_text())
    rows = {r["target"]: r for r in report["rows"]}
    assert set(rows) == {"onnx", "openvino"}
    assert rows["onnx"]["device"].startswith("alpha (") and rows["openvino"]["device"].startswith("beta (")
    assert all(r["p50_ms"] > 0 and r["verdict"] == "pass" for r in rows.values())
    profile = json.loads((tmp_path / "artifacts" / "beta" / "test-hmr2-openvino-fp32" / "profile.json").read_text())
    assert profile["device"]["ray_node"] == nodes["beta"].node_id
    # --share: the tasks passed paths; the bundle and both artifacts are there, without the devices' results
    shared = sorted(p.name for p in (tmp_path / "share").glob("*/*/*"))
    assert shared == ["reference-test-hmr2", "test-hmr2-onnx-fp32", "test-hmr2-openvino-fp32"]
    assert not list((tmp_path / "share").rglob("profile.json"))


def test_a_device_node_lost_mid_task_is_replaced_and_every_cell_is_reported(cluster, tmp_path):
    c, _ = cluster
    first = c.add_node(resources={"device:gamma": 1}, **NODE)
    c.wait_for_nodes()
    plan = plan_from_flags(["test-hmr2"], ["onnx"], ["fp32"], "gamma",
                           Settings(runs=2, warmup=0, count=2))
    # a cell that fails the same way wherever it runs: its task returns the error, which is never retried
    plan.cells.append(Cell("test-hmr2", "onnx", "int8", name="onnx-int8-bad-budget", device="gamma",
                           max_drift="wingspan=1mm"))
    executor = RayCluster(c.address)
    lines: list[str] = []
    converted = threading.Event()

    def log(line: str) -> None:
        lines.append(line)
        if line.startswith("converted"):
            converted.set()

    outcome = {}
    runner = threading.Thread(target=lambda: outcome.setdefault("o", run_matrix(plan, tmp_path, executor, log=log)))
    try:
        runner.start()
        assert converted.wait(300), lines
        time.sleep(0.5)  # the device task is on its way to the only gamma node, or starting its worker there
        c.remove_node(first, allow_graceful=False)
        second = c.add_node(resources={"device:gamma": 1}, **NODE)
        runner.join(300)
        assert not runner.is_alive(), lines
    finally:
        executor.close()
    records = {r.cell: r for r in outcome["o"].records}
    assert set(records) == {"onnx-fp32", "onnx-int8-bad-budget"}
    assert records["onnx-fp32"].status == "pass", records["onnx-fp32"]
    assert records["onnx-fp32"].ran_on["ray_node"] == second.node_id  # run again on the node that replaced it
    bad = records["onnx-int8-bad-budget"]
    assert bad.status == "error" and bad.detail.startswith("convert: ") and "wingspan" in bad.detail
    written = (tmp_path / "cells.jsonl").read_text().splitlines()
    assert len(written) == 2  # every cell once, none twice
    paths = report_matrix(outcome["o"], tmp_path)
    rows = json.loads(paths["json"].read_text())["rows"]
    assert [r["precision"] for r in rows] == ["fp32"]
    notes = json.loads(paths["json"].read_text())["notes"]
    assert sum("onnx-int8-bad-budget" in n for n in notes) == 1
    assert sum("wingspan" in line for line in lines) == 1  # logged once: no retry


def test_a_device_no_node_offers_is_refused_instead_of_waiting_forever(cluster, tmp_path, capsys):
    c, _ = cluster
    code = main(["bench", "--models", "test-hmr2", "--targets", "onnx", "--precisions", "fp32", "--devices", "orin",
                 "--cluster", c.address, *SMALL, "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "offers 'device:orin'" in err and "ray start --address" in err
    assert not (tmp_path / "out" / "cells.jsonl").exists()

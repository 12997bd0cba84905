"""The warp ceiling's pure logic: the object size it plans, and reading warp's own analysis.

The JSON files are real `warp put|get --full --json` outputs (warp v1.3.1, MinIO on loopback,
1 MiB objects, 2 threads, 3 s; get with --objects 64), keys never in them."""
import copy
import json
from pathlib import Path

import pytest

from msbench.measure.warp import MAX_SIZE, MIN_SIZE, WarpTarget, plan_object_size, rows_from_analysis, run_warp

DATA = Path(__file__).parent / "data"
MiB = 1 << 20


def _analysis(op: str) -> dict:
    return json.loads((DATA / f"warp-{op}.json").read_text())


def test_planned_size_is_where_half_of_the_bytes_lie_in_objects_at_most_that_big():
    # 1000 tiny objects hold 1 MB, two big ones 16 MiB: the plain median is 1 KB, the bytes sit in 8 MiB
    assert plan_object_size([1000] * 1000 + [8 * MiB, 8 * MiB]) == 8 * MiB
    assert plan_object_size([MiB, 2 * MiB, 3 * MiB]) == 2 * MiB      # 1+2 = 3 of 6 MiB: exactly half
    assert plan_object_size([MiB, 2 * MiB, 4 * MiB]) == 4 * MiB      # 3 of 7 MiB is under half
    assert plan_object_size([5 * MiB]) == 5 * MiB


def test_planned_size_is_clamped_and_needs_sizes():
    assert plan_object_size([10, 20]) == MIN_SIZE == 4096
    assert plan_object_size([0, 0]) == MIN_SIZE
    assert plan_object_size([1 << 30]) == MAX_SIZE == 64 * MiB
    with pytest.raises(ValueError):
        plan_object_size([])
    with pytest.raises(ValueError):
        plan_object_size([MiB, -1])


def test_put_rows_are_warps_own_figures():
    rows = rows_from_analysis(_analysis("put"), "put")
    got = {metric: (value, unit) for metric, value, unit in rows}
    assert [m for m, _, _ in rows] == [f"warp_put_{n}" for n in (
        "mib_per_s", "obj_per_s", "latency_p50_ms", "latency_p90_ms", "latency_p99_ms",
        "errors", "requests", "obj_size_bytes", "concurrency")]
    assert got["warp_put_mib_per_s"] == (pytest.approx(610159359 / 2.985 / MiB), "MiB/s")
    assert got["warp_put_obj_per_s"] == (pytest.approx(581.8933098310222 / 2.985), "objects/s")
    assert got["warp_put_latency_p50_ms"] == (9.99111, "ms")
    assert got["warp_put_latency_p90_ms"] == (13.480533, "ms")
    assert got["warp_put_latency_p99_ms"] == (19.077491, "ms")
    assert got["warp_put_errors"] == (0.0, "count")
    assert got["warp_put_requests"] == (586.0, "count")
    assert got["warp_put_obj_size_bytes"] == (float(MiB), "bytes")
    assert got["warp_put_concurrency"] == (2.0, "count")


def test_get_rows_skip_the_uploads_get_prepares_with():
    analysis = _analysis("get")
    assert {o["type"] for o in analysis["operations"]} == {"PUT", "GET"}   # the 64 prepare uploads
    got = {metric: value for metric, value, _ in rows_from_analysis(analysis, "get")}
    assert got["warp_get_requests"] == 2345 and got["warp_get_errors"] == 0
    assert got["warp_get_latency_p50_ms"] <= got["warp_get_latency_p90_ms"] <= got["warp_get_latency_p99_ms"]
    assert got["warp_get_mib_per_s"] == pytest.approx(2454456045 / 2.994 / MiB)
    with pytest.raises(RuntimeError, match="too little PUT data.*run longer"):
        rows_from_analysis(analysis, "put")                  # warp skipped the prepare uploads


def test_a_run_warp_could_not_analyse_says_why():
    analysis = copy.deepcopy(_analysis("put"))
    op = analysis["operations"][0]
    op.update(skipped=True, errors=3, first_errors=["http://127.0.0.1:9000, 12:00:00: Access Denied."])
    del op["single_sized_requests"]
    with pytest.raises(RuntimeError, match="3 failed: .*Access Denied"):
        rows_from_analysis(analysis, "put")
    with pytest.raises(RuntimeError, match="no GET requests"):
        rows_from_analysis(_analysis("put"), "get")


def test_a_bad_op_names_the_valid_ones_before_anything_runs(tmp_path):
    target = WarpTarget("127.0.0.1:1", "ak", "sk", "warp-bench")
    with pytest.raises(ValueError, match="'delete'.*valid: get, put"):
        run_warp(tmp_path / "no-warp", target, "delete", MiB, 2, 3.0, tmp_path)
    with pytest.raises(ValueError, match="get only"):
        run_warp(tmp_path / "no-warp", target, "put", MiB, 2, 3.0, tmp_path, objects=10)
    with pytest.raises(ValueError, match="host:port"):
        run_warp(tmp_path / "no-warp", WarpTarget("http://127.0.0.1:1", "ak", "sk", "b"), "put", MiB, 2, 3.0, tmp_path)
    assert not list(tmp_path.iterdir())


def test_the_keys_stay_out_of_a_targets_repr():
    text = repr(WarpTarget("127.0.0.1:9000", "AKIDVISIBLE", "s3cr3t-value", "warp-bench"))
    assert "AKIDVISIBLE" not in text and "s3cr3t-value" not in text and "warp-bench" in text

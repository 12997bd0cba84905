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
    return load_backends()["garage"]


def test_milvus_and_etcd_specs_match_the_milvus_standalone_compose():
    """Milvus 2.6.7 standalone + etcd v3.5.25.

    Sources:
    - milvus-io/milvus deployments/docker/standalone/docker-compose.yml (the release asset
      milvus-standalone-docker-compose.yml): command ``milvus run standalone``, security_opt
      ``seccomp:unconfined``, env ETCD_ENDPOINTS / MINIO_ADDRESS (host:port), volume /var/lib/milvus,
      healthcheck ``curl -f http://localhost:9091/healthz`` interval 30s, start_period 90s, timeout
      20s, retries 3; etcd: ETCD_AUTO_COMPACTION_MODE=revision, ETCD_AUTO_COMPACTION_RETENTION=1000,
      ETCD_QUOTA_BACKEND_BYTES=4294967296, ETCD_SNAPSHOT_COUNT=50000, --data-dir /etcd, healthcheck
      ``etcdctl endpoint health`` 30s / 20s / 3. (Read from the 2.5/2.6 compose as stored; the v2.6.7
      tag itself could not be read here.)
    - milvus-io/milvus build/docker/milvus/ubuntu22.04/Dockerfile: curl installed, ENTRYPOINT tini.
    - MINIO_REGION, MINIO_ACCESS_KEY_ID, MINIO_SECRET_ACCESS_KEY: Milvus config keys minio.region,
      minio.accessKeyID, minio.secretAccessKey given through the environment.
    - MQ_TYPE rocksmq: the published study's compose (shared/seed, the article); the 2.6 release compose
      says woodpecker. The local 2.3.5 variant drops it (rocksmq is 2.3.5 standalone's queue).
    - etcd-io/etcd@v3.5.25:Dockerfile-release.amd64: /usr/local/bin/etcd and etcdctl, no shell.
    """
    plan = _plan(load_backends()["seaweedfs"])
    spec, addr = plan.specs["milvus"], plan.addr
    assert spec["image"] == "milvusdb/milvus:v2.6.7"
    assert spec["command"] == ["milvus", "run", "standalone"] and "entrypoint" not in spec   # the image's tini
    assert spec["security_opt"] == ["seccomp:unconfined"] and "user" not in spec
    env = spec["environment"]
    assert set(env) == {"ETCD_ENDPOINTS", "MINIO_ADDRESS", "MINIO_REGION", "MINIO_ACCESS_KEY_ID",
                        "MINIO_SECRET_ACCESS_KEY", "METRICS_PORT", "MQ_TYPE", "AWS_EC2_METADATA_DISABLED"}
    assert env["MQ_TYPE"] == "rocksmq" and env["AWS_EC2_METADATA_DISABLED"] == "true"   # no instance metadata lookup
    local = _plan(load_backends()["seaweedfs"], use_local={"milvus": True}).specs["milvus"]
    assert "MQ_TYPE" not in local["environment"]
    assert env["ETCD_ENDPOINTS"] == f"127.0.0.1:{addr.ports['etcd']['client']}"
    assert env["MINIO_ADDRESS"] == f"127.0.0.1:{addr.ports['store']['s3']}"
    assert env["MINIO_ACCESS_KEY_ID"] == ACCESS and env["MINIO_SECRET_ACCESS_KEY"] == SECRET
    assert env["MINIO_REGION"] == "us-east-1" and env["METRICS_PORT"] == str(addr.ports["milvus"]["metrics"])
    assert spec["healthcheck"] == {
        "test": ["CMD", "curl", "-f", f"http://127.0.0.1:{addr.ports['milvus']['metrics']}/healthz"],
        "interval": 30 * NS, "timeout": 20 * NS, "start_period": 90 * NS, "retries": 3}
    assert spec["volumes"] == {"msbench-abcd1234-milvus-data": {"bind": "/var/lib/milvus", "mode": "rw"}}
    assert spec["network_mode"] == "host"
    config = yaml.safe_load(plan.files["milvus"]["/milvus/configs/user.yaml"])
    assert config["proxy"]["port"] == addr.ports["milvus"]["grpc"] and config["proxy"]["ip"] == "127.0.0.1"
    assert config["etcd"]["use"]["embed"] is False and config["common"]["storageType"] == "minio"
    assert config["minio"]["bucketName"] == "milvus-bucket" and config["common"]["session"]["ttl"] == 10
    assert ACCESS not in plan.files["milvus"]["/milvus/configs/user.yaml"]  # keys only in the environment
    _labels_ok(spec, "milvus", "seaweedfs")

    etcd, client, peer = plan.specs["etcd"], addr.ports["etcd"]["client"], addr.ports["etcd"]["peer"]
    assert etcd["image"] == "quay.io/coreos/etcd:v3.5.25" and etcd["entrypoint"] == ["/usr/local/bin/etcd"]
    assert etcd["command"] == [
        "--name=msbench", "--data-dir=/etcd",
        f"--listen-client-urls=http://127.0.0.1:{client}", f"--advertise-client-urls=http://127.0.0.1:{client}",
        f"--listen-peer-urls=http://127.0.0.1:{peer}", f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
        f"--initial-cluster=msbench=http://127.0.0.1:{peer}",
        "--quota-backend-bytes=4294967296", "--snapshot-count=50000",
        "--auto-compaction-mode=revision", "--auto-compaction-retention=1000"]
    assert etcd["environment"] == {} and "user" not in etcd
    assert etcd["healthcheck"] == {
        "test": ["CMD", "/usr/local/bin/etcdctl", f"--endpoints=http://127.0.0.1:{client}", "endpoint", "health"],
        "interval": 30 * NS, "timeout": 20 * NS, "start_period": 30 * NS, "retries": 3}
    assert etcd["volumes"] == {"msbench-abcd1234-etcd-data": {"bind": "/etcd", "mode": "rw"}}


def test_minio_spec_matches_the_pinned_image():
    """MinIO quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z.

    Sources (minio/minio at 07c3a429bfed433e49018cb0f78a52145d4bedeb, tag RELEASE.2025-09-07T16-13-09Z):
    - docker-buildx.sh: quay.io/minio/minio:${release} is built from Dockerfile.release.
    - Dockerfile.release: minio, mc and curl in /usr/bin; no USER (root); EXPOSE 9000; VOLUME /data;
      ENTRYPOINT /usr/bin/docker-entrypoint.sh; CMD minio.
    - dockerscripts/docker-entrypoint.sh: a first argument other than ``minio`` gets ``minio`` put
      before it, so the command starts with ``server``.
    - internal/config/constants.go: MINIO_ROOT_USER, MINIO_ROOT_PASSWORD, MINIO_BROWSER, MINIO_UPDATE
      (cmd/common-main.go: "off" skips the release check against dl.min.io).
    - docs/orchestration/docker-compose/docker-compose.yaml: healthcheck ``mc ready local``; our
      MC_HOST_local makes the ``local`` alias our port (not mc's default 9000).
    """
    plan = _plan(load_backends()["minio"])
    spec = plan.specs["store"]
    port, console = plan.addr.ports["store"]["s3"], plan.addr.ports["store"]["console"]
    assert spec["image"] == "quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z"
    assert "entrypoint" not in spec and "user" not in spec      # the image's entrypoint, as root
    assert spec["command"] == ["server", "/data", "--address", f"127.0.0.1:{port}",
                               "--console-address", f"127.0.0.1:{console}"]
    assert spec["environment"] == {"MINIO_ROOT_USER": ACCESS, "MINIO_ROOT_PASSWORD": SECRET, "MINIO_BROWSER": "off",
                                   "MINIO_UPDATE": "off", "MC_HOST_local": f"http://{ACCESS}:{SECRET}@127.0.0.1:{port}"}
    assert spec["volumes"] == {"msbench-abcd1234-store-data": {"bind": "/data", "mode": "rw"}}
    assert spec["network_mode"] == "host" and "ports" not in spec
    assert spec["healthcheck"] == {"test": ["CMD", "mc", "ready", "local"], "interval": 30 * NS,
                                   "timeout": 10 * NS, "start_period": 30 * NS, "retries": 3}
    assert "volume_owner" not in plan.defs["store"]
    _labels_ok(spec, "store", "minio")


def test_rustfs_runs_as_uid_1000_on_one_volume_by_default_and_four_on_request():
    """RustFS rustfs/rustfs:1.0.0-alpha.68.

    Sources (rustfs/rustfs at tag 1.0.0-alpha.68, commit 7e1a9e2e, 2025-11-11):
    - Dockerfile (the one .github/workflows/docker.yml builds): ``addgroup -g 1000 -S rustfs``,
      ``adduser -u 1000 -G rustfs``, /data and /logs chown rustfs:rustfs, chmod 0750, ``USER rustfs``;
      ENV RUSTFS_ADDRESS, RUSTFS_CONSOLE_ADDRESS, RUSTFS_ACCESS_KEY, RUSTFS_SECRET_KEY,
      RUSTFS_CONSOLE_ENABLE, RUSTFS_VOLUMES=/data, RUSTFS_OBS_LOG_DIRECTORY=/logs; EXPOSE 9000 9001;
      apk add curl; ENTRYPOINT /entrypoint.sh, CMD rustfs. (UID/GID 10001 came with later tags.)
    - rustfs/src/config/mod.rs: the env names above (clap ``env =``).
    - rustfs/src/admin/mod.rs: GET /health.
    - docker-compose.yml: RUSTFS_VOLUMES over 4 directories /data/rustfs0..3 (written ``{0..3}``
      there; crates/utils/src/string.rs expands only the three-dot ellipsis ``{0...3}``).
    Fresh named volumes are root's, so the helper chowns them to 1000:1000 (volume_owner).
    """
    plan = _plan(load_backends()["rustfs"])
    spec, port = plan.specs["store"], plan.addr.ports["store"]["s3"]
    assert spec["image"] == "rustfs/rustfs:1.0.0-alpha.68"
    assert spec["user"] == "1000:1000" and plan.defs["store"]["volume_owner"] == "1000:1000"
    assert spec["command"] is None and "entrypoint" not in spec      # /entrypoint.sh rustfs
    assert spec["environment"] == {
        "RUSTFS_ACCESS_KEY": ACCESS, "RUSTFS_SECRET_KEY": SECRET, "RUSTFS_VOLUMES": "/data",
        "RUSTFS_ADDRESS": f"127.0.0.1:{port}", "RUSTFS_CONSOLE_ENABLE": "false",
        "RUSTFS_CONSOLE_ADDRESS": f"127.0.0.1:{plan.addr.ports['store']['console']}"}
    assert set(plan.addr.ports["store"]) == {"s3", "console"}
    assert spec["volumes"] == {"msbench-abcd1234-store-data": {"bind": "/data", "mode": "rw"}}
    assert plan.defs["store"]["log_paths"] == ["/logs"]              # RUSTFS_OBS_LOG_DIRECTORY
    assert spec["healthcheck"] == {"test": ["CMD", "curl", "-f", f"http://127.0.0.1:{port}/health"],
                                   "interval": 30 * NS, "timeout": 10 * NS, "start_period": 30 * NS, "retries": 3}
    _labels_ok(spec, "store", "rustfs")
    # the upstream compose layout: 4 data directories, each its own volume (msbench.yaml selects it)
    user = UserConfig(backends={"rustfs-4": {"alias_of": "rustfs", "docker": {"layout": "four"}}})
    plan4 = _plan(load_backends(user)["rustfs-4"])
    four = plan4.specs["store"]
    assert four["volumes"] == {f"msbench-abcd1234-store-data{i}": {"bind": f"/data/rustfs{i}", "mode": "rw"}
                               for i in range(4)}
    assert four["environment"]["RUSTFS_VOLUMES"] == "/data/rustfs{0...3}"
    assert four["user"] == "1000:1000" and plan4.defs["store"]["volume_owner"] == "1000:1000"
    _labels_ok(four, "store", "rustfs-4")


def test_seaweedfs_spec_matches_the_image_layout():
    """SeaweedFS chrislusf/seaweedfs:4.47.

    Sources (seaweedfs/seaweedfs at tag 4.44, the newest tag in the mirror read here; 4.47 is not
    in it; alpine, /usr/bin/weed and the entrypoint are the same at 4.00):
    - .github/workflows/container_release_unified.yml: the image is docker/Dockerfile.go_build.
    - docker/Dockerfile.go_build: alpine (busybox wget), curl, ``weed`` at /usr/bin/weed,
      ENTRYPOINT /entrypoint.sh, EXPOSE 8333 (s3) 9333/19333 (master) 8080/18080 (volume)
      8888/18888 (filer), VOLUME /data.
    - docker/entrypoint.sh: as root it chowns /data and su-execs to ``seaweed``; we call
      /usr/bin/weed directly (root, so the fresh volume is writable), as its ``*)`` branch would.
    - weed/command/server.go: every flag used; weed/s3api/s3api_server.go: GET /status.
    """
    plan = _plan(load_backends()["seaweedfs"])
    spec, ports = plan.specs["store"], plan.addr.ports["store"]
    assert spec["image"] == "chrislusf/seaweedfs:4.47"
    assert spec["entrypoint"] == ["/usr/bin/weed"] and "user" not in spec
    command = spec["command"]
    assert command[:2] == ["-logtostderr=true", "server"] and "-dir=/data" in command
    assert "-master.telemetry=false" in command and "-s3" in command and "-filer" in command
    assert f"-s3.port={ports['s3']}" in command and "-s3.config=/etc/msbench/s3.json" in command
    assert "-ip=127.0.0.1" in command and "-ip.bind=127.0.0.1" in command
    assert set(ports) == {"s3", "s3_grpc", "master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc"}
    assert spec["environment"] == {}
    assert spec["volumes"] == {"msbench-abcd1234-store-data": {"bind": "/data", "mode": "rw"}}
    s3_json = plan.files["store"]["/etc/msbench/s3.json"]
    assert ACCESS in s3_json and SECRET in s3_json
    assert spec["healthcheck"] == {"test": ["CMD", "wget", "-q", "-O", "/dev/null", f"http://127.0.0.1:{ports['s3']}/status"],
                                   "interval": 30 * NS, "timeout": 10 * NS, "start_period": 60 * NS, "retries": 3}
    _labels_ok(spec, "store", "seaweedfs")


def test_ceph_demo_spec_matches_the_demo_entrypoint():
    """Ceph quay.io/ceph/demo:latest-quincy.

    Sources (ceph/ceph-container at 30dc8b9a, the last revision before the repository's
    deprecation; src/demo/demo.sh unchanged since ccc5bbb4, 2023-07):
    - contrib/build-push-ceph-container-imgs.sh: demo images for CEPH_RELEASES=(main quincy reef
      squid), tagged latest-$release.
    - src/demo/Dockerfile: ENTRYPOINT ["/opt/ceph-container/bin/demo"], so no command (demo.sh reads
      no arguments; ``demo`` was the old ceph/daemon image's scenario argument).
    - src/demo/demo.sh: MON_IP, CEPH_PUBLIC_NETWORK (required), DEMO_DAEMONS, CEPH_DEMO_UID,
      CEPH_DEMO_ACCESS_KEY, CEPH_DEMO_SECRET_KEY, RGW_FRONTEND_IP (default 0.0.0.0),
      RGW_FRONTEND_PORT (default 8080); no OSD_TYPE; the daemons keep state in /etc/ceph and
      /var/lib/ceph; /var/lib/ceph/I_AM_A_DEMO is touched after the demo user exists.
    """
    plan = _plan(load_backends()["ceph-rgw"])
    spec, port = plan.specs["store"], plan.addr.ports["store"]["s3"]
    assert spec["image"] == "quay.io/ceph/demo:latest-quincy"
    assert spec["command"] is None and "entrypoint" not in spec and "user" not in spec
    assert spec["environment"] == {
        "MON_IP": "127.0.0.1", "CEPH_PUBLIC_NETWORK": "127.0.0.0/8", "DEMO_DAEMONS": "mon,osd,rgw",
        "CEPH_DEMO_UID": "msbench", "CEPH_DEMO_ACCESS_KEY": ACCESS, "CEPH_DEMO_SECRET_KEY": SECRET,
        "RGW_FRONTEND_IP": "127.0.0.1", "RGW_FRONTEND_PORT": str(port)}
    assert spec["volumes"] == {"msbench-abcd1234-store-etc": {"bind": "/etc/ceph", "mode": "rw"},
                               "msbench-abcd1234-store-data": {"bind": "/var/lib/ceph", "mode": "rw"}}
    assert plan.defs["store"]["data_volumes"] == ["data"] and spec["network_mode"] == "host"
    assert spec["healthcheck"] == {
        "test": ["CMD-SHELL", f"test -f /var/lib/ceph/I_AM_A_DEMO && curl -sf -o /dev/null http://127.0.0.1:{port}/"],
        "interval": 30 * NS, "timeout": 10 * NS, "start_period": 120 * NS, "retries": 3}
    _labels_ok(spec, "store", "ceph-rgw")
    # the local image keeps its own entrypoint and readiness file
    local = _plan(load_backends()["ceph-rgw"], use_local={"store": True}).specs["store"]
    assert local["image"] == "msbench-local/ceph-rgw:bookworm" and local["command"] is None
    assert local["healthcheck"]["test"] == ["CMD", "test", "-f", "/tmp/msbench-ready"]


def test_garage_spec_config_and_bootstrap():
    """Garage dxflrs/garage:v2.1.0.

    Sources: deuxfleurs garage (GitHub mirror deuxfleurs-org/garage; newest tag there v2.0.0, v2.1.0
    is not in it) and the ``garage`` crate 2.5.0 source, identical in all of these:
    - Dockerfile: FROM scratch, COPY result/bin/garage /, CMD ["/garage", "server"]: the binary
      is /garage, no shell (exec-form healthcheck and bootstrap), root.
    - .woodpecker/release.yaml + shell.nix ``to_docker``: that Dockerfile is what dxflrs/garage is.
    - src/garage/main.rs: -c/--config, default /etc/garage.toml.
    - src/garage/cli/structs.rs: ``node id -q``, ``layout assign -z -c``, ``layout apply --version``,
      ``key import --yes -n``, ``bucket create``, ``bucket allow --read --write --owner --key``.
    - src/util/config.rs: metadata_dir, data_dir, db_engine, replication_factor, rpc_bind_addr,
      rpc_public_addr, rpc_secret, [s3_api] s3_region / api_bind_addr / root_domain, [admin].
    - ports 3900 (S3), 3901 (RPC), 3903 (admin): Garage's documented defaults.
    """
    plan = _plan(_garage_backend(), credentials=None)
    spec, values, ports = plan.specs["store"], plan.values["store"], plan.addr.ports["store"]
    assert spec["image"] == "dxflrs/garage:v2.1.0"
    assert spec["command"] == ["/garage", "-c", "/etc/garage.toml", "server"] and "entrypoint" not in spec
    assert "user" not in spec and spec["environment"] == {} and set(ports) == {"s3", "rpc", "admin"}
    assert spec["healthcheck"] == {"test": ["CMD", "/garage", "-c", "/etc/garage.toml", "status"],
                                   "interval": 30 * NS, "timeout": 10 * NS, "start_period": 30 * NS, "retries": 3}
    assert spec["volumes"] == {"msbench-abcd1234-store-meta": {"bind": "/var/lib/garage/meta", "mode": "rw"},
                               "msbench-abcd1234-store-data": {"bind": "/var/lib/garage/data", "mode": "rw"}}
    assert plan.access_key.startswith("GK") and len(plan.access_key) == 26 and len(plan.secret_key) == 64
    toml = plan.files["store"]["/etc/garage.toml"]
    assert "replication_factor = 1" in toml and 's3_region = "garage"' in toml and 'db_engine = "lmdb"' in toml
    assert f'rpc_secret = "{values["rpc_secret"]}"' in toml and len(values["rpc_secret"]) == 64
    assert f'api_bind_addr = "127.0.0.1:{ports["s3"]}"' in toml
    assert f'rpc_public_addr = "127.0.0.1:{ports["rpc"]}"' in toml
    assert plan.region == "garage" and plan.values["milvus"]["region"] == "garage"
    assert plan.specs["milvus"]["environment"]["MINIO_REGION"] == "garage"
    steps = [s["exec"] for s in plan.defs["store"]["bootstrap"]]
    assert all(s[:3] == ["/garage", "-c", "/etc/garage.toml"] for s in steps)
    assert [s[3:] for s in steps] == [
        ["node", "id", "-q"], ["layout", "assign", "-z", "dc1", "-c", "10G", "${node_id}"],
        ["layout", "apply", "--version", "1"], ["key", "import", "--yes", "-n", "msbench", "${access_key}", "${secret_key}"],
        ["bucket", "create", "${bucket}"],
        ["bucket", "allow", "--read", "--write", "--owner", "${bucket}", "--key", "${access_key}"]]
    assert plan.defs["store"]["create_bucket"] is False
    _labels_ok(spec, "store", "garage")


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


def test_local_variants_drop_what_their_local_block_deletes():
    """A ``null`` in a ``local:`` block deletes the registry value in the local variant (it used to be
    consumed by merging a built-in definition with itself, so registry-only settings leaked through)."""
    ceph = _plan(load_backends()["ceph-rgw"], use_local={"store": True}).specs["store"]
    assert "MON_IP" not in ceph["environment"] and "MSBENCH_RGW_PORT" in ceph["environment"]
    assert all(v["bind"] != "/etc/ceph" for v in ceph["volumes"].values())
    minio = _plan(load_backends()["minio"], use_local={"store": True}).specs["store"]
    assert "MC_HOST_local" not in minio["environment"] and minio["entrypoint"] == ["/usr/local/bin/minio"]
    assert minio["image"].startswith("msbench-local/minio:")

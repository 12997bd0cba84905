import pytest

from msbench.backends import find_binary, load_backends, select
from msbench.providers.catalog import unavailable_reason
from msbench.config import ConfigError, UserConfig
from msbench.providers.stores import ExternalStore, ProcessStore


def test_builtin_definitions_load():
    registry = load_backends()
    assert {"seaweedfs", "ceph-rgw", "minio", "rustfs", "external"} <= set(registry)
    assert registry["seaweedfs"].launcher == "process" and "s3" in registry["seaweedfs"].ports
    assert "-master.telemetry=false" in registry["seaweedfs"].command  # traffic stays on loopback


def test_user_config_overrides_aliases_and_adds(tmp_path):
    user = UserConfig(backends={
        "seaweedfs": {"stop_grace_s": 5},
        "seaweedfs-b": {"alias_of": "seaweedfs"},
        "mystore": {"launcher": "process", "binary": "true", "command": ["${binary}"],
                    "ready_url": "http://127.0.0.1:${port_s3}/"},
    })
    registry = load_backends(user)
    assert registry["seaweedfs"].stop_grace_s == 5
    assert registry["seaweedfs-b"].kind == "seaweedfs" and registry["seaweedfs-b"].command == registry["seaweedfs"].command
    assert registry["mystore"].kind == "mystore"


@pytest.mark.parametrize("entry, message", [
    ({"alias_of": "nope"}, "alias_of 'nope' is not a known backend"),
    ({"launcher": "magic"}, "launcher must be one of process, ceph, external"),
    ({"launcher": "process"}, "needs 'command' and 'ready_url'"),
    ({"launcher": "external", "colour": "red"}, "unknown fields"),
    ({"alias_of": "seaweedfs", "command": "weed server"},
     r"'x' \(msbench.yaml\): command must be a list of words such as \[weed, server\].*got 'weed server'"),
    ({"alias_of": "seaweedfs", "ports": 5}, r"ports must be a list of port names such as \[s3, console\], got 5"),
    ({"alias_of": "seaweedfs", "ports": [True]}, "ports must be a list of port names"),
    ({"alias_of": "seaweedfs", "env": {"A": 1}}, r"env must be a mapping of variable names to strings \(quote"),
    ({"alias_of": "seaweedfs", "stop_grace_s": float("nan")},
     "stop_grace_s must be a number of seconds above 0, at most 600"),
    ({"alias_of": "seaweedfs", "ready_url": "ftp://127.0.0.1/"}, "ready_url must be an http:// or https:// URL"),
    ({"alias_of": "seaweedfs", "bootstrap": "weed shell"}, "bootstrap must be a list of steps"),
    ({"alias_of": "seaweedfs", "description": 7}, "description must be a string, got 7"),
    ({"alias_of": "seaweedfs", "docker": "minio/minio"}, "docker must be a mapping"),
    ({"alias_of": "external", "endpoint": "ftp://127.0.0.1:21"}, "endpoint must be an http://HOST:PORT URL, got 'ftp://"),
    ({"alias_of": "external", "endpoint": "https://s3.example:443"}, "endpoint must be an http://HOST:PORT URL"),
    ({"alias_of": "external", "endpoint": "http://h:port"}, "endpoint must be an http://HOST:PORT URL"),
    ({"launcher": "external", "endpoint": "http://127.0.0.1:9000"}, "an external backend needs 'access_key_env' and"),
])
def test_bad_definitions_are_refused(entry, message):
    with pytest.raises(ConfigError, match=message):
        load_backends(UserConfig(backends={"x": entry}))


def test_docker_needs_an_image_not_a_binary(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("MSBENCH_CACHE", str(tmp_path / "cache"))   # no binary anywhere
    registry = load_backends(UserConfig(backends={
        "bare": {"launcher": "process", "binary": "bare", "command": ["${binary}"], "ready_url": "http://x:1/"}}))
    assert "no 'minio' binary found" in unavailable_reason(registry["minio"])
    assert unavailable_reason(registry["minio"], provider="docker") is None
    assert "has no docker definition" in unavailable_reason(registry["bare"], provider="docker")
    assert "no endpoint configured" in unavailable_reason(registry["external"], provider="docker")


def test_select_validates_names():
    registry = load_backends()
    with pytest.raises(ConfigError, match="unknown backend.*minoi.*known backends"):
        select(["minoi"], registry)
    with pytest.raises(ConfigError, match="listed twice"):
        select(["seaweedfs", "seaweedfs"], registry)


def test_missing_binary_says_how_to_enable(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("MSBENCH_CACHE", str(tmp_path / "cache"))   # no pinned build either
    minio = load_backends()["minio"]
    reason = unavailable_reason(minio)
    assert "no 'minio' binary found" in reason and "MSBENCH_MINIO_BIN" in reason
    assert "(not built: 'go' not on PATH" in reason and "msbench stores install minio" in reason
    monkeypatch.setenv("MSBENCH_MINIO_BIN", str(tmp_path / "nothing"))
    assert "is not an executable file" in unavailable_reason(minio)
    fake = tmp_path / "minio"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("MSBENCH_MINIO_BIN", str(fake))
    assert unavailable_reason(minio) is None and find_binary(minio) == str(fake)


def test_process_store_fills_templates(tmp_path):
    store = ProcessStore(load_backends()["minio"], tmp_path, tmp_path / "logs", binary="/opt/minio")
    argv = [store._fill(a) for a in store.backend.command]
    assert argv[:3] == ["/opt/minio", "server", str(tmp_path / "data")]
    assert f"127.0.0.1:{store.port}" in argv
    env = {k: store._fill(v) for k, v in store.backend.env.items()}
    assert env["MINIO_ROOT_USER"] == store.access_key and len(store.secret_key) >= 8


def test_external_store_reads_keys_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MSBENCH_S3_ACCESS_KEY", "ak")
    monkeypatch.setenv("MSBENCH_S3_SECRET_KEY", "sk")
    registry = load_backends(UserConfig(backends={"external": {"endpoint": "http://127.0.0.1:9000"}}))
    assert unavailable_reason(registry["external"]) is None
    store = ExternalStore(registry["external"], tmp_path, tmp_path)
    assert (store.port, store.access_key, store.restartable) == (9000, "ak", False)
    monkeypatch.delenv("MSBENCH_S3_SECRET_KEY")
    assert "MSBENCH_S3_SECRET_KEY" in unavailable_reason(registry["external"])
